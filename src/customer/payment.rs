//! Payments: the budget per job, the intents recorded before the wallet is called, and
//! their outcomes.

use nostr::{Event, EventId, PublicKey, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::invoice::CheckedInvoice;
use super::{Customer, Error, JobEnd, Notification, Output};
use crate::bolt11::{Invoice, InvoiceDescription};
use crate::nip57::ZapRequestBuilder;
use nostr::JsonUtil;

/// Which payment: the key under which the host reports its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PaymentRef {
    /// An invoice payment, by its payment hash.
    Invoice([u8; 32]),
    /// A zap, by its zap request's id.
    Zap(EventId),
}

/// What became of a payment, as the host's wallet tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentOutcome {
    /// It was paid.
    Paid {
        /// The preimage, when the wallet gives it (checked against the payment hash).
        preimage: Option<[u8; 32]>,
        /// The routing fee spent, in millisats.
        fee_msat: u64,
    },
    /// It failed for good, or (answering [`Output::LookupPayment`]) the wallet never started
    /// it. Its budget is free again; the same invoice is still never handed out again.
    Failed {
        /// Which kind of failure: what the application may do about it.
        failure: WalletFailure,
        /// What the wallet said.
        reason: String,
    },
    /// Still in flight (answering [`Output::LookupPayment`]): report again when it settles.
    Pending,
}

impl PaymentOutcome {
    /// A failure of this kind, for this reason.
    pub fn failed(failure: WalletFailure, reason: impl Into<String>) -> Self {
        Self::Failed {
            failure,
            reason: reason.into(),
        }
    }
}

/// Why a payment failed, as the wallet (or the runtime before it) says: the kinds NIP-47
/// wallets report, which other wallets map onto. Nothing was paid in any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WalletFailure {
    /// The wallet has not enough funds for the amount and its fee reserve.
    InsufficientBalance,
    /// The wallet's spending budget for this connection is used up.
    BudgetExceeded,
    /// The wallet refuses requests this fast: try again later.
    RateLimited,
    /// The wallet does not offer this (an unsupported NIP-47 method).
    Unsupported,
    /// The wallet does not allow this key or this operation.
    NotAllowed,
    /// Paying could cost more in routing fees than the limit allows: not tried.
    FeeAboveLimit,
    /// The payment was tried and failed (no route, timeout at the node, expired invoice).
    PaymentFailed,
    /// The wallet has no such payment: it never made it (answering a look-up).
    NotFound,
    /// The payment was not handed to the wallet (the intent could not be stored, no invoice
    /// could be had).
    NotSent,
    /// Anything else.
    #[default]
    Other,
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentState {
    /// Handed to the host; no outcome yet.
    InFlight,
    /// Paid, with this routing fee.
    Paid {
        /// The routing fee, in millisats.
        fee_msat: u64,
    },
    /// Failed.
    Failed,
}

/// A payment the customer asked its host to make: recorded before the wallet is called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The job.
    pub job: EventId,
    /// The provider paid.
    pub provider: PublicKey,
    /// The amount, in millisats.
    pub amount_msat: u64,
    /// The fee allowance given to the wallet, in millisats.
    pub max_fee_msat: u64,
    /// The invoice: for an invoice payment, the provider's; for a zap, the one its LNURL
    /// callback returned, once recorded ([`Customer::zap_invoice`]).
    pub bolt11: Option<String>,
    /// The zap request, for a zap.
    pub zap_request: Option<Event>,
    /// Where it stands.
    pub state: PaymentState,
    /// When it was asked for.
    pub started_at: Timestamp,
}

impl Payment {
    /// What it takes from the job's budget: nothing once failed; the amount and the fee
    /// allowance while in flight; the amount and the fee reported once paid.
    pub fn committed_msat(&self) -> u64 {
        match self.state {
            PaymentState::Failed => 0,
            PaymentState::InFlight => self.amount_msat.saturating_add(self.max_fee_msat),
            PaymentState::Paid { fee_msat } => self.amount_msat.saturating_add(fee_msat),
        }
    }
}

/// A provider's request to be paid: from `payment-required` feedback, or from a result's
/// `amount` tag (paid after the result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequest {
    /// The amount the `amount` tag asks, in millisats.
    pub amount_msat: u64,
    /// The invoice, as sent.
    pub bolt11: Option<String>,
    /// The invoice's checks, when it sent one.
    pub invoice: Option<Result<CheckedInvoice, super::InvoiceError>>,
    /// The event that asked (feedback, or the result).
    pub event: EventId,
    /// Whether it came with the result (a zap then goes to the request).
    pub after_result: bool,
}

/// How much a job may still spend.
struct Budget {
    /// Committed by its payments so far, fees included (against the auto-pay limit).
    committed: u64,
    /// Committed to providers so far: the amounts, without fees (against the bid, which is
    /// what the customer offered a provider).
    to_providers: u64,
    /// The bid's cap, if the request had a bid.
    bid: Option<u64>,
}

impl Customer {
    /// Every payment the customer asked for and still remembers (the jobs that are dropped
    /// take theirs along, except payments whose outcome is unknown).
    pub fn payments(&self) -> impl Iterator<Item = (&PaymentRef, &Payment)> {
        self.payments.iter()
    }

    /// One payment.
    pub fn payment(&self, payment: &PaymentRef) -> Option<&Payment> {
        self.payments.get(payment)
    }

    /// The millisats a job has committed: the amounts and fee allowances of its payments
    /// that did not fail.
    pub fn committed_msat(&self, job: &EventId) -> u64 {
        self.job_payments(job)
            .map(Payment::committed_msat)
            .fold(0, u64::saturating_add)
    }

    fn budget(&self, job: &EventId) -> Option<Budget> {
        let j = self.jobs.get(job)?;
        let bid = j
            .request
            .bid
            .map(|b| b.max_msat.map_or(b.amount_msat, |m| m.max(b.amount_msat)));
        Some(Budget {
            committed: self.committed_msat(job),
            to_providers: self
                .job_payments(job)
                .filter(|p| p.state != PaymentState::Failed)
                .map(|p| p.amount_msat)
                .fold(0, u64::saturating_add),
            bid,
        })
    }

    /// Pays `provider`'s payment request on `job` with its invoice: emits
    /// [`Output::PayInvoice`] and returns the payment's reference.
    ///
    /// Refused with a typed error when the invoice failed a check (or has expired at `now`),
    /// when this provider is already paid or being paid for the job (by invoice or zap), when
    /// this invoice was already handed to the wallet, or when the amount exceeds what is left
    /// of the request's bid. The auto-pay limit does not apply:
    /// the host decides.
    pub fn pay(
        &mut self,
        now: Timestamp,
        job: EventId,
        provider: PublicKey,
    ) -> Result<PaymentRef, Error> {
        let request = self.payable(job, provider)?;
        let bolt11 = request
            .bolt11
            .clone()
            .ok_or(Error::NoInvoice { job, provider })?;
        let invoice = match request.invoice {
            Some(Ok(invoice)) => invoice,
            Some(Err(reason)) => {
                return Err(Error::InvalidInvoice {
                    job,
                    provider,
                    reason,
                })
            }
            None => return Err(Error::NoInvoice { job, provider }),
        };
        invoice
            .unexpired(now)
            .map_err(|reason| Error::InvalidInvoice {
                job,
                provider,
                reason,
            })?;
        let reference = PaymentRef::Invoice(invoice.payment_hash);
        if self.payments.contains_key(&reference) {
            return Err(Error::AlreadyPaid { job, provider });
        }
        self.check_bid(job, invoice.amount_msat)?;
        self.start_payment(
            now,
            reference,
            Payment {
                job,
                provider,
                amount_msat: invoice.amount_msat,
                max_fee_msat: self.config.max_fee_msat,
                bolt11: Some(bolt11.clone()),
                zap_request: None,
                state: PaymentState::InFlight,
                started_at: now,
            },
        );
        self.outbox.push_back(Output::PayInvoice {
            job,
            provider,
            bolt11,
            amount_msat: invoice.amount_msat,
            payment_hash: invoice.payment_hash,
            max_fee_msat: self.config.max_fee_msat,
        });
        Ok(reference)
    }

    /// Pays `provider`'s payment request on `job` with a zap of the tag's amount, bound to its
    /// feedback (or to the request, for a payment asked with the result): a signed zap
    /// request for the host to send to the provider's LNURL callback. Refused as
    /// [`pay`](Self::pay) is, except that the invoice is not needed.
    pub fn zap(
        &mut self,
        now: Timestamp,
        job: EventId,
        provider: PublicKey,
    ) -> Result<PaymentRef, Error> {
        self.zap_with(now, job, provider, None)
    }

    /// Like [`zap`](Self::zap), with the provider's LNURL (the bech32 `lnurl1...` of its
    /// LNURL-pay service) in the zap request's `lnurl` tag, as NIP-57 recommends.
    pub fn zap_via(
        &mut self,
        now: Timestamp,
        job: EventId,
        provider: PublicKey,
        lnurl: &str,
    ) -> Result<PaymentRef, Error> {
        self.zap_with(now, job, provider, Some(lnurl))
    }

    fn zap_with(
        &mut self,
        now: Timestamp,
        job: EventId,
        provider: PublicKey,
        lnurl: Option<&str>,
    ) -> Result<PaymentRef, Error> {
        let request = self.payable(job, provider)?;
        let amount_msat = request.amount_msat;
        self.check_bid(job, amount_msat)?;
        let target = if request.after_result {
            job
        } else {
            request.event
        };
        let mut builder = ZapRequestBuilder::new(provider, self.config.relays.clone())
            .amount_msat(amount_msat)
            .event(target);
        if let Some(lnurl) = lnurl {
            builder = builder.lnurl(lnurl);
        }
        let zap_request = builder
            .sign(&self.keys, now, &mut self.rng)
            .map_err(|e| Error::Build(e.to_string()))?;
        let reference = PaymentRef::Zap(zap_request.id);
        self.start_payment(
            now,
            reference,
            Payment {
                job,
                provider,
                amount_msat,
                max_fee_msat: self.config.max_fee_msat,
                bolt11: None,
                zap_request: Some(zap_request.clone()),
                state: PaymentState::InFlight,
                started_at: now,
            },
        );
        self.outbox.push_back(Output::SendZap {
            job,
            provider,
            zap_request,
            amount_msat,
            max_fee_msat: self.config.max_fee_msat,
        });
        Ok(reference)
    }

    /// Records the invoice the provider's LNURL callback returned for the zap `zap` (an
    /// [`Output::SendZap`]), before the wallet pays it: persist the customer after this call,
    /// so that after a crash [`Output::LookupPayment`] carries this invoice and the payment is
    /// looked up by its hash, never made again. Returns its payment hash.
    ///
    /// Refused unless the invoice is valid, on the configured network, unexpired at `now`,
    /// for exactly the zap's amount, and its description hash is the SHA-256 of the zap
    /// request's JSON (NIP-57 Appendix B); and unless the zap is in flight with no other
    /// invoice recorded (recording the same invoice again is harmless).
    pub fn zap_invoice(
        &mut self,
        now: Timestamp,
        zap: EventId,
        bolt11: &str,
    ) -> Result<[u8; 32], Error> {
        let reference = PaymentRef::Zap(zap);
        let p = self
            .payments
            .get(&reference)
            .ok_or(Error::UnknownPayment(reference))?;
        let refuse = |reason: String| Error::InvalidZapInvoice { zap, reason };
        let zap_request = p
            .zap_request
            .as_ref()
            .ok_or_else(|| refuse("no zap request is recorded".into()))?;
        let invoice = Invoice::parse(bolt11).map_err(|e| refuse(e.to_string()))?;
        if let Some(recorded) = &p.bolt11 {
            return match recorded.trim() == bolt11.trim() {
                true => Ok(invoice.payment_hash()),
                false => Err(refuse("another invoice is already recorded".into())),
            };
        }
        if p.state != PaymentState::InFlight {
            return Err(refuse("the zap is no longer in flight".into()));
        }
        if invoice.currency() != self.config.network {
            return Err(refuse(format!("network {}", invoice.currency())));
        }
        if invoice.amount_msat() != Some(p.amount_msat) {
            return Err(refuse(format!(
                "amount {:?} msat, not the zap's {} msat",
                invoice.amount_msat(),
                p.amount_msat
            )));
        }
        let digest: [u8; 32] = Sha256::digest(zap_request.as_json().as_bytes()).into();
        if invoice.description() != InvoiceDescription::Hash(digest) {
            return Err(refuse(
                "its description hash is not the SHA-256 of the zap request".into(),
            ));
        }
        if invoice.expires_at() <= now.as_secs() {
            return Err(refuse(format!("expired at {}", invoice.expires_at())));
        }
        let hash = invoice.payment_hash();
        if self.payments.contains_key(&PaymentRef::Invoice(hash)) {
            return Err(refuse(
                "this invoice was already handed to the wallet".into(),
            ));
        }
        if let Some(p) = self.payments.get_mut(&reference) {
            p.bolt11 = Some(bolt11.trim().to_owned());
        }
        self.dirty = true;
        Ok(hash)
    }

    /// Reports what became of a payment ([`Output::PayInvoice`], [`Output::SendZap`] or
    /// [`Output::LookupPayment`]). Reporting the same outcome twice is harmless; a paid
    /// payment stays paid.
    pub fn handle_payment_outcome(
        &mut self,
        now: Timestamp,
        payment: PaymentRef,
        outcome: PaymentOutcome,
    ) -> Result<(), Error> {
        let p = self
            .payments
            .get_mut(&payment)
            .ok_or(Error::UnknownPayment(payment))?;
        let (job, provider, amount_msat, max_fee_msat) =
            (p.job, p.provider, p.amount_msat, p.max_fee_msat);
        let mut over_limit = None;
        let note = match outcome {
            PaymentOutcome::Pending => return Ok(()),
            PaymentOutcome::Paid { preimage, fee_msat } => {
                let hash = match payment {
                    PaymentRef::Invoice(hash) => Some(hash),
                    // A zap whose invoice was recorded: the preimage must be that invoice's.
                    PaymentRef::Zap(_) => p
                        .bolt11
                        .as_deref()
                        .and_then(|b| Invoice::parse(b).ok())
                        .map(|invoice| invoice.payment_hash()),
                };
                if let (Some(preimage), Some(hash)) = (preimage, hash) {
                    let digest: [u8; 32] = Sha256::digest(preimage).into();
                    if digest != hash {
                        return Err(Error::PreimageMismatch);
                    }
                }
                if matches!(p.state, PaymentState::Paid { .. }) {
                    return Ok(());
                }
                p.state = PaymentState::Paid { fee_msat };
                // A wallet that cannot be told the limit (NIP-47 has no such field) may
                // have spent more: the application must know.
                if fee_msat > max_fee_msat {
                    over_limit = Some(Notification::FeeAboveLimit {
                        job,
                        provider,
                        payment,
                        fee_msat,
                        max_fee_msat,
                    });
                }
                Notification::Paid {
                    job,
                    provider,
                    payment,
                    amount_msat,
                    fee_msat,
                }
            }
            PaymentOutcome::Failed { failure, reason } => {
                if p.state != PaymentState::InFlight {
                    return Ok(());
                }
                p.state = PaymentState::Failed;
                Notification::PaymentFailed {
                    job,
                    provider,
                    payment,
                    failure,
                    reason,
                }
            }
        };
        self.dirty = true;
        self.outbox.push_back(Output::Notify(note));
        if let Some(over) = over_limit {
            self.outbox.push_back(Output::Notify(over));
        }
        let _ = now;
        Ok(())
    }

    /// The payment request of `provider` on `job`, if it may be paid: no payment to this
    /// provider for this job is made or under way.
    fn payable(&self, job: EventId, provider: PublicKey) -> Result<PaymentRequest, Error> {
        let j = self.jobs.get(&job).ok_or(Error::UnknownJob(job))?;
        let answer = j
            .answers
            .get(&provider)
            .ok_or(Error::NothingToPay { job, provider })?;
        let request = answer
            .payment
            .clone()
            .ok_or(Error::NothingToPay { job, provider })?;
        if self.paying(job, provider) {
            return Err(Error::AlreadyPaid { job, provider });
        }
        Ok(request)
    }

    /// Whether a payment to `provider` for `job` is made or under way.
    pub(super) fn paying(&self, job: EventId, provider: PublicKey) -> bool {
        self.job_payments(&job)
            .any(|p| p.provider == provider && p.state != PaymentState::Failed)
    }

    /// Whether `provider` was ever asked to be paid on `job` (failed attempts included).
    fn attempted(&self, job: EventId, provider: PublicKey) -> bool {
        self.job_payments(&job).any(|p| p.provider == provider)
    }

    fn check_bid(&self, job: EventId, amount_msat: u64) -> Result<(), Error> {
        let Some(budget) = self.budget(&job) else {
            return Err(Error::UnknownJob(job));
        };
        // The bid caps what providers are paid; routing fees are the customer's own cost.
        let needed_msat = amount_msat;
        if let Some(bid) = budget.bid {
            let left_msat = bid.saturating_sub(budget.to_providers);
            if needed_msat > left_msat {
                return Err(Error::OverBudget {
                    job,
                    needed_msat,
                    left_msat,
                });
            }
        }
        Ok(())
    }

    fn start_payment(&mut self, now: Timestamp, reference: PaymentRef, payment: Payment) {
        let (job, provider) = (payment.job, payment.provider);
        self.payments.insert(reference, payment);
        self.dirty = true;
        if let Some(j) = self.jobs.get_mut(&job) {
            j.payments.push(reference);
            if j.payee.is_none() {
                j.payee = Some(provider);
            }
        }
        self.maybe_done(now, job);
    }

    /// Pays `provider`'s new payment request on `job` without asking, if everything allows:
    /// an auto-pay limit is set, the invoice passed every check, the provider is the job's
    /// payee (or the job has none yet), it was never asked to be paid on this job, and the
    /// amount plus the fee allowance fits in what is left of the limit, and the amount in what
    /// is left of the bid.
    pub(super) fn maybe_auto_pay(&mut self, now: Timestamp, job: EventId, provider: PublicKey) {
        let Some(limit) = self.config.auto_pay_limit_msat else {
            return;
        };
        let Some(j) = self.jobs.get(&job) else {
            return;
        };
        if j.ended.is_some() || j.payee.is_some_and(|p| p != provider) {
            return;
        }
        let Some(Some(Ok(invoice))) = j
            .answers
            .get(&provider)
            .and_then(|a| a.payment.as_ref())
            .map(|r| r.invoice.clone())
        else {
            return;
        };
        if self.attempted(job, provider) || invoice.unexpired(now).is_err() {
            return;
        }
        let Some(budget) = self.budget(&job) else {
            return;
        };
        // The limit caps what the job costs, fees included; the bid caps what the provider
        // gets.
        let needed = invoice.amount_msat.saturating_add(self.config.max_fee_msat);
        if budget.committed.saturating_add(needed) > limit {
            return;
        }
        if budget
            .bid
            .is_some_and(|bid| budget.to_providers.saturating_add(invoice.amount_msat) > bid)
        {
            return;
        }
        let _ = self.pay(now, job, provider);
    }

    /// Ends a job that has its result once its provider is paid (or being paid), or once the
    /// window for a payment asked after the result has closed.
    pub(super) fn maybe_done(&mut self, now: Timestamp, job: EventId) {
        let Some(j) = self.jobs.get(&job) else {
            return;
        };
        let Some((from, at)) = j.result_from else {
            return;
        };
        if j.ended.is_some() {
            return;
        }
        let window_closed = at
            .as_secs()
            .saturating_add(self.config.payment_after_result_secs)
            <= now.as_secs();
        if window_closed || self.paying(job, from) {
            self.end(now, job, JobEnd::Done);
        }
    }
}
