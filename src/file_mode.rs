//! Who may read the files Piggyback creates: the database (and SQLite's `-wal` and
//! `-shm`, which take the database file's mode), the spool's folders and request files,
//! and the session key. `PIGGYBACK_FILE_MODE` chooses: `owner` (the default) or
//! `group`, for a site whose administrators run `piggyback` as another user of the
//! server's group. Nobody else ever gets a bit. Modes are set explicitly after creating,
//! so the process umask neither loosens nor (for `group`) tightens them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The setting `PIGGYBACK_FILE_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileMode {
    /// Files 0600, folders 0700, the key 0600.
    #[default]
    Owner,
    /// Files 0660, folders 2770 (new files keep the folder's group), the key 0640.
    Group,
}

impl FileMode {
    pub fn parse(s: &str) -> Option<FileMode> {
        match s {
            "owner" => Some(FileMode::Owner),
            "group" => Some(FileMode::Group),
            _ => None,
        }
    }

    /// The database, request files.
    pub fn file(self) -> u32 {
        match self {
            FileMode::Owner => 0o600,
            FileMode::Group => 0o660,
        }
    }

    /// The spool's folders.
    pub fn dir(self) -> u32 {
        match self {
            FileMode::Owner => 0o700,
            FileMode::Group => 0o2770,
        }
    }

    /// The session key: the programs only read it.
    pub fn secret(self) -> u32 {
        match self {
            FileMode::Owner => 0o600,
            FileMode::Group => 0o640,
        }
    }

    /// The permission bits this mode allows a file of `kind` at most.
    fn allowed(self, kind: Kind) -> u32 {
        match kind {
            Kind::File => self.file(),
            Kind::Dir => self.dir() & 0o777,
            Kind::Secret => self.secret(),
        }
    }
}

/// Creates `path` as a new file with the mode's file bits; `AlreadyExists` if it exists.
pub fn create_new(path: &Path, mode: FileMode) -> io::Result<File> {
    let file = OpenOptions::new().write(true).create_new(true).mode(mode.file()).open(path)?;
    file.set_permissions(fs::Permissions::from_mode(mode.file()))?;
    Ok(file)
}

/// Sets `path`'s modification time to now, creating it with the mode's file bits when
/// missing. Needs only write permission on an existing file, not its ownership (the
/// time is the kernel's "now", `futimens` with no times).
pub fn touch(path: &Path, mode: FileMode) -> io::Result<()> {
    let file = OpenOptions::new().write(true).create(true).mode(mode.file()).open(path)?;
    // Past the umask, as create_new does; refused (and harmless) when another user owns it.
    let _ = file.set_permissions(fs::Permissions::from_mode(mode.file()));
    // SAFETY: a valid descriptor owned by `file`; a null `times` means "now" for both.
    if unsafe { libc::futimens(file.as_raw_fd(), std::ptr::null()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates `path` and any missing parents with the mode's folder bits.
pub fn create_dir_all(path: &Path, mode: FileMode) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dir_all(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode.dir() & 0o777).create(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(mode.dir())),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a file holds, for the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Secret,
}

/// One line for each of `paths` (those that exist) whose permissions give more than
/// `mode` allows: `PATH is 0644; at most 0600 (PIGGYBACK_FILE_MODE=owner)`.
pub fn looser(paths: &[(PathBuf, Kind)], mode: FileMode) -> Vec<String> {
    let name = match mode {
        FileMode::Owner => "owner",
        FileMode::Group => "group",
    };
    paths
        .iter()
        .filter_map(|(path, kind)| {
            let bits = fs::symlink_metadata(path).ok()?.permissions().mode() & 0o777;
            let allowed = mode.allowed(*kind);
            (bits & !allowed != 0).then(|| {
                format!("{} is {bits:04o}; at most {allowed:04o} (PIGGYBACK_FILE_MODE={name})", path.display())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_files_and_folders_have_the_modes_bits_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [FileMode::Owner, FileMode::Group] {
            let folder = dir.path().join(format!("{mode:?}/a/b"));
            create_dir_all(&folder, mode).unwrap();
            let bits = fs::metadata(&folder).unwrap().permissions().mode() & 0o7777;
            assert_eq!(bits, mode.dir(), "{mode:?}");
            let file = folder.join("f");
            create_new(&file, mode).unwrap();
            assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, mode.file());
            assert!(looser(&[(file.clone(), Kind::File), (folder.clone(), Kind::Dir)], mode).is_empty());
            assert_eq!(create_new(&file, mode).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        }
    }

    #[test]
    fn looser_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db");
        fs::write(&file, b"").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let lines = looser(&[(file.clone(), Kind::File), (dir.path().join("missing"), Kind::File)], FileMode::Owner);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("0644") && lines[0].contains("0600"), "{lines:?}");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o660)).unwrap();
        assert!(looser(&[(file.clone(), Kind::File)], FileMode::Group).is_empty());
        assert_eq!(looser(&[(file, Kind::Secret)], FileMode::Group).len(), 1, "the key is never group-writable");
    }
}

/// A file's identity and last change, as `stat` gives them: while a file's stamp is
/// unchanged, so is the file, for a process that keeps what it read of it between
/// requests (FastCGI). Sound only for a local file system, where the stamps come from
/// this host's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// How old a stamp must be before what was read under it is trusted until it changes.
/// A file system stamps a change with a coarse clock (ext3 and some others to the
/// second): a change made during or after the read can carry the stamp the file had
/// before it, unless that stamp was older than the clock's grain when the read began
/// (git's "racy clean" rule).
pub const SETTLED: Duration = Duration::from_secs(3);

impl Stamp {
    pub fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Whether what is read at `now` under this stamp may be trusted while it lasts:
    /// its content last changed more than [`SETTLED`] before, so a change of content
    /// (a write, an entry added to a folder) after `now` gives another modification
    /// time. A replaced file is another inode; the change time is compared, not aged.
    pub fn settled_at(&self, now: SystemTime) -> bool {
        let last = Duration::new(self.mtime.0.max(0) as u64, self.mtime.1.clamp(0, 999_999_999) as u32);
        now.duration_since(SystemTime::UNIX_EPOCH).is_ok_and(|now| now > last + SETTLED)
    }
}
