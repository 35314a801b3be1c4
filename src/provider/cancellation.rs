//! Cancellation: kind-5 deletions by the request's author, remembered when they come before
//! the request, and the subscription that hears them.

use nostr::{Event, EventId, Filter, Kind, Timestamp};

use super::{Output, Provider, SUB_DELETIONS};

impl Provider {
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
}
