//! The agent's data dir: its own SVID (chain and key) and the trust bundle, kept across restarts
//! so that a restart does not re-attest (DESIGN 3.5). Keys are written 0600, the dir is 0700.
//!
//! The key and the chain live in one file, replaced by one rename (temp file and directory
//! both fsynced), so a crash leaves the old pair or the new one, never a key of one and a
//! certificate of the other; loading checks that they match (issue 11, finding 12).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::pem;

const IDENTITY_FILE: &str = "agent_identity.pem";
/// The two files of earlier versions, read when `IDENTITY_FILE` is missing and removed once it
/// is written.
const LEGACY_SVID_FILE: &str = "agent_svid.pem";
const LEGACY_KEY_FILE: &str = "agent_svid.key";
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
    /// The stored key is missing or does not belong to the stored certificate.
    #[error("{path}: stored key and certificate do not match: {why}")]
    Mismatch {
        /// The path.
        path: PathBuf,
        /// Why.
        why: String,
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

    /// The stored agent SVID, if any, after checking that its key and leaf match.
    ///
    /// # Errors
    /// When the files exist but cannot be read or parsed, or the key is not the leaf's.
    pub fn load_identity(&self) -> Result<Option<StoredIdentity>, DataDirError> {
        let path = self.root.join(IDENTITY_FILE);
        let identity = if path.exists() {
            let text = fs::read(&path).map_err(|s| io(&path, s))?;
            let chain = pem::decode_certs(&text).map_err(|source| DataDirError::Pem {
                path: path.clone(),
                source,
            })?;
            let key_pkcs8 = pem::decode_key(&text).map_err(|source| DataDirError::Pem {
                path: path.clone(),
                source,
            })?;
            StoredIdentity { chain, key_pkcs8 }
        } else {
            match self.load_legacy()? {
                Some(identity) => identity,
                None => return Ok(None),
            }
        };
        crate::cache::signer::check_leaf_key(&identity.chain, &identity.key_pkcs8).map_err(
            |e| DataDirError::Mismatch {
                path,
                why: e.to_string(),
            },
        )?;
        Ok(Some(identity))
    }

    /// The two-file identity of earlier versions.
    fn load_legacy(&self) -> Result<Option<StoredIdentity>, DataDirError> {
        let svid = self.root.join(LEGACY_SVID_FILE);
        let key = self.root.join(LEGACY_KEY_FILE);
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

    /// Stores the agent SVID and key in one file, replaced atomically: written to a temp file
    /// (mode 0600) and fsynced, renamed over the old one, and the directory fsynced.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn store_identity(&self, identity: &StoredIdentity) -> Result<(), DataDirError> {
        let mut text = pem::encode("PRIVATE KEY", std::slice::from_ref(&identity.key_pkcs8));
        text.push_str(&pem::encode("CERTIFICATE", &identity.chain));
        write_atomic(&self.root.join(IDENTITY_FILE), text.as_bytes())?;
        for legacy in [LEGACY_KEY_FILE, LEGACY_SVID_FILE] {
            let _ = fs::remove_file(self.root.join(legacy));
        }
        Ok(())
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

/// Writes a file with mode 0600 through a temp file and a rename, fsyncing the file before
/// and the directory after the rename, so the new content is durable once this returns.
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
    fs::rename(&tmp, path).map_err(|s| io(path, s))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|s| io(dir, s))
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

    /// A self-signed leaf and its key, as the server would issue them.
    fn identity() -> StoredIdentity {
        let (key_pkcs8, _) = crate::cache::signer::new_key_and_csr().unwrap();
        let key = rcgen::KeyPair::try_from(key_pkcs8.as_slice()).unwrap();
        let cert = rcgen::CertificateParams::default()
            .self_signed(&key)
            .unwrap();
        StoredIdentity {
            chain: vec![cert.der().to_vec()],
            key_pkcs8,
        }
    }

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
        let id = identity();
        dir.store_identity(&id).unwrap();
        let back = dir.load_identity().unwrap().unwrap();
        assert_eq!(back.chain, id.chain);
        assert_eq!(back.key_pkcs8, id.key_pkcs8);
        let mode = fs::metadata(root.join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        dir.store_bundle(&[vec![7, 7]]).unwrap();
        assert_eq!(dir.load_bundle().unwrap().unwrap(), vec![vec![7, 7]]);
    }

    #[test]
    fn one_file_replaces_the_legacy_pair_and_a_mismatch_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let (old, new) = (identity(), identity());
        // An agent of an earlier version left two files; they still load.
        fs::write(tmp.path().join(LEGACY_KEY_FILE), &old.key_pkcs8).unwrap();
        fs::write(
            tmp.path().join(LEGACY_SVID_FILE),
            pem::encode("CERTIFICATE", &old.chain),
        )
        .unwrap();
        assert_eq!(dir.load_identity().unwrap().unwrap().chain, old.chain);
        // One store: one file, the legacy pair gone.
        dir.store_identity(&new).unwrap();
        let names: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [IDENTITY_FILE]);
        // A key of one identity with the certificate of another is refused.
        let mixed = StoredIdentity {
            chain: old.chain,
            key_pkcs8: new.key_pkcs8,
        };
        dir.store_identity(&mixed).unwrap();
        let error = dir.load_identity().unwrap_err();
        assert!(matches!(error, DataDirError::Mismatch { .. }), "{error}");
    }
}
