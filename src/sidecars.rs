//! The `-wal` and `-shm` files SQLite keeps beside a WAL database.
//!
//! SQLite creates them with the database file's mode as it is at that moment. When an
//! operator makes the database read-only for a while (`chmod 444`), the first request
//! creates a `-shm` of mode 0444, and after `chmod 644` every connection still finds a
//! read-only `-shm` and stays read-only: the fault outlives its cause. Every open
//! therefore gives the two files the database's own mode and owner again, so they
//! follow the database file and never keep a mode of their own.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The `-wal` or `-shm` file of the database at `db`.
fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Gives the `-wal` and `-shm` files the mode, owner and group of the database file,
/// whose metadata `want` the caller has read already (opening checks it is a file).
/// Two `stat` calls when nothing differs. What cannot be changed (a file of another
/// user, without root) is left as it is: SQLite then reports what it finds.
pub fn match_database(db: &Path, want: &std::fs::Metadata) {
    for suffix in ["-wal", "-shm"] {
        let path = sidecar(db, suffix);
        let Ok(have) = std::fs::symlink_metadata(&path) else { continue };
        if !have.file_type().is_file() {
            continue;
        }
        if (have.uid(), have.gid()) != (want.uid(), want.gid()) {
            let _ = std::os::unix::fs::chown(&path, Some(want.uid()), Some(want.gid()));
        }
        if have.mode() & 0o7777 != want.mode() & 0o7777 {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want.mode() & 0o7777));
        }
    }
}

/// No `-wal` file holds commits: the database file alone is the whole database.
pub fn wal_is_empty(db: &Path) -> bool {
    std::fs::metadata(sidecar(db, "-wal")).map(|m| m.len() == 0).unwrap_or(true)
}

/// `db` as the path of a `file:` URI: `?` and `#` (and `%`) escaped.
pub fn uri_path(db: &Path) -> String {
    let mut out = String::new();
    for c in db.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_take_the_database_mode_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pb.db");
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
        let shm = sidecar(&db, "-shm");
        std::fs::write(&shm, b"").unwrap();
        std::fs::set_permissions(&shm, std::fs::Permissions::from_mode(0o444)).unwrap();
        match_database(&db, &std::fs::metadata(&db).unwrap());
        assert_eq!(std::fs::metadata(&shm).unwrap().mode() & 0o7777, 0o640);
        assert!(!sidecar(&db, "-wal").exists(), "a missing file is not created");
    }

    #[test]
    fn uri_paths_escape_what_a_uri_reads_as_syntax() {
        assert_eq!(uri_path(Path::new("/a b/x?y#z%")), "/a b/x%3fy%23z%25");
    }
}
