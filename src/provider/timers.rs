//! Timers: payment windows, run deadlines, input waits, request expirations, the pruning of
//! terminal jobs, and the heartbeat.

use crate::relay::RelayCommand;
use nostr::{EventId, Tag, Timestamp, UnsignedEvent};

use super::{Notification, Output, Provider};
use crate::job::JobState;
use crate::nip90::FeedbackStatus;

impl Provider {
    /// Everything due at `now`: the jobs' timers, the deletion refresh, the heartbeat, and
    /// the expiry of rate windows, spent payments and forgotten ids.
    pub(super) fn on_timeout(&mut self, now: Timestamp) {
        let mut due = Vec::new();
        while let Some(&(t, seq, id)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, seq, id));
            if let Some(job) = self.job_mut(&id) {
                job.wake = None;
            }
            due.push(id);
        }
        for id in due {
            self.on_job_timer(now, id);
            self.schedule(id);
        }
        if self.deletion_refresh_at.is_some_and(|t| t <= now) {
            self.deletion_refresh_at = None;
            self.push_deletion_filter();
            self.inputs_pushed_at = Some(now);
            self.push_inputs_filter();
            self.dirty = true;
        }
        if self.next_announce.is_some_and(|at| at <= now) {
            // Relays drop old replaceable events and clients look for fresh ones.
            self.next_announce = None;
            let _ = self.announce_at(now);
        }
        if let Some(at) = self.next_heartbeat {
            if at <= now {
                self.publish_heartbeat(now);
            }
        }
        self.prune_rate(now);
        let expired = self.ledger.expire_keys(now);
        if !expired.is_empty() {
            self.changes.spent(expired);
            self.dirty = true;
        }
        if self.expire_forgotten(now) {
            self.dirty = true;
        }
    }

    pub(super) fn on_job_timer(&mut self, now: Timestamp, id: EventId) {
        let retention = self.config.retention_secs;
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.state.is_terminal() {
            if job.updated_at.as_secs().saturating_add(retention) <= now.as_secs() {
                self.forget_job(now, &id);
            }
            return;
        }
        if job.request.expiration.is_some_and(|e| e <= now) {
            if job.state == JobState::Running {
                self.outbox.push_back(Output::CancelTask(id));
            }
            self.finish(now, id, JobState::Expired);
            self.notify(Notification::JobExpired { job: id });
            return;
        }
        if job.deadline.is_none_or(|d| d > now) {
            return;
        }
        match job.state {
            JobState::AwaitingPayment | JobState::AwaitingPaymentForResult => {
                // Tell the customer: a payment made after this would not count.
                let _ = self.send_feedback(
                    now,
                    id,
                    FeedbackStatus::Error,
                    Some("the payment window closed unpaid".into()),
                    None,
                    false,
                );
                self.finish(now, id, JobState::Expired);
                self.notify(Notification::JobExpired { job: id });
            }
            JobState::Running => {
                self.outbox.push_back(Output::CancelTask(id));
                self.fail(now, id, "the task ran out of time".into());
            }
            JobState::WaitingForInputs => {
                self.fail(now, id, "an input job produced no result in time".into());
            }
            JobState::Invoicing => {
                self.fail(now, id, "no invoice could be made".into());
            }
            JobState::InvoicingResult => {
                self.no_invoice(
                    now,
                    id,
                    "the Lightning backend did not answer in time".into(),
                );
            }
            JobState::Received => {
                // The host did not accept or reject it in time.
                let _ = self.send_feedback(
                    now,
                    id,
                    FeedbackStatus::Error,
                    Some("the job was not accepted in time".into()),
                    None,
                    false,
                );
                self.finish(now, id, JobState::Expired);
                self.notify(Notification::JobExpired { job: id });
            }
            _ => {}
        }
    }

    pub(super) fn publish_heartbeat(&mut self, now: Timestamp) {
        let Some(heartbeat) = self.config.heartbeat.clone() else {
            self.next_heartbeat = None;
            return;
        };
        let tags: Vec<Tag> = self
            .config
            .kinds
            .iter()
            .filter_map(|k| Tag::parse(["k".to_owned(), k.as_u16().to_string()]).ok())
            .collect();
        let unsigned = UnsignedEvent::new(self.keys.public_key(), now, heartbeat.kind, tags, "");
        if let Ok(event) = unsigned.sign_with_ctx(nostr::SECP256K1, &mut self.rng, &self.keys) {
            let relays = self.config.relays.clone();
            self.outbox
                .push_back(Output::Relay(RelayCommand::Publish { event, relays }));
        }
        self.next_heartbeat = Some(Timestamp::from(
            now.as_secs().saturating_add(heartbeat.interval_secs.max(1)),
        ));
        self.dirty = true;
    }
}
