//! Atomic file writes: the data goes to a temporary file beside the target, which is renamed
//! over it only once everything is written. A failed write leaves no partial file and never
//! clobbers an existing one.

use crate::error::{DataError, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Runs `write` on a fresh temporary file in `path`'s directory, then renames it to `path`.
///
/// # Errors
/// [`DataError::Io`] naming `path` if the temporary file cannot be created, written or renamed;
/// the temporary file is removed in every case.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(File) -> std::io::Result<()>,
) -> Result<()> {
    let io = |source| DataError::Io {
        path: path.to_owned(),
        source,
    };
    let temp = temporary_path(path);
    let result = File::create_new(&temp)
        .and_then(write)
        .and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(io)
}

/// `dir/.name.tmp-<pid>-<n>`: unique within and across processes.
fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        let failed = write_atomically(&path, |mut f| {
            f.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(matches!(failed, Err(DataError::Io { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomically(&path, |mut f| f.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_the_target() {
        let missing = Path::new("/nonexistent-polyattn-dir/out.npy");
        match write_atomically(missing, |_| Ok(())) {
            Err(DataError::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("{other:?}"),
        }
    }
}
