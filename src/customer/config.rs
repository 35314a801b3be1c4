//! How a customer runs: relays, auto-pay budget, network, limits.

use lightning_invoice::Currency;

use crate::nip90::KindRegistry;
use crate::rng::SeedSource;

/// How the customer runs.
#[derive(Debug, Clone)]
pub struct CustomerConfig {
    /// Relays to publish requests on and to ask providers to answer on.
    pub relays: Vec<String>,
    /// The most millisats paid without asking, per job, routing fees included (`None`, the
    /// default: always ask). Only an invoice that passes every check is auto-paid, only to
    /// the job's payee (see [`Customer`](super::Customer)), and never above the request's bid.
    pub auto_pay_limit_msat: Option<u64>,
    /// The most routing fee the wallet may spend on one payment, in millisats. It is handed
    /// to the wallet with every payment and counts against the auto-pay limit (what a job may
    /// cost without asking), not against the bid (what a provider may be paid). Default:
    /// 1,000 msat (1 sat).
    pub max_fee_msat: u64,
    /// The Lightning network invoices must be for. Default: Bitcoin mainnet.
    pub network: Currency,
    /// Seconds after submission when a job with no result is given up.
    pub timeout_secs: u64,
    /// The most providers whose answers are kept per job; answers from more are refused.
    /// Default: 16.
    pub max_answers_per_job: usize,
    /// Seconds after a result during which its provider may still ask to be paid (NIP-90
    /// pay-after-result: the result goes out, then `payment-required`); the job is done
    /// earlier once that provider is paid or being paid. Other providers are no longer heard
    /// once a result is in. 0: a job is done at its result. Default: 300.
    pub payment_after_result_secs: u64,
    /// Seconds a job is kept after it ended (result, timeout, cancellation) before it is
    /// dropped, so late answers are recognised and ignored. A job with a payment whose outcome
    /// is unknown is kept until the outcome arrives. Default: 3,600 (one hour).
    pub done_retention_secs: u64,
    /// The request/result/feedback kind triples.
    pub registry: KindRegistry,
    /// Where the customer's CSPRNG (nonces, IVs, one-time keys, signature aux data) gets its
    /// seed: the operating system by default, drawn anew by every `Customer::new`; a fixed
    /// seed ([`SeedSource::Deterministic`]) only for reproducible tests.
    pub seed: SeedSource,
    /// Whether NIP-44 requests (encrypted or gift-wrapped) may use the extended length prefix
    /// for plaintexts over 65,535 bytes. Off by default: most providers' software refuses it
    /// and drops such a request without a word, so [`Customer::submit`](super::Customer::submit)
    /// refuses it first ([`Error::PlaintextTooLong`](super::Error::PlaintextTooLong)). Turn it
    /// on only for a provider known to read it.
    pub nip44_extended_prefix: bool,
}

impl CustomerConfig {
    /// Defaults: these relays, no auto-pay, a 1-sat fee cap per payment, Bitcoin mainnet, a
    /// 10-minute timeout, 16 providers per job, 5 minutes for a payment asked after the
    /// result, ended jobs kept one hour.
    pub fn new<S: Into<String>>(relays: impl IntoIterator<Item = S>) -> Self {
        Self {
            relays: relays.into_iter().map(Into::into).collect(),
            auto_pay_limit_msat: None,
            max_fee_msat: 1_000,
            network: Currency::Bitcoin,
            timeout_secs: 600,
            max_answers_per_job: 16,
            payment_after_result_secs: 300,
            done_retention_secs: 3_600,
            registry: KindRegistry::nip90(),
            seed: SeedSource::OperatingSystem,
            nip44_extended_prefix: false,
        }
    }
}
