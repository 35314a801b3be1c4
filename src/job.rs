//! The states of a job, as a provider sees it.
//!
//! ```text
//!                       ┌──────────── (free, pay-after-result, partial-then-pay) ─────────────┐
//!  request ─► Received ─┤                                                                       ▼
//!  (admitted)  │        └─► [WaitingForInputs] ─► Invoicing ─► AwaitingPayment ─► (paid) ─► Running
//!              │              (job inputs)       (pay-first)   (payment-required)             │
//!              ▼                                                                               ▼
//!          Rejected                                  Delivered ◄─ (paid) ◄─ AwaitingPaymentForResult
//!                                                        ▲            (partial-then-pay)       │
//!                                                        └──────── InvoicingResult ◄───────────┘
//!                                                                 (priced, pay-later)
//! any live state ─► Cancelled (kind-5 by the author, or the host) | Expired (NIP-40, payment
//! window) | Failed (task error, run deadline, invoice error)
//! ```
//!
//! Terminal states ([`JobState::is_terminal`]) never change again: a duplicate request, a late
//! payment or a late task result cannot revive a job. A payment that arrives for a job that is
//! already delivered under pay-after-result is recorded (`Delivered { paid: true }`) without
//! any new work.

use serde::{Deserialize, Serialize};

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Admitted, waiting for the host to [`accept`](crate::provider::Provider::accept) it
    /// (only when automatic acceptance is off).
    Received,
    /// Waiting for the results of the jobs its `job` inputs name.
    WaitingForInputs,
    /// Priced; waiting for the host's Lightning backend to return an invoice before work.
    Invoicing,
    /// `payment-required` feedback sent; no work until a verified payment arrives.
    AwaitingPayment,
    /// The task is running.
    Running,
    /// The task finished; waiting for an invoice to attach to the result (pay-after-result)
    /// or to the sample (partial-then-pay).
    InvoicingResult,
    /// Partial-then-pay: the sample and `payment-required` were sent; the full result is
    /// released when a verified payment arrives.
    AwaitingPaymentForResult,
    /// The result was published. `paid` tells whether a payment was received for it.
    Delivered {
        /// Whether the job was paid (always `true` for paid policies except pay-after-result,
        /// where payment may come after delivery; free jobs are `false`).
        paid: bool,
    },
    /// The job failed: task error, run deadline, or no invoice. Error feedback was sent.
    Failed {
        /// Why, as sent to the customer.
        reason: String,
    },
    /// The provider refused the job (pricing hook, bid too low, host's `reject`).
    Rejected {
        /// Why, as sent to the customer.
        reason: String,
    },
    /// Cancelled by the customer (kind-5 deletion) or by the host.
    Cancelled,
    /// The request's NIP-40 expiration passed, or the payment window closed.
    Expired,
}

impl JobState {
    /// Whether the job is over: nothing about it changes any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Delivered { .. }
                | JobState::Failed { .. }
                | JobState::Rejected { .. }
                | JobState::Cancelled
                | JobState::Expired
        )
    }

    /// Whether the job waits for a payment before going on.
    pub fn awaits_payment(&self) -> bool {
        matches!(
            self,
            JobState::AwaitingPayment | JobState::AwaitingPaymentForResult
        )
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Received => "received",
            JobState::WaitingForInputs => "waiting-for-inputs",
            JobState::Invoicing => "invoicing",
            JobState::AwaitingPayment => "awaiting-payment",
            JobState::Running => "running",
            JobState::InvoicingResult => "invoicing-result",
            JobState::AwaitingPaymentForResult => "awaiting-payment-for-result",
            JobState::Delivered { .. } => "delivered",
            JobState::Failed { .. } => "failed",
            JobState::Rejected { .. } => "rejected",
            JobState::Cancelled => "cancelled",
            JobState::Expired => "expired",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_are_exactly_the_five_endings() {
        let all = [
            JobState::Received,
            JobState::WaitingForInputs,
            JobState::Invoicing,
            JobState::AwaitingPayment,
            JobState::Running,
            JobState::InvoicingResult,
            JobState::AwaitingPaymentForResult,
            JobState::Delivered { paid: true },
            JobState::Failed { reason: "x".into() },
            JobState::Rejected { reason: "x".into() },
            JobState::Cancelled,
            JobState::Expired,
        ];
        let terminal: Vec<_> = all
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| s.name())
            .collect();
        assert_eq!(
            terminal,
            ["delivered", "failed", "rejected", "cancelled", "expired"]
        );
        let paying: Vec<_> = all
            .iter()
            .filter(|s| s.awaits_payment())
            .map(|s| s.name())
            .collect();
        assert_eq!(paying, ["awaiting-payment", "awaiting-payment-for-result"]);
        let json = serde_json::to_string(&JobState::Failed {
            reason: "boom".into(),
        })
        .unwrap();
        assert_eq!(
            serde_json::from_str::<JobState>(&json).unwrap().name(),
            "failed"
        );
    }
}
