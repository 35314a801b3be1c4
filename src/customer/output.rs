//! What the customer asks its host to do, what it tells the application, and the host's
//! errors.

use nostr::{Event, EventId, PublicKey};
use serde::{Deserialize, Serialize};

use super::invoice::InvoiceError;
use super::payment::{PaymentRef, WalletFailure};
use crate::nip90::FeedbackStatus;
pub use crate::relay::RelayCommand;

/// What the customer asks its host to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Publish, subscribe or unsubscribe on relays.
    Relay(RelayCommand),
    /// Pay this BOLT11 invoice with the host's wallet, spending at most `max_fee_msat` on
    /// routing, then report the outcome with
    /// [`Customer::handle_payment_outcome`](super::Customer::handle_payment_outcome) under
    /// [`PaymentRef::Invoice`]`(payment_hash)`.
    ///
    /// The customer recorded the intent to pay before emitting this: persist it first
    /// ([`Customer::needs_persistence`](super::Customer::needs_persistence)), so that after a
    /// crash the payment is looked up ([`Output::LookupPayment`]) instead of made again.
    PayInvoice {
        /// The job.
        job: EventId,
        /// The provider asking.
        provider: PublicKey,
        /// The invoice (checked: network, amount, expiry).
        bolt11: String,
        /// Its amount, in millisats: the invoice's own.
        amount_msat: u64,
        /// Its payment hash: the key of the wallet's payment and of the outcome.
        payment_hash: [u8; 32],
        /// The most the wallet may spend on routing fees, in millisats.
        max_fee_msat: u64,
    },
    /// Send this signed zap request to the provider's LNURL callback and pay the invoice it
    /// returns (NIP-57 Appendix B), if its amount is `amount_msat`; then report the outcome
    /// under [`PaymentRef::Zap`]`(zap_request.id)`. Persist first, as for
    /// [`Output::PayInvoice`].
    SendZap {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// The signed kind 9734 zap request, bound to the provider's feedback.
        zap_request: Event,
        /// The amount, in millisats.
        amount_msat: u64,
        /// The most the wallet may spend on routing fees, in millisats.
        max_fee_msat: u64,
    },
    /// A payment was asked for before a restart and its outcome never arrived: ask the
    /// wallet what became of it (by payment hash, or for a zap the invoice the LNURL callback
    /// returned) and report with
    /// [`Customer::handle_payment_outcome`](super::Customer::handle_payment_outcome). Never
    /// pay it again blindly.
    LookupPayment {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// Which payment.
        payment: PaymentRef,
        /// Its amount, in millisats.
        amount_msat: u64,
        /// The invoice: for an invoice payment, the provider's; for a zap, the one its
        /// LNURL callback returned, when it was recorded
        /// ([`Customer::zap_invoice`](super::Customer::zap_invoice)); `None` for a zap
        /// means no invoice was ever recorded, so the host's wallet never paid one through
        /// this customer.
        bolt11: Option<String>,
    },
    /// Something for the application.
    Notify(Notification),
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Notification {
    /// A provider sent feedback.
    Feedback {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// Its status.
        status: FeedbackStatus,
        /// The extra information of the status tag.
        info: Option<String>,
    },
    /// A provider asks to be paid before going on (or to release the result, or after the
    /// result). Sent once per payment request event.
    PaymentRequested {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// The amount, in millisats: the invoice's when it sent a valid one.
        amount_msat: u64,
        /// The invoice, only when it passed every check ([`Notification::InvoiceRefused`]
        /// otherwise).
        bolt11: Option<String>,
    },
    /// The invoice of a payment request failed a check: it is never paid (a zap of the
    /// tag's amount still may be).
    InvoiceRefused {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// The feedback (or result) that carried it.
        event: EventId,
        /// Why.
        reason: InvoiceError,
    },
    /// A payment the customer asked for was made.
    Paid {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// Which payment.
        payment: PaymentRef,
        /// The amount, in millisats.
        amount_msat: u64,
        /// The routing fee the wallet reported, in millisats.
        fee_msat: u64,
    },
    /// A payment was made, and its wallet reports a routing fee above the limit it was given
    /// (`CustomerConfig::max_fee_msat`): a wallet that cannot be told the limit (Nostr Wallet
    /// Connect has no such field) spent more. Follows the payment's [`Notification::Paid`].
    FeeAboveLimit {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// Which payment.
        payment: PaymentRef,
        /// The fee the wallet reported, in millisats.
        fee_msat: u64,
        /// The limit it was given, in millisats.
        max_fee_msat: u64,
    },
    /// A payment the customer asked for failed; its budget is free again.
    PaymentFailed {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// Which payment.
        payment: PaymentRef,
        /// Which kind of failure.
        #[serde(default)]
        failure: WalletFailure,
        /// What the wallet said.
        reason: String,
    },
    /// A partial result.
    Partial {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// The sample.
        content: String,
    },
    /// A result, checked and decrypted.
    Result {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// The result's content.
        content: String,
        /// The result event's id (for zapping it, for instance).
        result_id: EventId,
    },
    /// A provider reported an error.
    Failed {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// What it said.
        reason: String,
    },
    /// The job got no result before its timeout.
    TimedOut {
        /// The job.
        job: EventId,
    },
    /// The job's provider announces (NIP-89) that it does not read the job's scheme: the
    /// job ended without waiting for its timeout.
    Unsupported {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// What it does not read: "encrypted requests" or "gift-wrapped requests".
        what: String,
    },
    /// An event was not counted as an answer.
    Refused {
        /// The event.
        event: EventId,
        /// Why.
        reason: String,
    },
}

/// What the host did wrong, or why a payment is not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be built.
    #[error("cannot build the request: {0}")]
    Build(String),
    /// The request's NIP-44 plaintext (its encrypted tags, or for a gift wrap the seal it
    /// wraps) is longer than the standard length prefix carries; nothing was sent. Most
    /// providers cannot read the extended prefix: send less, or set
    /// [`CustomerConfig::nip44_extended_prefix`](super::CustomerConfig::nip44_extended_prefix)
    /// for a provider known to read it.
    #[error(
        "the request's NIP-44 plaintext of {len} bytes exceeds {max} bytes, the most providers \
         read without the extended length prefix (CustomerConfig::nip44_extended_prefix)"
    )]
    PlaintextTooLong {
        /// The plaintext's length, in bytes.
        len: usize,
        /// The most the standard length prefix carries: 65,535.
        max: usize,
    },
    /// The provider's announcement (NIP-89) for the request's kind says it does not read
    /// this delivery's scheme; nothing was sent.
    #[error("provider {provider} announces that it does not read {what}")]
    Unsupported {
        /// The provider.
        provider: PublicKey,
        /// What it does not read: "encrypted requests" or "gift-wrapped requests".
        what: &'static str,
    },
    /// A job with this id (the same request, signed at the same second) is already
    /// submitted.
    #[error("job {0} is already submitted")]
    DuplicateJob(EventId),
    /// No job has this id.
    #[error("no job {0}")]
    UnknownJob(EventId),
    /// This provider asked for no payment on this job.
    #[error("provider {provider} asked for no payment on job {job}")]
    NothingToPay {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
    },
    /// The payment request came with no invoice: zap it instead.
    #[error("provider {provider} sent no invoice for job {job}")]
    NoInvoice {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
    },
    /// The payment request's invoice failed a check.
    #[error("the invoice of provider {provider} for job {job} is refused: {reason}")]
    InvalidInvoice {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
        /// Why.
        reason: InvoiceError,
    },
    /// A payment to this provider for this job is already made or under way, or this
    /// invoice was already handed to the wallet.
    #[error("provider {provider} is already paid (or being paid) for job {job}")]
    AlreadyPaid {
        /// The job.
        job: EventId,
        /// The provider.
        provider: PublicKey,
    },
    /// The payment would pay the job's providers more than its bid.
    #[error("job {job}: {needed_msat} msat exceeds what is left of the bid, {left_msat} msat")]
    OverBudget {
        /// The job.
        job: EventId,
        /// The amount plus the fee allowance.
        needed_msat: u64,
        /// What is left of the bid.
        left_msat: u64,
    },
    /// No payment has this reference.
    #[error("no payment {0:?}")]
    UnknownPayment(PaymentRef),
    /// The invoice an LNURL callback returned for a zap is refused
    /// ([`Customer::zap_invoice`](super::Customer::zap_invoice)): it is never paid.
    #[error("the invoice for zap {zap} is refused: {reason}")]
    InvalidZapInvoice {
        /// The zap request's id.
        zap: EventId,
        /// Why.
        reason: String,
    },
    /// The preimage reported for an invoice payment (or a zap whose invoice was recorded)
    /// does not hash to its payment hash.
    #[error("the preimage does not match the payment hash")]
    PreimageMismatch,
    /// A snapshot could not be restored.
    #[error("cannot restore: {0}")]
    Restore(String),
}
