//! TOML errors that say where: `line L, column C: what`.

/// The error of parsing `text`, with its line and column when toml knows them.
pub fn describe(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_line_and_column() {
        let text = "name = \"x\"\nweight = \"a\"\n";
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            name: String,
            weight: u32,
        }
        let e = toml::from_str::<T>(text).err().unwrap();
        let said = super::describe(text, &e);
        assert!(said.starts_with("line 2, column 10: "), "{said}");
    }
}
