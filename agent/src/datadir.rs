//! The agent's data dir: its own SVID (chain and key) and the trust bundle, kept across restarts
//! so that a restart does not re-attest (DESIGN 3.5). Keys are written 0600, the dir is 0700.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::pem;

const SVID_FILE: &str = "agent_svid.pem";
const KEY_FILE: &str = "agent_svid.key";
const BUNDLE_FILE: &str = "bundle.pem";

/// Errors from the data dir.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// A file or the dir could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stored file is corrupt.
    #[error("{path}: {source}")]
    Pem {
        /// The path.
        path: PathBuf,
        /// Why.
        source: pem::PemError,
    },
}

/// The agent's stored identity.
#[derive(Clone)]
pub struct StoredIdentity {
    /// DER chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8 DER of the key.
    pub key_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for StoredIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredIdentity")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// The data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens the dir, creating it with mode 0700 when missing.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn open(root: &Path) -> Result<Self, DataDirError> {
        if !root.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(|source| io(root, source))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The stored agent SVID, if any.
    ///
    /// # Errors
    /// When the files exist but cannot be read or parsed.
    pub fn load_identity(&self) -> Result<Option<StoredIdentity>, DataDirError> {
        let svid = self.root.join(SVID_FILE);
        let key = self.root.join(KEY_FILE);
        if !svid.exists() || !key.exists() {
            return Ok(None);
        }
        let chain_text = fs::read(&svid).map_err(|s| io(&svid, s))?;
        let chain = pem::decode_certs(&chain_text).map_err(|source| DataDirError::Pem {
            path: svid.clone(),
            source,
        })?;
        let key_pkcs8 = fs::read(&key).map_err(|s| io(&key, s))?;
        Ok(Some(StoredIdentity { chain, key_pkcs8 }))
    }

    /// Stores the agent SVID and key (key first, both replaced atomically).
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn store_identity(&self, identity: &StoredIdentity) -> Result<(), DataDirError> {
        write_atomic(&self.root.join(KEY_FILE), &identity.key_pkcs8)?;
        let text = pem::encode("CERTIFICATE", &identity.chain);
        write_atomic(&self.root.join(SVID_FILE), text.as_bytes())
    }

    /// The stored trust bundle (DER CA certificates), if any.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn load_bundle(&self) -> Result<Option<Vec<Vec<u8>>>, DataDirError> {
        let path = self.root.join(BUNDLE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        read_bundle(&path).map(Some)
    }

    /// Stores the trust bundle.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn store_bundle(&self, certs: &[Vec<u8>]) -> Result<(), DataDirError> {
        let text = pem::encode("CERTIFICATE", certs);
        write_atomic(&self.root.join(BUNDLE_FILE), text.as_bytes())
    }
}

/// Reads a PEM bundle file.
///
/// # Errors
/// When it cannot be read or holds no certificate.
pub fn read_bundle(path: &Path) -> Result<Vec<Vec<u8>>, DataDirError> {
    let text = fs::read(path).map_err(|s| io(path, s))?;
    pem::decode_certs(&text).map_err(|source| DataDirError::Pem {
        path: path.to_owned(),
        source,
    })
}

/// Writes a file with mode 0600 through a temp file and a rename.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|s| io(&tmp, s))?;
    file.write_all(data).map_err(|s| io(&tmp, s))?;
    file.sync_all().map_err(|s| io(&tmp, s))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(|s| io(&tmp, s))?;
    fs::rename(&tmp, path).map_err(|s| io(path, s))
}

fn io(path: &Path, source: std::io::Error) -> DataDirError {
    DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trip_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b");
        let dir = DataDir::open(&root).unwrap();
        assert_eq!(
            fs::metadata(&root).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(dir.load_identity().unwrap().is_none());
        let id = StoredIdentity {
            chain: vec![vec![1, 2, 3], vec![4]],
            key_pkcs8: vec![9; 40],
        };
        dir.store_identity(&id).unwrap();
        let back = dir.load_identity().unwrap().unwrap();
        assert_eq!(back.chain, id.chain);
        assert_eq!(back.key_pkcs8, id.key_pkcs8);
        let mode = fs::metadata(root.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        dir.store_bundle(&[vec![7, 7]]).unwrap();
        assert_eq!(dir.load_bundle().unwrap().unwrap(), vec![vec![7, 7]]);
    }
}
