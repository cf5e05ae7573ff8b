//! Stack assembly: names the frames of the stacks the probes recorded (kernel symbols, native
//! symbols, Python frames) and folds them. The format itself is [`super::folded`].

use probes_common::{python::PY_NO_STACK, stack::StackKey};

use super::folded::Folded;
use crate::probe::{comm_str, StackTable};

/// Names frames: kernel addresses, and user addresses of a process.
pub trait FrameNamer {
    /// The name of a kernel address.
    fn kernel(&mut self, addr: u64) -> String;
    /// The name of a user address in process `tgid`.
    fn user(&mut self, tgid: u32, addr: u64) -> String;
    /// The frames of Python stack `id` of process `tgid`, root first, when known.
    fn python(&mut self, _tgid: u32, _id: u64) -> Option<Vec<String>> {
        None
    }
}

/// Frame shown where a user stack could not be read.
pub const MISSING_USER_STACK: &str = "[missing user stack]";

/// The frames of one stack key: comm, user frames root first, then kernel frames with `_[k]`.
/// With a Python stack, the user frames are the Python frames followed by the native leaf
/// (frame-pointer unwinding through the interpreter yields nothing else of use).
pub fn stack_frames(
    key: &StackKey,
    stacks: &StackTable,
    namer: &mut dyn FrameNamer,
) -> Vec<String> {
    let mut frames = vec![comm_str(&key.comm)];
    let user = stacks.get(key.ustack);
    let python = match key.pystack {
        PY_NO_STACK => None,
        id => namer.python(key.tgid, id).filter(|f| !f.is_empty()),
    };
    if let Some(python) = python {
        frames.extend(python);
        if let Some(&leaf) = user.first() {
            frames.push(namer.user(key.tgid, leaf));
        }
    } else {
        if user.is_empty() {
            frames.push(MISSING_USER_STACK.to_string());
        }
        frames.extend(user.iter().rev().map(|&addr| namer.user(key.tgid, addr)));
    }
    frames.extend(
        stacks
            .get(key.kstack)
            .iter()
            .rev()
            .map(|&addr| format!("{}_[k]", namer.kernel(addr))),
    );
    frames
}

/// Folds stack-keyed values, weighting each with `weight`.
pub fn fold_stacks<V>(
    items: &[(StackKey, V)],
    weight: impl Fn(&V) -> u64,
    stacks: &StackTable,
    namer: &mut dyn FrameNamer,
) -> Folded {
    let mut folded = Folded::default();
    for (key, value) in items {
        let frames = stack_frames(key, stacks, namer);
        folded.add(&frames, weight(value));
    }
    folded
}

/// True for a Python frame, named `qualname (file:LINE)`.
pub fn is_python_frame(frame: &str) -> bool {
    frame
        .strip_suffix(')')
        .and_then(|f| f.rsplit_once(':'))
        .is_some_and(|(head, line)| head.contains(" (") && line.parse::<u32>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes_common::{stack::NO_STACK, COMM_LEN};

    struct FakeNamer;

    impl FrameNamer for FakeNamer {
        fn kernel(&mut self, addr: u64) -> String {
            format!("k{addr:x}")
        }
        fn user(&mut self, tgid: u32, addr: u64) -> String {
            if addr == 0xbad {
                "a;b".into()
            } else {
                format!("u{tgid}_{addr:x}")
            }
        }
        fn python(&mut self, _tgid: u32, id: u64) -> Option<Vec<String>> {
            (id == 9).then(|| vec!["main (x.py:3)".into(), "work (x.py:7)".into()])
        }
    }

    #[test]
    fn python_frames_then_native_leaf_then_kernel() {
        let stacks = StackTable::from_stacks([(1, vec![0x30, 0x20, 0x10]), (2, vec![0xa])]);
        let mut with_python = key("py", 2, 1);
        with_python.pystack = 9;
        let mut unknown_python = key("py", NO_STACK, 1);
        unknown_python.pystack = 5;
        let items = [(with_python, 4u64), (unknown_python, 1u64)];
        let folded = fold_stacks(&items, |v| *v, &stacks, &mut FakeNamer);
        assert_eq!(
            folded.lines(),
            vec![
                "py;main (x.py:3);work (x.py:7);u7_30;ka_[k] 4".to_string(),
                "py;u7_10;u7_20;u7_30 1".to_string(),
            ]
        );
    }

    fn key(comm: &str, kstack: u64, ustack: u64) -> StackKey {
        let mut c = [0u8; COMM_LEN];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        StackKey {
            tgid: 7,
            kstack,
            ustack,
            _pad: 0,
            pystack: 0,
            comm: c,
        }
    }

    #[test]
    fn folds_user_then_kernel_root_first() {
        // Stack maps store the leaf first.
        let stacks = StackTable::from_stacks([(1, vec![0x30, 0x20, 0x10]), (2, vec![0xb, 0xa])]);
        let items = [
            (key("app", 2, 1), 5u64),
            (key("app", 2, 1), 2u64),
            (key("app", NO_STACK, 1), 3u64),
            (key("app", 2, NO_STACK), 1u64),
            (key("app", NO_STACK, 1), 0u64),
        ];
        let folded = fold_stacks(&items, |v| *v, &stacks, &mut FakeNamer);
        let text = String::from_utf8(folded.to_bytes()).unwrap();
        assert_eq!(
            text,
            "app;[missing user stack];ka_[k];kb_[k] 1\n\
             app;u7_10;u7_20;u7_30 3\n\
             app;u7_10;u7_20;u7_30;ka_[k];kb_[k] 7\n"
        );
        assert_eq!(folded.total(), 11);
        assert_eq!(Folded::parse(&text), folded);
    }

    #[test]
    fn frame_names_cannot_split_a_stack() {
        let stacks = StackTable::from_stacks([(1, vec![0xbad])]);
        let folded = fold_stacks(
            &[(key("x", NO_STACK, 1), 1u64)],
            |v| *v,
            &stacks,
            &mut FakeNamer,
        );
        assert_eq!(folded.lines(), vec!["x;a:b 1".to_string()]);
    }
}
