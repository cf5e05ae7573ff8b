//! Whatever a server sends, split however it arrives, the lean HTTP/1.1 client must record
//! exactly what hyper's client records (`runner::load::http1::oracle`). The input's first
//! byte chooses how the server ends the connection, HEAD or GET, and the split points.

#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::load::http1::oracle;

fuzz_target!(|data: &[u8]| {
    if let Some((script, head)) = oracle::from_fuzz(data) {
        let (lean, hyper) = oracle::both(&script, 2, head);
        assert_eq!(lean, hyper, "the lean client and hyper disagree on {script:?} (HEAD: {head})");
    }
});
