//! Starting a task's run on the provider loop: the first poll of a
//! [`TaskStart::FirstPollOnLoop`](crate::task::TaskStart::FirstPollOnLoop) run, and the
//! partial results it reports meanwhile.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::task::{TaskError, TaskOutput};

/// A task's run, as [`Task::run`](crate::task::Task::run) returns it.
pub(super) type Run = Pin<Box<dyn Future<Output = Result<TaskOutput, TaskError>> + Send>>;

/// What a run's first poll on the loop gave.
pub(super) enum FirstPoll {
    /// It finished (a panic in it is a failure, its message kept private).
    Finished(Result<TaskOutput, TaskError>),
    /// It waits for something: it goes on as a tokio task.
    Pending(Run),
}

/// Polls `run` once, on the loop. The waker is a no-op: a run that is not finished goes on
/// as a tokio task, whose first poll (at once) gives every resource it waits on tokio's own
/// waker.
pub(super) fn first_poll(mut run: Run) -> FirstPoll {
    let mut context = Context::from_waker(std::task::Waker::noop());
    match std::panic::catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(&mut context))) {
        Ok(Poll::Ready(result)) => FirstPoll::Finished(result),
        Ok(Poll::Pending) => FirstPoll::Pending(run),
        Err(_) => FirstPoll::Finished(Err(TaskError::new("the task failed"))),
    }
}

/// The partial results a run reports while the loop polls it, kept in order (the loop hands
/// them to the provider before the run's result); after that, [`offer`](Self::offer) hands
/// them back to go through the report queue. At most `limit` are kept, as the queue would.
#[derive(Clone)]
pub(super) struct EarlyPartials {
    kept: Arc<Mutex<Option<Vec<String>>>>,
    limit: usize,
}

impl EarlyPartials {
    /// Keeping partial results, at most `limit`.
    pub(super) fn keeping(limit: usize) -> Self {
        Self {
            kept: Arc::new(Mutex::new(Some(Vec::new()))),
            limit,
        }
    }

    /// Keeping nothing: every partial result is handed back.
    pub(super) fn none() -> Self {
        Self {
            kept: Arc::new(Mutex::new(None)),
            limit: 0,
        }
    }

    /// Keeps `partial` while the loop polls the run; hands it back after.
    pub(super) fn offer(&self, partial: String) -> Option<String> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        match kept.as_mut() {
            Some(list) if list.len() < self.limit => {
                list.push(partial);
                None
            }
            Some(_) => {
                tracing::debug!("partial results of a run on the loop: too many, dropped");
                None
            }
            None => Some(partial),
        }
    }

    /// Stops keeping: the partial results kept so far, in order.
    pub(super) fn finish(&self) -> Vec<String> {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_run_gives_its_result_and_a_panic_is_a_private_failure() {
        let done: Run = Box::pin(async { Ok(TaskOutput::new("done")) });
        assert!(matches!(first_poll(done), FirstPoll::Finished(Ok(o)) if o.content == "done"));
        let panics: Run = Box::pin(async { panic!("secret detail") });
        match first_poll(panics) {
            FirstPoll::Finished(Err(e)) => assert_eq!(e.message, "the task failed"),
            _ => panic!("a panic is a failure"),
        }
        let waits: Run = Box::pin(async {
            std::future::pending::<()>().await;
            Ok(TaskOutput::new("never"))
        });
        assert!(matches!(first_poll(waits), FirstPoll::Pending(_)));
    }

    #[test]
    fn partials_are_kept_in_order_up_to_the_limit_then_handed_back() {
        let early = EarlyPartials::keeping(2);
        for p in ["a", "b", "c"] {
            assert_eq!(early.offer(p.into()), None);
        }
        assert_eq!(early.finish(), ["a", "b"]);
        assert_eq!(early.offer("d".into()), Some("d".into()));
        assert_eq!(EarlyPartials::none().offer("e".into()), Some("e".into()));
    }
}
