//! The unprivileged user that apps and the database run as: the invoking user under sudo,
//! else `nobody` when runner itself is root, else the current user.

use std::{os::unix::process::CommandExt, path::Path, process::Command};

use nix::unistd::{Gid, Uid, User};

/// A user to run a child as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
}

impl RunAs {
    /// The user apps run as.
    pub fn for_apps() -> Self {
        if !Uid::effective().is_root() {
            let uid = Uid::current();
            let name = User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_default();
            return Self {
                uid: uid.as_raw(),
                gid: Gid::current().as_raw(),
                name,
            };
        }
        let sudo = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
        if let (Some(uid), Some(gid)) = (sudo("SUDO_UID"), sudo("SUDO_GID")) {
            if uid != 0 {
                let name = std::env::var("SUDO_USER").unwrap_or_default();
                return Self { uid, gid, name };
            }
        }
        match User::from_name("nobody").ok().flatten() {
            Some(u) => Self {
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                name: u.name,
            },
            None => Self {
                uid: 65534,
                gid: 65534,
                name: "nobody".into(),
            },
        }
    }

    /// A command that runs as this user (no-op when runner already is this user), and that
    /// is killed if runner dies first.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        self.switch_in_child(&mut cmd);
        // SAFETY: prctl is async-signal-safe; set after the uid switch, which would clear it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd
    }

    /// Makes the child drop root for this user just before exec: supplementary groups, then
    /// gid, then uid. Register it after any pre_exec step that still needs root.
    pub fn switch_in_child(&self, cmd: &mut Command) {
        if Uid::effective().as_raw() == self.uid {
            return;
        }
        let (uid, gid) = (self.uid, self.gid);
        // SAFETY: setgroups/setgid/setuid are async-signal-safe syscalls.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Makes `path` belong to this user (when runner is root).
    pub fn own(&self, path: &Path) -> std::io::Result<()> {
        if Uid::effective().is_root() {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))?;
        }
        Ok(())
    }
}
