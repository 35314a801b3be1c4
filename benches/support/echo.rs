//! The task the runtime benches serve: it returns its text input, so the work itself costs
//! nothing and what is measured is the SDK, the relay and (for paid jobs) the payment.

use nostr_dvm::nostr::Kind;
use nostr_dvm::task::{Progress, Task, TaskError, TaskOutput, TaskRequest, TaskStart};

/// The job kind it serves.
pub const KIND: u16 = 5050;
/// A second kind it serves: a bench that runs two providers side by side on one relay gives
/// each its own kind.
pub const OTHER_KIND: u16 = 5051;
/// A third kind it serves (for a third side).
pub const THIRD_KIND: u16 = 5052;
/// A fourth kind it serves (for a fourth side).
pub const FOURTH_KIND: u16 = 5053;

/// Returns its text input; its runs start as the field says (spawned by default).
#[derive(Default)]
pub struct Echo(pub TaskStart);

#[async_trait::async_trait]
impl Task for Echo {
    fn kinds(&self) -> Vec<Kind> {
        vec![
            Kind::from(KIND),
            Kind::from(OTHER_KIND),
            Kind::from(THIRD_KIND),
            Kind::from(FOURTH_KIND),
        ]
    }

    fn start(&self) -> TaskStart {
        self.0
    }

    async fn run(&self, request: TaskRequest, _: Progress) -> Result<TaskOutput, TaskError> {
        Ok(TaskOutput::new(request.texts().collect::<String>()))
    }
}
