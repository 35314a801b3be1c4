//! [`Wallet`]: how a [`CustomerRuntime`](super::CustomerRuntime) pays.

use crate::customer::PaymentOutcome;

/// A customer's Lightning wallet: pays BOLT11 invoices and says what became of a payment.
///
/// Given to [`CustomerRuntime::set_wallet`](super::CustomerRuntime::set_wallet), it pays
/// what the customer asks ([`Output::PayInvoice`](crate::customer::Output::PayInvoice): an
/// invoice that passed every check, within the bid and the auto-pay limit) and looks up what
/// a restart left in doubt ([`Output::LookupPayment`](crate::customer::Output::LookupPayment)),
/// never paying it again. `LnbitsWallet` (feature `lnbits`) is one.
#[async_trait::async_trait]
pub trait Wallet: Send + Sync {
    /// Pays `bolt11`, spending at most `max_fee_msat` on routing fees (refuse to pay, with
    /// [`PaymentOutcome::Failed`], when the wallet cannot promise that). Returns
    /// [`PaymentOutcome::Paid`] with the preimage when the wallet has it,
    /// [`PaymentOutcome::Pending`] when the payment is under way and its end is not known yet,
    /// or [`PaymentOutcome::Failed`] when nothing was (or will be) paid.
    async fn pay_invoice(&self, bolt11: &str, max_fee_msat: u64) -> PaymentOutcome;

    /// What became of the payment of the invoice with `payment_hash`: [`PaymentOutcome::Failed`]
    /// also when this wallet never started it.
    async fn lookup_payment(&self, payment_hash: [u8; 32]) -> PaymentOutcome;
}
