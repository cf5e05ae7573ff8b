//! tracefs: mounting it when needed, and reading classic tracepoint field locations from
//! `events/<category>/<name>/format`.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use probes_common::tracepoint::Field;

/// Where tracefs is mounted on current kernels.
pub const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// Errors from tracefs.
#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error("tracefs is not mounted and mounting it at {TRACEFS} failed ({0}); mount it with `mount -t tracefs tracefs {TRACEFS}`")]
    Mount(nix::Error),
    #[error("cannot read the format of tracepoint {category}/{name} ({path}): {source}")]
    Format {
        category: String,
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tracepoint {category}/{name} has no field `{field}`")]
    MissingField {
        category: String,
        name: String,
        field: String,
    },
}

/// The tracefs root, mounting tracefs at [`TRACEFS`] first if no copy is mounted.
pub fn ensure_mounted() -> Result<PathBuf, TracefsError> {
    if let Some(root) = mounted_root() {
        return Ok(root);
    }
    nix::mount::mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(TracefsError::Mount)?;
    Ok(PathBuf::from(TRACEFS))
}

/// The tracefs root, when tracefs is mounted.
pub fn mounted_root() -> Option<PathBuf> {
    [TRACEFS, DEBUGFS_TRACING]
        .into_iter()
        .map(PathBuf::from)
        .find(|root| root.join("events").is_dir())
}

/// The fields of one tracepoint.
#[derive(Debug, Clone)]
pub struct EventFormat {
    category: String,
    name: String,
    fields: HashMap<String, Field>,
}

impl EventFormat {
    /// Reads `events/<category>/<name>/format` under `root`.
    pub fn read(root: &Path, category: &str, name: &str) -> Result<Self, TracefsError> {
        let path = root.join("events").join(category).join(name).join("format");
        let text = fs::read_to_string(&path).map_err(|source| TracefsError::Format {
            category: category.into(),
            name: name.into(),
            path: path.clone(),
            source,
        })?;
        Ok(Self::parse(category, name, &text))
    }

    /// Parses the text of a format file.
    pub fn parse(category: &str, name: &str, text: &str) -> Self {
        let fields = text.lines().filter_map(parse_field_line).collect();
        Self {
            category: category.into(),
            name: name.into(),
            fields,
        }
    }

    /// The location of `field`.
    pub fn field(&self, field: &str) -> Result<Field, TracefsError> {
        self.fields
            .get(field)
            .copied()
            .ok_or_else(|| TracefsError::MissingField {
                category: self.category.clone(),
                name: self.name.clone(),
                field: field.into(),
            })
    }
}

/// `\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;` → ("prev_comm", 8, 16).
fn parse_field_line(line: &str) -> Option<(String, Field)> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    for part in line.split(';') {
        let part = part.trim();
        if let Some(rest) = part.strip_prefix("field:") {
            decl = Some(rest);
        } else if let Some(rest) = part.strip_prefix("offset:") {
            offset = rest.parse().ok();
        } else if let Some(rest) = part.strip_prefix("size:") {
            size = rest.parse().ok();
        }
    }
    let name = decl?.split_whitespace().last()?;
    let name = name.split('[').next()?.to_string();
    Some((
        name,
        Field {
            offset: offset?,
            size: size?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHED_SWITCH: &str = "name: sched_switch
ID: 320
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prev_prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;
\tfield:int next_prio;\toffset:60;\tsize:4;\tsigned:1;

print fmt: \"prev_comm=%s prev_pid=%d\", REC->prev_comm, REC->prev_pid
";

    #[test]
    fn parses_fields_with_arrays_and_types() {
        let format = EventFormat::parse("sched", "sched_switch", SCHED_SWITCH);
        assert_eq!(
            format.field("prev_state").unwrap(),
            Field {
                offset: 32,
                size: 8
            }
        );
        assert_eq!(
            format.field("next_pid").unwrap(),
            Field {
                offset: 56,
                size: 4
            }
        );
        assert_eq!(
            format.field("next_comm").unwrap(),
            Field {
                offset: 40,
                size: 16
            }
        );
        let err = format.field("nope").unwrap_err().to_string();
        assert_eq!(err, "tracepoint sched/sched_switch has no field `nope`");
    }
}
