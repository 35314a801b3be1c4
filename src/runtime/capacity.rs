//! How much work a provider process takes on: at most
//! [`max_running_tasks`](super::ProviderRuntime::max_running_tasks) tasks at once (the others
//! wait, in order), and, in a fleet, claims made only while this process has room for the job,
//! so that a busy process leaves new jobs to the others instead of queueing them.

use std::collections::VecDeque;

use nostr::EventId;

use crate::provider::JobRecord;
use crate::task::TaskRequest;

/// The tasks and claims waiting for room.
#[derive(Default)]
pub(super) struct Capacity {
    /// The most tasks running at once; `None`: no limit.
    max: Option<usize>,
    /// Tasks to start once one ends, in order.
    tasks: VecDeque<TaskRequest>,
    /// Claims to make once there is room, in order.
    claims: VecDeque<JobRecord>,
    /// Claims made and not answered yet: each may become a task.
    claims_in_flight: usize,
}

impl Capacity {
    pub(super) fn new(max: Option<usize>) -> Self {
        Self {
            max,
            ..Self::default()
        }
    }

    /// Room for more work with `running` tasks running: what is not taken by tasks running or
    /// waiting, and by claims in flight.
    fn room(&self, running: usize) -> usize {
        match self.max {
            None => usize::MAX,
            Some(max) => max
                .saturating_sub(running)
                .saturating_sub(self.tasks.len())
                .saturating_sub(self.claims_in_flight),
        }
    }

    /// `request`, to start now, or `None` when it waits for a task to end.
    pub(super) fn task(&mut self, running: usize, request: TaskRequest) -> Option<TaskRequest> {
        match self.max {
            Some(max) if running >= max || !self.tasks.is_empty() => {
                self.tasks.push_back(request);
                None
            }
            _ => Some(request),
        }
    }

    /// The next waiting task, when there is room for it.
    pub(super) fn next_task(&mut self, running: usize) -> Option<TaskRequest> {
        if self.max.is_some_and(|max| running >= max) {
            return None;
        }
        self.tasks.pop_front()
    }

    /// Drops the waiting task of `job`; whether there was one.
    pub(super) fn cancel(&mut self, job: &EventId) -> bool {
        let before = self.tasks.len();
        self.tasks.retain(|t| t.job != *job);
        self.tasks.len() != before
    }

    /// Queues the claim of a new job.
    pub(super) fn claim(&mut self, record: JobRecord) {
        self.claims.push_back(record);
    }

    /// The claims to make now, as far as there is room (all of them without a limit).
    pub(super) fn claims_to_make(&mut self, running: usize) -> Vec<JobRecord> {
        let n = self.room(running).min(self.claims.len());
        self.claims_in_flight += n;
        self.claims.drain(..n).collect()
    }

    /// `n` claims were answered.
    pub(super) fn answered(&mut self, n: usize) {
        self.claims_in_flight = self.claims_in_flight.saturating_sub(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(n: u8) -> TaskRequest {
        let keys = nostr::Keys::generate();
        let event = crate::nip90::JobRequest::builder(nostr::Kind::from(5050))
            .input(crate::nip90::JobInput::text(format!("job {n}")))
            .sign(
                &keys,
                nostr::Timestamp::from(1_700_000_000),
                &mut rand_core::OsRng,
            )
            .unwrap();
        let request = crate::nip90::JobRequest::from_event(&event, None).unwrap();
        TaskRequest {
            job: event.id,
            inputs: request.inputs.clone(),
            request,
            deadline: None,
        }
    }

    #[test]
    fn tasks_beyond_the_limit_wait_in_order_and_claims_wait_for_room() {
        let mut capacity = Capacity::new(Some(2));
        assert!(capacity.task(0, request(1)).is_some());
        assert!(capacity.task(1, request(2)).is_some());
        let third = request(3);
        let third_job = third.job;
        assert!(capacity.task(2, third).is_none(), "two are running");
        assert!(capacity.task(2, request(4)).is_none());
        assert_eq!(capacity.claims_to_make(2).len(), 0);
        // One ends: the third starts, not the fourth.
        assert_eq!(capacity.next_task(1).map(|t| t.job), Some(third_job));
        assert!(capacity.next_task(2).is_none());
        assert!(capacity.cancel(&capacity.tasks[0].job.clone()));
        // Nothing waits and one runs: room for one claim.
        assert_eq!(capacity.room(1), 1);
        let unlimited = Capacity::new(None);
        assert_eq!(unlimited.room(1_000), usize::MAX);
    }
}
