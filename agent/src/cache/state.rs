//! The agent's mutable cache: entries with their SVIDs, tasks, the trust domain's closed-task
//! set and the bundle. Sync events are applied one entry at a time; only a snapshot with
//! `reset` replaces the whole set. Every decision here is pure and takes `now`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::closed::ClosedSet;
use super::model::{AgentEntry, BundleData, SharedSvid, TaskView};

/// One change the server synced, already converted from proto.
#[derive(Debug, Clone)]
pub enum SyncEvent {
    /// A part of a full snapshot.
    Snapshot {
        /// Drop everything held (first part).
        reset: bool,
        /// Last part.
        complete: bool,
        /// Entries in this part.
        entries: Vec<AgentEntry>,
        /// Tasks in this part.
        tasks: Vec<TaskView>,
        /// Members of the trust domain's closed set in this part, with their deadlines.
        ended: Vec<(String, SystemTime)>,
        /// The bundle, when carried.
        bundle: Option<BundleData>,
    },
    /// An entry was created or changed.
    EntryUpsert(AgentEntry),
    /// An entry was deleted or moved away.
    EntryRemoved(String),
    /// A task changed state.
    TaskUpdate(TaskView),
    /// A task of the trust domain that no entry of this agent uses ended; listed until its
    /// deadline.
    TaskEnded {
        /// The task ID.
        id: String,
        /// Its deadline.
        deadline: SystemTime,
    },
    /// The bundle changed.
    BundleUpdate(BundleData),
    /// Nothing changed.
    Heartbeat,
}

/// An entry with what the agent holds for it.
#[derive(Debug)]
pub struct EntryRecord {
    /// The entry.
    pub entry: AgentEntry,
    /// Grows whenever the entry changes in a way that needs a new SVID.
    pub generation: u64,
    /// The current SVID.
    pub svid: Option<SharedSvid>,
    /// The generation of a signing request under way.
    pub in_flight: Option<u64>,
    /// Do not ask to sign before this time (after a refusal or failure).
    pub retry_at: Option<SystemTime>,
    /// Consecutive signing failures, for backoff.
    pub failures: u32,
}

/// The cache.
#[derive(Debug, Default)]
pub struct State {
    /// Entries by ID.
    pub entries: HashMap<String, EntryRecord>,
    /// Tasks by ID.
    pub tasks: HashMap<String, TaskView>,
    /// The trust domain's closed set (DESIGN 3.4).
    pub closed: ClosedSet,
    /// The bundle.
    pub bundle: Option<BundleData>,
    staging: Option<Staging>,
    next_generation: u64,
    /// Set by every change that the published snapshot must reflect.
    pub dirty: bool,
}

/// A snapshot being received part by part.
#[derive(Debug, Default)]
struct Staging {
    entries: HashMap<String, AgentEntry>,
    tasks: HashMap<String, TaskView>,
    ended: Vec<(String, SystemTime)>,
}

/// What `apply` tells the caller.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The bundle's CA certificates changed (persist them, update TLS roots).
    pub authorities_changed: bool,
    /// The event completed a unit the revision may be recorded for.
    pub revision_done: bool,
}

impl State {
    /// Applies one sync event.
    pub fn apply(&mut self, event: SyncEvent) -> Applied {
        self.apply_at(event, SystemTime::now())
    }

    /// Applies one sync event at `now` (which decides whether a closed task's deadline passed).
    pub fn apply_at(&mut self, event: SyncEvent, now: SystemTime) -> Applied {
        let mut applied = Applied {
            authorities_changed: false,
            revision_done: true,
        };
        match event {
            SyncEvent::Snapshot {
                reset,
                complete,
                entries,
                tasks,
                ended,
                bundle,
            } => {
                if reset || self.staging.is_none() {
                    self.staging = Some(Staging::default());
                }
                if let Some(bundle) = bundle {
                    applied.authorities_changed = self.set_bundle(bundle);
                }
                if let Some(staging) = self.staging.as_mut() {
                    staging
                        .entries
                        .extend(entries.into_iter().map(|e| (e.id.clone(), e)));
                    staging
                        .tasks
                        .extend(tasks.into_iter().map(|t| (t.id.clone(), t)));
                    staging.ended.extend(ended);
                }
                applied.revision_done = complete;
                if complete && let Some(staging) = self.staging.take() {
                    self.replace_all(staging, now);
                }
            }
            SyncEvent::EntryUpsert(entry) => self.upsert(entry),
            SyncEvent::EntryRemoved(id) => {
                if self.entries.remove(&id).is_some() {
                    self.dirty = true;
                } else {
                    // A delegate entry (DESIGN 3.8) is held only as `<id>/<sub-task>`, one per
                    // open sub-task: its deletion takes all of them.
                    let prefix = format!("{id}/");
                    let before = self.entries.len();
                    self.entries.retain(|held, _| !held.starts_with(&prefix));
                    self.dirty |= self.entries.len() != before;
                }
            }
            SyncEvent::TaskUpdate(task) => {
                if let Some(entries) = self.entries_of_task(&task.id) {
                    for id in entries {
                        if let Some(record) = self.entries.get_mut(&id) {
                            record.retry_at = None;
                            record.failures = 0;
                        }
                    }
                }
                if task.is_ended(now) {
                    self.closed.insert(&task.id, task.deadline, now);
                }
                self.tasks.insert(task.id.clone(), task);
                self.dirty = true;
            }
            SyncEvent::TaskEnded { id, deadline } => {
                self.closed.insert(&id, deadline, now);
            }
            SyncEvent::BundleUpdate(bundle) => {
                applied.authorities_changed = self.set_bundle(bundle);
            }
            SyncEvent::Heartbeat => {}
        }
        applied
    }

    /// Drops a partial snapshot (the stream broke in the middle of one).
    pub fn abandon_staging(&mut self) {
        self.staging = None;
    }

    fn entries_of_task(&self, task_id: &str) -> Option<Vec<String>> {
        let ids: Vec<String> = self
            .entries
            .values()
            .filter(|r| r.entry.task_id.as_deref() == Some(task_id))
            .map(|r| r.entry.id.clone())
            .collect();
        (!ids.is_empty()).then_some(ids)
    }

    fn set_bundle(&mut self, bundle: BundleData) -> bool {
        let changed = self
            .bundle
            .as_ref()
            .is_none_or(|b| b.authorities != bundle.authorities);
        if self.bundle.as_ref() != Some(&bundle) {
            self.bundle = Some(bundle);
            self.dirty = true;
        }
        changed
    }

    fn upsert(&mut self, entry: AgentEntry) {
        self.dirty = true;
        match self.entries.get_mut(&entry.id) {
            Some(record) => {
                if entry.svid_differs(&record.entry) {
                    self.next_generation += 1;
                    record.generation = self.next_generation;
                    record.retry_at = None;
                    record.failures = 0;
                    if entry.spiffe_id != record.entry.spiffe_id
                        || entry.task_id != record.entry.task_id
                    {
                        record.svid = None;
                    }
                }
                record.entry = entry;
            }
            None => {
                self.next_generation += 1;
                let record = EntryRecord {
                    entry,
                    generation: self.next_generation,
                    svid: None,
                    in_flight: None,
                    retry_at: None,
                    failures: 0,
                };
                self.entries.insert(record.entry.id.clone(), record);
            }
        }
    }

    fn replace_all(&mut self, staging: Staging, now: SystemTime) {
        let Staging {
            entries,
            tasks,
            ended,
        } = staging;
        let own_ended: Vec<(String, SystemTime)> = tasks
            .values()
            .filter(|t| t.is_ended(now))
            .map(|t| (t.id.clone(), t.deadline))
            .collect();
        self.closed.replace(ended.into_iter().chain(own_ended), now);
        self.entries.retain(|id, _| entries.contains_key(id));
        for entry in entries.into_values() {
            let unchanged = self
                .entries
                .get(&entry.id)
                .is_some_and(|r| r.entry == entry);
            if !unchanged {
                self.upsert(entry);
            }
        }
        self.tasks = tasks;
        self.dirty = true;
    }

    /// True when the entry's task (if any) allows serving and signing at `now`.
    pub fn task_allows(&self, entry: &AgentEntry, now: SystemTime) -> bool {
        match &entry.task_id {
            None => true,
            Some(id) => self.tasks.get(id).is_some_and(|t| t.is_open(now)),
        }
    }

    /// The entries to sign now: no SVID, a stale generation, or due for rotation, and not
    /// already under way or backing off.
    pub fn due_for_signing(&self, now: SystemTime) -> Vec<(String, u64)> {
        let mut due = Vec::new();
        for record in self.entries.values() {
            if record.in_flight.is_some()
                || record.retry_at.is_some_and(|t| now < t)
                || !self.task_allows(&record.entry, now)
            {
                continue;
            }
            let needs = match &record.svid {
                None => true,
                Some(svid) => svid.generation != record.generation || svid.should_rotate(now),
            };
            if needs {
                due.push((record.entry.id.clone(), record.generation));
            }
        }
        due
    }

    /// Drops SVIDs that expired at `now`, or whose task no longer allows them; true when any
    /// went.
    pub fn drop_expired(&mut self, now: SystemTime) -> bool {
        let mut dropped = false;
        let tasks = &self.tasks;
        for record in self.entries.values_mut() {
            let task_ok = match &record.entry.task_id {
                None => true,
                Some(id) => tasks.get(id).is_some_and(|t| t.is_open(now)),
            };
            if record
                .svid
                .as_ref()
                .is_some_and(|s| s.not_after <= now || !task_ok)
            {
                record.svid = None;
                dropped = true;
            }
        }
        if dropped {
            self.dirty = true;
        }
        dropped
    }

    /// The next time something must happen without an event: an SVID expires or is due for
    /// rotation, a backoff ends, or a task deadline passes.
    pub fn next_wake(&self, now: SystemTime) -> Option<SystemTime> {
        let mut next: Option<SystemTime> = None;
        let mut consider = |t: SystemTime| {
            if next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        };
        for record in self.entries.values() {
            if let Some(svid) = &record.svid {
                consider(svid.not_after);
                if record.in_flight.is_none() {
                    consider(svid.rotate_at().max(record.retry_at.unwrap_or(now)));
                }
            } else if let Some(retry) = record.retry_at {
                consider(retry);
            }
        }
        for task in self.tasks.values() {
            if task.is_open(now) {
                consider(task.deadline);
            }
        }
        if let Some(deadline) = self.closed.next_deadline() {
            consider(deadline);
        }
        next
    }

    /// The trust domain's closed set at `now`: drops the members whose deadline passed.
    /// Returns the set (sorted IDs via [`ClosedSet::to_published`]).
    pub fn closed_tasks(&mut self, now: SystemTime) -> &ClosedSet {
        self.closed.prune(now);
        &self.closed
    }

    /// Records a backoff for an entry after a refusal or a failure.
    pub fn back_off(&mut self, entry_id: &str, now: SystemTime, cap: Duration) {
        if let Some(record) = self.entries.get_mut(entry_id) {
            record.in_flight = None;
            record.failures = record.failures.saturating_add(1);
            let exp = record.failures.min(6);
            let delay = Duration::from_millis(500u64 << exp).min(cap);
            record.retry_at = Some(now + delay);
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
