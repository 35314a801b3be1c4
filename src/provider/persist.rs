//! Persistence as updates (as LDK's `ChannelMonitorUpdate`s): the provider tells the host what
//! changed, not everything it holds.
//!
//! Once the host calls [`Provider::track_updates`], each [`Provider::poll_update`] hands it
//! the records that changed since the last one, with an increasing id: the jobs (created, a new
//! state, paid, answered), the jobs dropped from the table, the spent payment keys of the replay
//! ledger, the events to publish that no relay has taken yet (reported by
//! [`Provider::handle_published`]), and the rest of the state (`meta`: RNG position, rate
//! windows, timers, tombstones, refunds to hand out). The host applies an update idempotently (upserts and
//! deletes by key; applying one twice changes nothing) and, once it is durable, calls
//! [`Provider::handle_persisted`] with its id.
//!
//! **Ended jobs leave memory.** Once an update carries an ended job's full record, the
//! provider keeps only a summary of it for the rest of its retention (what deduplication, late
//! payments and refunds need: ids, customer, state, price, payment hash, where replies go),
//! not the request's content, inputs and tags. A later change to it (a late payment) comes as
//! a [summary record](JobRecord::is_summary) that the store merges over the record it holds
//! ([`JobRecord::merged_over`]).
//!
//! **Write-ahead.** Every output waits for the update that follows it: an output pushed while
//! handling an input is handed out by [`Provider::poll_output`] only after the update taken
//! after that input is acknowledged. So no relay sees an answer, no paid task starts and no
//! invoice is asked for before the state that produced it is durable. One exception: the
//! `RunTask` of a job nothing was paid for goes out at once (a crash then loses only a run
//! whose result was never published; the request, delivered again, makes the job anew). In
//! order: a paid job's `RunTask` after its
//! ledger entry (a replayed receipt finds it spent after a crash), a result after the job's
//! `Delivered` state (a restart never runs it again nor publishes a second result), a
//! `payment-required` after the job record (a customer never pays for a job the provider does
//! not know), a refund after the payment it hands back. A write that fails or is slow leaves
//! the update unacknowledged: the host retries it (the next update holds everything since
//! then too), and the outputs wait. Nothing is forgotten, at the price of waiting.

use std::collections::BTreeSet;

use nostr::{Event, EventId, PublicKey, Timestamp};
use serde::{Deserialize, Serialize};

use super::ledger::{Entry, SpentKey};
use super::snapshot::{save_job, SavedJob};
use super::{Error, Output, Provider, ProviderSnapshot};
use crate::job::JobState;

/// What changed in a provider since the previous update, for the host's store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreUpdate {
    /// Increasing, from 1; acknowledge with [`Provider::handle_persisted`].
    pub id: u64,
    /// The records that changed, in order.
    pub changes: Vec<StoreChange>,
    /// Everything else the provider holds, as it is now: replaces the previous one. A
    /// [`ProviderSnapshot`] without jobs, ledger, forgotten ids or events to publish (those
    /// are records); the outputs in it are the refunds a restart must still hand out, since
    /// tasks, invoices and subscriptions are asked again by [`resume`](Provider::resume).
    pub meta: ProviderSnapshot,
}

/// One changed record of a [`StoreUpdate`], keyed for an idempotent upsert or delete.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StoreChange {
    /// A job as it is now: insert, or replace the record with its [id](JobRecord::id). A
    /// [summary](JobRecord::is_summary) (an ended job the provider no longer holds in full)
    /// replaces it [merged over](JobRecord::merged_over) the record held.
    Job(Box<JobRecord>),
    /// The job left the table; its id is remembered until `until` (its request is stale
    /// then), so a replayed request does not run again: replace its record with this.
    Forgotten {
        /// The job.
        job: EventId,
        /// When the id may go.
        until: Timestamp,
    },
    /// The job and its id are gone: delete its record.
    Removed(EventId),
    /// A receipt or payment hash paid, and stays spent until `expires`: insert.
    Spent {
        /// The receipt id or payment hash.
        key: SpentKey,
        /// Until when.
        expires: Timestamp,
    },
    /// The key's expiry passed: delete it.
    Unspent(SpentKey),
    /// An event the provider publishes: kept until the host reports it published
    /// ([`Provider::handle_published`]), and published again by a restart that finds it.
    Outgoing {
        /// The signed event.
        event: Box<Event>,
        /// The relays it goes to.
        relays: Vec<String>,
    },
    /// The event was published (or given up): delete it.
    Sent(EventId),
}

/// One job as it is stored: opaque (serde) data, with the fields a store may index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    id: EventId,
    job: SavedJob,
    payments: Vec<Entry>,
}

impl JobRecord {
    pub(super) fn new(job: SavedJob, payments: Vec<Entry>) -> Self {
        Self {
            id: job.request.id,
            job,
            payments,
        }
    }

    pub(super) fn into_parts(self) -> (SavedJob, Vec<Entry>) {
        (self.job, self.payments)
    }

    pub(super) fn saved(&self) -> &SavedJob {
        &self.job
    }

    /// The job id (its request's id).
    pub fn id(&self) -> EventId {
        self.id
    }

    /// Its customer.
    pub fn customer(&self) -> PublicKey {
        self.job.customer()
    }

    /// Its state.
    pub fn state(&self) -> &JobState {
        self.job.state()
    }

    /// Whether it has ended.
    pub fn is_terminal(&self) -> bool {
        self.job.state().is_terminal()
    }

    /// When its state last changed.
    pub fn updated_at(&self) -> Timestamp {
        self.job.updated_at()
    }

    /// Its admission order in the provider.
    pub fn seq(&self) -> u64 {
        self.job.seq()
    }
}

/// Whether an output waiting in the outbox is stored in an update's meta: what a restart must
/// still carry out and [`Provider::resume`] does not ask again: refunds (their payment hash
/// identifies them). Not tasks, invoices or subscriptions, which `resume` re-issues, nor
/// notifications; events to publish are records of their own
/// ([`StoreChange::Outgoing`]). A refund is handed out at least once: a crash after it was
/// handed out and before the next update is stored hands it out again.
pub(super) fn kept_in_meta(output: &Output) -> bool {
    matches!(output, Output::Refund(_))
}

/// What changed since the last update, when tracking.
#[derive(Debug, Default)]
pub(super) struct Changes {
    pub(super) tracking: bool,
    /// The id the next update takes.
    next_id: u64,
    /// The last id handed to the host.
    issued: u64,
    jobs: BTreeSet<EventId>,
    spent: BTreeSet<SpentKey>,
}

impl Changes {
    pub(super) fn job(&mut self, id: EventId) {
        if self.tracking {
            self.jobs.insert(id);
        }
    }

    /// Takes `id` out of the next update (a job that was never this process's).
    pub(super) fn unmark_job(&mut self, id: &EventId) {
        self.jobs.remove(id);
    }

    pub(super) fn spent(&mut self, keys: impl IntoIterator<Item = SpentKey>) {
        if self.tracking {
            self.spent.extend(keys);
        }
    }

    fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.spent.is_empty()
    }
}

impl Provider {
    /// Switches the provider to persistence by updates: from now on,
    /// [`poll_update`](Self::poll_update) hands out what changed and outputs wait for their update to be
    /// acknowledged (see the [module docs](crate::provider::persist)). Call it right after
    /// [`new`](Self::new) or [`restore`](Self::restore) (and before [`resume`](Self::resume)),
    /// with a store that holds what the provider was made or restored from; the outputs already
    /// waiting are handed out at once. Idempotent.
    pub fn track_updates(&mut self) {
        if self.changes.tracking {
            return;
        }
        self.changes.tracking = true;
        self.changes.next_id = self.changes.next_id.max(1);
        self.outbox.track(self.changes.next_id);
        // The store holds the ended jobs' records: memory keeps summaries.
        let ended: Vec<EventId> = self.terminal.iter().map(|(_, _, id)| *id).collect();
        for id in ended {
            self.summarize_ended(&id);
        }
    }

    /// The changes since the last update, if anything changed or outputs wait for it; `None`
    /// without [`track_updates`](Self::track_updates). Take one whenever the store can
    /// write (every loop turn, or when the last write finished: everything since is in the
    /// next one).
    pub fn poll_update(&mut self) -> Option<StoreUpdate> {
        let changed = self.dirty || !self.changes.is_empty() || self.outbox.outgoing_changed();
        if !self.changes.tracking || !(changed || self.outbox.waits_for_next()) {
            return None;
        }
        let id = self.changes.next_id;
        self.changes.next_id += 1;
        self.changes.issued = id;
        self.outbox.taken(id);
        self.dirty = false;
        let mut changes = Vec::new();
        for job in std::mem::take(&mut self.changes.jobs) {
            changes.push(match self.jobs.get(&job) {
                // Not this process's (yet): its record comes once the claim is won.
                Some(j) if j.unclaimed => continue,
                Some(j) => {
                    let record = JobRecord::new(save_job(j), self.ledger.payments_of(&job));
                    // Ended, and its full record goes to the store now: memory keeps a
                    // summary.
                    self.summarize_ended(&job);
                    StoreChange::Job(Box::new(record))
                }
                None => match self.forgotten_set.get(&job) {
                    Some(until) => StoreChange::Forgotten { job, until: *until },
                    None => StoreChange::Removed(job),
                },
            });
        }
        for key in std::mem::take(&mut self.changes.spent) {
            changes.push(match self.ledger.spent_until(&key) {
                Some(expires) => StoreChange::Spent { key, expires },
                None => StoreChange::Unspent(key),
            });
        }
        for (id, outgoing) in self.outbox.take_outgoing_changes() {
            changes.push(match outgoing {
                Some((event, relays)) => StoreChange::Outgoing {
                    event: Box::new(event.clone()),
                    relays: relays.clone(),
                },
                None => StoreChange::Sent(id),
            });
        }
        let meta = self.snapshot_meta(kept_in_meta);
        Some(StoreUpdate { id, changes, meta })
    }

    /// The store holds update `id` (and every one before it) durably: the outputs that waited
    /// for it are handed out. `Err` for an id never handed out.
    pub fn handle_persisted(&mut self, id: u64) -> Result<(), Error> {
        if !self.changes.tracking || id == 0 || id > self.changes.issued {
            return Err(Error::UnknownUpdate(id));
        }
        self.outbox.release(id);
        Ok(())
    }

    /// The host published the event `id` (a relay took it), or gave up on it: its
    /// [`StoreChange::Outgoing`] record goes with the next update. When persisting by
    /// updates, report every event handed out to publish, or they stay in memory and in the
    /// store (and a restart publishes them again, which relays take as a duplicate).
    pub fn handle_published(&mut self, id: EventId) {
        self.outbox.published(id);
    }

    /// Whether the provider persists by updates ([`track_updates`](Self::track_updates)).
    pub fn tracks_updates(&self) -> bool {
        self.changes.tracking
    }
}

/// A provider's records as a store holds them, in memory: the reference for stores (apply
/// [`StoreUpdate`]s in order, idempotently; [`snapshot`](Self::snapshot) is what a `load`
/// gives back), and a store for tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordSet {
    /// The last update applied.
    pub last_update: u64,
    meta: Option<ProviderSnapshot>,
    jobs: std::collections::BTreeMap<EventId, JobRecord>,
    forgotten: std::collections::BTreeMap<EventId, Timestamp>,
    spent: std::collections::BTreeMap<SpentKey, Timestamp>,
    outgoing: std::collections::BTreeMap<EventId, (Event, Vec<String>)>,
}

impl RecordSet {
    /// Applies `update`: upserts and deletes by key, then its meta replaces the last one.
    /// Applying an update again changes nothing.
    pub fn apply(&mut self, update: &StoreUpdate) {
        for change in &update.changes {
            match change {
                StoreChange::Job(record) => {
                    self.forgotten.remove(&record.id());
                    let mut record = (**record).clone();
                    if let Some(stored) = self.jobs.remove(&record.id()) {
                        record = record.merged_over(stored);
                    }
                    self.jobs.insert(record.id(), record);
                }
                StoreChange::Forgotten { job, until } => {
                    self.jobs.remove(job);
                    self.forgotten.insert(*job, *until);
                }
                StoreChange::Removed(job) => {
                    self.jobs.remove(job);
                    self.forgotten.remove(job);
                }
                StoreChange::Spent { key, expires } => {
                    self.spent.insert(*key, *expires);
                }
                StoreChange::Unspent(key) => {
                    self.spent.remove(key);
                }
                StoreChange::Outgoing { event, relays } => {
                    self.outgoing
                        .insert(event.id, ((**event).clone(), relays.clone()));
                }
                StoreChange::Sent(id) => {
                    self.outgoing.remove(id);
                }
            }
        }
        self.meta = Some(update.meta.clone());
        self.last_update = self.last_update.max(update.id);
    }

    /// How many job records it holds (forgotten ids not counted).
    pub fn jobs(&self) -> usize {
        self.jobs.len()
    }

    /// The job record of `id`, if held.
    pub fn job(&self, id: &EventId) -> Option<&JobRecord> {
        self.jobs.get(id)
    }

    /// The provider's state, for [`Provider::restore`]; `None` before any update.
    pub fn snapshot(&self) -> Option<ProviderSnapshot> {
        let meta = self.meta.clone()?;
        let mut snapshot = ProviderSnapshot::assemble(
            meta,
            self.jobs.values().cloned(),
            self.forgotten.iter().map(|(id, t)| (*id, *t)),
            self.spent.iter().map(|(k, t)| (*k, *t)),
        );
        for (event, relays) in self.outgoing.values() {
            snapshot.push_publish(event.clone(), relays.clone());
        }
        Some(snapshot)
    }
}
