//! The sub-delegation indexes (DESIGN 3.8): the children of every task, the delegate entries
//! by SPIFFE ID and the sub-tasks bound to each delegate, so opening a sub-task, walking a
//! subtree and syncing a delegate's SVIDs each cost O(what they touch), never O(all tasks).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use mandate_core::ids::{EntryId, TaskId};

use super::Index;
use crate::store::{StoredEntry, StoredTask};

/// The sub-delegation part of the [`Index`].
#[derive(Debug, Default)]
pub(super) struct SubtreeIndex {
    children: HashMap<TaskId, BTreeSet<TaskId>>,
    /// Delegate entries (non-empty `delegate_from`) by SPIFFE ID text.
    delegates: HashMap<String, BTreeSet<EntryId>>,
    /// Sub-tasks by the SPIFFE ID of the delegate they are bound to.
    bound: HashMap<String, BTreeSet<TaskId>>,
}

impl SubtreeIndex {
    pub(super) fn put_task(&mut self, t: &StoredTask) {
        if let Some(lineage) = &t.task.lineage {
            self.children
                .entry(lineage.parent_id.clone())
                .or_default()
                .insert(t.task.id.clone());
            self.bound
                .entry(lineage.delegate.clone())
                .or_default()
                .insert(t.task.id.clone());
        }
    }

    pub(super) fn put_entry(&mut self, e: &StoredEntry) {
        if !e.entry.delegate_from.is_empty() {
            self.delegates
                .entry(e.entry.spiffe_id.to_string())
                .or_default()
                .insert(e.entry.id.clone());
        }
    }

    pub(super) fn delete_entry(&mut self, e: &StoredEntry) {
        let key = e.entry.spiffe_id.to_string();
        if let Some(set) = self.delegates.get_mut(&key) {
            set.remove(&e.entry.id);
            if set.is_empty() {
                self.delegates.remove(&key);
            }
        }
    }
}

impl Index {
    /// The direct sub-tasks of `task`, by ID.
    pub fn children<'a>(&'a self, task: &TaskId) -> impl Iterator<Item = &'a TaskId> + use<'a> {
        self.subtree.children.get(task).into_iter().flatten()
    }

    /// `task` and every task below it, parents before children (breadth first).
    pub fn subtree(&self, task: &TaskId) -> Vec<TaskId> {
        let mut out = vec![task.clone()];
        let mut next = 0;
        while next < out.len() {
            let children: Vec<TaskId> = self.children(&out[next]).cloned().collect();
            out.extend(children);
            next += 1;
        }
        out
    }

    /// The delegate entries whose SPIFFE ID is `spiffe_id`.
    pub fn delegate_entries<'a>(
        &'a self,
        spiffe_id: &str,
    ) -> impl Iterator<Item = &'a Arc<StoredEntry>> + use<'a> {
        self.subtree
            .delegates
            .get(spiffe_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.entry(id))
    }

    /// The sub-tasks bound to the delegate `spiffe_id`, in any state.
    pub fn subtasks_bound_to<'a>(
        &'a self,
        spiffe_id: &str,
    ) -> impl Iterator<Item = &'a Arc<StoredTask>> + use<'a> {
        self.subtree
            .bound
            .get(spiffe_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.task(id))
    }
}
