//! Chained jobs (`i <id> job`): waiting for the result of another job, and taking it as
//! input, only from a provider the job can trust.

use crate::relay::RelayCommand;
use nostr::{Event, EventId, Filter, JsonUtil, PublicKey, Timestamp};

use super::{Output, Provider, SUB_INPUTS};
use crate::job::JobState;
use crate::nip90::JobResult;

/// The most job inputs (`i <id> job`) one request may have.
pub const MAX_JOB_INPUTS: usize = 8;

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
        // Cheap before the signature: the author must be one this provider could trust.
        let me = self.keys.public_key();
        if event.pubkey != me
            && !self.config.trusted_input_providers.contains(&event.pubkey)
            && !self.config.inputs_from_named_providers
        {
            self.refuse_event(event.id, "input result from an untrusted provider");
            return;
        }
        let result = match JobResult::from_event_with(&event, None, &self.config.registry) {
            Ok(r) => r,
            Err(e) => {
                self.refuse_event(event.id, &format!("input result: {e}"));
                return;
            }
        };
        if result.request_id != dep {
            self.refuse_event(event.id, "input result answers another request");
            return;
        }
        if result.encrypted.is_some() {
            self.refuse_event(event.id, "input result is encrypted to its customer");
            return;
        }
        let max_bytes = self.config.admission.max_request_bytes;
        let waiting = self.dependents.get(&dep).cloned().unwrap_or_default();
        for id in waiting {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            if job.state != JobState::WaitingForInputs
                || job.resolved().iter().any(|(d, _)| *d == dep)
            {
                continue;
            }
            if !self.input_trusted(&result, job.customer()) {
                self.refuse_event(event.id, "input result from an untrusted provider");
                continue;
            }
            let total: usize = job.resolved().iter().map(|(_, c)| c.len()).sum();
            if total.saturating_add(result.content.len()) > max_bytes {
                self.fail(
                    now,
                    id,
                    format!("the job's inputs exceed {max_bytes} bytes"),
                );
                continue;
            }
            let ready = {
                let Some(job) = self.job_mut(&id) else {
                    continue;
                };
                let Some(chain) = job.chain.as_mut() else {
                    continue;
                };
                chain.resolved.push((dep, result.content.clone()));
                chain
                    .waiting_for
                    .iter()
                    .all(|d| chain.resolved.iter().any(|(r, _)| r == d))
            };
            self.dirty = true;
            if ready {
                if let Some(list) = self.dependents.get_mut(&dep) {
                    list.retain(|j| *j != id);
                }
                self.live_set_changed(now);
                self.proceed(now, id);
            }
        }
        if self.dependents.get(&dep).is_some_and(|l| l.is_empty()) {
            self.dependents.remove(&dep);
        }
    }

    /// Whether `result` may be the input of a job of `customer`: this provider's own result,
    /// a configured provider's, or (when allowed) one from a provider the customer named in
    /// the dependency's request, which the result carries in its `request` tag with the
    /// customer's signature.
    fn input_trusted(&self, result: &JobResult, customer: PublicKey) -> bool {
        let author = result.author;
        if author == self.keys.public_key() || self.config.trusted_input_providers.contains(&author)
        {
            return true;
        }
        if !self.config.inputs_from_named_providers {
            return false;
        }
        let Some(json) = &result.request_json else {
            return false;
        };
        let Ok(request) = Event::from_json(json) else {
            return false;
        };
        request.id == result.request_id
            && request.pubkey == customer
            && crate::nip01::verify(&request)
            && request.tags.iter().any(|t| match t.as_slice() {
                [name, value, ..] => name == "p" && *value == author.to_hex(),
                _ => false,
            })
    }

    /// Sends the one subscription for every input the waiting jobs miss (or closes it): ids
    /// in `#e`, and, unless inputs may come from providers named in requests, the trusted
    /// authors. Refreshed with the deletion filter, not per request.
    pub(super) fn push_inputs_filter(&mut self) {
        let mut missing: Vec<(u64, EventId)> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::WaitingForInputs)
            .flat_map(|j| {
                j.waiting_for()
                    .iter()
                    .filter(|d| !j.resolved().iter().any(|(r, _)| r == *d))
                    .map(move |d| (j.seq, *d))
            })
            .collect();
        missing.sort();
        let mut ids: Vec<EventId> = Vec::with_capacity(missing.len());
        for (_, id) in missing {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            self.outbox
                .push_back(Output::Relay(RelayCommand::Unsubscribe(SUB_INPUTS.into())));
            return;
        }
        let mut filter = Filter::new().events(ids);
        if !self.config.inputs_from_named_providers {
            let mut authors = vec![self.keys.public_key()];
            authors.extend(self.config.trusted_input_providers.iter().copied());
            filter = filter.authors(authors);
        }
        self.outbox
            .push_back(Output::Relay(RelayCommand::Subscribe {
                id: SUB_INPUTS.into(),
                filter,
            }));
    }
}
