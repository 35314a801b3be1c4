//! What a provider asks its host to do, and what it tells it.

use nostr::{EventId, PublicKey, Timestamp};
use serde::{Deserialize, Serialize};

pub use crate::relay::RelayCommand;
use crate::task::TaskRequest;

/// One thing for the host to do. Drain them with
/// [`Provider::poll_output`](super::Provider::poll_output) after every input or command.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Publish, subscribe or unsubscribe on relays.
    Relay(RelayCommand),
    /// Run the task for a job, then report with `handle_task_result` (and optionally
    /// `handle_task_progress`).
    RunTask(Box<TaskRequest>),
    /// Stop the task of this job: it was cancelled, expired or timed out.
    CancelTask(EventId),
    /// Claim a newly admitted job for this process of a fleet
    /// ([`ProviderConfig::claim_jobs`](super::ProviderConfig::claim_jobs)) in the store the
    /// fleet shares, storing this first record of it, then report with `handle_claim`:
    /// only the process that wins prices, invoices, runs and answers the job.
    ClaimJob(Box<super::JobRecord>),
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
    /// A verified payment that must not pay for work: it came after the payment window
    /// closed or the request expired, for a job that had ended, or for a job already paid.
    /// The ledger has recorded it (it is never handed back twice) and the customer was told
    /// with `error` feedback; giving the money back is the host's to do.
    Refund(RefundDue),
    /// Something the application may want to know.
    Notify(Notification),
}

/// A payment to give back: everything a refund path (the customer's lightning address, NWC,
/// Cashu, or a human) needs, in one value that stays the same whichever path acts on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundDue {
    /// The job the payment was for.
    pub job: EventId,
    /// The job's customer (the request's author).
    pub customer: PublicKey,
    /// Who paid, when the proof says: a zap request's author. A wallet proof names nobody.
    pub payer: Option<PublicKey>,
    /// The amount paid, in millisats.
    pub amount_msat: u64,
    /// How it was paid (the zap receipt's id, or the host's wallet).
    pub via: PaymentVia,
    /// The paid invoice's payment hash.
    pub payment_hash: [u8; 32],
    /// When the provider handled the payment.
    pub received_at: Timestamp,
    /// Why it does not pay for work.
    pub reason: RefundReason,
}

/// Why a verified payment is to be refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundReason {
    /// It was handled after the job's payment window (or its invoice) had closed.
    PaymentWindowClosed,
    /// It was handled after the request's NIP-40 expiration.
    RequestExpired,
    /// The job had already ended in this state (its name).
    JobEnded(String),
    /// The job had already been paid.
    AlreadyPaid,
}

impl core::fmt::Display for RefundReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RefundReason::PaymentWindowClosed => f.write_str("the payment window had closed"),
            RefundReason::RequestExpired => f.write_str("the request had expired"),
            RefundReason::JobEnded(state) => write!(f, "the job had already ended ({state})"),
            RefundReason::AlreadyPaid => f.write_str("the job was already paid"),
        }
    }
}

/// Something that happened, for the application's logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Notification {
    /// A request was admitted as a job.
    JobReceived {
        /// The job.
        job: EventId,
        /// The customer.
        customer: PublicKey,
    },
    /// Another process of the fleet won the claim of this job
    /// ([`Provider::handle_claim`](super::Provider::handle_claim)): it answers it, this one
    /// dropped it.
    JobClaimedElsewhere {
        /// The job.
        job: EventId,
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
    /// The Lightning backend gave no usable invoice for a job (under pay-after-result the
    /// result is out already, and the job ends unpaid).
    InvoiceFailed {
        /// The job.
        job: EventId,
        /// Why.
        reason: String,
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
///
/// "Told" means the customer gets `error` feedback saying why, in the request's scheme: only
/// for a request that names this provider (a `p` tag, or a gift wrap to it), whose author is
/// proven by its signature, once per request, and within
/// `Admission::{refusals_told_per_customer, refusals_told_per_minute}`. Refusals that defend
/// against floods are never told: a flood must not make the provider sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// The customer is on the deny list, or not on the allow list. Not told.
    NotAllowed,
    /// The customer exceeded the rate limit. Not told (a flood must not make us sign).
    RateLimited,
    /// Too many live jobs, a full replay ledger (for priced work), or no room left to
    /// remember dropped jobs. Not told, for the same reason.
    AtCapacity,
    /// The request is larger than the limit. Told when it names this provider.
    TooLarge {
        /// Its size, in bytes.
        bytes: usize,
    },
    /// The request's proof of work is below the minimum. Not told.
    InsufficientPow {
        /// Its difficulty.
        difficulty: u8,
    },
    /// The request had already expired (NIP-40). Told when it names this provider.
    Expired,
    /// The request is dated further in the future than `max_future_skew_secs`. Told when it
    /// names this provider.
    FutureDated,
    /// Too many invoices were asked for in the last window (`invoice_rate_limit`). Told:
    /// the customer may try again later.
    InvoiceRateLimited,
    /// The request is older than the provider's retention window, so it may be a replay of a
    /// job already done and forgotten. Told when it names this provider.
    Stale,
    /// The request could not be parsed or decrypted. Told when it names this provider.
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
