//! What a provider asks its host to do, and what it tells it.

use nostr::{Event, EventId, Filter, PublicKey};
use serde::{Deserialize, Serialize};

use crate::task::TaskRequest;

/// One thing for the host to do. Drain them with
/// [`Provider::poll_output`](super::Provider::poll_output) after every input or command.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Publish a signed event on these relays (the request's `relays` first, then the
    /// provider's own).
    Publish {
        /// The event.
        event: Event,
        /// Where to publish it.
        relays: Vec<String>,
    },
    /// Open, or replace, the subscription `id` with `filter`.
    Subscribe {
        /// The subscription id; a later `Subscribe` with the same id replaces it.
        id: String,
        /// What to subscribe to.
        filter: Filter,
    },
    /// Close the subscription `id`.
    Unsubscribe(String),
    /// Run the task for a job, then report with `handle_task_result` (and optionally
    /// `handle_task_progress`).
    RunTask(Box<TaskRequest>),
    /// Stop the task of this job: it was cancelled, expired or timed out.
    CancelTask(EventId),
    /// Ask the Lightning backend for an invoice, then report with `handle_invoice`.
    RequestInvoice {
        /// The job to pay for.
        job: EventId,
        /// The amount, in millisats.
        amount_msat: u64,
        /// A description for the invoice.
        description: String,
        /// How long the invoice should be valid, in seconds.
        expiry_secs: u64,
    },
    /// Something the application may want to know.
    Notify(Notification),
}

/// Something that happened, for the application's logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notification {
    /// A request was admitted as a job.
    JobReceived {
        /// The job.
        job: EventId,
        /// The customer.
        customer: PublicKey,
    },
    /// A request was refused; the reason says why and whether the customer was told.
    JobRejected {
        /// The request's id.
        job: EventId,
        /// Why.
        reason: RejectReason,
    },
    /// `payment-required` was sent.
    PaymentRequired {
        /// The job.
        job: EventId,
        /// The amount, in millisats.
        amount_msat: u64,
    },
    /// A verified payment was recorded.
    PaymentReceived {
        /// The job.
        job: EventId,
        /// The amount, in millisats (for a wallet proof: the job's price).
        amount_msat: u64,
        /// How it was proven.
        via: PaymentVia,
    },
    /// A payment proof was refused.
    PaymentRefused {
        /// The event or job concerned.
        job: Option<EventId>,
        /// Why.
        reason: String,
    },
    /// The task of a job started.
    JobStarted {
        /// The job.
        job: EventId,
    },
    /// The result was published.
    JobCompleted {
        /// The job.
        job: EventId,
    },
    /// The job failed; error feedback was sent.
    JobFailed {
        /// The job.
        job: EventId,
        /// Why.
        reason: String,
    },
    /// The job was cancelled.
    JobCancelled {
        /// The job.
        job: EventId,
    },
    /// The job expired (its NIP-40 expiration, or the payment window).
    JobExpired {
        /// The job.
        job: EventId,
    },
    /// An event from a relay was dropped: invalid, undecryptable, or not for us.
    EventRefused {
        /// The event's id.
        event: EventId,
        /// Why.
        reason: String,
    },
}

/// How a payment was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentVia {
    /// A NIP-57 zap receipt, verified by `verify_zap_receipt`.
    Zap {
        /// The receipt's id.
        receipt: EventId,
    },
    /// The host's wallet reported the invoice settled.
    Wallet,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// The customer is on the deny list, or not on the allow list. Not told.
    NotAllowed,
    /// The customer exceeded the rate limit. Not told (a flood must not make us sign).
    RateLimited,
    /// Too many live jobs. Not told, for the same reason.
    AtCapacity,
    /// The request is larger than the limit. Not told.
    TooLarge {
        /// Its size, in bytes.
        bytes: usize,
    },
    /// The request's proof of work is below the minimum. Not told.
    InsufficientPow {
        /// Its difficulty.
        difficulty: u8,
    },
    /// The request had already expired (NIP-40). Not told.
    Expired,
    /// The request is older than the provider's retention window, so it may be a replay of a
    /// job already done and forgotten. Not told.
    Stale,
    /// The request could not be parsed or decrypted. Told when it named us in a `p` tag.
    Malformed(String),
    /// The pricing hook refused it. Told.
    Refused(String),
    /// The price is above the customer's bid. Told, with the price.
    BidTooLow {
        /// Our price, in millisats.
        price_msat: u64,
        /// The customer's bid, in millisats.
        bid_msat: u64,
    },
    /// The host rejected it. Told.
    ByHost(String),
}

/// Proof from the host's own wallet that a job's invoice was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentProof {
    /// The payment preimage; its sha256 must be the invoice's payment hash.
    Preimage([u8; 32]),
    /// The payment hash of an invoice the wallet reports settled.
    SettledPaymentHash([u8; 32]),
}
