//! Secret files of the CA: PKCS#8 keys written with mode 0600 and fsynced (with their
//! directory) before the journal that names them is committed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` (and parents) with mode 0700 when missing.
///
/// # Errors
/// The directory could not be created.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `secret` to `dir/name` with mode 0600, durably.
///
/// # Errors
/// Any IO failure.
pub fn write_secret(dir: &Path, name: &str, secret: &[u8]) -> io::Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(secret)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()
}

/// Reads the secret `dir/name`.
///
/// # Errors
/// Any IO failure.
pub(super) fn read_secret(dir: &Path, name: &str) -> io::Result<Vec<u8>> {
    fs::read(dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secrets_are_0600_in_a_0700_dir() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        write_secret(&dir, "k", b"secret").unwrap();
        let mode = fs::metadata(dir.join("k")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_secret(&dir, "k").unwrap(), b"secret");
    }
}
