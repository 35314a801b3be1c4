//! The provider's outbox, and the write-ahead rule of updates: once the host persists by
//! [`StoreUpdate`](super::StoreUpdate)s, an output is handed out only after the update it
//! follows was acknowledged durable.

use std::collections::VecDeque;

use super::Output;

/// The outputs waiting for the host, in order, each with the update it waits for.
#[derive(Debug)]
pub(super) struct Outbox {
    items: VecDeque<(u64, Output)>,
    /// The update that outputs pushed now wait for: the next one the host takes.
    stamp: u64,
    /// Outputs stamped up to this update are handed out.
    released: u64,
}

impl Default for Outbox {
    /// No update tracking: every output is handed out at once.
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            stamp: 0,
            released: u64::MAX,
        }
    }
}

impl Outbox {
    pub(super) fn push_back(&mut self, output: Output) {
        self.items.push_back((self.stamp, output));
    }

    /// The next output, if the update it follows is durable.
    pub(super) fn pop_front(&mut self) -> Option<Output> {
        match self.items.front() {
            Some((stamp, _)) if *stamp <= self.released => self.items.pop_front().map(|(_, o)| o),
            _ => None,
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Output> {
        self.items.iter().map(|(_, o)| o)
    }

    /// Starts tracking updates: what is in the outbox now is handed out at once, what comes
    /// next waits for update `next_update`.
    pub(super) fn track(&mut self, next_update: u64) {
        self.released = next_update.saturating_sub(1);
        for (stamp, _) in &mut self.items {
            *stamp = 0;
        }
        self.stamp = next_update;
    }

    /// Whether update tracking is on.
    pub(super) fn tracking(&self) -> bool {
        self.released != u64::MAX
    }

    /// Whether outputs wait for the update the host has not taken yet.
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
