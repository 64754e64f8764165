//! Durable files for Weir: atomic replacement, so that a crash leaves either the old file or
//! the new one, never half.
//!
//! Models, learned policy state, benchmark reports and the lab's state file are all written
//! through [`write_atomic`]. Written by hand because it is a dozen lines over `std` (the
//! `tempfile` crate's `persist` does not fsync the directory).
//!
//! A process killed in the middle of a save leaves its temporary file; the next successful
//! save of the same file removes the ones whose process is gone, so a crash-looping writer
//! cannot fill its directory with them.
//!
//! **Never:** write in place, or leave a temporary file behind on error.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, `fsync`,
/// rename over the target, then `fsync` of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            // Some filesystems refuse fsync on a directory; the rename already happened.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    } else {
        sweep_leftovers(dir, &name.to_string_lossy());
    }
    result
}

/// Removes `.<name>.tmp-<pid>` files in `dir` left by processes that no longer run (a save
/// killed half-way). Best effort: a file it cannot judge or remove stays.
fn sweep_leftovers(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !process_runs(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether process `pid` runs; where that cannot be told, it is assumed to.
fn process_runs(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        write_atomic(&p, b"first version, long").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_save_removes_what_killed_saves_of_the_same_file_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        // Above any pid_max Linux allows: a process that cannot be running.
        let dead = dir.path().join(".m.json.tmp-999999999");
        let live = dir.path().join(".m.json.tmp-1"); // init runs
        let other = dir.path().join(".n.json.tmp-999999999"); // another file's
        for f in [&dead, &live, &other] {
            fs::write(f, b"half a save").unwrap();
        }
        write_atomic(&p, b"whole").unwrap();
        assert!(!dead.exists(), "a dead writer's leftover stays");
        assert!(
            live.exists(),
            "a running process's temporary file was removed"
        );
        assert!(other.exists(), "another file's leftover was removed");
        assert_eq!(fs::read(&p).unwrap(), b"whole");
    }
}
