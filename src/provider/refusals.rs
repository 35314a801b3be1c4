//! Telling customers why a request was refused.
//!
//! A request that names this provider in a `p` tag but cannot become a job (malformed,
//! undecryptable, expired, stale, dated ahead, too large) gets `error` feedback saying why,
//! in the scheme it came in (gift-wrapped back when it was gift-wrapped). Only a request whose
//! author is proven is told (a plain request's signature is checked first, which the refusal
//! itself did not need; a gift wrap's sender is proven by its seal), and at most
//! [`Admission::refusals_told_per_customer`](super::Admission) a minute per customer and
//! [`Admission::refusals_told_per_minute`](super::Admission) a minute in all, so a flood from
//! fresh keys cannot make the provider sign without bound. Requests that do not name this
//! provider, and refusals that defend against floods (deny list, rate limits, capacity, proof
//! of work), are never told.

use crate::relay::RelayCommand;
use std::collections::VecDeque;

use nostr::{Event, EventId, Kind, PublicKey, Tag, Timestamp, UnsignedEvent};

use super::{Output, Provider, RejectReason};
use crate::nip59;

/// The window of the telling caps, in seconds.
const TELL_WINDOW_SECS: u64 = 60;

/// A refused request that might be told.
#[derive(Debug)]
pub(super) struct Refused<'a> {
    /// The request's id (the rumor's, when gift-wrapped).
    pub id: EventId,
    /// Its author, as claimed (a plain request's signature is checked before telling).
    pub author: PublicKey,
    /// Its kind.
    pub kind: Kind,
    /// A plain event whose signature is still to be checked before telling.
    pub verify: Option<&'a Event>,
    /// Whether it came gift-wrapped (the answer is wrapped too).
    pub wrapped: bool,
    /// Whether it names this provider (a `p` tag, or a gift wrap to it).
    pub names_us: bool,
}

/// The most refused request ids remembered as told, so the same request from several relays
/// is told once.
const MAX_TOLD_IDS: usize = 1_000;

/// The telling caps' books, and the requests already told. Part of the snapshot.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct TellBudget {
    all: VecDeque<Timestamp>,
    per_customer: Vec<(PublicKey, VecDeque<Timestamp>)>,
    told: VecDeque<EventId>,
}

impl TellBudget {
    /// Takes one telling for `customer` at `now`; `false` when a cap is reached.
    fn take(&mut self, now: Timestamp, customer: PublicKey, per_customer: u32, all: u32) -> bool {
        let start = now.as_secs().saturating_sub(TELL_WINDOW_SECS);
        while self.all.front().is_some_and(|t| t.as_secs() <= start) {
            self.all.pop_front();
        }
        if self.all.len() >= all as usize {
            return false;
        }
        // Customers whose window is empty are dropped, so the list stays within `all` keys.
        self.per_customer.retain_mut(|(_, times)| {
            while times.front().is_some_and(|t| t.as_secs() <= start) {
                times.pop_front();
            }
            !times.is_empty()
        });
        let i = match self.per_customer.iter().position(|(c, _)| *c == customer) {
            Some(i) => i,
            None => {
                self.per_customer.push((customer, VecDeque::new()));
                self.per_customer.len() - 1
            }
        };
        let times = &mut self.per_customer[i].1;
        if times.len() >= per_customer as usize {
            return false;
        }
        times.push_back(now);
        self.all.push_back(now);
        true
    }

    /// Whether `id` was told already.
    fn was_told(&self, id: &EventId) -> bool {
        self.told.contains(id)
    }

    /// Remembers that `id` was told.
    fn mark_told(&mut self, id: EventId) {
        if self.told.len() >= MAX_TOLD_IDS {
            self.told.pop_front();
        }
        self.told.push_back(id);
    }
}

/// Whether a refusal is one the customer is told about.
fn told(reason: &RejectReason) -> bool {
    matches!(
        reason,
        RejectReason::Malformed(_)
            | RejectReason::Expired
            | RejectReason::Stale
            | RejectReason::FutureDated
            | RejectReason::TooLarge { .. }
    )
}

/// Words for the customer: the reason's own, with the limit for a request too large.
fn message(reason: &RejectReason, max_bytes: usize) -> String {
    match reason {
        RejectReason::TooLarge { bytes } => {
            format!("the request is {bytes} bytes, more than the {max_bytes} bytes taken")
        }
        other => other.to_string(),
    }
}

impl Provider {
    /// Tells the author of a refused request why, when the rules above allow it.
    pub(super) fn tell_refusal(
        &mut self,
        now: Timestamp,
        refused: Refused<'_>,
        reason: &RejectReason,
    ) {
        if !refused.names_us || !told(reason) || self.tell_budget.was_told(&refused.id) {
            return;
        }
        let admission = &self.config.admission;
        let (per_customer, all) = (
            admission.refusals_told_per_customer,
            admission.refusals_told_per_minute,
        );
        if per_customer == 0 || all == 0 {
            return;
        }
        // Only a proven author is told, so a forger cannot spend a customer's budget; the
        // check costs what the signature check of any request costs.
        if let Some(event) = refused.verify {
            if !self.authentic(event) {
                return;
            }
        }
        if !self
            .tell_budget
            .take(now, refused.author, per_customer, all)
        {
            return;
        }
        self.tell_budget.mark_told(refused.id);
        let feedback_kind = self
            .config
            .registry
            .for_request(refused.kind)
            .map(|t| t.feedback)
            .unwrap_or(Kind::from(7000));
        let text = message(reason, self.config.admission.max_request_bytes);
        let tags: Vec<Tag> = [
            vec!["status".to_owned(), "error".to_owned(), text],
            vec!["e".to_owned(), refused.id.to_hex()],
            vec!["p".to_owned(), refused.author.to_hex()],
        ]
        .into_iter()
        .filter_map(|t| Tag::parse(t).ok())
        .collect();
        let unsigned = UnsignedEvent::new(self.keys.public_key(), now, feedback_kind, tags, "");
        let event = if refused.wrapped {
            nip59::gift_wrap(&self.keys, &refused.author, unsigned, now, &mut self.rng).ok()
        } else {
            unsigned
                .sign_with_ctx(nostr::SECP256K1, &mut self.rng, &self.keys)
                .ok()
        };
        if let Some(event) = event {
            let relays = self.config.relays.clone();
            self.outbox
                .push_back(Output::Relay(RelayCommand::Publish { event, relays }));
            self.dirty = true;
        }
    }
}
