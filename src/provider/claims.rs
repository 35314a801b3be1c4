//! A fleet: several processes with the same keys, the same relays and one database. Each
//! admitted job is claimed first ([`Output::ClaimJob`]); the process that wins keeps it,
//! the others drop it. A process whose lease ran out has its jobs adopted by another
//! ([`Provider::adopt`]).

use std::collections::HashSet;

use nostr::{EventId, Filter, Kind, Timestamp};

use super::{Error, Notification, Output, Provider, ProviderSnapshot, RelayCommand};
use crate::job::JobState;
use crate::nip57::ZAP_RECEIPT_KIND;

/// The most event ids (adopted jobs, their payment requests and results) the subscription to
/// the zap receipts of adopted jobs names; the receipts of jobs beyond it still come through
/// the provider's inbox subscription while it is open.
pub const MAX_ADOPTED_RECEIPT_IDS: usize = 1_000;

impl Provider {
    /// Reports the answer to [`Output::ClaimJob`]: `won` when this process holds the job in
    /// the fleet's store now. A won job goes on (priced, invoiced or run, and recorded by
    /// the next update); a lost one is dropped without a word to anyone (the process that won
    /// answers it), and the same request delivered again is ignored. An answer for a job
    /// that is no longer waiting for its claim (it was deleted meanwhile and dropped) is
    /// ignored.
    pub fn handle_claim(&mut self, now: Timestamp, job: EventId, won: bool) -> Result<(), Error> {
        let now = self.tick(now);
        if !self.jobs.get(&job).is_some_and(|j| j.unclaimed) {
            return Ok(());
        }
        if won {
            if let Some(j) = self.job_mut(&job) {
                j.unclaimed = false;
            }
            self.dirty = true;
            if self
                .jobs
                .get(&job)
                .is_some_and(|j| j.state == JobState::Received)
            {
                self.price_and_proceed(now, job);
            }
            return Ok(());
        }
        self.drop_unclaimed(now, job);
        self.claimed_elsewhere.insert(job);
        self.notify(Notification::JobClaimedElsewhere { job });
        Ok(())
    }

    /// Drops a job whose claim this process lost (or whose record another process's
    /// takeover brings): nothing about it is recorded or sent.
    fn drop_unclaimed(&mut self, now: Timestamp, id: EventId) {
        if self.take_job(&id).is_none() {
            return;
        }
        // Never this process's record: no update may delete or forget it (the store's row,
        // if any, is another process's).
        self.changes.unmark_job(&id);
        self.live_set_changed(now);
        self.dirty = true;
    }

    /// Takes over the jobs of another process of the fleet, whose lease ran out: `snapshot`
    /// holds its records (a store's takeover gives one per process). Every job this provider
    /// does not know yet joins the table as it was and goes on from there (a running task is
    /// started again, an invoice asked again; a terminal job stays until its retention
    /// ends); its payments join the replay ledger, its events still to publish and its refunds
    /// due are handed out. The zap receipts of its live jobs are asked of the relays again
    /// (subscription [`SUB_ADOPTED`](super::SUB_ADOPTED)): one that reached the relays while no
    /// process could count it pays now; one that paid already is a replay. The rest of the snapshot (the other process's RNG, rate windows,
    /// timers) is not taken. Returns how many jobs were taken. The table may exceed
    /// [`Admission::max_jobs`](super::Admission::max_jobs) until terminal jobs leave.
    ///
    /// `Err` ([`Error::Restore`]) for a snapshot of another format version or with a job
    /// request that does not parse; nothing is taken then.
    pub fn adopt(&mut self, now: Timestamp, snapshot: ProviderSnapshot) -> Result<usize, Error> {
        let now = self.tick(now);
        let parts = snapshot.into_adoptable()?;
        // Everything parsed before anything changes: on `Err`, nothing is taken.
        let mut loaded = Vec::new();
        let mut seen = HashSet::new();
        for saved in parts.jobs {
            let id = saved.request.id;
            // Once per id; known here, or done here and forgotten: not taken again. Known
            // here only as a claim not answered yet: the other process's record is the job.
            let known = self.jobs.get(&id).is_some_and(|j| !j.unclaimed)
                || self.forgotten_set.contains_key(&id);
            if known || !seen.insert(id) {
                continue;
            }
            loaded.push(self.load_job(saved)?);
        }
        let adopted = loaded.len();
        // Only the jobs taken now go on from here (not those skipped as known).
        let taken: Vec<EventId> = loaded.iter().map(|j| j.id()).collect();
        for id in &taken {
            if self.jobs.contains_key(id) {
                self.drop_unclaimed(now, *id);
            }
        }
        for mut job in loaded {
            let id = job.id();
            self.seq += 1;
            job.seq = self.seq;
            job.unclaimed = false;
            self.insert_loaded(job);
            self.index_job(id);
            self.changes.job(id);
        }
        for (key, expires) in parts.spent {
            if self.ledger.adopt_key(key, expires) {
                self.changes.spent([key]);
            }
        }
        // A payment of a job taken over stays spent here too (a fleet's store shares the
        // keys; the expiry is this provider's when the snapshot has none).
        let expires = Timestamp::from(
            now.as_secs()
                .saturating_add(self.config.spent_retention_secs),
        );
        for (job, entries) in parts.paid {
            if !self.jobs.contains_key(&job) {
                continue;
            }
            for entry in entries {
                let keys = self.ledger.adopt_payment(job, entry, expires);
                self.changes.spent(keys);
            }
        }
        for (id, until) in parts.forgotten {
            if !self.jobs.contains_key(&id) {
                self.remember_forgotten(now, id, until);
            }
        }
        for output in parts.outputs {
            if matches!(
                output,
                Output::Refund(_) | Output::Relay(RelayCommand::Publish { .. })
            ) {
                self.outbox.push_back(output);
            }
        }
        let mut bound = Vec::new();
        for id in taken {
            // A job whose owner won its claim and died before writing more is as it was
            // claimed: it goes on as a claim just won.
            let claimed_only = self
                .jobs
                .get(&id)
                .is_some_and(|j| j.state == JobState::Received);
            if claimed_only && self.config.auto_accept {
                self.price_and_proceed(now, id);
            } else {
                self.resume_job(now, id);
            }
            if let Some(job) = self.jobs.get(&id).filter(|j| !j.state.is_terminal()) {
                bound.extend(
                    std::iter::once(id)
                        .chain(job.payment_feedback())
                        .chain(job.result_id.as_deref().copied()),
                );
            }
        }
        // Zaps for these jobs that reached this process before it took them (kept a while),
        // and those the relays hold: the dead process may have missed them, or died before it
        // counted them. The ledger refuses any that paid already.
        for id in &bound {
            self.take_early_receipts(now, *id);
        }
        if !bound.is_empty() {
            bound.truncate(MAX_ADOPTED_RECEIPT_IDS);
            self.outbox
                .push_back(Output::Relay(RelayCommand::Subscribe {
                    id: super::SUB_ADOPTED.into(),
                    filter: Filter::new()
                        .kind(Kind::from(ZAP_RECEIPT_KIND))
                        .pubkey(self.keys.public_key())
                        .events(bound),
                }));
        }
        self.live_set_changed(now);
        self.dirty = true;
        Ok(adopted)
    }

    /// Indexes a job just put in the table: live or terminal, unpaid, and its timer.
    pub(super) fn index_job(&mut self, id: EventId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let (seq, updated_at) = (job.seq, job.updated_at);
        if job.state.is_terminal() {
            self.terminal.insert((updated_at, seq, id));
        } else {
            self.live += 1;
        }
        if matches!(job.state, JobState::Invoicing | JobState::AwaitingPayment) {
            self.unpaid.insert((seq, id));
        }
        self.schedule(id);
    }

    /// Re-issues what a job had in flight when its host stopped: its claim, its task, or
    /// its invoice.
    pub(super) fn resume_job(&mut self, now: Timestamp, id: EventId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.unclaimed {
            let record = super::JobRecord::new(super::snapshot::save_job(job), Vec::new());
            self.outbox
                .push_back_early(Output::ClaimJob(Box::new(record)));
            return;
        }
        match job.state {
            JobState::Running => {
                if let Some(request) = self.task_request(id) {
                    self.outbox.push_back(Output::RunTask(Box::new(request)));
                }
            }
            JobState::Invoicing | JobState::InvoicingResult => {
                let price = job.price_msat;
                self.ask_invoice(now, id, price);
            }
            _ => {}
        }
    }
}
