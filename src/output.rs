//! Writing output files (std): all or nothing.

use std::fs::File;
use std::io;
use std::path::Path;

/// Write `path` through a temporary file in the same directory (`.NAME.PID.tmp`), synced and
/// then renamed over `path`: a reader sees the old file or the whole new one, never a part, and
/// a failed write leaves `path` untouched (the temporary file is removed). A `path` that is a
/// device, a pipe or a socket (`/dev/stdout`, `/dev/full`, a FIFO) is written in place instead:
/// renaming over it would replace the special file with a regular one, and its write errors
/// (`/dev/full`: no space) are the caller's.
///
/// ```no_run
/// use std::io::Write;
/// m2::output::write_atomic("captions.txt".as_ref(), |f| f.write_all(b"a dog on a couch\n"))?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        return write(&mut f);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            std::format!("{}: not a file name", path.display()),
        )
    })?;
    let tmp = dir.join(std::format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether `output` would overwrite `input`: the same file through any path, symlink or hard
/// link (same device and inode on Unix; the same canonical path elsewhere). A missing `output`
/// is never the same file.
pub fn same_file(output: &Path, input: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(a), Ok(b)) = (std::fs::metadata(output), std::fs::metadata(input)) {
            return a.dev() == b.dev() && a.ino() == b.ino();
        }
        false
    }
    #[cfg(not(unix))]
    match (std::fs::canonicalize(output), std::fs::canonicalize(input)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
