//! Payments: invoices, zap receipts (and those that come before their request), wallet
//! proofs, the replay ledger, and the payments that must be refunded.
//!
//! Every verified payment goes through [`Provider::accept_payment`], which records it in the
//! ledger first (one receipt, one payment hash, one job, once) and then decides, at the
//! handling `now`, whether it starts work or is handed back as an [`Output::Refund`].

use crate::bolt11::Invoice;
use nostr::{Event, EventId, PublicKey, Timestamp};
use sha2::{Digest, Sha256};

use super::{
    Error, JobInvoice, Notification, Output, PaymentProof, PaymentVia, Provider, RefundDue,
    RefundReason,
};
use crate::job::JobState;
use crate::nip57::{verify_zap_receipt, ZapExpectation};
use crate::nip90::FeedbackStatus;

/// A payment proven by a zap receipt or by the host's wallet, about to be accepted.
struct Payment {
    amount_msat: u64,
    via: PaymentVia,
    payer: Option<PublicKey>,
    payment_hash: [u8; 32],
}

impl Provider {
    // ---- invoices --------------------------------------------------------------------------

    pub(super) fn on_invoice(
        &mut self,
        now: Timestamp,
        job: EventId,
        invoice: Result<String, String>,
    ) -> Result<(), Error> {
        let for_result = match self.jobs.get(&job).map(|j| &j.state) {
            None => return Err(Error::UnknownJob(job)),
            Some(JobState::Invoicing) => false,
            Some(JobState::InvoicingResult) => true,
            Some(_) => return Ok(()),
        };
        let bolt11 = match invoice {
            Ok(bolt11) => bolt11.trim().to_owned(),
            Err(reason) => {
                self.invoice_failed(now, job, for_result, reason);
                return Ok(());
            }
        };
        let (payment_hash, expires_at) = match self.check_invoice(now, job, &bolt11) {
            Ok(checked) => checked,
            Err(reason) => {
                // The host's error, and the job cannot go on: end it now, not at the timeout.
                self.invoice_failed(now, job, for_result, format!("invalid invoice: {reason}"));
                return Err(Error::InvalidInvoice { job, reason });
            }
        };
        if let Some(j) = self.job_mut(&job) {
            let feedback = j.payment_feedback();
            j.invoice = Some(Box::new(JobInvoice {
                invoice: Some((bolt11, payment_hash)),
                feedback,
            }));
        }
        self.dirty = true;
        self.payment_ready(now, job, for_result, Some(expires_at))
    }

    /// Asks for the invoice of a job just put in `Invoicing` (or `InvoicingResult`) for
    /// `amount_msat`: from the host's backend ([`Output::RequestInvoice`]), or, when the
    /// provider is paid by zaps alone ([`ProviderConfig::zaps_only`](super::ProviderConfig)),
    /// nowhere: the payment request goes out at once, with the amount and no invoice.
    pub(super) fn ask_invoice(&mut self, now: Timestamp, id: EventId, amount_msat: u64) {
        if !self.config.zaps_only {
            self.push_invoice_request(id, amount_msat);
            return;
        }
        let for_result = match self.jobs.get(&id).map(|j| &j.state) {
            Some(JobState::Invoicing) => false,
            Some(JobState::InvoicingResult) => true,
            _ => return,
        };
        if let Err(e) = self.payment_ready(now, id, for_result, None) {
            // The payment request could not be built: the job cannot be paid.
            self.invoice_failed(now, id, for_result, e.to_string());
        }
    }

    /// Asks for payment once the job's invoice is there (or, paid by zaps alone, without
    /// one), or ends the job if it was paid meanwhile. `expires_at`: the invoice's expiry.
    fn payment_ready(
        &mut self,
        now: Timestamp,
        job: EventId,
        for_result: bool,
        expires_at: Option<u64>,
    ) -> Result<(), Error> {
        let price = self.jobs.get(&job).map(|j| j.price_msat).unwrap_or(0);
        // The window closes at the invoice's expiry when that comes first.
        let window = match expires_at {
            Some(at) => self
                .config
                .payment_window_secs
                .min(at.saturating_sub(now.as_secs())),
            None => self.config.payment_window_secs,
        };
        let paid = self.ledger.paid_job(&job);
        let holds_result = self.jobs.get(&job).is_some_and(|j| j.held.is_some());
        if !for_result {
            self.request_payment(now, job, price, JobState::AwaitingPayment, window)
        } else if paid && holds_result {
            // Paid (a zap on the request) while the invoice was being made.
            self.release_held(now, job);
            Ok(())
        } else if paid {
            self.finish(now, job, JobState::Delivered { paid: true });
            Ok(())
        } else if holds_result {
            // Partial then pay: the sample the task chose, then payment-required.
            let sample = self
                .jobs
                .get(&job)
                .and_then(|j| j.held.as_ref())
                .and_then(|h| h.sample.clone());
            if let Some(sample) = sample {
                self.send_feedback(now, job, FeedbackStatus::Partial, None, Some(sample), false)?;
            }
            self.request_payment(now, job, price, JobState::AwaitingPaymentForResult, window)
        } else {
            // Pay after the result: the result is out; ask for payment and end the job. A
            // payment still counts while the job is kept (`retention_secs`).
            self.send_payment_required(now, job, price)?;
            self.finish(now, job, JobState::Delivered { paid: false });
            Ok(())
        }
    }

    /// `payment-required` feedback with the job's amount and invoice; zaps of it pay for the
    /// job.
    fn send_payment_required(
        &mut self,
        now: Timestamp,
        job: EventId,
        price: u64,
    ) -> Result<(), Error> {
        let fid =
            self.send_feedback(now, job, FeedbackStatus::PaymentRequired, None, None, true)?;
        if let Some(j) = self.job_mut(&job) {
            match j.invoice.as_mut() {
                Some(invoice) => invoice.feedback = Some(fid),
                // Paid by zaps alone: no invoice, only the feedback to zap.
                None => {
                    j.invoice = Some(Box::new(JobInvoice {
                        invoice: None,
                        feedback: Some(fid),
                    }))
                }
            }
        }
        self.bindings.insert(fid, job);
        self.notify(Notification::PaymentRequired {
            job,
            amount_msat: price,
        });
        Ok(())
    }

    /// Checks an invoice from the host's backend for `job`: the job's exact price, the
    /// configured network, not expired at `now`. Returns its payment hash and expiry (unix
    /// seconds).
    fn check_invoice(
        &self,
        now: Timestamp,
        job: EventId,
        bolt11: &str,
    ) -> Result<([u8; 32], u64), String> {
        let price = self.jobs.get(&job).map(|j| j.price_msat).unwrap_or(0);
        let parsed = Invoice::parse(bolt11).map_err(|e| e.to_string())?;
        if parsed.amount_msat() != Some(price) {
            return Err(format!(
                "amount {:?} msat, price {price} msat",
                parsed.amount_msat()
            ));
        }
        if parsed.currency() != self.config.network {
            return Err(format!(
                "network {:?}, expected {:?}",
                parsed.currency(),
                self.config.network
            ));
        }
        let expires_at = parsed.expires_at();
        if expires_at <= now.as_secs() {
            return Err(format!("expired at {expires_at}"));
        }
        Ok((parsed.payment_hash(), expires_at))
    }

    /// No usable invoice for `job`.
    fn invoice_failed(&mut self, now: Timestamp, job: EventId, for_result: bool, reason: String) {
        if for_result {
            self.no_invoice(now, job, reason);
        } else {
            self.fail(now, job, format!("no invoice: {reason}"));
        }
    }

    // ---- proofs ----------------------------------------------------------------------------

    pub(super) fn on_wallet_payment(
        &mut self,
        now: Timestamp,
        job: EventId,
        proof: PaymentProof,
    ) -> Result<(), Error> {
        let j = self.jobs.get(&job).ok_or(Error::UnknownJob(job))?;
        let hash = match proof {
            PaymentProof::Preimage(preimage) => Sha256::digest(preimage).into(),
            PaymentProof::SettledPaymentHash(hash) => hash,
        };
        if j.payment_hash() != Some(hash) {
            return Err(Error::ProofMismatch(job));
        }
        let payment = Payment {
            amount_msat: j.price_msat,
            via: PaymentVia::Wallet,
            payer: None,
            payment_hash: hash,
        };
        self.accept_payment(now, job, payment);
        Ok(())
    }

    pub(super) fn on_zap_receipt(&mut self, now: Timestamp, receipt: Event) {
        // Which job does it claim to pay? Its `e` tag names the request, our payment-required
        // feedback, or (pay after the result) our result.
        let mut job = None;
        let mut target = None;
        for tag in receipt.tags.iter() {
            if let [name, value, ..] = tag.as_slice() {
                if name == "e" {
                    if let Ok(e) = EventId::from_hex(value) {
                        target = Some(e);
                        job = self
                            .bindings
                            .get(&e)
                            .copied()
                            .or_else(|| self.jobs.contains_key(&e).then_some(e));
                    }
                }
            }
        }
        let Some(id) = job else {
            // Not a zap for any job of ours: ordinary zaps to the provider's key are normal.
            // It may be a zap on a request that has not reached us yet: keep it a while.
            if let Some(target) = target {
                self.keep_early_receipt(now, target, receipt);
            }
            return;
        };
        let Some(j) = self.jobs.get(&id) else { return };
        let bind_to: Vec<EventId> = std::iter::once(id)
            .chain(j.payment_feedback())
            .chain(j.result_id.as_deref().copied())
            .collect();
        let request_created = j.request.created_at;
        let mut expect = ZapExpectation::new(
            self.keys.public_key(),
            self.config.zappers.iter().copied(),
            bind_to,
            j.price_msat,
            now,
        )
        .network(self.config.network.clone());
        if let Some(lnurl) = &self.config.lnurl {
            expect = expect.lnurl(lnurl);
        }
        if self.config.lenient_description_hash {
            expect = expect.lenient_description_hash();
        }
        if self.config.lenient_receipt_tags {
            expect = expect.lenient_receipt_tags();
        }
        let zap = match verify_zap_receipt(&receipt, &expect) {
            Ok(zap) => zap,
            Err(e) => {
                self.notify(Notification::PaymentRefused {
                    job: Some(id),
                    reason: e.to_string(),
                });
                return;
            }
        };
        // A receipt from well before its job was made pays for something else: older than the
        // request minus the lookback (and the future skew a request may claim) is refused.
        if zap
            .paid_at
            .as_secs()
            .saturating_add(self.config.lookback_secs)
            .saturating_add(self.config.max_future_skew_secs)
            < request_created.as_secs()
        {
            self.notify(Notification::PaymentRefused {
                job: Some(id),
                reason: "the receipt is older than the job".into(),
            });
            return;
        }
        let payment = Payment {
            amount_msat: zap.amount_msat,
            via: PaymentVia::Zap {
                receipt: zap.receipt_id,
            },
            payer: Some(zap.sender),
            payment_hash: zap.payment_hash,
        };
        self.accept_payment(now, id, payment);
    }

    /// How long a payment for `job` stays spent: past the moment its request turns stale
    /// (the job cannot be made again), and at least `spent_retention_secs`.
    fn spent_until(&self, now: Timestamp, job: EventId) -> Timestamp {
        let stale = self
            .jobs
            .get(&job)
            .map(|j| {
                j.request
                    .created_at
                    .as_secs()
                    .saturating_add(self.config.retention_secs)
                    .saturating_add(1)
            })
            .unwrap_or(0);
        let least = now
            .as_secs()
            .saturating_add(self.config.spent_retention_secs);
        Timestamp::from(stale.max(least))
    }

    /// A verified payment for `id`: recorded once in the ledger, then it either moves the job
    /// on or, when it comes too late, for an ended job or for a job already paid, becomes an
    /// [`Output::Refund`] and the customer is told. The handling `now` decides, whether or not
    /// the job's timers have run.
    fn accept_payment(&mut self, now: Timestamp, id: EventId, payment: Payment) {
        if !self.jobs.contains_key(&id) {
            return;
        }
        let already_paid = self.ledger.paid_job(&id);
        let expires = self.spent_until(now, id);
        let fresh = match payment.via {
            PaymentVia::Zap { receipt } => {
                self.ledger
                    .record_zap(id, receipt, payment.payment_hash, expires)
            }
            PaymentVia::Wallet => self.ledger.record_wallet(id, payment.payment_hash, expires),
        };
        if !fresh {
            self.notify(Notification::PaymentRefused {
                job: Some(id),
                reason: "receipt or payment hash already used".into(),
            });
            return;
        }
        let receipt = match payment.via {
            PaymentVia::Zap { receipt } => Some(receipt),
            PaymentVia::Wallet => None,
        };
        self.changes.spent(super::ledger::ReplayLedger::keys_of(
            receipt,
            payment.payment_hash,
        ));
        // The job record carries its payments.
        self.changes.job(id);
        self.dirty = true;
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let priced = job.price_msat > 0;
        let state = job.state.clone();
        let window_closed = matches!(
            state,
            JobState::Invoicing
                | JobState::AwaitingPayment
                | JobState::InvoicingResult
                | JobState::AwaitingPaymentForResult
        ) && job.deadline.is_some_and(|d| d <= now);
        let refund = if !priced {
            None
        } else if already_paid {
            Some(RefundReason::AlreadyPaid)
        } else if state.is_terminal() && state != (JobState::Delivered { paid: false }) {
            Some(RefundReason::JobEnded(state.name().to_owned()))
        } else if job.request.is_expired(now) {
            Some(RefundReason::RequestExpired)
        } else if window_closed {
            Some(RefundReason::PaymentWindowClosed)
        } else {
            None
        };
        if let Some(reason) = refund {
            self.refund(now, id, payment, reason);
            return;
        }
        self.notify(Notification::PaymentReceived {
            job: id,
            amount_msat: payment.amount_msat,
            via: payment.via,
        });
        match state {
            // A zap on the request itself can arrive before our invoice does.
            JobState::AwaitingPayment | JobState::Invoicing => self.start_task(now, id),
            JobState::AwaitingPaymentForResult => self.release_held(now, id),
            JobState::Delivered { paid: false } => {
                if let Some(job) = self.job_mut(&id) {
                    // Retention still counts from delivery.
                    job.state = JobState::Delivered { paid: true };
                }
            }
            // Paid before acceptance, before its inputs or its invoice (for a result): the
            // ledger says so when the job gets there.
            _ => {}
        }
    }

    /// Hands a payment back: the job ends if it has not, the customer is told, and the host
    /// gets an [`Output::Refund`].
    fn refund(&mut self, now: Timestamp, id: EventId, payment: Payment, reason: RefundReason) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let customer = job.customer();
        let running = job.state == JobState::Running;
        let ends = matches!(
            reason,
            RefundReason::PaymentWindowClosed | RefundReason::RequestExpired
        );
        let _ = self.send_feedback(
            now,
            id,
            FeedbackStatus::Error,
            Some(format!(
                "a payment of {} msat came when {reason}: it does not pay for work, and is due \
                 back",
                payment.amount_msat
            )),
            None,
            false,
        );
        if ends && !self.jobs.get(&id).is_some_and(|j| j.state.is_terminal()) {
            if running {
                self.outbox.push_back(Output::CancelTask(id));
            }
            self.finish(now, id, JobState::Expired);
            self.notify(Notification::JobExpired { job: id });
        }
        self.outbox.push_back(Output::Refund(RefundDue {
            job: id,
            customer,
            payer: payment.payer,
            amount_msat: payment.amount_msat,
            via: payment.via,
            payment_hash: payment.payment_hash,
            received_at: now,
            reason,
        }));
        self.dirty = true;
    }

    // ---- receipts before their request --------------------------------------------------------

    /// Keeps a receipt bound to an unknown event, if a trusted zapper signed it, until its
    /// request arrives ([`take_early_receipts`](Self::take_early_receipts)) or it ages out.
    fn keep_early_receipt(&mut self, now: Timestamp, target: EventId, receipt: Event) {
        // Only a trusted zapper's, checked here: nobody else can push real ones out.
        if !self.config.zappers.contains(&receipt.pubkey)
            || self.forgotten_set.contains_key(&target)
        {
            return;
        }
        if self
            .early_receipts
            .iter()
            .any(|e| e.receipt.id == receipt.id)
            || !self.authentic(&receipt)
        {
            return;
        }
        self.expire_early_receipts(now);
        if self.early_receipts.len() >= super::MAX_EARLY_RECEIPTS {
            self.early_receipts.pop_front();
        }
        self.early_receipts.push_back(super::EarlyReceipt {
            received_at: now,
            target,
            receipt,
        });
        self.dirty = true;
    }

    fn expire_early_receipts(&mut self, now: Timestamp) {
        let keep = super::EARLY_RECEIPT_SECS.max(self.config.lookback_secs);
        while self
            .early_receipts
            .front()
            .is_some_and(|e| e.received_at.as_secs().saturating_add(keep) < now.as_secs())
        {
            self.early_receipts.pop_front();
        }
    }

    /// A job for `id` was just made: the receipts that came before it count now.
    pub(super) fn take_early_receipts(&mut self, now: Timestamp, id: EventId) {
        // On every request: a scan of at most MAX_EARLY_RECEIPTS ids, no allocation unless
        // one matches (ordinary zaps of the provider's notes also wait here).
        if !self.early_receipts.iter().any(|e| e.target == id) {
            return;
        }
        self.expire_early_receipts(now);
        let (early, rest): (std::collections::VecDeque<_>, _) =
            std::mem::take(&mut self.early_receipts)
                .into_iter()
                .partition(|e| e.target == id);
        self.early_receipts = rest;
        for e in early {
            self.on_zap_receipt(now, e.receipt);
        }
    }

    // ---- asking for payment -----------------------------------------------------------------

    /// Sends `payment-required` with the job's amount and invoice; the job then waits in
    /// `next` until the window closes: `window_secs` from now.
    pub(super) fn request_payment(
        &mut self,
        now: Timestamp,
        id: EventId,
        price: u64,
        next: JobState,
        window_secs: u64,
    ) -> Result<(), Error> {
        self.send_payment_required(now, id, price)?;
        self.set_state(now, id, next, Some(window_secs));
        Ok(())
    }

    /// Makes room for one more unpaid job: the oldest unpaid jobs expire, with `error`
    /// feedback, while the unpaid cap is reached.
    pub(super) fn make_unpaid_room(&mut self, now: Timestamp) {
        let cap = self.config.admission.max_unpaid_jobs.max(1);
        while self.unpaid.len() >= cap {
            let Some(&(_, oldest)) = self.unpaid.first() else {
                return;
            };
            let _ = self.send_feedback(
                now,
                oldest,
                FeedbackStatus::Error,
                Some("too many unpaid jobs: this one expired before it was paid".into()),
                None,
                false,
            );
            self.finish(now, oldest, JobState::Expired);
            self.notify(Notification::JobExpired { job: oldest });
        }
    }

    /// Counts one invoice against the global invoice rate; `false` when the rate is reached.
    /// A provider paid by zaps alone asks its host for no invoice: never limited.
    pub(super) fn take_invoice_slot(&mut self, now: Timestamp) -> bool {
        if self.config.zaps_only {
            return true;
        }
        match self.config.admission.invoice_rate_limit {
            Some(limit) => {
                self.dirty = true;
                super::admission::take_slot(&mut self.invoice_times, now, limit)
            }
            None => true,
        }
    }
}
