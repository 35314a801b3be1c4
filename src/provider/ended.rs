//! Ended jobs as summaries: once the store holds a terminal job's full record, the provider
//! keeps in memory only what its retention needs (deduplication, late payments, refunds and
//! their feedback), not the request's content, inputs, parameters, tags or the invoice text.
//!
//! A summary is written to the store as a summary record ([`JobRecord::is_summary`]): the
//! store keeps the fields it lacks from the record it holds
//! ([`JobRecord::merged_over`]). Without persistence by updates
//! ([`Provider::track_updates`]), jobs are never summarized: the snapshot is then the only
//! copy.

use nostr::{Event, PublicKey, Timestamp};
use serde::{Deserialize, Serialize};

use super::persist::JobRecord;
use super::snapshot::SavedJob;
use super::{Job, Provider};
use crate::encryption::Scheme;
use crate::nip90::{Encryption, JobRequest, KindTriple};

/// What a summary keeps of its request besides the event's id, author, kind and time: where
/// and how replies go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SavedSummary {
    relays: Vec<String>,
    expiration: Option<Timestamp>,
    result_kind: u16,
    feedback_kind: u16,
    encryption: Option<SavedEncryption>,
}

/// [`Encryption`], as saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct SavedEncryption {
    scheme: Scheme,
    declared: Option<Scheme>,
    target: PublicKey,
    decrypted: bool,
}

impl SavedSummary {
    pub(super) fn of(request: &JobRequest) -> Self {
        Self {
            relays: request.relays.clone(),
            expiration: request.expiration,
            result_kind: request.kinds.result.as_u16(),
            feedback_kind: request.kinds.feedback.as_u16(),
            encryption: request.encrypted.map(|e| SavedEncryption {
                scheme: e.scheme,
                declared: e.declared,
                target: e.target,
                decrypted: e.decrypted,
            }),
        }
    }

    /// The summarized request of a saved summary: `event` is the request's hollow event.
    pub(super) fn into_request(self, event: Event, unsigned: bool) -> JobRequest {
        let kinds = KindTriple {
            request: event.kind,
            result: self.result_kind.into(),
            feedback: self.feedback_kind.into(),
        };
        JobRequest {
            id: event.id,
            author: event.pubkey,
            created_at: event.created_at,
            kind: event.kind,
            kinds,
            inputs: Vec::new(),
            params: Vec::new(),
            output: None,
            bid: None,
            relays: self.relays,
            providers: Vec::new(),
            expiration: self.expiration,
            encrypted: self.encryption.map(|e| Encryption {
                scheme: e.scheme,
                declared: e.declared,
                target: e.target,
                decrypted: e.decrypted,
            }),
            content: String::new(),
            unknown_tags: Vec::new(),
            event,
            unsigned,
        }
    }
}

/// `request` without what an ended job no longer needs: its event keeps id, author, time,
/// kind and signature (no tags, no content).
fn summarize_request(request: &JobRequest) -> JobRequest {
    let e = &request.event;
    let hollow = Event::new(
        e.id,
        e.pubkey,
        e.created_at,
        e.kind,
        Vec::new(),
        String::new(),
        e.sig,
    );
    SavedSummary::of(request).into_request(hollow, request.unsigned)
}

impl Job {
    /// Drops what an ended job no longer needs (see the [module docs](self)).
    pub(super) fn summarize(&mut self) {
        self.request = summarize_request(&self.request);
        self.chain = None;
        self.held = None;
        if let Some(invoice) = self.invoice.as_mut() {
            if let Some((bolt11, _)) = invoice.invoice.as_mut() {
                *bolt11 = String::new();
            }
        }
        self.summary = true;
    }
}

impl Provider {
    /// Summarizes the ended job `id` once its full record was handed to the store.
    pub(super) fn summarize_ended(&mut self, id: &nostr::EventId) {
        if let Some(job) = self.jobs.get_mut(id) {
            if job.state.is_terminal() && !job.summary && !job.unclaimed {
                job.summarize();
            }
        }
    }
}

impl SavedJob {
    /// Fills what a summary record lacks from `stored`, the record the store holds.
    pub(super) fn merge_over(&mut self, stored: SavedJob) {
        if self.summary.is_none() || stored.summary.is_some() {
            return;
        }
        self.request = stored.request;
        self.unsigned = stored.unsigned;
        self.summary = None;
        if self.bolt11.is_none() {
            self.bolt11 = stored.bolt11;
        }
        if self.held_result.is_none() {
            self.held_result = stored.held_result;
            self.sample = stored.sample;
        }
        if self.waiting_for.is_empty() && self.resolved.is_empty() {
            self.waiting_for = stored.waiting_for;
            self.resolved = stored.resolved;
        }
    }
}

impl JobRecord {
    /// Whether this is the record of an ended job kept as a summary: it lacks the request's
    /// content and tags, which the store's record of the same job holds. A store writes it
    /// with [`merged_over`](Self::merged_over) the record it holds (or as it is, when it
    /// holds none).
    pub fn is_summary(&self) -> bool {
        self.saved().summary.is_some()
    }

    /// This record with what it lacks taken from `stored`, the store's record of the same
    /// job: for a [summary](Self::is_summary), everything but its state, times, price and
    /// payments comes from `stored`; any other record is returned as it is.
    pub fn merged_over(self, stored: JobRecord) -> JobRecord {
        if stored.id() != self.id() {
            return self;
        }
        let (mut job, payments) = self.into_parts();
        let (stored_job, _) = stored.into_parts();
        job.merge_over(stored_job);
        JobRecord::new(job, payments)
    }
}
