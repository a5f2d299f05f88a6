//! Unix workload attestation: the caller's selectors from its socket peer credentials and
//! `/proc` (DESIGN 3.6). A pid that exited or was reused while we looked yields no identity.
//! `/proc` is read only for the selector kinds that need it.
//!
//! The process is also compared with what it was when the agent accepted its connection
//! ([`PeerAtAccept`], issue 11 finding 3): a pid reused since, or a process that has exec'd
//! another executable since, gets no identity. docs/RELIABILITY.md says what this cannot see.

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
    /// The pid is another process than the one that connected, or that process has run
    /// another executable since it connected.
    #[error("process {0} is not what it was when it connected")]
    ChangedSinceConnect(i32),
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

/// The caller as the agent saw it when it accepted the connection: the peer credentials the
/// kernel fixed at `connect`, and the process start time and executable read from `/proc`
/// right after `accept`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAtAccept {
    /// The socket's peer credentials.
    pub cred: PeerCred,
    /// The start time of the pid at accept (clock ticks after boot); `None` when `/proc` had
    /// no such process any more.
    pub start_time: Option<u64>,
    /// The executable at accept; `None` when it could not be read.
    pub exe: Option<PathBuf>,
}

impl PeerAtAccept {
    /// Reads the start time and executable of `cred.pid` under `proc_root`.
    pub fn observe(proc_root: &Path, cred: PeerCred) -> Self {
        let dir = proc_root.join(cred.pid.to_string());
        let started = start_time(&dir, cred.pid).ok();
        let exe = std::fs::read_link(dir.join("exe")).ok();
        // A pid reused between the two reads would pair one process's start with another's
        // executable: read the start again.
        let same = started.is_some() && started == start_time(&dir, cred.pid).ok();
        Self {
            cred,
            start_time: started.filter(|_| same),
            exe: exe.filter(|_| same),
        }
    }
}

/// The unix attestor, with its digest cache and name tables.
#[derive(Debug)]
pub struct UnixAttestor {
    proc_root: PathBuf,
    names: NameTables,
    digests: Mutex<HashMap<DigestKey, String>>,
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
    /// When `/proc` is read, the process must still be the one `peer` recorded at accept:
    /// same start time, same executable.
    ///
    /// # Errors
    /// When `/proc` cannot be read, or the process changed under us (exited, pid reused, or
    /// its uid differs from the peer credentials), or since it connected.
    pub fn attest(
        &self,
        peer: &PeerAtAccept,
        needed: NeededKinds,
    ) -> Result<Vec<Selector>, AttestError> {
        let cred = peer.cred;
        let mut selectors = Vec::with_capacity(8);
        push(&mut selectors, SelectorKind::Uid, &cred.uid.to_string());
        if needed.user
            && let Some(name) = self.names.user(cred.uid)
        {
            push(&mut selectors, SelectorKind::User, &name);
        }
        let mut gids = vec![cred.gid];
        if needed.gid || needed.group || needed.path || needed.sha256 {
            self.read_proc(peer, needed, &mut gids, &mut selectors)?;
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
        peer: &PeerAtAccept,
        needed: NeededKinds,
        gids: &mut Vec<u32>,
        selectors: &mut Vec<Selector>,
    ) -> Result<(), AttestError> {
        let cred = peer.cred;
        let pid = cred.pid;
        let dir = self.proc_root.join(pid.to_string());
        let start_before = start_time(&dir, pid)?;
        if peer.start_time != Some(start_before) {
            return Err(AttestError::ChangedSinceConnect(pid));
        }
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
            if peer.exe.as_ref() != Some(&path) {
                return Err(AttestError::ChangedSinceConnect(pid));
            }
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

    /// SHA-256 of the executable, cached by what the file's writer cannot set back
    /// (issue 11, finding 4.2): device, inode, size, mtime and ctime. `utimensat` restores an
    /// mtime but stamps ctime with the current time, and any write changes ctime too. The file
    /// is hashed through one open descriptor whose metadata is read before and after, and a
    /// digest is cached only when the two agree and the ctime is older than the clock's
    /// coarse granularity can hide (a write in the same tick would keep the ctime).
    fn digest(&self, exe: &Path, pid: i32) -> Result<String, AttestError> {
        let proc_error = |source| AttestError::Proc { pid, source };
        let meta = std::fs::metadata(exe).map_err(proc_error)?;
        let key = DigestKey::of(&meta);
        if let Ok(cache) = self.digests.lock()
            && let Some(hit) = cache.get(&key)
        {
            return Ok(hit.clone());
        }
        let mut file = std::fs::File::open(exe).map_err(proc_error)?;
        let before = DigestKey::of(&file.metadata().map_err(proc_error)?);
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher).map_err(proc_error)?;
        let digest = hex::encode(hasher.finalize());
        let after = DigestKey::of(&file.metadata().map_err(proc_error)?);
        if before == after
            && after.settled(std::time::SystemTime::now())
            && let Ok(mut cache) = self.digests.lock()
        {
            if cache.len() > 4096 {
                cache.clear();
            }
            cache.insert(after, digest.clone());
        }
        Ok(digest)
    }
}

/// What identifies an executable's content for the digest cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DigestKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// How old a ctime must be before a digest is cached: file timestamps come from a coarse
/// clock, so a write within the same tick as the hash could leave ctime unchanged.
const CTIME_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

impl DigestKey {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// True when the ctime is at least [`CTIME_SETTLE`] before `now`.
    fn settled(&self, now: std::time::SystemTime) -> bool {
        let now = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        now.saturating_sub(self.ctime.0) >= CTIME_SETTLE.as_secs() as i64
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
#[path = "attestor_tests.rs"]
mod tests;
