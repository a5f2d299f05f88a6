//! User and group names from `/etc/passwd` and `/etc/group`, parsed once and re-read only when
//! a file's modification time changes, so attestation stays cheap.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::SystemTime;

/// Name tables backed by two files.
#[derive(Debug)]
pub struct NameTables {
    users: Table,
    groups: Table,
}

#[derive(Debug)]
struct Table {
    path: PathBuf,
    cache: RwLock<(Option<SystemTime>, HashMap<u32, String>)>,
}

impl NameTables {
    /// The system files.
    pub fn system() -> Self {
        Self::from_files(PathBuf::from("/etc/passwd"), PathBuf::from("/etc/group"))
    }

    /// Tables read from the given files (same `name:x:id:...` format).
    pub fn from_files(passwd: PathBuf, group: PathBuf) -> Self {
        Self {
            users: Table::new(passwd),
            groups: Table::new(group),
        }
    }

    /// The user name of a uid.
    pub fn user(&self, uid: u32) -> Option<String> {
        self.users.lookup(uid)
    }

    /// The group name of a gid.
    pub fn group(&self, gid: u32) -> Option<String> {
        self.groups.lookup(gid)
    }
}

impl Table {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            cache: RwLock::new((None, HashMap::new())),
        }
    }

    fn lookup(&self, id: u32) -> Option<String> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if let Ok(cache) = self.cache.read()
            && cache.0.is_some()
            && cache.0 == mtime
        {
            return cache.1.get(&id).cloned();
        }
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let table = parse(&text);
        let found = table.get(&id).cloned();
        if let Ok(mut cache) = self.cache.write() {
            *cache = (mtime, table);
        }
        found
    }
}

/// Parses `name:password:id:...` lines; the first name for an id wins.
fn parse(text: &str) -> HashMap<u32, String> {
    let mut table = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(id) = id.parse::<u32>()
            && !name.is_empty()
        {
            table.entry(id).or_insert_with(|| name.to_owned());
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rereads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let group = dir.path().join("group");
        std::fs::write(
            &passwd,
            "root:x:0:0::/root:/bin/sh\n# c\nbad\nalice:x:1001:1001::/h:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(&group, "wheel:x:10:alice\n").unwrap();
        let tables = NameTables::from_files(passwd.clone(), group);
        assert_eq!(tables.user(1001).as_deref(), Some("alice"));
        assert_eq!(tables.user(5), None);
        assert_eq!(tables.group(10).as_deref(), Some("wheel"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&passwd, "bob:x:1001:1001::/h:/bin/sh\n").unwrap();
        let f = std::fs::File::options().write(true).open(&passwd).unwrap();
        f.set_modified(SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        assert_eq!(tables.user(1001).as_deref(), Some("bob"));
    }
}
