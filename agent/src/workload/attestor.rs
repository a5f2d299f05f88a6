//! Unix workload attestation: the caller's selectors from its socket peer credentials and
//! `/proc` (DESIGN 3.6). A pid that exited or was reused while we looked yields no identity.
//! `/proc` is read only for the selector kinds that need it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mandate_core::selector::{Selector, SelectorKind};
use sha2::{Digest, Sha256};

use super::names::NameTables;
use crate::cache::snapshot::NeededKinds;

/// Why a caller gets no selectors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The connection carries no peer credentials or no pid.
    #[error("peer credentials unavailable")]
    NoCredentials,
    /// `/proc/<pid>` could not be read.
    #[error("cannot read /proc/{pid}: {source}")]
    Proc {
        /// The pid.
        pid: i32,
        /// Why.
        source: std::io::Error,
    },
    /// The process exited, was replaced, or changed uid while being attested.
    #[error("process {0} changed while being attested")]
    Raced(i32),
    /// `/proc/<pid>/stat` or `status` is not in the expected form.
    #[error("unexpected /proc format for pid {0}")]
    Format(i32),
}

/// Peer credentials of a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Process ID.
    pub pid: i32,
    /// Effective user ID.
    pub uid: u32,
    /// Effective group ID.
    pub gid: u32,
}

/// The unix attestor, with its digest cache and name tables.
#[derive(Debug)]
pub struct UnixAttestor {
    proc_root: PathBuf,
    names: NameTables,
    digests: Mutex<HashMap<(u64, u64, i64, i64), String>>,
}

impl Default for UnixAttestor {
    fn default() -> Self {
        Self::new(PathBuf::from("/proc"), NameTables::system())
    }
}

impl UnixAttestor {
    /// An attestor reading `proc_root` and the given name tables.
    pub fn new(proc_root: PathBuf, names: NameTables) -> Self {
        Self {
            proc_root,
            names,
            digests: Mutex::new(HashMap::new()),
        }
    }

    /// The selectors of a caller, gathering only the kinds `needed` asks for beyond uid/gid.
    ///
    /// The uid and the primary gid come from the socket's peer credentials, which the kernel
    /// fixed at `connect` and no later exec or pid reuse can change; `/proc` is read only when
    /// an entry needs what only `/proc` has (supplementary groups, the executable), so a
    /// deployment whose entries select by `unix:uid` and `unix:user` attests without a syscall.
    ///
    /// # Errors
    /// When `/proc` cannot be read, or the process changed under us (exited, pid reused, or
    /// its uid differs from the peer credentials).
    pub fn attest(
        &self,
        cred: PeerCred,
        needed: NeededKinds,
    ) -> Result<Vec<Selector>, AttestError> {
        let mut selectors = Vec::with_capacity(8);
        push(&mut selectors, SelectorKind::Uid, &cred.uid.to_string());
        if needed.user
            && let Some(name) = self.names.user(cred.uid)
        {
            push(&mut selectors, SelectorKind::User, &name);
        }
        let mut gids = vec![cred.gid];
        if needed.gid || needed.group || needed.path || needed.sha256 {
            self.read_proc(cred, needed, &mut gids, &mut selectors)?;
        }
        for gid in &gids {
            push(&mut selectors, SelectorKind::Gid, &gid.to_string());
        }
        if needed.group {
            for gid in &gids {
                if let Some(name) = self.names.group(*gid) {
                    push(&mut selectors, SelectorKind::Group, &name);
                }
            }
        }
        selectors.sort();
        selectors.dedup();
        Ok(selectors)
    }

    /// The supplementary groups (into `gids`) and the executable's selectors, read from
    /// `/proc/<pid>` between two reads of the process start time: a pid that exited or was
    /// reused while we looked, or whose uid is not the socket's, yields an error.
    fn read_proc(
        &self,
        cred: PeerCred,
        needed: NeededKinds,
        gids: &mut Vec<u32>,
        selectors: &mut Vec<Selector>,
    ) -> Result<(), AttestError> {
        let pid = cred.pid;
        let dir = self.proc_root.join(pid.to_string());
        let start_before = start_time(&dir, pid)?;
        let status = read(&dir.join("status"), pid)?;
        let (uid, groups) = parse_status(&status).ok_or(AttestError::Format(pid))?;
        if uid != cred.uid {
            return Err(AttestError::Raced(pid));
        }
        gids.extend(groups.into_iter().filter(|g| *g != cred.gid));
        if needed.path || needed.sha256 {
            let exe = dir.join("exe");
            let path =
                std::fs::read_link(&exe).map_err(|source| AttestError::Proc { pid, source })?;
            if needed.path {
                push(selectors, SelectorKind::Path, &path.to_string_lossy());
            }
            if needed.sha256 {
                let digest = self.digest(&exe, pid)?;
                push(selectors, SelectorKind::Sha256, &digest);
            }
        }
        if start_time(&dir, pid)? != start_before {
            return Err(AttestError::Raced(pid));
        }
        Ok(())
    }

    /// SHA-256 of the executable, cached by device, inode and mtime.
    fn digest(&self, exe: &Path, pid: i32) -> Result<String, AttestError> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(exe).map_err(|source| AttestError::Proc { pid, source })?;
        let key = (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec());
        if let Ok(cache) = self.digests.lock()
            && let Some(hit) = cache.get(&key)
        {
            return Ok(hit.clone());
        }
        let mut file =
            std::fs::File::open(exe).map_err(|source| AttestError::Proc { pid, source })?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)
            .map_err(|source| AttestError::Proc { pid, source })?;
        let digest = hex::encode(hasher.finalize());
        if let Ok(mut cache) = self.digests.lock() {
            if cache.len() > 4096 {
                cache.clear();
            }
            cache.insert(key, digest.clone());
        }
        Ok(digest)
    }
}

fn push(selectors: &mut Vec<Selector>, kind: SelectorKind, value: &str) {
    match Selector::new(kind, value) {
        Ok(selector) => selectors.push(selector),
        Err(e) => tracing::debug!(error = %e, "caller attribute is not a valid selector"),
    }
}

/// Reads a small `/proc` text file. `/proc` files report size 0, so `read_to_string` would
/// grow its buffer through several small reads (one syscall each, on the hot path of every
/// Workload API call); a 4 KiB buffer takes `stat` and `status` in one read plus the 0-byte one.
fn read(path: &Path, pid: i32) -> Result<String, AttestError> {
    use std::io::Read;
    let proc_error = |source| AttestError::Proc { pid, source };
    let mut file = std::fs::File::open(path).map_err(proc_error)?;
    let mut text = String::with_capacity(4096);
    file.read_to_string(&mut text).map_err(proc_error)?;
    Ok(text)
}

/// Field 22 (starttime) of `/proc/<pid>/stat`; the command name may hold spaces and parens,
/// so fields are counted after the last `)`.
fn start_time(dir: &Path, pid: i32) -> Result<u64, AttestError> {
    let stat = read(&dir.join("stat"), pid)?;
    parse_start_time(&stat).ok_or(AttestError::Format(pid))
}

fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the comm field: state is field 3, starttime field 22 -> index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The effective uid and the supplementary groups from `/proc/<pid>/status`.
fn parse_status(status: &str) -> Option<(u32, Vec<u32>)> {
    let mut uid = None;
    let mut groups = Vec::new();
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            uid = rest.split_whitespace().nth(1)?.parse().ok();
        } else if let Some(rest) = line.strip_prefix("Groups:") {
            groups = rest
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect();
        }
    }
    Some((uid?, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_tricky_comm() {
        let stat =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn parses_status() {
        let status =
            "Name:\tx\nUid:\t1000\t1001\t1001\t1001\nGid:\t5\t5\t5\t5\nGroups:\t4 24 27 \n";
        assert_eq!(parse_status(status), Some((1001, vec![4, 24, 27])));
        assert_eq!(parse_status("Name: x\n"), None);
    }

    #[test]
    fn attests_this_process() {
        let attestor = UnixAttestor::default();
        let me = PeerCred {
            pid: std::process::id() as i32,
            uid: std::fs::metadata("/proc/self")
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
                .unwrap(),
            gid: 0,
        };
        let needed = NeededKinds {
            gid: true,
            user: true,
            group: true,
            path: true,
            sha256: true,
        };
        let selectors = attestor.attest(me, needed).unwrap();
        let text: Vec<String> = selectors.iter().map(ToString::to_string).collect();
        assert!(text.contains(&format!("unix:uid:{}", me.uid)), "{text:?}");
        assert!(
            text.iter().any(|s| s.starts_with("unix:path:/")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|s| s.starts_with("unix:sha256:")),
            "{text:?}"
        );
        // A wrong uid is a race: no identity.
        let wrong = PeerCred {
            uid: me.uid + 1,
            ..me
        };
        assert!(matches!(
            attestor.attest(wrong, needed),
            Err(AttestError::Raced(_))
        ));
    }

    #[test]
    fn uid_only_entries_need_no_proc() {
        // A proc root that does not exist: any read of it would fail the attestation.
        let attestor = UnixAttestor::new(PathBuf::from("/nonexistent-proc"), NameTables::system());
        let cred = PeerCred {
            pid: 1,
            uid: 4242,
            gid: 77,
        };
        let selectors = attestor.attest(cred, NeededKinds::default()).unwrap();
        let text: Vec<String> = selectors.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["unix:uid:4242", "unix:gid:77"]);
        let needs_groups = NeededKinds {
            gid: true,
            ..NeededKinds::default()
        };
        assert!(matches!(
            attestor.attest(cred, needs_groups),
            Err(AttestError::Proc { pid: 1, .. })
        ));
    }
}
