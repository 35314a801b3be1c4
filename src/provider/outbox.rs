//! The provider's outbox, and the write-ahead rule of updates: once the host persists by
//! [`StoreUpdate`](super::StoreUpdate)s, an output is handed out only after the update it
//! follows was acknowledged durable.

use std::collections::{BTreeSet, HashMap, VecDeque};

use nostr::{Event, EventId};

use super::Output;
use crate::relay::RelayCommand;

/// The outputs waiting for the host, in order, each with the update it waits for.
#[derive(Debug)]
pub(super) struct Outbox {
    /// Outputs that wait for no update, handed out first, in order.
    early: VecDeque<Output>,
    /// The others, in order, each with the update it waits for (non-decreasing).
    items: VecDeque<(u64, Output)>,
    /// The update that outputs pushed now wait for: the next one the host takes.
    stamp: u64,
    /// Outputs stamped up to this update are handed out.
    released: u64,
    /// When tracking: the events to publish that the host has not reported published, each a
    /// record of its own until it is.
    outgoing: HashMap<EventId, (Event, Vec<String>)>,
    /// The outgoing events added or published since the last update.
    outgoing_changed: BTreeSet<EventId>,
}

impl Default for Outbox {
    /// No update tracking: every output is handed out at once.
    fn default() -> Self {
        Self {
            early: VecDeque::new(),
            items: VecDeque::new(),
            stamp: 0,
            released: u64::MAX,
            outgoing: HashMap::new(),
            outgoing_changed: BTreeSet::new(),
        }
    }
}

impl Outbox {
    pub(super) fn push_back(&mut self, output: Output) {
        if self.tracking() {
            if let Output::Relay(RelayCommand::Publish { event, relays }) = &output {
                if must_reach_a_relay(event) {
                    self.outgoing
                        .insert(event.id, (event.clone(), relays.clone()));
                    self.outgoing_changed.insert(event.id);
                }
            }
        }
        self.items.push_back((self.stamp, output));
    }

    /// The host reports `id` published (a relay took it, or it gave up on it).
    pub(super) fn published(&mut self, id: EventId) {
        if self.outgoing.remove(&id).is_some() {
            self.outgoing_changed.insert(id);
        }
    }

    /// The outgoing events changed since the last call: `Some` for one still to publish,
    /// `None` for one published.
    pub(super) fn take_outgoing_changes(
        &mut self,
    ) -> impl Iterator<Item = (EventId, Option<&(Event, Vec<String>)>)> + '_ {
        let changed = std::mem::take(&mut self.outgoing_changed);
        changed.into_iter().map(|id| (id, self.outgoing.get(&id)))
    }

    /// Whether outgoing events changed since the last update.
    pub(super) fn outgoing_changed(&self) -> bool {
        !self.outgoing_changed.is_empty()
    }

    /// Pushes an output that need not wait for any update: it is handed out at once, ahead
    /// of outputs that wait. Only for an output whose effect a crash cannot make wrong (see
    /// `Provider::start_task`).
    pub(super) fn push_back_early(&mut self, output: Output) {
        self.early.push_back(output);
    }

    /// The next output to hand out: an early one, else the first whose update is durable.
    /// O(1): stamps never decrease along the queue, so when its front waits, all of it does.
    pub(super) fn pop_front(&mut self) -> Option<Output> {
        if let Some(output) = self.early.pop_front() {
            return Some(output);
        }
        match self.items.front() {
            Some((stamp, _)) if *stamp <= self.released => self.items.pop_front().map(|(_, o)| o),
            _ => None,
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Output> {
        self.early.iter().chain(self.items.iter().map(|(_, o)| o))
    }

    /// Starts tracking updates: what is in the outbox now is handed out at once, what comes
    /// next waits for update `next_update`.
    pub(super) fn track(&mut self, next_update: u64) {
        self.released = next_update.saturating_sub(1);
        for (stamp, output) in &mut self.items {
            *stamp = 0;
            // Restored events to publish are outgoing until the host reports them published
            // (they are stored already).
            if let Output::Relay(RelayCommand::Publish { event, relays }) = output {
                if must_reach_a_relay(event) {
                    self.outgoing
                        .insert(event.id, (event.clone(), relays.clone()));
                }
            }
        }
        self.stamp = next_update;
    }

    /// Whether update tracking is on.
    pub(super) fn tracking(&self) -> bool {
        self.released != u64::MAX
    }

    /// Whether outputs wait for the update the host has not taken yet: the newest does, if
    /// any (stamps never decrease along the queue).
    pub(super) fn waits_for_next(&self) -> bool {
        self.items
            .back()
            .is_some_and(|(stamp, _)| *stamp == self.stamp)
    }

    /// The host took update `id` (the current stamp): later outputs wait for the next one.
    pub(super) fn taken(&mut self, id: u64) {
        self.stamp = id.saturating_add(1);
    }

    /// Update `id` (and every one before) is durable.
    pub(super) fn release(&mut self, id: u64) {
        if self.tracking() {
            self.released = self.released.max(id);
        }
    }
}

/// Whether an event the provider publishes is kept (a [`StoreChange::Outgoing`] record) until
/// a relay takes it: results, feedback a customer acts on (payment-required, partial, error,
/// success, and any whose status is encrypted) and gift wraps (which carry those). Not
/// `processing` feedback, announcements or heartbeats: losing one in a crash loses nothing
/// (announcements and heartbeats are published again on their own), and storing them would
/// cost two writes each.
///
/// [`StoreChange::Outgoing`]: super::StoreChange::Outgoing
fn must_reach_a_relay(event: &Event) -> bool {
    let kind = event.kind.as_u16();
    match kind {
        6000..=6999 => true,
        7000 => !event.tags.iter().any(|tag| {
            matches!(tag.as_slice(), [name, status, ..] if name == "status" && status == "processing")
        }),
        1059 | 21059 => true,
        _ => false,
    }
}
