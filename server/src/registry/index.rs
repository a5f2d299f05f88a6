//! In-memory indexes over the stored state, so each change costs O(change): entries by ID, by
//! parent agent and by task; tasks; the ended tasks by deadline (the trust domain's closed
//! set, DESIGN 3.4); agents. Built once at start, then updated op by op.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::SystemTime;

use mandate_core::entry::Entry;
use mandate_core::ids::{EntryId, TaskId};
use mandate_core::selector::Selector;
use mandate_core::task::TaskState;

use crate::store::{AgentRecord, LoadedState, StoredEntry, StoredTask, WriteOp};

mod subtree;

/// The indexed state.
#[derive(Debug, Default)]
pub struct Index {
    entries: BTreeMap<EntryId, Arc<StoredEntry>>,
    by_parent: HashMap<String, BTreeSet<EntryId>>,
    by_task: HashMap<TaskId, BTreeSet<EntryId>>,
    /// (parent, SPIFFE ID, sorted selectors) of every entry: the duplicate check is O(1).
    identities: HashSet<IdentityKey>,
    tasks: BTreeMap<TaskId, Arc<StoredTask>>,
    /// Closed or expired tasks by deadline; those past their deadline are pruned.
    ended: BTreeMap<SystemTime, BTreeSet<TaskId>>,
    agents: BTreeMap<String, AgentRecord>,
    /// Children, delegate entries and bound sub-tasks (DESIGN 3.8).
    subtree: subtree::SubtreeIndex,
}

/// What makes two entries the same registration: parent, SPIFFE ID and selector set.
type IdentityKey = (String, String, Vec<Selector>);

fn identity_key(entry: &Entry) -> IdentityKey {
    let mut selectors = entry.selectors.clone();
    selectors.sort();
    selectors.dedup();
    (
        entry.parent_id.to_string(),
        entry.spiffe_id.to_string(),
        selectors,
    )
}

impl Index {
    /// Builds the indexes from the loaded state.
    pub fn build(state: LoadedState) -> Self {
        let mut index = Self::default();
        for e in state.entries {
            index.put_entry(e);
        }
        for t in state.tasks {
            index.put_task(t);
        }
        for a in state.agents {
            index.agents.insert(a.spiffe_id.clone(), a);
        }
        index
    }

    /// Applies one committed write.
    pub fn apply(&mut self, op: &WriteOp) {
        match op {
            WriteOp::PutEntry(e) => self.put_entry(e.clone()),
            WriteOp::DeleteEntry(id) => self.delete_entry(id),
            WriteOp::PutTask(t) => self.put_task(t.clone()),
            WriteOp::PutAgent(a) => {
                self.agents.insert(a.spiffe_id.clone(), a.clone());
            }
            _ => {}
        }
    }

    fn put_task(&mut self, t: StoredTask) {
        // A task never leaves an ended state, and its deadline never changes once it ended.
        if matches!(t.task.state, TaskState::Closed | TaskState::Expired) {
            self.ended
                .entry(t.task.deadline)
                .or_default()
                .insert(t.task.id.clone());
        }
        self.subtree.put_task(&t);
        self.tasks.insert(t.task.id.clone(), Arc::new(t));
    }

    /// Forgets ended tasks whose deadline is at or before `now`; amortized O(1) per task.
    pub fn prune_ended(&mut self, now: SystemTime) {
        while let Some(first) = self.ended.first_entry()
            && *first.key() <= now
        {
            first.remove();
        }
    }

    /// The trust domain's closed set at `now`: every closed or expired task whose deadline is
    /// after `now`, with that deadline, earliest deadline first (DESIGN 3.4).
    pub fn ended_tasks(&self, now: SystemTime) -> impl Iterator<Item = (SystemTime, &TaskId)> {
        self.ended
            .range((Bound::Excluded(now), Bound::Unbounded))
            .flat_map(|(deadline, ids)| ids.iter().map(move |id| (*deadline, id)))
    }

    fn put_entry(&mut self, e: StoredEntry) {
        let id = e.entry.id.clone();
        self.delete_entry(&id);
        self.by_parent
            .entry(e.entry.parent_id.to_string())
            .or_default()
            .insert(id.clone());
        if let Some(task) = &e.entry.task_id {
            self.by_task
                .entry(task.clone())
                .or_default()
                .insert(id.clone());
        }
        self.identities.insert(identity_key(&e.entry));
        self.subtree.put_entry(&e);
        self.entries.insert(id, Arc::new(e));
    }

    fn delete_entry(&mut self, id: &EntryId) {
        let Some(old) = self.entries.remove(id) else {
            return;
        };
        self.identities.remove(&identity_key(&old.entry));
        self.subtree.delete_entry(&old);
        let parent = old.entry.parent_id.to_string();
        if let Some(set) = self.by_parent.get_mut(&parent) {
            set.remove(id);
            if set.is_empty() {
                self.by_parent.remove(&parent);
            }
        }
        if let Some(task) = &old.entry.task_id
            && let Some(set) = self.by_task.get_mut(task)
        {
            set.remove(id);
            if set.is_empty() {
                self.by_task.remove(task);
            }
        }
    }

    /// One entry.
    pub fn entry(&self, id: &EntryId) -> Option<&Arc<StoredEntry>> {
        self.entries.get(id)
    }

    /// Every entry, by ID.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<StoredEntry>> {
        self.entries.values()
    }

    /// How many entries exist.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Whether an entry with the same parent, SPIFFE ID and selector set as `entry` exists.
    pub fn has_identity(&self, entry: &Entry) -> bool {
        self.identities.contains(&identity_key(entry))
    }

    /// The entries whose parent is `parent`.
    pub fn entries_of_parent<'a>(
        &'a self,
        parent: &str,
    ) -> impl Iterator<Item = &'a Arc<StoredEntry>> + 'a {
        self.by_parent
            .get(parent)
            .into_iter()
            .flatten()
            .filter_map(|id| self.entries.get(id))
    }

    /// The entries bound to `task`.
    pub fn entries_of_task<'a>(
        &'a self,
        task: &TaskId,
    ) -> impl Iterator<Item = &'a Arc<StoredEntry>> + 'a {
        self.by_task
            .get(task)
            .into_iter()
            .flatten()
            .filter_map(|id| self.entries.get(id))
    }

    /// One task.
    pub fn task(&self, id: &TaskId) -> Option<&Arc<StoredTask>> {
        self.tasks.get(id)
    }

    /// Every task, by ID.
    pub fn tasks(&self) -> impl Iterator<Item = &Arc<StoredTask>> {
        self.tasks.values()
    }

    /// One agent.
    pub fn agent(&self, id: &str) -> Option<&AgentRecord> {
        self.agents.get(id)
    }

    /// Every agent, by ID.
    pub fn agents(&self) -> impl Iterator<Item = &AgentRecord> {
        self.agents.values()
    }
}
