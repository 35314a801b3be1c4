//! Plain words for what the provider reports: [`RejectReason`] and [`Notification`] print as
//! sentences a log reader (or a customer, for the refusals it is told) understands, not as
//! Rust debug output.

use core::fmt::{self, Display, Formatter};

use super::{Notification, PaymentVia, RejectReason};

impl Display for RejectReason {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::NotAllowed => {
                f.write_str("the customer is not allowed (deny list, or not on the allow list)")
            }
            RejectReason::RateLimited => {
                f.write_str("the customer sent more requests than its rate limit allows")
            }
            RejectReason::AtCapacity => f.write_str("the provider is at capacity"),
            RejectReason::TooLarge { bytes } => {
                write!(
                    f,
                    "the request is {bytes} bytes, more than the provider takes"
                )
            }
            RejectReason::InsufficientPow { difficulty } => write!(
                f,
                "the request's proof of work ({difficulty} bits) is below the minimum"
            ),
            RejectReason::Expired => {
                f.write_str("the request had expired (NIP-40) when it arrived")
            }
            RejectReason::FutureDated => f.write_str("the request is dated in the future"),
            RejectReason::InvoiceRateLimited => {
                f.write_str("too many invoices were asked for: try again later")
            }
            RejectReason::Stale => f.write_str("the request is too old to be taken"),
            RejectReason::Malformed(why) => write!(f, "the request could not be read: {why}"),
            RejectReason::Refused(why) => write!(f, "the price could not be set: {why}"),
            RejectReason::BidTooLow {
                price_msat,
                bid_msat,
            } => write!(
                f,
                "the price, {price_msat} msat, is above the bid of {bid_msat} msat"
            ),
            RejectReason::ByHost(why) => write!(f, "the provider declined it: {why}"),
        }
    }
}

impl Display for PaymentVia {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            PaymentVia::Zap { receipt } => write!(f, "zap receipt {receipt}"),
            PaymentVia::Wallet => f.write_str("the provider's wallet"),
        }
    }
}

impl Display for Notification {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Notification::JobReceived { job, customer } => {
                write!(f, "job {job} received from {customer}")
            }
            Notification::JobClaimedElsewhere { job } => {
                write!(f, "job {job} claimed by another process of the fleet")
            }
            Notification::JobRejected { job, reason } => {
                write!(f, "request {job} refused: {reason}")
            }
            Notification::PaymentRequired { job, amount_msat } => {
                write!(f, "job {job}: payment of {amount_msat} msat asked for")
            }
            Notification::PaymentReceived {
                job,
                amount_msat,
                via,
            } => write!(f, "job {job}: {amount_msat} msat paid, proven by {via}"),
            Notification::InvoiceFailed { job, reason } => {
                write!(f, "job {job}: no invoice: {reason}")
            }
            Notification::PaymentRefused {
                job: Some(job),
                reason,
            } => {
                write!(f, "job {job}: payment refused: {reason}")
            }
            Notification::PaymentRefused { job: None, reason } => {
                write!(f, "payment refused: {reason}")
            }
            Notification::JobStarted { job } => write!(f, "job {job} started"),
            Notification::JobCompleted { job } => write!(f, "job {job}: result published"),
            Notification::JobFailed { job, reason } => write!(f, "job {job} failed: {reason}"),
            Notification::JobCancelled { job } => write!(f, "job {job} cancelled by its customer"),
            Notification::JobExpired { job } => write!(f, "job {job} expired"),
            Notification::EventRefused { event, reason } => {
                write!(f, "event {event} dropped: {reason}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::EventId;

    #[test]
    fn every_reason_reads_as_words_not_debug_output() {
        let reasons = [
            RejectReason::NotAllowed,
            RejectReason::RateLimited,
            RejectReason::AtCapacity,
            RejectReason::TooLarge { bytes: 70_000 },
            RejectReason::InsufficientPow { difficulty: 3 },
            RejectReason::Expired,
            RejectReason::FutureDated,
            RejectReason::InvoiceRateLimited,
            RejectReason::Stale,
            RejectReason::Malformed("bad json".into()),
            RejectReason::Refused("no".into()),
            RejectReason::BidTooLow {
                price_msat: 2,
                bid_msat: 1,
            },
            RejectReason::ByHost("busy".into()),
        ];
        for reason in reasons {
            let words = reason.to_string();
            let debug = format!("{reason:?}");
            assert_ne!(words, debug);
            assert!(words.contains(' '), "{words}");
            // no Rust variant names or braces
            assert!(!words.contains('{') && !words.contains("::"), "{words}");
            let note = Notification::JobRejected {
                job: EventId::all_zeros(),
                reason,
            };
            assert!(note.to_string().ends_with(&words), "{note}");
        }
    }
}
