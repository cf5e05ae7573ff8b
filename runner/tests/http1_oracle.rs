//! The lean HTTP/1.1 client against hyper's, on generated responses: each one served whole,
//! a byte at a time, and split at every byte boundary, ended by the server keeping the
//! connection open, closing it or resetting it. Both must record the same thing for every
//! request (error class, status, body bytes, SHA-256, whether the connection is kept) and
//! write the same request bytes. Then every input of the fuzz corpus, the same way.

use runner::load::http1::oracle::{self, End, Script, Verdict};

/// Requests sent per script: the second shows whether the connection was kept.
const REQUESTS: usize = 2;

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// (name, response bytes, HEAD request)
fn cases() -> Vec<(String, Vec<u8>, bool)> {
    let mut cases: Vec<(String, Vec<u8>, bool)> = Vec::new();
    let mut add = |name: &str, bytes: &[u8]| cases.push((name.into(), bytes.to_vec(), false));
    // Content-Length.
    add("cl-empty", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    add("cl-pong", ok("pong").as_bytes());
    add("cl-headers", b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 01 Dec 2026 02:00:59 GMT\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-Many: a, b, c\r\n\r\nhello");
    add(
        "cl-large",
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n{}",
            "x".repeat(40_000)
        )
        .as_bytes(),
    );
    add(
        "cl-same-twice",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3, 3\r\n\r\nabc",
    );
    add(
        "cl-differ",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    );
    add(
        "cl-letters",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc",
    );
    add(
        "cl-plus",
        b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
    );
    add(
        "cl-empty-value",
        b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nabc",
    );
    add(
        "cl-overflow",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nabc",
    );
    add(
        "cl-max",
        b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nabc",
    );
    add(
        "cl-obs-text",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\xff\r\n\r\nabc",
    );
    add(
        "cl-spaces",
        b"HTTP/1.1 200 OK\r\nContent-Length:    3   \r\n\r\nabc",
    );
    add(
        "cl-extra-bytes",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
    );
    add(
        "cl-two-responses",
        [ok("one"), ok("two")].concat().as_bytes(),
    );
    // Chunked, with extensions and trailers.
    add(
        "chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npong\r\n0\r\n\r\n",
    );
    add("chunked-many", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n2\r\nbc\r\nA\r\n0123456789\r\n0\r\n\r\n");
    add("chunked-ext", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;name=value\r\npong\r\n3 ; q=\"x\"\r\n!!!\r\n0;last\r\n\r\n");
    add(
        "chunked-lws",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4 \t \r\npong\r\n0\r\n\r\n",
    );
    add(
        "chunked-upper",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n00a\r\n0123456789\r\n0\r\n\r\n",
    );
    add("chunked-trailers", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n4\r\npong\r\n0\r\nX-Sum: 42\r\nX-Other: y\r\n\r\n");
    add("chunked-bad-trailer", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npong\r\n0\r\nno colon here\r\n\r\n");
    add("chunked-trailer-lf", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npong\r\n0\r\nX-A: 1\nX-B: 2\r\n\r\n");
    add(
        "chunked-gzip-chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n",
    );
    add(
        "chunked-then-gzip",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nzz\r\n0\r\n\r\n",
    );
    add("te-two-lines", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n2\r\nzz\r\n0\r\n\r\n");
    add("te-and-cl", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n");
    add(
        "te-identity",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nrest of it",
    );
    add(
        "te-http10",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n",
    );
    add(
        "chunked-lf-only",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\npong\n0\n\n",
    );
    add(
        "chunked-no-digits",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\npong\r\n0\r\n\r\n",
    );
    add(
        "chunked-bad-digit",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4g\r\npong\r\n0\r\n\r\n",
    );
    add("chunked-overflow", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\npong\r\n0\r\n\r\n");
    add(
        "chunked-ext-lf",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;a\nb\r\npong\r\n0\r\n\r\n",
    );
    add(
        "chunked-missing-crlf",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npongX\r\n0\r\n\r\n",
    );
    add(
        "chunked-long-ext",
        format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\na\r\n0\r\n\r\n",
            "e".repeat(17_000)
        )
        .as_bytes(),
    );
    add(
        "chunked-extra-bytes",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nEXTRA",
    );
    // Connection: close, and keep-alive by version.
    add(
        "close",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    );
    add(
        "close-mixed-case",
        b"HTTP/1.1 200 OK\r\nconnection: Keep-Alive, CLOSE\r\nContent-Length: 2\r\n\r\nok",
    );
    add("close-then-keep-alive", b"HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok");
    add("keep-alive-then-close", b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
    add(
        "close-obs-text",
        b"HTTP/1.1 200 OK\r\nConnection: close\xe9\r\nContent-Length: 2\r\n\r\nok",
    );
    add("http10", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
    add(
        "http10-keep-alive",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    );
    add(
        "until-eof",
        b"HTTP/1.1 200 OK\r\n\r\nthe rest of the stream",
    );
    add("until-eof-http10", b"HTTP/1.0 200 OK\r\n\r\nthe rest");
    // Status classes and bodiless statuses.
    add(
        "204-with-cl",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
    );
    add(
        "304",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    );
    add(
        "404",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
    );
    add(
        "500-chunked",
        b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nerr\r\n0\r\n\r\n",
    );
    add(
        "302",
        b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
    );
    add("999", b"HTTP/1.1 999 Whatever\r\nContent-Length: 0\r\n\r\n");
    // 1xx.
    add(
        "100-then-200",
        [&b"HTTP/1.1 100 Continue\r\n\r\n"[..], ok("pong").as_bytes()]
            .concat()
            .as_slice(),
    );
    add("103-hints", [&b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"[..], ok("pong").as_bytes()].concat().as_slice());
    add("100-only", b"HTTP/1.1 100 Continue\r\n\r\n");
    add("101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nframes");
    add(
        "199-with-cl",
        [
            &b"HTTP/1.1 199 Odd\r\nContent-Length: 4\r\n\r\n"[..],
            ok("pong").as_bytes(),
        ]
        .concat()
        .as_slice(),
    );
    // Malformed heads.
    add(
        "bad-version",
        b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    add("http09", b"hello world");
    add(
        "bad-status",
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    );
    add(
        "status-099",
        b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
    );
    add(
        "status-4-digits",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    );
    add("no-reason", b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok");
    add(
        "no-colon",
        b"HTTP/1.1 200 OK\r\nBroken header\r\nContent-Length: 2\r\n\r\nok",
    );
    add(
        "space-before-colon",
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    );
    add(
        "obs-fold",
        b"HTTP/1.1 200 OK\r\nX-Long: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    );
    add(
        "nul-in-value",
        b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    );
    add("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok");
    add(
        "leading-crlf",
        [&b"\r\n"[..], ok("ok").as_bytes()].concat().as_slice(),
    );
    add(
        "garbage-then-head",
        b"xHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    add(
        "empty-header-name",
        b"HTTP/1.1 200 OK\r\n: v\r\nContent-Length: 2\r\n\r\nok",
    );
    let many: String = (0..101).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    add(
        "101-headers",
        format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 2\r\n\r\nok").as_bytes(),
    );
    let hundred: String = (0..99).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    add(
        "100-headers",
        format!("HTTP/1.1 200 OK\r\n{hundred}Content-Length: 2\r\n\r\nok").as_bytes(),
    );
    add(
        "huge-head",
        format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
            "b".repeat(40_000)
        )
        .as_bytes(),
    );
    // Truncated bodies and heads (the ending decides: timeout, reset, or closed early).
    add(
        "truncated-cl",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf",
    );
    add(
        "truncated-chunk",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nhalf",
    );
    add(
        "truncated-chunk-size",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npong\r\n",
    );
    add(
        "truncated-final",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
    );
    add("truncated-head", b"HTTP/1.1 200 OK\r\nContent-Len");
    add("nothing", b"");
    let mut with_head: Vec<(String, Vec<u8>, bool)> = cases
        .iter()
        .filter(|(name, ..)| {
            [
                "cl-pong",
                "chunked",
                "until-eof",
                "404",
                "close",
                "204-with-cl",
            ]
            .contains(&name.as_str())
        })
        .map(|(name, bytes, _)| (format!("{name}-to-head"), bytes.clone(), true))
        .collect();
    cases.append(&mut with_head);
    cases
}

fn check(name: &str, script: &Script, head: bool) -> Verdict {
    let (lean, hyper) = oracle::both(script, REQUESTS, head);
    assert_eq!(
        lean, hyper,
        "{name}: the lean client and hyper disagree on {script:?} (HEAD: {head})"
    );
    lean
}

#[test]
fn the_lean_client_classifies_every_response_as_hyper_does() {
    let mut runs = 0;
    let mut seen = std::collections::BTreeSet::new();
    for (name, bytes, head) in cases() {
        for end in [End::Open, End::Close, End::Reset] {
            let script = Script::one(&bytes, end);
            let verdict = check(&name, &script, head);
            let first = verdict.requests[0]
                .as_ref()
                .expect("the first request is sent");
            seen.insert(format!("{:?}", first.class));
            match verdict.requests.get(1) {
                Some(Some(_)) => seen.insert("kept".into()),
                Some(None) => seen.insert("given up".into()),
                None => seen.insert("broken".into()),
            };
            check(&name, &script.bytewise(), head);
            // Every split point of short responses; every 97th of long ones.
            let len = script.first_len();
            let stride = if len > 2000 { 97 } else { 1 };
            for at in (1..len).step_by(stride) {
                check(&name, &script.split_at(at), head);
                runs += 1;
            }
        }
    }
    // A keep-alive connection that the server closes or resets after the first response,
    // or keeps open with a second one.
    for end in [End::Open, End::Close, End::Reset] {
        for second in [
            Vec::new(),
            ok("two").into_bytes(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort".to_vec(),
        ] {
            let script = Script {
                responses: vec![vec![ok("one").into_bytes()], vec![second]],
                end,
            };
            check("keep-alive-then", &script, false);
            let three = oracle::both(&script, 3, false);
            assert_eq!(three.0, three.1, "three requests on {script:?}");
        }
    }
    assert!(runs > 20_000, "{runs} split runs");
    // The cases reach every outcome the engine tells apart.
    for seen_one in [
        "None",
        "Some(Reset)",
        "Some(Protocol)",
        "Some(Timeout)",
        "Some(Status4xx)",
        "Some(Status5xx)",
        "Some(StatusOther)",
        "kept",
        "given up",
        "broken",
    ] {
        assert!(seen.contains(seen_one), "no case gave {seen_one}: {seen:?}");
    }
}

#[test]
fn requests_are_written_byte_for_byte_as_hyper_writes_them() {
    let script = Script {
        responses: vec![vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()]; 2],
        end: End::Open,
    };
    for head in [false, true] {
        let verdict = check("request bytes", &script, head);
        let method = if head { "HEAD" } else { "GET" };
        assert_eq!(
            String::from_utf8(verdict.written).unwrap(),
            format!("{method} /oracle HTTP/1.1\r\nhost: oracle.test\r\n\r\n{method} /oracle HTTP/1.1\r\nhost: oracle.test\r\n\r\n")
        );
    }
    // A server that answers in HTTP/1.0 with keep-alive is spoken to in HTTP/1.0.
    let old = Script {
        responses: vec![
            vec![
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n".to_vec()
            ];
            2
        ],
        end: End::Open,
    };
    let verdict = check("HTTP/1.0 server", &old, false);
    assert!(String::from_utf8(verdict.written)
        .unwrap()
        .ends_with("GET /oracle HTTP/1.0\r\nhost: oracle.test\r\nconnection: keep-alive\r\n\r\n"));
}

#[test]
fn the_fuzz_corpus_replays_without_a_difference() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/http1_response");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is in the repository") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Some((script, head)) = oracle::from_fuzz(&data) {
            check(&path.display().to_string(), &script, head);
            inputs += 1;
        }
    }
    assert!(inputs >= 100, "{inputs} corpus inputs in {}", dir.display());
}
