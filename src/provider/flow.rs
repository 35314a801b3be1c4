//! The provider's internal steps: admission, payments, replies, timers, cancellation.

use nostr::{Event, EventId, Filter, Kind, PublicKey, Tag, Timestamp, UnsignedEvent};

use super::{
    tags_size, Error, Job, Notification, Output, Provider, RejectReason, Reply, SUB_DELETIONS,
    SUB_INPUTS_PREFIX,
};
use crate::job::JobState;
use crate::nip59;
use crate::nip90::{FeedbackStatus, JobFeedback, JobResult};

impl Provider {
    // ---- bookkeeping ---------------------------------------------------------------------

    pub(super) fn notify(&mut self, note: Notification) {
        self.outbox.push_back(Output::Notify(note));
    }

    pub(super) fn refuse_event(&mut self, event: EventId, reason: &str) {
        self.notify(Notification::EventRefused {
            event,
            reason: reason.to_owned(),
        });
    }

    /// Checks that `job` exists and is in `expected`; the error names the state it is in.
    pub(super) fn expect_state(&self, job: EventId, expected: JobState) -> Result<(), Error> {
        let state = &self.jobs.get(&job).ok_or(Error::UnknownJob(job))?.state;
        if *state != expected {
            return Err(Error::WrongState {
                job,
                state: state.name(),
            });
        }
        Ok(())
    }

    /// Whether this request id is, or was, a job.
    pub(super) fn known(&self, id: &EventId) -> bool {
        self.jobs.contains_key(id) || self.forgotten_set.contains_key(id)
    }

    /// Requests naming providers in `p` tags are for them; untargeted ones are for anyone.
    pub(super) fn addressed_to_us(&self, event: &Event) -> bool {
        let me = self.keys.public_key();
        let mut targeted = false;
        for tag in event.tags.iter() {
            if let [name, value, ..] = tag.as_slice() {
                if name == "p" {
                    targeted = true;
                    if PublicKey::from_hex(value).is_ok_and(|p| p == me) {
                        return true;
                    }
                }
            }
        }
        !targeted
    }

    pub(super) fn set_state(
        &mut self,
        now: Timestamp,
        id: EventId,
        state: JobState,
        timeout_secs: Option<u64>,
    ) {
        if let Some(job) = self.jobs.get_mut(&id) {
            if job.state.is_terminal() {
                return;
            }
            let unpaid = matches!(state, JobState::Invoicing | JobState::AwaitingPayment);
            job.state = state;
            job.deadline = timeout_secs.map(|t| Timestamp::from(now.as_secs().saturating_add(t)));
            job.updated_at = now;
            let key = (job.seq, id);
            if unpaid {
                self.unpaid.insert(key);
            } else {
                self.unpaid.remove(&key);
            }
            self.dirty = true;
        }
        self.schedule(id);
    }

    /// Makes room for one more unpaid job: the oldest unpaid jobs expire, with `error`
    /// feedback, while the unpaid cap is reached.
    pub(super) fn make_unpaid_room(&mut self, now: Timestamp) {
        let cap = self.config.admission.max_unpaid_jobs.max(1);
        while self.unpaid.len() >= cap {
            let Some(&(_, oldest)) = self.unpaid.first() else {
                return;
            };
            let _ = self.send_feedback(
                now,
                oldest,
                FeedbackStatus::Error,
                Some("too many unpaid jobs: this one expired before it was paid".into()),
                None,
                false,
            );
            self.finish(now, oldest, JobState::Expired);
            self.notify(Notification::JobExpired { job: oldest });
        }
    }

    /// Counts one invoice against the global invoice rate; `false` when the rate is reached.
    pub(super) fn take_invoice_slot(&mut self, now: Timestamp) -> bool {
        match self.config.admission.invoice_rate_limit {
            Some(limit) => take_slot(&mut self.invoice_times, now, limit),
            None => true,
        }
    }

    /// Puts a job in the timer index at its next wake-up (or takes it out).
    pub(super) fn schedule(&mut self, id: EventId) {
        let retention = self.config.retention_secs;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let next = job.wake_at(retention);
        if job.wake == next {
            return;
        }
        if let Some(t) = job.wake {
            self.timers.remove(&(t, job.seq, id));
        }
        if let Some(t) = next {
            self.timers.insert((t, job.seq, id));
        }
        job.wake = next;
    }

    /// The set of live jobs changed: refresh the deletion subscription soon.
    pub(super) fn live_set_changed(&mut self, now: Timestamp) {
        if self.deletion_refresh_at.is_none() {
            self.deletion_refresh_at = Some(Timestamp::from(
                now.as_secs().saturating_add(super::DELETION_REFRESH_SECS),
            ));
        }
    }

    /// Ends a job in a terminal state and drops what it no longer needs.
    pub(super) fn finish(&mut self, now: Timestamp, id: EventId, state: JobState) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.state.is_terminal() {
            return;
        }
        let was_waiting = job.state == JobState::WaitingForInputs;
        job.state = state;
        job.deadline = None;
        job.updated_at = now;
        job.held = None;
        let seq = job.seq;
        self.unpaid.remove(&(seq, id));
        let deps = std::mem::take(&mut job.waiting_for);
        self.live = self.live.saturating_sub(1);
        self.terminal.insert((now, seq, id));
        self.schedule(id);
        if was_waiting {
            self.outbox.push_back(Output::Unsubscribe(format!(
                "{SUB_INPUTS_PREFIX}{}",
                id.to_hex()
            )));
        }
        for dep in deps {
            if let Some(list) = self.dependents.get_mut(&dep) {
                list.retain(|j| *j != id);
                if list.is_empty() {
                    self.dependents.remove(&dep);
                }
            }
        }
        self.dirty = true;
        self.live_set_changed(now);
    }

    pub(super) fn fail(&mut self, now: Timestamp, id: EventId, reason: String) {
        let _ = self.send_feedback(
            now,
            id,
            FeedbackStatus::Error,
            Some(reason.clone()),
            None,
            false,
        );
        self.finish(
            now,
            id,
            JobState::Failed {
                reason: reason.clone(),
            },
        );
        self.notify(Notification::JobFailed { job: id, reason });
    }

    pub(super) fn cancel_job(&mut self, now: Timestamp, id: EventId) {
        if self
            .jobs
            .get(&id)
            .is_some_and(|j| j.state == JobState::Running)
        {
            self.outbox.push_back(Output::CancelTask(id));
        }
        self.finish(now, id, JobState::Cancelled);
        self.notify(Notification::JobCancelled { job: id });
    }

    // ---- admission -----------------------------------------------------------------------

    /// Admission checks on what the event claims, cheapest first, before its signature is
    /// verified. They change no state: a forged event claiming someone's key must not use up
    /// that customer's rate limit ([`admit_rate`](Self::admit_rate) runs after verification).
    pub(super) fn admit(&self, event: &Event) -> Result<(), RejectReason> {
        let size = event.content.len() + tags_size(event.tags.iter());
        self.admit_static(&event.pubkey, size)?;
        let min_pow = self.config.admission.min_pow;
        if min_pow > 0 && !crate::nip13::meets_pow(event, min_pow) {
            return Err(RejectReason::InsufficientPow {
                difficulty: crate::nip13::difficulty(&event.id),
            });
        }
        Ok(())
    }

    /// Allow and deny lists, size, and the live-job cap.
    pub(super) fn admit_static(&self, author: &PublicKey, size: usize) -> Result<(), RejectReason> {
        let admission = &self.config.admission;
        if admission.deny.contains(author)
            || admission
                .allow
                .as_ref()
                .is_some_and(|a| !a.contains(author))
        {
            return Err(RejectReason::NotAllowed);
        }
        if size > admission.max_request_bytes {
            return Err(RejectReason::TooLarge { bytes: size });
        }
        if self.live >= admission.max_live_jobs {
            return Err(RejectReason::AtCapacity);
        }
        Ok(())
    }

    /// The per-customer and global rate limits, for a request whose author is proven;
    /// counts it.
    pub(super) fn admit_rate(
        &mut self,
        now: Timestamp,
        author: &PublicKey,
    ) -> Result<(), RejectReason> {
        if let Some(limit) = self.config.admission.global_rate_limit {
            let window_start = now.as_secs().saturating_sub(limit.window_secs);
            while self
                .global_rate
                .front()
                .is_some_and(|t| t.as_secs() <= window_start)
            {
                self.global_rate.pop_front();
            }
            if self.global_rate.len() >= limit.max_requests as usize {
                return Err(RejectReason::RateLimited);
            }
        }
        if let Some(limit) = self.config.admission.rate_limit {
            let window_start = now.as_secs().saturating_sub(limit.window_secs);
            let times = self.rate.entry(*author).or_default();
            while times.front().is_some_and(|t| t.as_secs() <= window_start) {
                times.pop_front();
            }
            if times.len() >= limit.max_requests as usize {
                return Err(RejectReason::RateLimited);
            }
            times.push_back(now);
        }
        if self.config.admission.global_rate_limit.is_some() {
            self.global_rate.push_back(now);
        }
        Ok(())
    }

    pub(super) fn prune_rate(&mut self, now: Timestamp) {
        let Some(limit) = self.config.admission.rate_limit else {
            return;
        };
        let window_start = now.as_secs().saturating_sub(limit.window_secs);
        self.rate.retain(|_, times| {
            while times.front().is_some_and(|t| t.as_secs() <= window_start) {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    /// Keeps the job table within `max_jobs` by dropping the oldest terminal jobs; `false`
    /// when no job can be dropped (none is terminal, or the memory of dropped ids is full of
    /// ids whose requests are not stale yet).
    pub(super) fn make_room(&mut self, now: Timestamp) -> bool {
        let max = self.config.admission.max_jobs.max(1);
        while self.jobs.len() >= max {
            let Some(&(_, _, oldest)) = self.terminal.first() else {
                return false;
            };
            if self.forgotten.len() >= max {
                self.expire_forgotten(now);
                if self.forgotten.len() >= max {
                    return false;
                }
            }
            self.forget_job(now, &oldest);
        }
        true
    }

    pub(super) fn forget_job(&mut self, now: Timestamp, id: &EventId) {
        if let Some(job) = self.jobs.remove(id) {
            if let Some(fid) = job.payment_feedback() {
                self.bindings.remove(&fid);
            }
            if let Some(rid) = job.result_id {
                self.bindings.remove(&rid);
            }
            if let Some(t) = job.wake {
                self.timers.remove(&(t, job.seq, *id));
            }
            if job.state.is_terminal() {
                self.terminal.remove(&(job.updated_at, job.seq, *id));
            } else {
                self.live = self.live.saturating_sub(1);
            }
            self.unpaid.remove(&(job.seq, *id));
            // Its payments stay spent until their own expiry.
            self.ledger.release_job(id);
            let stale_at = Timestamp::from(
                job.request
                    .created_at
                    .as_secs()
                    .saturating_add(self.config.retention_secs)
                    .saturating_add(1),
            );
            self.remember_forgotten(now, *id, stale_at);
            self.dirty = true;
        }
    }

    /// Remembers a dropped job's id until `stale_at`, when the stale check refuses its
    /// request. Never drops an id early: `make_room` refuses new jobs rather than evict into a
    /// memory of `max_jobs` ids; a job whose retention ran out adds an id that lives at most
    /// `max_future_skew_secs` more, so the memory stays below twice `max_jobs`.
    pub(super) fn remember_forgotten(&mut self, now: Timestamp, id: EventId, stale_at: Timestamp) {
        if stale_at <= now {
            return;
        }
        self.expire_forgotten(now);
        if let Some(old) = self.forgotten_set.insert(id, stale_at) {
            self.forgotten.remove(&(old, id));
        }
        self.forgotten.insert((stale_at, id));
    }

    /// Drops the remembered ids whose requests are stale at `now`; whether any went.
    pub(super) fn expire_forgotten(&mut self, now: Timestamp) -> bool {
        let mut any = false;
        while let Some(&(t, id)) = self.forgotten.first() {
            if t > now {
                break;
            }
            self.forgotten.remove(&(t, id));
            self.forgotten_set.remove(&id);
            any = true;
        }
        any
    }

    // ---- replies -------------------------------------------------------------------------

    /// Builds, signs and publishes feedback on a job in its reply scheme; returns the id the
    /// customer sees (for a gift-wrapped job, the rumor's).
    pub(super) fn send_feedback(
        &mut self,
        now: Timestamp,
        id: EventId,
        status: FeedbackStatus,
        extra: Option<String>,
        content: Option<String>,
        with_amount: bool,
    ) -> Result<EventId, Error> {
        let job = self.jobs.get(&id).ok_or(Error::UnknownJob(id))?;
        let mut builder = JobFeedback::builder(&job.request, status);
        if let Some(extra) = extra {
            builder = builder.extra_info(extra);
        }
        if let Some(content) = content {
            builder = builder.content(content);
        }
        if with_amount {
            builder = builder.amount(job.price_msat, job.bolt11().map(str::to_owned));
        }
        let event = builder
            .sign(&self.keys, now, &mut self.rng)
            .map_err(|e| Error::Build(e.to_string()))?;
        self.publish_reply(now, id, event)
    }

    /// Publishes a signed reply: as it is, or gift-wrapped to the customer.
    pub(super) fn publish_reply(
        &mut self,
        now: Timestamp,
        id: EventId,
        event: Event,
    ) -> Result<EventId, Error> {
        let (event, seen_id) = self.seal_reply(now, id, event)?;
        let relays = self.job_relays(id);
        self.outbox.push_back(Output::Publish { event, relays });
        self.dirty = true;
        Ok(seen_id)
    }

    /// A signed reply in the job's reply scheme (gift-wrapped to the customer when the
    /// request was), and its id as the customer sees it.
    pub(super) fn seal_reply(
        &mut self,
        now: Timestamp,
        id: EventId,
        event: Event,
    ) -> Result<(Event, EventId), Error> {
        let job = self.jobs.get(&id).ok_or(Error::UnknownJob(id))?;
        let seen_id = event.id;
        let event = match job.reply {
            Reply::Direct => event,
            Reply::GiftWrap => {
                let customer = job.customer();
                let rumor = UnsignedEvent::from(event);
                nip59::gift_wrap(&self.keys, &customer, rumor, now, &mut self.rng)
                    .map_err(|e| Error::Build(e.to_string()))?
            }
        };
        Ok((event, seen_id))
    }

    /// Where a job's replies go: the request's relays, then the provider's own.
    pub(super) fn job_relays(&self, id: EventId) -> Vec<String> {
        self.jobs
            .get(&id)
            .map(|job| self.reply_relays(job))
            .unwrap_or_else(|| self.config.relays.clone())
    }

    fn reply_relays(&self, job: &Job) -> Vec<String> {
        let mut relays = job.request.relays.clone();
        for r in &self.config.relays {
            if !relays.contains(r) {
                relays.push(r.clone());
            }
        }
        relays
    }

    // ---- cancellation and chaining ---------------------------------------------------------

    pub(super) fn on_deletion(&mut self, now: Timestamp, deletion: Event) {
        if !crate::nip01::verify(&deletion) {
            self.refuse_event(deletion.id, "invalid id or signature");
            return;
        }
        for tag in deletion.tags.iter() {
            let [name, value, ..] = tag.as_slice() else {
                continue;
            };
            if name != "e" {
                continue;
            }
            let Ok(target) = EventId::from_hex(value) else {
                continue;
            };
            match self.jobs.get(&target) {
                Some(job) if job.customer() == deletion.pubkey => {
                    if !job.state.is_terminal() {
                        self.cancel_job(now, target);
                    }
                }
                Some(_) => {
                    self.refuse_event(deletion.id, "deletion by someone else than the author")
                }
                None => {
                    // The request may come later (relays do not order): remember, bounded.
                    const MAX_TOMBSTONES: usize = 10_000;
                    if self.tombstones.len() >= MAX_TOMBSTONES {
                        if let Some(oldest) = self
                            .tombstones
                            .iter()
                            .min_by_key(|(_, (_, at))| *at)
                            .map(|(id, _)| *id)
                        {
                            self.tombstones.remove(&oldest);
                        }
                    }
                    self.tombstones.insert(target, (deletion.pubkey, now));
                    self.dirty = true;
                }
            }
        }
    }

    /// A result event: it may be the input a chained job waits for.
    pub(super) fn on_result_event(&mut self, now: Timestamp, event: Event) {
        let mut dep = None;
        for tag in event.tags.iter() {
            if let [name, value, ..] = tag.as_slice() {
                if name == "e" {
                    dep = EventId::from_hex(value)
                        .ok()
                        .filter(|e| self.dependents.contains_key(e));
                    if dep.is_some() {
                        break;
                    }
                }
            }
        }
        let Some(dep) = dep else { return };
        let result = match JobResult::from_event_with(&event, None, &self.config.registry) {
            Ok(r) => r,
            Err(e) => {
                self.refuse_event(event.id, &format!("input result: {e}"));
                return;
            }
        };
        if result.encrypted.is_some() {
            self.refuse_event(event.id, "input result is encrypted to its customer");
            return;
        }
        let waiting = self.dependents.get(&dep).cloned().unwrap_or_default();
        for id in waiting {
            let ready = {
                let Some(job) = self.jobs.get_mut(&id) else {
                    continue;
                };
                if job.state != JobState::WaitingForInputs
                    || job.resolved.iter().any(|(d, _)| *d == dep)
                {
                    continue;
                }
                job.resolved.push((dep, result.content.clone()));
                job.waiting_for
                    .iter()
                    .all(|d| job.resolved.iter().any(|(r, _)| r == d))
            };
            self.dirty = true;
            if ready {
                if let Some(list) = self.dependents.get_mut(&dep) {
                    list.retain(|j| *j != id);
                }
                self.outbox.push_back(Output::Unsubscribe(format!(
                    "{SUB_INPUTS_PREFIX}{}",
                    id.to_hex()
                )));
                self.proceed(now, id);
            }
        }
        if self.dependents.get(&dep).is_some_and(|l| l.is_empty()) {
            self.dependents.remove(&dep);
        }
    }

    pub(super) fn subscribe_inputs(&mut self, id: EventId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let missing: Vec<EventId> = job
            .waiting_for
            .iter()
            .filter(|d| !job.resolved.iter().any(|(r, _)| r == *d))
            .copied()
            .collect();
        self.outbox.push_back(Output::Subscribe {
            id: format!("{SUB_INPUTS_PREFIX}{}", id.to_hex()),
            filter: Filter::new().events(missing),
        });
    }

    pub(super) fn push_deletion_filter(&mut self) {
        let mut live: Vec<(u64, EventId)> = self
            .jobs
            .values()
            .filter(|j| !j.state.is_terminal())
            .map(|j| (j.seq, j.id()))
            .collect();
        live.sort();
        if live.is_empty() {
            self.outbox
                .push_back(Output::Unsubscribe(SUB_DELETIONS.into()));
        } else {
            self.outbox.push_back(Output::Subscribe {
                id: SUB_DELETIONS.into(),
                filter: Filter::new()
                    .kind(Kind::EventDeletion)
                    .events(live.into_iter().map(|(_, id)| id)),
            });
        }
    }

    // ---- timers ----------------------------------------------------------------------------

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
            self.outbox.push_back(Output::Publish { event, relays });
        }
        self.next_heartbeat = Some(Timestamp::from(
            now.as_secs().saturating_add(heartbeat.interval_secs.max(1)),
        ));
        self.dirty = true;
    }
}

/// Counts one event at `now` in a sliding window of `limit`; `false` (nothing counted) when
/// the window is full.
pub(super) fn take_slot(
    times: &mut std::collections::VecDeque<Timestamp>,
    now: Timestamp,
    limit: super::RateLimit,
) -> bool {
    let window_start = now.as_secs().saturating_sub(limit.window_secs);
    while times.front().is_some_and(|t| t.as_secs() <= window_start) {
        times.pop_front();
    }
    if times.len() >= limit.max_requests as usize {
        return false;
    }
    times.push_back(now);
    true
}
