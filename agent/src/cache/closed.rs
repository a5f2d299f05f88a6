//! The trust domain's closed-task set (DESIGN 3.4): every closed or expired task whose deadline
//! has not passed, whether or not an entry of this agent uses it. [`ClosedSet`] is the sync
//! side's mutable set (pruned at each deadline, one task at a time); [`ClosedTasks`] is the
//! sorted, shared list that the Workload API and the task-status feed read.
//!
//! Memory: each member is one shared `Arc<str>` referenced from a sorted map, a deadline index
//! and the published list, an estimated 150 bytes per task, so 100k members stay near 15 MiB.
//! The map is sorted so that publishing is one O(n) copy of pointers, with no sort.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

/// The mutable closed set, with a version that grows on every change.
#[derive(Debug, Default)]
pub struct ClosedSet {
    by_id: BTreeMap<Arc<str>, SystemTime>,
    by_deadline: BTreeSet<(SystemTime, Arc<str>)>,
    version: u64,
}

impl ClosedSet {
    /// Adds `id` until `deadline`; a deadline at or before `now` adds nothing (no SVID of the
    /// task is valid any more). Returns true when the set changed.
    pub fn insert(&mut self, id: &str, deadline: SystemTime, now: SystemTime) -> bool {
        if deadline <= now {
            return false;
        }
        if let Some(known) = self.by_id.get(id) {
            if *known == deadline {
                return false;
            }
            let known = *known;
            self.remove(id, known);
        }
        let id: Arc<str> = Arc::from(id);
        self.by_id.insert(Arc::clone(&id), deadline);
        self.by_deadline.insert((deadline, id));
        self.version += 1;
        true
    }

    /// Replaces the whole set with `members` (a sync snapshot), keeping only those whose
    /// deadline is after `now`.
    pub fn replace(
        &mut self,
        members: impl IntoIterator<Item = (String, SystemTime)>,
        now: SystemTime,
    ) {
        self.by_id.clear();
        self.by_deadline.clear();
        for (id, deadline) in members {
            self.insert(&id, deadline, now);
        }
        self.version += 1;
    }

    /// Drops the members whose deadline is at or before `now`; true when any went.
    pub fn prune(&mut self, now: SystemTime) -> bool {
        let mut dropped = false;
        while let Some((deadline, _)) = self.by_deadline.first()
            && *deadline <= now
        {
            if let Some((_, id)) = self.by_deadline.pop_first() {
                self.by_id.remove(&id);
            }
            dropped = true;
        }
        if dropped {
            self.version += 1;
        }
        dropped
    }

    /// The earliest deadline of a member: the set changes then without an event.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// How many tasks are members.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Grows on every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The members as a sorted list to publish.
    pub fn to_published(&self) -> ClosedTasks {
        ClosedTasks {
            ids: self.by_id.keys().cloned().collect(),
        }
    }

    fn remove(&mut self, id: &str, deadline: SystemTime) {
        if let Some((key, _)) = self.by_id.remove_entry(id) {
            self.by_deadline.remove(&(deadline, key));
        }
    }
}

/// The published closed set: task IDs, sorted, shared by every reader of one snapshot.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClosedTasks {
    ids: Vec<Arc<str>>,
}

impl ClosedTasks {
    /// A list of `ids` (sorted and deduplicated here).
    pub fn new<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        let mut ids: Vec<Arc<str>> = ids.into_iter().map(Into::into).collect();
        ids.sort_unstable();
        ids.dedup();
        Self { ids }
    }

    /// Whether `task_id` is closed (binary search).
    pub fn contains(&self, task_id: &str) -> bool {
        self.ids
            .binary_search_by(|id| id.as_ref().cmp(task_id))
            .is_ok()
    }

    /// The IDs, sorted.
    pub fn ids(&self) -> &[Arc<str>] {
        &self.ids
    }

    /// How many tasks are listed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no task is listed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    #[test]
    fn members_leave_at_their_deadline_and_past_ones_never_enter() {
        let mut set = ClosedSet::default();
        assert!(set.insert("b", t(20), t(0)));
        assert!(set.insert("a", t(10), t(0)));
        assert!(!set.insert("a", t(10), t(1)), "same member, same deadline");
        assert!(!set.insert("late", t(5), t(5)), "deadline already passed");
        assert_eq!(set.len(), 2);
        assert_eq!(set.next_deadline(), Some(t(10)));
        let version = set.version();
        assert!(!set.prune(t(9)));
        assert!(set.prune(t(10)));
        assert!(set.version() > version);
        assert!(!set.contains("a") && set.contains("b"));
        assert!(set.prune(t(30)));
        assert!(set.is_empty() && set.next_deadline().is_none());
    }

    #[test]
    fn a_changed_deadline_moves_the_member() {
        let mut set = ClosedSet::default();
        set.insert("a", t(10), t(0));
        assert!(set.insert("a", t(50), t(0)));
        assert!(!set.prune(t(20)), "the old deadline no longer prunes it");
        assert!(set.contains("a"));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn replace_keeps_only_unexpired_members_and_publishes_sorted() {
        let mut set = ClosedSet::default();
        set.insert("old", t(100), t(0));
        set.replace(
            [
                ("z".to_string(), t(50)),
                ("y".into(), t(5)),
                ("m".into(), t(60)),
            ],
            t(10),
        );
        let published = set.to_published();
        let ids: Vec<&str> = published.ids().iter().map(AsRef::as_ref).collect();
        assert_eq!(ids, ["m", "z"]);
        assert!(published.contains("z") && !published.contains("old") && !published.contains("y"));
        assert_eq!(ClosedTasks::new(["b", "a", "b"]).len(), 2);
    }
}
