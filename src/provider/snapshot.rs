//! Persistence: everything a provider knows, as serde data.

use crate::relay::RelayCommand;
use std::collections::{BTreeSet, HashMap, VecDeque};

use nostr::{Event, EventId, Keys, PublicKey, Timestamp, UnsignedEvent};
use serde::{Deserialize, Serialize};

use super::{
    Error, Job, Notification, Output, Provider, ProviderConfig, RefundDue, ReplayLedger, Reply,
};
use crate::job::JobState;
use crate::nip90::JobRequest;
use crate::rng::{DvmRng, RngState};

/// A provider's whole state: jobs, replay ledger, RNG position, tombstones, rate windows and
/// the outputs not yet drained. Serialize it with any serde format; it holds the RNG seed, so
/// keep it as private as the keys.
///
/// **Versions.** A snapshot carries the version of its format (also the meta record of a
/// [`StoreUpdate`](super::StoreUpdate), whose job records share it). [`Provider::restore`]
/// reads its own version only and refuses any other with [`Error::Restore`] naming both,
/// never guessing: a release that changes the format bumps the version, says so in the
/// CHANGELOG, and either reads the previous version too or ships a conversion with it. A
/// refused snapshot is left as it is (a `SqliteStore` is not changed by a failed restore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderSnapshot {
    version: u32,
    jobs: Vec<SavedJob>,
    ledger: ReplayLedger,
    rng: RngState,
    tombstones: Vec<(EventId, PublicKey, Timestamp)>,
    rate: Vec<(PublicKey, Vec<Timestamp>)>,
    outbox: Vec<SavedOutput>,
    next_heartbeat: Option<Timestamp>,
    deletion_refresh_at: Option<Timestamp>,
    forgotten: Vec<(EventId, Timestamp)>,
    seq: u64,
    /// The latest time the provider acted on.
    #[serde(default)]
    clock: Timestamp,
    /// The gift wraps seen lately (so a restart does not open them all again).
    #[serde(default)]
    seen_wraps: Vec<EventId>,
    /// When the merged input subscription was last sent.
    #[serde(default)]
    inputs_pushed_at: Option<Timestamp>,
    /// Zap receipts waiting for their request: `(received at, target, receipt)`.
    #[serde(default)]
    early_receipts: Vec<(Timestamp, EventId, Event)>,
    /// The caps on telling refused customers, and the requests told.
    #[serde(default)]
    tell_budget: super::refusals::TellBudget,
    /// When the announcement is published again.
    #[serde(default)]
    next_announce: Option<Timestamp>,
    /// The global admission and invoice rate windows.
    #[serde(default)]
    global_rate: Vec<Timestamp>,
    #[serde(default)]
    invoice_times: Vec<Timestamp>,
}

/// Version 4: an ended job may be saved as a summary (version 3, which this build reads
/// too, has none). Version 3: relay outputs are saved as one [`RelayCommand`] (version 2: the ledger keeps
/// spent entries with their expiry, forgotten ids expire, and a job holds its built result
/// instead of the task's output).
const VERSION: u32 = 4;
/// The versions this build reads.
const READS: [u32; 2] = [3, VERSION];

impl ProviderSnapshot {
    /// Adds an event for the restored provider to publish first: for a host that stops while
    /// events it was asked to publish have not reached any relay yet (relays down). The
    /// provider considers them published once drained, so without this they would be lost;
    /// publishing one twice is harmless (relays deduplicate by id).
    pub fn push_publish(&mut self, event: Event, relays: Vec<String>) {
        self.outbox
            .push(SavedOutput::Relay(RelayCommand::Publish { event, relays }));
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SavedJob {
    pub(super) request: Event,
    pub(super) unsigned: bool,
    reply: Reply,
    state: JobState,
    price_msat: u64,
    pub(super) bolt11: Option<String>,
    payment_hash: Option<[u8; 32]>,
    payment_feedback: Option<EventId>,
    pub(super) held_result: Option<Event>,
    pub(super) sample: Option<String>,
    result_id: Option<EventId>,
    pub(super) waiting_for: Vec<EventId>,
    pub(super) resolved: Vec<(EventId, String)>,
    deadline: Option<Timestamp>,
    updated_at: Timestamp,
    seq: u64,
    /// Not claimed yet by this process of a fleet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unclaimed: bool,
    /// An ended job kept as a summary: `request` is its hollow event (no tags, no content),
    /// and this is what replies still need (see `ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) summary: Option<Box<super::ended::SavedSummary>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum SavedOutput {
    Relay(RelayCommand),
    /// Rebuilt from the job on restore.
    RunTask(EventId),
    CancelTask(EventId),
    /// Rebuilt from the job on restore.
    ClaimJob(EventId),
    RequestInvoice {
        job: EventId,
        amount_msat: u64,
        description: String,
        expiry_secs: u64,
    },
    Refund(RefundDue),
    Notify(Notification),
}

impl Provider {
    /// The provider's whole state. Clears [`needs_persistence`](Self::needs_persistence).
    pub fn snapshot(&mut self) -> ProviderSnapshot {
        self.dirty = false;
        let mut jobs: Vec<SavedJob> = self.jobs.values().map(|j| save_job(j)).collect();
        jobs.sort_by_key(|j| j.seq);
        let mut snapshot = self.snapshot_meta(|_| true);
        snapshot.jobs = jobs;
        snapshot.ledger = self.ledger.clone();
        snapshot.forgotten = self.forgotten.iter().map(|(t, id)| (*id, *t)).collect();
        snapshot
    }

    /// Everything but the jobs, the ledger and the forgotten ids (those are records of their
    /// own in a [`StoreUpdate`](super::StoreUpdate)), with the outputs `keep` keeps.
    pub(super) fn snapshot_meta(&self, keep: impl Fn(&Output) -> bool) -> ProviderSnapshot {
        let mut rate: Vec<(PublicKey, Vec<Timestamp>)> = self
            .rate
            .iter()
            .map(|(k, v)| (*k, v.iter().copied().collect()))
            .collect();
        rate.sort_by_key(|(k, _)| *k);
        ProviderSnapshot {
            version: VERSION,
            jobs: Vec::new(),
            ledger: ReplayLedger::default(),
            rng: self.rng.state(),
            tombstones: self.tombstones.entries().collect(),
            rate,
            outbox: self
                .outbox
                .iter()
                .filter(|o| keep(o))
                .map(save_output)
                .collect(),
            next_heartbeat: self.next_heartbeat,
            next_announce: self.next_announce,
            global_rate: self.global_rate.iter().copied().collect(),
            invoice_times: self.invoice_times.iter().copied().collect(),
            deletion_refresh_at: self.deletion_refresh_at,
            forgotten: Vec::new(),
            seq: self.seq,
            clock: self.clock,
            seen_wraps: self.seen_wraps.ids().copied().collect(),
            inputs_pushed_at: self.inputs_pushed_at,
            tell_budget: self.tell_budget.clone(),
            early_receipts: self
                .early_receipts
                .iter()
                .map(|e| (e.received_at, e.target, e.receipt.clone()))
                .collect(),
        }
    }

    /// A provider that continues where the one that made `snapshot` was: the same jobs,
    /// ledger, timers and outbox. Give it the same keys and an equivalent config. After a host
    /// crash, call [`resume`](Self::resume) too.
    ///
    /// Randomness: under the default [`SeedSource::OperatingSystem`](crate::rng::SeedSource)
    /// fresh entropy is mixed into the saved RNG state, so nothing drawn before (or after) the
    /// save is drawn again; under a deterministic seed the restored provider continues byte
    /// for byte, which is what reproducible tests compare.
    pub fn restore(
        keys: Keys,
        config: ProviderConfig,
        snapshot: ProviderSnapshot,
    ) -> Result<Self, Error> {
        if !READS.contains(&snapshot.version) {
            return Err(Error::Restore(format!(
                "snapshot version {} (this build reads {READS:?})",
                snapshot.version
            )));
        }
        let rng = DvmRng::restore(snapshot.rng, &config.seed);
        let conversations = crate::nip44::ConversationKeyCache::new(
            keys.secret_key().clone(),
            super::CONVERSATION_CACHE,
        );
        let mut provider = Self {
            conversations,
            tell_budget: snapshot.tell_budget,
            inputs_pushed_at: snapshot.inputs_pushed_at,
            clock: snapshot.clock,
            my_hex: keys.public_key().to_hex(),
            seen_wraps: {
                let mut seen = super::admission::SeenIds::default();
                for id in snapshot.seen_wraps {
                    seen.insert(id);
                }
                seen
            },
            keys,
            config,
            rng,
            jobs: HashMap::new(),
            bindings: HashMap::new(),
            dependents: HashMap::new(),
            ledger: snapshot.ledger,
            tombstones: {
                let mut tombstones = super::cancellation::Tombstones::default();
                for (id, who, at) in snapshot.tombstones {
                    tombstones.insert(id, who, at);
                }
                tombstones
            },
            rate: snapshot
                .rate
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect::<VecDeque<_>>()))
                .collect(),
            rate_pruned_at: None,
            outbox: super::outbox::Outbox::default(),
            changes: super::persist::Changes::default(),
            next_heartbeat: snapshot.next_heartbeat,
            next_announce: snapshot.next_announce,
            deletion_refresh_at: snapshot.deletion_refresh_at,
            timers: BTreeSet::new(),
            terminal: BTreeSet::new(),
            live: 0,
            forgotten_set: snapshot.forgotten.iter().copied().collect(),
            forgotten: snapshot
                .forgotten
                .into_iter()
                .map(|(id, t)| (t, id))
                .collect(),
            unpaid: BTreeSet::new(),
            global_rate: snapshot.global_rate.into_iter().collect(),
            invoice_times: snapshot.invoice_times.into_iter().collect(),
            early_receipts: snapshot
                .early_receipts
                .into_iter()
                .map(|(received_at, target, receipt)| super::EarlyReceipt {
                    received_at,
                    target,
                    receipt,
                })
                .collect(),
            seq: snapshot.seq,
            dirty: false,
            claimed_elsewhere: super::admission::SeenIds::default(),
            signed_by_host: None,
        };
        for saved in snapshot.jobs {
            let job = provider.load_job(saved)?;
            provider.insert_loaded(job);
        }
        let mut ids: Vec<(u64, EventId)> =
            provider.jobs.values().map(|j| (j.seq, j.id())).collect();
        ids.sort();
        for (_, id) in ids {
            provider.index_job(id);
        }
        for saved in snapshot.outbox {
            let output = match saved {
                SavedOutput::Relay(command) => Output::Relay(command),
                SavedOutput::RunTask(job) => match provider.task_request(job) {
                    Some(request) => Output::RunTask(Box::new(request)),
                    None => continue,
                },
                SavedOutput::CancelTask(job) => Output::CancelTask(job),
                SavedOutput::ClaimJob(job) => match provider.jobs.get(&job) {
                    Some(j) => {
                        Output::ClaimJob(Box::new(super::JobRecord::new(save_job(j), Vec::new())))
                    }
                    None => continue,
                },
                SavedOutput::RequestInvoice {
                    job,
                    amount_msat,
                    description,
                    expiry_secs,
                } => Output::RequestInvoice {
                    job,
                    amount_msat,
                    description,
                    expiry_secs,
                },
                SavedOutput::Refund(r) => Output::Refund(r),
                SavedOutput::Notify(n) => Output::Notify(n),
            };
            provider.outbox.push_back(output);
        }
        Ok(provider)
    }
}

impl Provider {
    /// A saved job as it lives in the table (not inserted yet).
    pub(super) fn load_job(&self, saved: SavedJob) -> Result<Job, Error> {
        let summary = saved.summary.is_some();
        let request = if let Some(kept) = saved.summary {
            Ok(kept.into_request(saved.request, saved.unsigned))
        } else if saved.unsigned {
            JobRequest::from_rumor(
                &UnsignedEvent::from(saved.request),
                Some(&self.keys),
                &self.config.registry,
            )
        } else {
            JobRequest::from_verified_event_with(
                &saved.request,
                Some(&self.keys),
                &self.config.registry,
            )
        }
        .map_err(|e| Error::Restore(format!("job request: {e}")))?;
        Ok(Job {
            request,
            reply: saved.reply,
            state: saved.state,
            price_msat: saved.price_msat,
            invoice: match (saved.bolt11, saved.payment_hash, saved.payment_feedback) {
                (Some(bolt11), Some(hash), feedback) => Some(Box::new(super::JobInvoice {
                    invoice: Some((bolt11, hash)),
                    feedback,
                })),
                // A summary keeps the payment hash, not the invoice.
                (None, Some(hash), feedback) => Some(Box::new(super::JobInvoice {
                    invoice: Some((String::new(), hash)),
                    feedback,
                })),
                // Asked to be paid by a zap, with no invoice.
                (None, None, Some(fid)) => Some(Box::new(super::JobInvoice {
                    invoice: None,
                    feedback: Some(fid),
                })),
                _ => None,
            },
            held: saved.held_result.map(|event| {
                Box::new(super::HeldResult {
                    event,
                    sample: saved.sample,
                })
            }),
            result_id: saved.result_id.map(Box::new),
            chain: (!saved.waiting_for.is_empty() || !saved.resolved.is_empty()).then(|| {
                Box::new(super::Chain {
                    waiting_for: saved.waiting_for,
                    resolved: saved.resolved,
                })
            }),
            deadline: saved.deadline,
            updated_at: saved.updated_at,
            seq: saved.seq,
            wake: None,
            unclaimed: saved.unclaimed,
            summary,
        })
    }

    /// Puts a loaded job in the table with its bindings (payment feedback and result ids)
    /// and the jobs it waits for; the caller indexes and schedules it.
    pub(super) fn insert_loaded(&mut self, job: Job) {
        let id = job.id();
        if let Some(fid) = job.payment_feedback() {
            self.bindings.insert(fid, id);
        }
        if let Some(rid) = job.result_id.as_deref() {
            self.bindings.insert(*rid, id);
        }
        if job.state == JobState::WaitingForInputs {
            for dep in job.waiting_for() {
                if !job.resolved().iter().any(|(d, _)| d == dep) {
                    self.dependents.entry(*dep).or_default().push(id);
                }
            }
        }
        self.jobs.insert(id, Box::new(job));
    }
}

/// A job as it is saved.
pub(super) fn save_job(j: &Job) -> SavedJob {
    SavedJob {
        request: j.request.event.clone(),
        unsigned: j.request.unsigned,
        reply: j.reply,
        state: j.state.clone(),
        price_msat: j.price_msat,
        bolt11: j.bolt11().map(str::to_owned),
        payment_hash: j.payment_hash(),
        payment_feedback: j.payment_feedback(),
        held_result: j.held.as_ref().map(|h| h.event.clone()),
        sample: j.held.as_ref().and_then(|h| h.sample.clone()),
        result_id: j.result_id.as_deref().copied(),
        waiting_for: j.waiting_for().to_vec(),
        resolved: j.resolved().to_vec(),
        deadline: j.deadline,
        updated_at: j.updated_at,
        seq: j.seq,
        unclaimed: j.unclaimed,
        summary: j
            .summary
            .then(|| Box::new(super::ended::SavedSummary::of(&j.request))),
    }
}

impl SavedJob {
    pub(super) fn state(&self) -> &JobState {
        &self.state
    }

    pub(super) fn updated_at(&self) -> Timestamp {
        self.updated_at
    }

    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    pub(super) fn customer(&self) -> PublicKey {
        self.request.pubkey
    }
}

/// What [`Provider::adopt`] takes from another process's snapshot.
pub(super) struct Adoptable {
    /// The jobs, in the other process's admission order.
    pub(super) jobs: Vec<SavedJob>,
    /// Spent keys with their expiry.
    pub(super) spent: Vec<(super::SpentKey, Timestamp)>,
    /// The payments of the jobs.
    pub(super) paid: Vec<(EventId, Vec<super::ledger::Entry>)>,
    pub(super) forgotten: Vec<(EventId, Timestamp)>,
    /// Events to publish and refunds due.
    pub(super) outputs: Vec<Output>,
}

impl ProviderSnapshot {
    /// The parts of this snapshot another provider adopts; `Err` for another version.
    pub(super) fn into_adoptable(self) -> Result<Adoptable, Error> {
        if !READS.contains(&self.version) {
            return Err(Error::Restore(format!(
                "snapshot version {} (this build reads {READS:?})",
                self.version
            )));
        }
        let mut jobs = self.jobs;
        jobs.sort_by_key(|j| j.seq);
        let paid = self.ledger.paid_entries().collect();
        let spent = self.ledger.spent_entries().collect();
        let outputs = self
            .outbox
            .into_iter()
            .filter_map(|saved| match saved {
                SavedOutput::Relay(command) => Some(Output::Relay(command)),
                SavedOutput::Refund(r) => Some(Output::Refund(r)),
                _ => None,
            })
            .collect();
        Ok(Adoptable {
            jobs,
            spent,
            paid,
            forgotten: self.forgotten,
            outputs,
        })
    }

    /// A snapshot of records alone, without the meta of a provider (no rate windows, no
    /// timers, nothing to hand out): for [`Provider::adopt`] of the jobs of a process whose
    /// meta record is missing, or for [`Provider::restore`] of a process that stored records
    /// before its first meta (jobs claimed by a life that crashed). Its RNG state is a zero
    /// seed: restored under the default [`SeedSource::OperatingSystem`], fresh entropy is
    /// mixed in and nothing repeats; under a deterministic seed it would start from zero.
    ///
    /// [`SeedSource::OperatingSystem`]: crate::rng::SeedSource::OperatingSystem
    pub fn records_only(
        jobs: impl IntoIterator<Item = super::JobRecord>,
        forgotten: impl IntoIterator<Item = (EventId, Timestamp)>,
        spent: impl IntoIterator<Item = (super::SpentKey, Timestamp)>,
    ) -> ProviderSnapshot {
        let meta = ProviderSnapshot {
            version: VERSION,
            jobs: Vec::new(),
            ledger: ReplayLedger::default(),
            rng: crate::rng::RngState {
                seed: [0; 32],
                position: 0,
            },
            tombstones: Vec::new(),
            rate: Vec::new(),
            outbox: Vec::new(),
            next_heartbeat: None,
            deletion_refresh_at: None,
            forgotten: Vec::new(),
            seq: 0,
            clock: Timestamp::from(0),
            seen_wraps: Vec::new(),
            inputs_pushed_at: None,
            early_receipts: Vec::new(),
            tell_budget: super::refusals::TellBudget::default(),
            next_announce: None,
            global_rate: Vec::new(),
            invoice_times: Vec::new(),
        };
        Self::assemble(meta, jobs, forgotten, spent)
    }

    /// A snapshot made of a store's records: `meta` (the [`StoreUpdate::meta`] last written),
    /// the jobs, the forgotten ids with the moment each may go, and the spent payment keys
    /// with their expiry. What a store's `load` returns, for [`Provider::restore`].
    ///
    /// [`StoreUpdate::meta`]: super::StoreUpdate::meta
    pub fn assemble(
        meta: ProviderSnapshot,
        jobs: impl IntoIterator<Item = super::JobRecord>,
        forgotten: impl IntoIterator<Item = (EventId, Timestamp)>,
        spent: impl IntoIterator<Item = (super::SpentKey, Timestamp)>,
    ) -> ProviderSnapshot {
        let mut snapshot = meta;
        let mut paid = Vec::new();
        let mut saved = Vec::new();
        for record in jobs {
            let (job, payments) = record.into_parts();
            if !payments.is_empty() {
                paid.push((job.request.id, payments));
            }
            saved.push(job);
        }
        saved.sort_by_key(|j| j.seq);
        snapshot.jobs = saved;
        snapshot.ledger = ReplayLedger::from_parts(spent, paid);
        snapshot.forgotten = forgotten.into_iter().collect();
        snapshot
    }

    /// The snapshot as one update: every job, forgotten id and spent key, and the rest as
    /// its meta. To move a snapshot (from [`FileStore`](crate::runtime::FileStore), or a
    /// backup) into an empty store.
    pub fn into_update(self, id: u64) -> super::StoreUpdate {
        let mut changes = Vec::new();
        let mut paid: HashMap<EventId, Vec<super::ledger::Entry>> =
            self.ledger.paid_entries().collect();
        let mut snapshot = self;
        for job in std::mem::take(&mut snapshot.jobs) {
            let payments = paid.remove(&job.request.id).unwrap_or_default();
            let record = super::JobRecord::new(job, payments);
            changes.push(super::StoreChange::Job(Box::new(record)));
        }
        for (job, until) in std::mem::take(&mut snapshot.forgotten) {
            changes.push(super::StoreChange::Forgotten { job, until });
        }
        for (key, expires) in snapshot.ledger.spent_entries() {
            changes.push(super::StoreChange::Spent { key, expires });
        }
        snapshot.ledger = ReplayLedger::default();
        super::StoreUpdate {
            id,
            changes,
            meta: snapshot,
        }
    }
}

fn save_output(output: &Output) -> SavedOutput {
    match output {
        Output::Relay(command) => SavedOutput::Relay(command.clone()),
        Output::RunTask(request) => SavedOutput::RunTask(request.job),
        Output::CancelTask(job) => SavedOutput::CancelTask(*job),
        Output::ClaimJob(record) => SavedOutput::ClaimJob(record.id()),
        Output::RequestInvoice {
            job,
            amount_msat,
            description,
            expiry_secs,
        } => SavedOutput::RequestInvoice {
            job: *job,
            amount_msat: *amount_msat,
            description: description.clone(),
            expiry_secs: *expiry_secs,
        },
        Output::Refund(r) => SavedOutput::Refund(r.clone()),
        Output::Notify(n) => SavedOutput::Notify(n.clone()),
    }
}
