//! The folded-stack format (`comm;root;...;leaf COUNT`, kernel frames suffixed `_[k]`), the
//! input of flamegraphs. Naming the frames is [`super::assemble`]'s job.

use std::collections::BTreeMap;

/// Folded stacks with their counts, kept sorted so output is deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    stacks: BTreeMap<String, u64>,
}

impl Folded {
    /// Adds `count` to the stack made of `frames` (root first). Zero counts are dropped.
    pub fn add<S: AsRef<str>>(&mut self, frames: &[S], count: u64) {
        if count == 0 || frames.is_empty() {
            return;
        }
        let line = frames
            .iter()
            .map(|f| sanitize(f.as_ref()))
            .collect::<Vec<_>>()
            .join(";");
        *self.stacks.entry(line).or_insert(0) += count;
    }

    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.stacks.values().sum()
    }

    /// True when there are no stacks.
    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// `(stack, count)` pairs, sorted by stack.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.stacks.iter().map(|(s, c)| (s.as_str(), *c))
    }

    /// The lines of the folded file, without newlines.
    pub fn lines(&self) -> Vec<String> {
        self.iter().map(|(s, c)| format!("{s} {c}")).collect()
    }

    /// The folded file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        for line in self.lines() {
            out.push_str(&line);
            out.push('\n');
        }
        out.into_bytes()
    }

    /// Parses a folded file; malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        let mut folded = Self::default();
        for line in text.lines() {
            if let Some((stack, count)) = line.rsplit_once(' ') {
                if let Ok(count) = count.parse::<u64>() {
                    *folded.stacks.entry(stack.to_string()).or_insert(0) += count;
                }
            }
        }
        folded
    }

    /// Sum of the counts of stacks for which `pred` holds.
    pub fn sum_where(&self, pred: impl Fn(&str) -> bool) -> u64 {
        self.iter().filter(|(s, _)| pred(s)).map(|(_, c)| c).sum()
    }
}

/// A frame name that cannot break the folded format.
fn sanitize(frame: &str) -> String {
    frame
        .chars()
        .map(|c| match c {
            ';' => ':',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_writes_and_keeps_frames_whole() {
        let mut folded = Folded::default();
        folded.add(&["app", "main", "work"], 3);
        folded.add(&["app", "a;b", "c\nd"], 2);
        folded.add(&["app", "main", "work"], 4);
        folded.add(&["app", "idle"], 0);
        let text = String::from_utf8(folded.to_bytes()).unwrap();
        assert_eq!(text, "app;a:b;c d 2\napp;main;work 7\n");
        assert_eq!(folded.total(), 9);
        assert_eq!(Folded::parse(&text), folded);
        assert_eq!(folded.sum_where(|s| s.ends_with("work")), 7);
    }
}
