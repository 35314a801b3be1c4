//! Cancellation: kind-5 deletions by the request's author, remembered when they come before
//! the request, and the subscription that hears them.

use crate::relay::RelayCommand;
use std::collections::{BTreeSet, HashMap};

use nostr::{Event, EventId, Filter, Kind, PublicKey, Timestamp};

use super::{Output, Provider, SUB_DELETIONS};

/// The most `e` tags of one deletion that are looked at: a deletion naming more is read up
/// to this many, so one event cannot cost the provider without bound.
pub const MAX_DELETION_TAGS: usize = 64;

/// The most deletions remembered for requests not seen yet; the oldest goes first.
pub const MAX_TOMBSTONES: usize = 10_000;

/// Deletions seen before their request, by target and deleter: a stranger's deletion of the
/// same id is another entry, so it never replaces the author's. Evicted oldest first, in
/// O(log n).
#[derive(Debug, Default)]
pub(super) struct Tombstones {
    by_key: HashMap<(EventId, PublicKey), (Timestamp, u64)>,
    order: BTreeSet<(Timestamp, u64, EventId, PublicKey)>,
    seq: u64,
}

impl Tombstones {
    /// Remembers that `deleter` deleted `target` at `at`.
    pub(super) fn insert(&mut self, target: EventId, deleter: PublicKey, at: Timestamp) {
        if self.by_key.contains_key(&(target, deleter)) {
            return;
        }
        while self.by_key.len() >= MAX_TOMBSTONES {
            let Some((_, _, id, who)) = self.order.pop_first() else {
                break;
            };
            self.by_key.remove(&(id, who));
        }
        self.seq += 1;
        self.by_key.insert((target, deleter), (at, self.seq));
        self.order.insert((at, self.seq, target, deleter));
    }

    /// Whether `deleter` deleted `target`.
    pub(super) fn contains(&self, target: &EventId, deleter: &PublicKey) -> bool {
        self.by_key.contains_key(&(*target, *deleter))
    }

    /// Every entry, oldest first: `(target, deleter, at)`.
    pub(super) fn entries(&self) -> impl Iterator<Item = (EventId, PublicKey, Timestamp)> + '_ {
        self.order.iter().map(|(at, _, id, who)| (*id, *who, *at))
    }
}

impl Provider {
    /// A kind-5 deletion. It counts only from the request's author: a deletion by anyone
    /// else changes nothing. Checked cheapest first: the `e` tags (at most
    /// [`MAX_DELETION_TAGS`]) must name a live job of the deletion's author, or an id the
    /// provider does not know (a request that may come later), before the signature is
    /// verified.
    pub(super) fn on_deletion(&mut self, now: Timestamp, deletion: Event) {
        let author = deletion.pubkey;
        let mut cancel = Vec::new();
        let mut remember = Vec::new();
        let mut foreign = false;
        let e_tags = deletion
            .tags
            .iter()
            .filter_map(|tag| match tag.as_slice() {
                [name, value, ..] if name == "e" => EventId::from_hex(value).ok(),
                _ => None,
            })
            .take(MAX_DELETION_TAGS);
        for target in e_tags {
            match self.jobs.get(&target) {
                Some(job) if job.customer() == author => {
                    if !job.state.is_terminal() {
                        cancel.push(target);
                    }
                }
                Some(_) => foreign = true,
                None if self.known(&target) => {}
                None => remember.push(target),
            }
        }
        if foreign {
            self.refuse_event(deletion.id, "deletion by someone else than the author");
        }
        if cancel.is_empty() && remember.is_empty() {
            return;
        }
        if !self.authentic(&deletion) {
            self.refuse_event(deletion.id, "invalid id or signature");
            return;
        }
        for target in cancel {
            self.cancel_job(now, target);
        }
        for target in remember {
            // The request may come later (relays do not order): remember, bounded. Only the
            // request's author's entry will count when it does.
            self.tombstones.insert(target, author, now);
            self.dirty = true;
        }
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
                .push_back(Output::Relay(RelayCommand::Unsubscribe(
                    SUB_DELETIONS.into(),
                )));
        } else {
            self.outbox
                .push_back(Output::Relay(RelayCommand::Subscribe {
                    id: SUB_DELETIONS.into(),
                    filter: Filter::new()
                        .kind(Kind::EventDeletion)
                        .events(live.into_iter().map(|(_, id)| id)),
                }));
        }
    }
}
