//! Chained jobs (`i <id> job`): waiting for the result of another job, and taking it as
//! input.

use nostr::{Event, EventId, Filter, Timestamp};

use super::{Output, Provider, SUB_INPUTS_PREFIX};
use crate::job::JobState;
use crate::nip90::JobResult;

impl Provider {
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
}
