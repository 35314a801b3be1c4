//! What a provider sells: the [`Task`] trait users implement, and the [`Pricing`] hook.
//!
//! The sans-IO [`Provider`](crate::provider::Provider) never calls a task itself: it emits
//! [`Output::RunTask`](crate::provider::Output::RunTask) with a [`TaskRequest`], the host runs
//! the task (the `runtime` feature does this on tokio), and reports back with
//! `handle_task_progress` and `handle_task_result`. Pricing, on the other hand, is a sync hook
//! the core calls itself when a request arrives, so every job gets an explicit answer.

use std::sync::Arc;

use nostr::{EventId, Kind, Timestamp};

use crate::nip90::{JobInput, JobRequest};

/// Work a provider sells, for one or more job request kinds.
///
/// ```
/// use nostr_dvm::task::{Progress, Task, TaskError, TaskOutput, TaskRequest};
/// use nostr_dvm::nostr::Kind;
///
/// /// Counts the words of the text inputs.
/// struct WordCount;
///
/// #[async_trait::async_trait]
/// impl Task for WordCount {
///     fn kinds(&self) -> Vec<Kind> {
///         vec![Kind::from(5050)]
///     }
///
///     async fn run(&self, request: TaskRequest, _progress: Progress) -> Result<TaskOutput, TaskError> {
///         let words: usize = request.texts().map(|t| t.split_whitespace().count()).sum();
///         Ok(TaskOutput::new(words.to_string()))
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Task: Send + Sync {
    /// The job request kinds this task serves.
    fn kinds(&self) -> Vec<Kind>;

    /// Does the work. `progress` sends `partial` feedback to the customer while it runs.
    async fn run(&self, request: TaskRequest, progress: Progress) -> Result<TaskOutput, TaskError>;

    /// How a host starts this task's runs: [`TaskStart::Spawn`] (the default) unless the
    /// task's runs do nothing slow before their first `.await`.
    fn start(&self) -> TaskStart {
        TaskStart::Spawn
    }
}

/// How the `runtime` feature's provider starts a task's run ([`Task::start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskStart {
    /// Each run is a tokio task of its own, off the provider's loop: a run that computes
    /// before it awaits anything holds a worker thread, not the loop. The safe default.
    #[default]
    Spawn,
    /// The provider's loop polls each run once itself, and spawns it as a tokio task only
    /// if it is not finished then. A run that finishes without waiting (a lookup, a cache
    /// hit, a quick transform) then costs no tokio task, no hand-off to another thread and no
    /// report through a queue: about a sixth of the runtime's CPU a job for an echo task
    /// (`cargo bench --bench end_to_end`). Only for tasks whose code before each `.await`
    /// is quick: while it runs, the loop takes no relay event and no payment. A panic in
    /// it fails the job, as in a spawned run; partial results it reports come before its
    /// result, in order.
    FirstPollOnLoop,
}

/// Everything a task needs to do one job.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRequest {
    /// The job id: the request event's id (for a gift-wrapped request, the rumor's id).
    pub job: EventId,
    /// The parsed request, with its private (encrypted) inputs and params already decrypted.
    pub request: JobRequest,
    /// The inputs, with every `job` input replaced by the content of that job's result.
    pub inputs: Vec<JobInput>,
    /// When the provider gives up on this run (its run deadline), if it has one.
    pub deadline: Option<Timestamp>,
}

impl TaskRequest {
    /// The data of every input of type `text` (and of resolved `job` inputs), in order.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.inputs
            .iter()
            .filter(|i| i.input_type == crate::nip90::InputType::Text)
            .map(|i| i.data.as_str())
    }

    /// The value of the first `param` named `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.request.param(name)
    }
}

/// What a task produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskOutput {
    /// The result's content (encrypted by the provider when the request was).
    pub content: String,
    /// A sample of the result to show before payment, for the partial-then-pay policy. When
    /// `None` the provider shows no sample.
    pub sample: Option<String>,
}

impl TaskOutput {
    /// An output with this content and no sample.
    pub fn new(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            sample: None,
        }
    }

    /// Sets the sample shown before payment under partial-then-pay.
    pub fn with_sample(mut self, sample: impl Into<String>) -> Self {
        self.sample = Some(sample.into());
        self
    }
}

/// Why a task failed; the message goes to the customer in `error` feedback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{message}")]
pub struct TaskError {
    /// A human-readable reason, sent to the customer.
    pub message: String,
}

impl TaskError {
    /// A task error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A handle a running task uses to report partial results.
///
/// Each call becomes `status=partial` feedback with the text as content, in the request's
/// encryption scheme. The handle is cheap to clone; what it does is up to the host (the
/// `runtime` feature forwards to `Provider::handle_task_progress`).
#[derive(Clone)]
pub struct Progress {
    sink: Arc<dyn Fn(String) + Send + Sync>,
}

impl Progress {
    /// A handle that passes each partial result to `sink`.
    pub fn new(sink: impl Fn(String) + Send + Sync + 'static) -> Self {
        Self {
            sink: Arc::new(sink),
        }
    }

    /// A handle that drops what it is given.
    pub fn ignore() -> Self {
        Self::new(|_| {})
    }

    /// Reports a partial result.
    pub fn partial(&self, content: impl Into<String>) {
        (self.sink)(content.into())
    }
}

impl core::fmt::Debug for Progress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Progress")
    }
}

/// The answer of the pricing hook for one request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Quote {
    /// Do the job for free.
    Free,
    /// Do the job for this many millisats.
    Price {
        /// The price, in millisats.
        amount_msat: u64,
    },
    /// Refuse the job; the reason goes to the customer in `error` feedback.
    Reject {
        /// Why.
        reason: String,
    },
}

/// Decides the price of each request. Sync and pure: it sees the request (its `bid`, inputs
/// and params) and answers at once.
pub trait Pricing: Send + Sync {
    /// The quote for `request`.
    fn quote(&self, request: &JobRequest) -> Quote;
}

impl<F> Pricing for F
where
    F: Fn(&JobRequest) -> Quote + Send + Sync,
{
    fn quote(&self, request: &JobRequest) -> Quote {
        self(request)
    }
}

/// Every job free.
#[derive(Debug, Clone, Copy, Default)]
pub struct FreePricing;

impl Pricing for FreePricing {
    fn quote(&self, _request: &JobRequest) -> Quote {
        Quote::Free
    }
}

/// Every job at one price, in millisats.
#[derive(Debug, Clone, Copy)]
pub struct FixedPrice(pub u64);

impl Pricing for FixedPrice {
    fn quote(&self, _request: &JobRequest) -> Quote {
        if self.0 == 0 {
            Quote::Free
        } else {
            Quote::Price {
                amount_msat: self.0,
            }
        }
    }
}
