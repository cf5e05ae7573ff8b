//! The interpreter a bundled app runs on: `--python`'s choice, or the default (one with
//! symbols when the machine has it), made runnable by the app's user. One that user cannot
//! read (pyenv under /root) is copied, with its standard library, into runner's cache.

use std::path::{Path, PathBuf};

use super::user::RunAs;
use crate::cpython::install::{self, Choice, Install, InstallError};

/// Why an app cannot have the interpreter asked for.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    #[error(transparent)]
    Find(#[from] InstallError),
    #[error("the app user `{user}` cannot run {path}, and it is not an installation runner can copy ({why}): make it readable by that user (chmod o+rx on its folders) or pass --python a path that user can read")]
    Unreadable {
        user: String,
        path: PathBuf,
        why: String,
    },
    #[error("copying {0} into runner's cache")]
    Copy(PathBuf, #[source] std::io::Error),
    #[error("the copy of {from} in {to} does not run as `{user}`: {why}; pass --python a path that user can read")]
    CopyFails {
        from: PathBuf,
        to: PathBuf,
        user: String,
        why: String,
    },
}

/// The interpreter for an app: `choice`, or the default; runnable by `user`. A default
/// with symbols that cannot be made runnable gives way to the system's `python3`.
pub fn for_app(
    choice: Option<&Choice>,
    user: &RunAs,
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Install, PythonError> {
    if let Some(c) = choice {
        return runnable(install::find(c)?, user, cache, progress);
    }
    let chosen = install::default_for_apps()?;
    let system = chosen.source == "system";
    match runnable(chosen, user, cache, progress) {
        Err(e) if !system => {
            progress(&format!("{e}; using the system's python3 instead"));
            runnable(install::system()?, user, cache, progress)
        }
        other => other,
    }
}

/// `found`, or a copy of it in the cache when `user` cannot run it.
fn runnable(
    found: Install,
    user: &RunAs,
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Install, PythonError> {
    let Err(why) = runs_as(&found.path, user) else {
        return Ok(found);
    };
    let layout = Relocatable::of(&found).ok_or_else(|| PythonError::Unreadable {
        user: user.name.clone(),
        path: found.path.clone(),
        why: format!(
            "{why}; no bin/ and lib/python3.X/ under {}",
            found.prefix.display()
        ),
    })?;
    copy(&found, &layout, user, cache, progress)
}

/// Runs `python` as `user`: Err with what it said when it cannot.
fn runs_as(python: &Path, user: &RunAs) -> Result<(), String> {
    let out = user
        .command(python)
        .args(["-I", "-c", "import encodings, json, ssl"])
        .current_dir("/")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(err.lines().last().unwrap_or("it failed").trim().to_string())
}

/// An installation laid out as `PREFIX/bin/pythonX.Y` and `PREFIX/lib/pythonX.Y/`, which
/// runs from anywhere (CPython finds its library from its own location).
struct Relocatable {
    exe_name: String,
    stdlib: String,
}

impl Relocatable {
    fn of(i: &Install) -> Option<Self> {
        let (major, minor) = i.minor();
        let exe_name = format!(
            "python{major}.{minor}{}",
            if i.free_threaded { "t" } else { "" }
        );
        let stdlib = format!(
            "python{major}.{minor}{}",
            if i.free_threaded { "t" } else { "" }
        );
        (i.prefix.join("bin").join(&exe_name).is_file()
            && i.prefix.join("lib").join(&stdlib).join("os.py").is_file())
        .then_some(Self { exe_name, stdlib })
    }
}

/// Copies the installation into `cache/pythons` (once; reused after), without its test
/// suite, site-packages and static libraries, points its executable's library path at the
/// copy, and checks that the copy runs as `user`.
fn copy(
    from: &Install,
    layout: &Relocatable,
    user: &RunAs,
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Install, PythonError> {
    // Named for the installation and its interpreter file as it is now: one rebuilt in place
    // is copied again.
    let tag = crate::load::request::hex(&{
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(from.prefix.as_os_str().as_encoded_bytes());
        h.update(from.version.as_bytes());
        if let Ok(meta) = std::fs::metadata(&from.module) {
            use std::os::unix::fs::MetadataExt;
            h.update(meta.len().to_le_bytes());
            h.update(meta.mtime().to_le_bytes());
        }
        h.finalize()
    });
    let name = format!("{}-{}-{}", from.version, from.source, &tag[..10]);
    let to = cache.join("pythons").join(&name);
    let exe = to.join("bin").join(&layout.exe_name);
    let err = |e| PythonError::Copy(from.prefix.clone(), e);
    if !to.join(".complete").is_file() {
        progress(&format!(
            "copying {} {} into {} (the app user `{}` cannot read {}; first use)",
            from.source,
            from.version,
            to.display(),
            user.name,
            from.prefix.display()
        ));
        // Made aside and renamed into place, so a concurrent or killed runner never leaves
        // a half copy where a venv would link to it.
        let partial = cache
            .join("pythons")
            .join(format!(".{name}.partial-{}", std::process::id()));
        let item = crate::journal::Item::Scratch {
            path: partial.clone(),
        };
        crate::journal::add(item.clone());
        let filled = fill(from, layout, &partial).and_then(|()| {
            if to.exists() && !to.join(".complete").is_file() {
                std::fs::remove_dir_all(&to)?;
            }
            match std::fs::rename(&partial, &to) {
                Err(_) if to.join(".complete").is_file() => Ok(()),
                other => other,
            }
        });
        let _ = std::fs::remove_dir_all(&partial);
        crate::journal::remove(&item);
        filled.map_err(err)?;
        open_path(&to);
    }
    runs_as(&exe, user).map_err(|why| PythonError::CopyFails {
        from: from.prefix.clone(),
        to: to.clone(),
        user: user.name.clone(),
        why,
    })?;
    let mut copied = install::inspect(&exe, &from.source)?;
    copied.copied_from = Some(from.path.clone());
    Ok(copied)
}

/// Copies what an installation needs to run into `to`: the executable (its library path
/// pointed at the copy's `lib`), libpython, the standard library without its tests and
/// site-packages; marked complete last.
fn fill(from: &Install, layout: &Relocatable, to: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to.join("bin"))?;
    std::fs::create_dir_all(to.join("lib"))?;
    let exe = to.join("bin").join(&layout.exe_name);
    std::fs::copy(from.prefix.join("bin").join(&layout.exe_name), &exe)?;
    std::os::unix::fs::symlink(&layout.exe_name, to.join("bin/python3"))?;
    let lib = from.prefix.join("lib");
    for entry in std::fs::read_dir(&lib)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("libpython") {
            copy_tree(&entry.path(), &to.join("lib").join(&name), &[])?;
        }
    }
    let stdlib = to.join("lib").join(&layout.stdlib);
    copy_tree(
        &lib.join(&layout.stdlib),
        &stdlib,
        &["test", "site-packages"],
    )?;
    std::fs::create_dir_all(stdlib.join("site-packages"))?;
    set_runpath_origin(&exe)?;
    std::fs::write(
        to.join(".complete"),
        from.prefix.as_os_str().as_encoded_bytes(),
    )
}

/// Copies a file, symlink or folder (but not the entries named in `skip` at its top, nor
/// static libraries), keeping modes.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        let _ = std::fs::remove_file(to);
        return std::os::unix::fs::symlink(std::fs::read_link(from)?, to);
    }
    if meta.is_file() {
        return std::fs::copy(from, to).map(|_| ());
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)?.flatten() {
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if skip.contains(&text.as_ref()) || text.ends_with(".a") {
            continue;
        }
        copy_tree(&entry.path(), &to.join(&name), &[])?;
    }
    Ok(())
}

/// Makes the folders from the cache down to `dir` searchable by everyone.
fn open_path(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for d in dir.ancestors().take(3) {
        if let Ok(meta) = std::fs::metadata(d) {
            let mut perm = meta.permissions();
            perm.set_mode(perm.mode() | 0o755);
            let _ = std::fs::set_permissions(d, perm);
        }
    }
}

/// Rewrites the executable's RUNPATH (or RPATH), which names the original's `lib`, to
/// `$ORIGIN/../lib`, in place (the new string is shorter; the rest is zeroed), so the copy
/// loads its own libpython.
fn set_runpath_origin(path: &Path) -> std::io::Result<()> {
    use object::{
        elf,
        read::elf::{Dyn, ElfFile64, SectionHeader},
    };
    const ORIGIN: &[u8] = b"$ORIGIN/../lib";
    let invalid = |e: object::read::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut data = std::fs::read(path)?;
    let mut patches = Vec::new();
    {
        let file = ElfFile64::<object::Endianness>::parse(&*data).map_err(invalid)?;
        let endian = file.endian();
        let sections = file.elf_section_table();
        for section in sections.iter() {
            let Some((dyns, link)) = section.dynamic(endian, &*data).map_err(invalid)? else {
                continue;
            };
            let strings = sections.section(link).map_err(invalid)?.sh_offset(endian);
            for d in dyns {
                let tag = d.d_tag(endian) as i64;
                if tag == elf::DT_RUNPATH || tag == elf::DT_RPATH {
                    let at = (strings + d.d_val(endian)) as usize;
                    let len = data[at..].iter().position(|&b| b == 0).unwrap_or(0);
                    patches.push((at, len));
                }
            }
        }
    }
    for (at, len) in patches {
        if len < ORIGIN.len() {
            continue;
        }
        data[at..at + len].fill(0);
        data[at..at + ORIGIN.len()].copy_from_slice(ORIGIN);
    }
    std::fs::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_a_runpath_to_origin() {
        let dir = std::env::temp_dir().join(format!("runner-runpath-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("a.c");
        std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
        let bin = dir.join("a");
        let ok = std::process::Command::new("gcc")
            .arg("-Wl,-rpath,/root/.pyenv/versions/3.13.0/lib,--enable-new-dtags")
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("no gcc: skipped");
            return;
        }
        set_runpath_origin(&bin).unwrap();
        let bytes = std::fs::read(&bin).unwrap();
        let has = |s: &[u8]| bytes.windows(s.len()).any(|w| w == s);
        assert!(has(b"$ORIGIN/../lib\0"));
        assert!(!has(b"/root/.pyenv/versions/3.13.0/lib"));
        assert!(std::process::Command::new(&bin).status().unwrap().success());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
