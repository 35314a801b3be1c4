//! Admission: every check a request passes before it becomes a job, cheapest first, and the
//! bookkeeping that bounds the job table (dropping terminal jobs, remembering their ids).
//!
//! The order, top to bottom: the kind and the id already known; addressed to us; allow/deny
//! lists, size, live-job cap and proof of work (all on what the event claims, before any
//! curve math); the signature; the rate limits (counted only for proven authors); parsing and
//! decryption; expiration, staleness and the future skew; room in the table; the price and
//! the bid.

use std::collections::{HashSet, VecDeque};

use nostr::{Event, EventId, PublicKey, Timestamp};

use super::refusals::Refused;
use super::{round_up, tags_size, Job, Notification, Output, Provider, RejectReason, Reply};
use crate::job::JobState;
use crate::nip59;
use crate::nip90::{InputType, JobRequest};
use crate::task::Quote;

impl Provider {
    pub(super) fn on_request_event(&mut self, now: Timestamp, event: Event) {
        // Known ids and requests for other providers cost a lookup and a hex compare.
        if self.known(&event.id) || !self.addressed_to_us(&event) {
            return;
        }
        // What the event claims, before any curve math.
        if let Err(reason) = self
            .admit(&event)
            .and_then(|()| {
                let expiration = crate::nip40::expiration(&event);
                self.admit_dates(now, event.created_at, expiration)
            })
            .and_then(|()| self.check_rate(now, &event.pubkey))
        {
            let refused = Refused {
                id: event.id,
                author: event.pubkey,
                kind: event.kind,
                verify: Some(&event),
                wrapped: false,
                names_us: self.tags_us(&event),
            };
            self.tell_refusal(now, refused, &reason);
            self.notify(Notification::JobRejected {
                job: event.id,
                reason,
            });
            return;
        }
        if !self.authentic(&event) {
            self.refuse_event(event.id, "invalid id or signature");
            return;
        }
        let parsed = JobRequest::from_verified_event_cached(
            &event,
            &mut self.conversations,
            &self.config.registry,
        );
        let names_us = self.tags_us(&event);
        self.on_request(
            now,
            parsed,
            event.id,
            event.pubkey,
            Reply::Direct,
            (event.kind, names_us),
        );
    }

    /// A gift wrap: the same wrap from five relays is opened once, and a wrap is opened only
    /// when it names this provider, is no larger than a request the provider would take could
    /// make it, and carries the proof of work asked of requests (on the wrap's id, as NIP-59
    /// suggests); all of that before any ECDH.
    ///
    /// A wrap's id counts as seen only once the wrap proved authentic (its id and signature):
    /// a copy with a broken signature (or content that does not match its id), delivered
    /// first by a hostile relay, is refused and forgotten, so the real wrap is still opened.
    pub(super) fn on_gift_wrap(&mut self, now: Timestamp, wrap: Event) {
        if !self.seen_wraps.insert(wrap.id) {
            return;
        }
        self.dirty = true;
        if !self.tags_us(&wrap) {
            self.seen_wraps.remove(&wrap.id);
            self.refuse_event(wrap.id, "gift wrap for someone else");
            return;
        }
        let max = self.max_wrap_content();
        if wrap.content.len() > max {
            self.seen_wraps.remove(&wrap.id);
            self.notify(Notification::JobRejected {
                job: wrap.id,
                reason: RejectReason::TooLarge {
                    bytes: wrap.content.len(),
                },
            });
            return;
        }
        let min_pow = self.config.admission.min_pow;
        if min_pow > 0 && !crate::nip13::meets_pow(&wrap, min_pow) {
            self.seen_wraps.remove(&wrap.id);
            self.notify(Notification::JobRejected {
                job: wrap.id,
                reason: RejectReason::InsufficientPow {
                    difficulty: crate::nip13::difficulty(&wrap.id),
                },
            });
            return;
        }
        // A wrap the host vouched for (`handle_verified_event`) has its id checked only.
        let options = nip59::UnwrapOptions::new()
            .wrap_signature_checked(self.signed_by_host == Some(wrap.id));
        let gift = match nip59::unwrap_with(&self.keys, &wrap, &options) {
            Ok(gift) => gift,
            Err(e) => {
                if matches!(
                    e,
                    nip59::Error::InvalidWrap(_) | nip59::Error::NotAGiftWrap(_)
                ) {
                    // Not the wrap its id names: the real one may still come.
                    self.seen_wraps.remove(&wrap.id);
                }
                self.refuse_event(wrap.id, &format!("gift wrap: {e}"));
                return;
            }
        };
        let rumor = gift.rumor;
        let Some(id) = rumor.id else { return };
        if !self.config.serves(rumor.kind) || self.known(&id) {
            return;
        }
        let size = rumor.content.len() + tags_size(rumor.tags.iter());
        let expiration = crate::nip40::expiration_in(rumor.tags.iter());
        let admitted = self
            .admit_static(&rumor.pubkey, size)
            .and_then(|()| self.admit_dates(now, rumor.created_at, expiration))
            .and_then(|()| self.check_rate(now, &rumor.pubkey));
        if let Err(reason) = admitted {
            if matches!(reason, RejectReason::AtCapacity | RejectReason::RateLimited) {
                // Refused for now only: a later delivery of the same wrap may be taken.
                self.seen_wraps.remove(&wrap.id);
            }
            let refused = Refused {
                id,
                author: rumor.pubkey,
                kind: rumor.kind,
                verify: None,
                wrapped: true,
                names_us: true,
            };
            self.tell_refusal(now, refused, &reason);
            self.notify(Notification::JobRejected { job: id, reason });
            return;
        }
        let parsed = JobRequest::from_rumor(&rumor, Some(&self.keys), &self.config.registry);
        self.on_request(
            now,
            parsed,
            id,
            rumor.pubkey,
            Reply::GiftWrap,
            (rumor.kind, true),
        );
    }

    /// A proven request refused after parsing: told (see `refusals`), then notified.
    fn refuse_request(
        &mut self,
        now: Timestamp,
        id: EventId,
        author: PublicKey,
        reply: Reply,
        (reason, kind, names_us): (RejectReason, nostr::Kind, bool),
    ) {
        let refused = Refused {
            id,
            author,
            kind,
            verify: None,
            wrapped: reply == Reply::GiftWrap,
            names_us,
        };
        self.tell_refusal(now, refused, &reason);
        self.notify(Notification::JobRejected { job: id, reason });
    }

    /// The largest wrap content a request of `max_request_bytes` can make: the rumor's JSON
    /// (content and tag values at most doubled by escaping, plus the event's fixed fields),
    /// NIP-44 encrypted into the seal, whose JSON is NIP-44 encrypted into the wrap: about
    /// 1.8 times the request, plus a fixed overhead.
    pub(super) fn max_wrap_content(&self) -> usize {
        /// The JSON of an event besides its content and tags: id, pubkey, sig, created_at,
        /// kind, the keys and punctuation, with room to spare.
        const EVENT_OVERHEAD: usize = 1_024;
        let rumor = self
            .config
            .admission
            .max_request_bytes
            .saturating_mul(2)
            .saturating_add(EVENT_OVERHEAD);
        let seal = crate::nip44::max_payload_len(rumor).saturating_add(EVENT_OVERHEAD);
        crate::nip44::max_payload_len(seal)
    }

    /// Whether a `p` tag names this provider (compared as hex, before any curve math).
    pub(super) fn tags_us(&self, event: &Event) -> bool {
        event.tags.iter().any(|tag| match tag.as_slice() {
            [name, value, ..] => name == "p" && value.eq_ignore_ascii_case(&self.my_hex),
            _ => false,
        })
    }

    /// The date checks: a request that expired (NIP-40; a malformed expiration counts as
    /// expired, as [`nip40::is_expired`](crate::nip40::is_expired) reads it), older than the
    /// retention window (its job may have been done and dropped: refuse it rather than run
    /// it twice), or dated more than `max_future_skew_secs` ahead (it would never turn stale).
    /// From the raw fields alone, before any signature check.
    pub(super) fn admit_dates(
        &self,
        now: Timestamp,
        created_at: Timestamp,
        expiration: Result<Option<Timestamp>, crate::nip40::Error>,
    ) -> Result<(), RejectReason> {
        match expiration {
            Ok(Some(at)) if at <= now => return Err(RejectReason::Expired),
            Err(_) => return Err(RejectReason::Expired),
            _ => {}
        }
        let created = created_at.as_secs();
        if created.saturating_add(self.config.retention_secs) < now.as_secs() {
            return Err(RejectReason::Stale);
        }
        if created
            > now
                .as_secs()
                .saturating_add(self.config.max_future_skew_secs)
        {
            return Err(RejectReason::FutureDated);
        }
        Ok(())
    }

    pub(super) fn on_request(
        &mut self,
        now: Timestamp,
        parsed: Result<JobRequest, crate::nip90::ParseError>,
        id: EventId,
        author: PublicKey,
        reply: Reply,
        (kind, names_us): (nostr::Kind, bool),
    ) {
        let refused = |reason: &RejectReason| (reason.clone(), kind, names_us);
        let mut request = match parsed {
            Ok(r) => r,
            Err(e) => {
                let reason = RejectReason::Malformed(e.to_string());
                self.refuse_request(now, id, author, reply, refused(&reason));
                return;
            }
        };
        if self.tombstones.contains(&id, &author) {
            // Its author deleted it before it reached us.
            return;
        }
        if request.encrypted.is_some_and(|e| !e.decrypted) {
            let reason = RejectReason::Malformed("encrypted to another key".into());
            self.refuse_request(now, id, author, reply, refused(&reason));
            return;
        }
        // Expired, stale and future-dated requests were refused before this, from the raw
        // event's fields (`admit_time`, `admit_dates`). An expiration further ahead than any
        // job lives is clamped, so no wake-up time derived from it can overflow a host.
        if let Some(expiration) = request.expiration {
            let horizon = now.as_secs().saturating_add(super::MAX_EXPIRATION_SECS);
            request.expiration = Some(Timestamp::from(expiration.as_secs().min(horizon)));
        }
        let waiting_for: Vec<EventId> = request
            .inputs
            .iter()
            .filter(|i| i.input_type == InputType::Job)
            .filter_map(|i| EventId::from_hex(&i.data).ok())
            .collect();
        if waiting_for.len() > super::MAX_JOB_INPUTS {
            let reason =
                RejectReason::Malformed(format!("more than {} job inputs", super::MAX_JOB_INPUTS));
            self.refuse_request(now, id, author, reply, refused(&reason));
            return;
        }
        // Only a request that will be a job may make room (and drop a terminal job for it).
        if !self.make_room(now) {
            self.notify(Notification::JobRejected {
                job: id,
                reason: RejectReason::AtCapacity,
            });
            return;
        }
        self.seq += 1;
        let job = Job {
            request,
            reply,
            state: JobState::Received,
            price_msat: 0,
            invoice: None,
            held: None,
            result_id: None,
            chain: (!waiting_for.is_empty()).then(|| {
                Box::new(super::Chain {
                    waiting_for,
                    resolved: Vec::new(),
                })
            }),
            deadline: None,
            updated_at: now,
            seq: self.seq,
            wake: None,
            unclaimed: self.config.claim_jobs,
            summary: false,
        };
        let claim = self
            .config
            .claim_jobs
            .then(|| super::persist::JobRecord::new(super::snapshot::save_job(&job), Vec::new()));
        self.jobs.insert(id, Box::new(job));
        self.changes.job(id);
        self.count_rate(now, author);
        self.live += 1;
        self.schedule(id);
        self.dirty = true;
        self.live_set_changed(now);
        self.notify(Notification::JobReceived {
            job: id,
            customer: author,
        });
        if let Some(record) = claim {
            // One process of a fleet: nothing more until the claim is won. The claim goes out
            // at once (no update holds this job before it).
            self.outbox
                .push_back_early(Output::ClaimJob(Box::new(record)));
            return;
        }
        self.price_and_proceed(now, id);
    }

    /// Prices an admitted job (the customer gets an explicit answer whatever happens next)
    /// and moves it on, or waits for the host's `accept`.
    pub(super) fn price_and_proceed(&mut self, now: Timestamp, id: EventId) {
        // Price it now: the customer gets an explicit answer whatever happens next.
        let quote = match self.jobs.get(&id) {
            Some(job) => self.config.pricing.quote(&job.request),
            None => return,
        };
        let bid = self.jobs.get(&id).and_then(|j| j.request.bid);
        // Quote what the Lightning backend can invoice: the price rounded up to its unit.
        let quote = match quote {
            Quote::Price { amount_msat } if amount_msat > 0 => {
                match round_up(amount_msat, self.config.invoice_unit_msat) {
                    Some(amount_msat) => Quote::Price { amount_msat },
                    None => Quote::Reject {
                        reason: format!("price {amount_msat} msat cannot be invoiced"),
                    },
                }
            }
            quote => quote,
        };
        let ledger_full = self.ledger.len() >= self.config.admission.max_ledger_entries;
        match quote {
            Quote::Price { amount_msat } if amount_msat > 0 && ledger_full => {
                // Never forget a spent payment to make room: refuse new paid work instead.
                self.finish(
                    now,
                    id,
                    JobState::Rejected {
                        reason: "replay ledger full".into(),
                    },
                );
                self.notify(Notification::JobRejected {
                    job: id,
                    reason: RejectReason::AtCapacity,
                });
            }
            Quote::Reject { reason } => {
                self.refuse_job(now, id, reason.clone(), RejectReason::Refused(reason));
            }
            Quote::Price { amount_msat } if bid.is_some_and(|b| b.amount_msat < amount_msat) => {
                let bid_msat = bid.map(|b| b.amount_msat).unwrap_or(0);
                self.refuse_job(
                    now,
                    id,
                    format!("price {amount_msat} msat is above the bid of {bid_msat} msat"),
                    RejectReason::BidTooLow {
                        price_msat: amount_msat,
                        bid_msat,
                    },
                );
            }
            quote => {
                if let (Quote::Price { amount_msat }, Some(job)) = (&quote, self.job_mut(&id)) {
                    job.price_msat = *amount_msat;
                }
                if self.config.auto_accept {
                    self.proceed(now, id);
                } else {
                    // The host has `accept_timeout_secs` to decide.
                    let timeout = self.config.accept_timeout_secs;
                    self.set_state(now, id, JobState::Received, Some(timeout));
                }
            }
        }
        self.take_early_receipts(now, id);
    }

    /// Whether this request id is, or was, a job.
    pub(super) fn known(&self, id: &EventId) -> bool {
        self.jobs.contains_key(id)
            || self.forgotten_set.contains_key(id)
            || self.claimed_elsewhere.contains(id)
    }

    /// Requests naming providers in `p` tags are for them; untargeted ones are for anyone.
    pub(super) fn addressed_to_us(&self, event: &Event) -> bool {
        let mut targeted = false;
        for tag in event.tags.iter() {
            if let [name, value, ..] = tag.as_slice() {
                if name == "p" {
                    targeted = true;
                    // Compared as hex: no curve math for a request to someone else.
                    if value.eq_ignore_ascii_case(&self.my_hex) {
                        return true;
                    }
                }
            }
        }
        !targeted
    }

    /// Admission checks on what the event claims, cheapest first, before its signature is
    /// verified. They change no state: a forged event claiming someone's key must not use up
    /// that customer's rate limit (a job is counted by [`count_rate`](Self::count_rate)).
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

    /// The per-customer and global rate limits, for a request whose author is claimed or
    /// proven; counts nothing ([`count_rate`](Self::count_rate) does, once the request is a
    /// job, so re-deliveries and refused requests never eat a customer's budget).
    pub(super) fn check_rate(
        &mut self,
        now: Timestamp,
        author: &PublicKey,
    ) -> Result<(), RejectReason> {
        if let Some(limit) = self.config.admission.global_rate_limit {
            if prune_window(&mut self.global_rate, now, limit) >= limit.max_requests as usize {
                return Err(RejectReason::RateLimited);
            }
        }
        if let Some(limit) = self.config.admission.rate_limit {
            if let Some(times) = self.rate.get_mut(author) {
                if prune_window(times, now, limit) >= limit.max_requests as usize {
                    return Err(RejectReason::RateLimited);
                }
            }
        }
        Ok(())
    }

    /// Counts an admitted job against the rate limits.
    pub(super) fn count_rate(&mut self, now: Timestamp, author: PublicKey) {
        if self.config.admission.rate_limit.is_some() {
            self.rate.entry(author).or_default().push_back(now);
        }
        if self.config.admission.global_rate_limit.is_some() {
            self.global_rate.push_back(now);
        }
        self.dirty = true;
    }

    /// Drops the customers whose rate window is empty. O(customers), so at most once a
    /// window (amortized O(1) per admitted job), not on every timer tick.
    pub(super) fn prune_rate(&mut self, now: Timestamp) {
        let Some(limit) = self.config.admission.rate_limit else {
            return;
        };
        if self
            .rate_pruned_at
            .is_some_and(|t| t.as_secs().saturating_add(limit.window_secs) > now.as_secs())
        {
            return;
        }
        self.rate_pruned_at = Some(now);
        self.rate
            .retain(|_, times| prune_window(times, now, limit) > 0);
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
        if let Some(job) = self.take_job(id) {
            self.changes.job(*id);
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

    /// Takes `id` out of the table and out of every index (bindings, timers, live or
    /// terminal, unpaid, its ledger payments: its spent keys stay spent until their expiry).
    pub(super) fn take_job(&mut self, id: &EventId) -> Option<Box<Job>> {
        let job = self.jobs.remove(id)?;
        if let Some(fid) = job.payment_feedback() {
            self.bindings.remove(&fid);
        }
        if let Some(rid) = job.result_id.as_deref() {
            self.bindings.remove(rid);
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
        self.ledger.release_job(id);
        Some(job)
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
        self.changes.job(id);
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
            self.changes.job(id);
            any = true;
        }
        any
    }
}

/// Drops the times of a sliding window of `limit` that fell out of it at `now`; returns how
/// many are left.
pub(super) fn prune_window(
    times: &mut VecDeque<Timestamp>,
    now: Timestamp,
    limit: super::RateLimit,
) -> usize {
    let window_start = now.as_secs().saturating_sub(limit.window_secs);
    while times.front().is_some_and(|t| t.as_secs() <= window_start) {
        times.pop_front();
    }
    times.len()
}

/// Counts one event at `now` in a sliding window of `limit`; `false` (nothing counted) when
/// the window is full.
pub(super) fn take_slot(
    times: &mut VecDeque<Timestamp>,
    now: Timestamp,
    limit: super::RateLimit,
) -> bool {
    if prune_window(times, now, limit) >= limit.max_requests as usize {
        return false;
    }
    times.push_back(now);
    true
}

/// The most gift-wrap ids remembered for deduplication; the oldest goes first.
pub const MAX_SEEN_WRAPS: usize = 10_000;

/// Recently seen event ids, bounded, oldest dropped first.
#[derive(Debug, Default)]
pub(super) struct SeenIds {
    set: HashSet<EventId>,
    order: VecDeque<EventId>,
}

impl SeenIds {
    /// Adds `id`; `false` when it was seen already.
    pub(super) fn insert(&mut self, id: EventId) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > MAX_SEEN_WRAPS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Whether `id` is held.
    pub(super) fn contains(&self, id: &EventId) -> bool {
        self.set.contains(id)
    }

    /// Forgets `id` (it may be taken when it comes again). O(1): its place in the order stays
    /// until it comes to the front, where dropping an id no longer in the set is harmless.
    pub(super) fn remove(&mut self, id: &EventId) {
        self.set.remove(id);
    }

    /// The ids, oldest first (an id seen again after a `remove` may appear twice).
    pub(super) fn ids(&self) -> impl Iterator<Item = &EventId> {
        self.order.iter().filter(|id| self.set.contains(id))
    }
}
