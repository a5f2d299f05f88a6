//! Real durability for sled 0.34: its `flush()` ends in `sync_file_range`, which survives a
//! process crash but not a power loss, so after each flush the store's files and directory
//! are fsynced (DESIGN 4). Group commit lives in the registry's committer.

use std::fs::File;
use std::io;
use std::path::Path;

/// Flushes `db` and fsyncs the sled files (`db`, `conf`, `snap.*`, `blobs/*`) and the
/// directories that hold them.
///
/// # Errors
/// The flush or any fsync failed.
pub fn sync_sled_dir(db: &sled::Db, dir: &Path) -> io::Result<()> {
    db.flush().map_err(io::Error::other)?;
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        let name = name.to_string_lossy();
        let file_type = item.file_type()?;
        if file_type.is_file() && (name == "db" || name == "conf" || name.starts_with("snap.")) {
            sync_file(&item.path())?;
        } else if file_type.is_dir() && name == "blobs" {
            for blob in std::fs::read_dir(item.path())? {
                let blob = blob?;
                if blob.file_type()?.is_file() {
                    sync_file(&blob.path())?;
                }
            }
            File::open(item.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()
}

/// fsyncs one file. sled's background threads replace snapshots and drop blobs while we
/// list them; a file gone since the listing holds nothing left to make durable.
fn sync_file(path: &Path) -> io::Result<()> {
    match File::open(path) {
        Ok(file) => file.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_a_fresh_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        db.insert(b"k", b"v").unwrap();
        sync_sled_dir(&db, dir.path()).unwrap();
        drop(db);
        let db = sled::open(dir.path()).unwrap();
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_file_gone_since_the_listing_is_skipped_but_other_errors_are_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(sync_file(&dir.path().join("snap.gone")).is_ok());
        let file = dir.path().join("db");
        std::fs::write(&file, b"x").unwrap();
        assert!(sync_file(&file).is_ok());
        // A path through a regular file: ENOTDIR, which must surface.
        assert!(sync_file(&file.join("below")).is_err());
    }
}
