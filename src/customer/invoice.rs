//! Reading the BOLT11 invoice a provider sends: the customer pays what the invoice says, so it
//! checks the invoice, not only the `amount` tag.

use lightning_invoice::Currency;

use crate::bolt11::Invoice;
use nostr::Timestamp;
use serde::{Deserialize, Serialize};

/// What a payable invoice commits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedInvoice {
    /// Its amount, in millisats (equal to the `amount` tag).
    pub amount_msat: u64,
    /// Its payment hash.
    pub payment_hash: [u8; 32],
    /// The second it expires (not payable from then on).
    pub expires_at: Timestamp,
}

/// Why an invoice is not paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum InvoiceError {
    /// Not a BOLT11 invoice with a valid signature.
    #[error("not a valid BOLT11 invoice: {0}")]
    Unparsable(String),
    /// The invoice has no amount: the payer would choose it.
    #[error("the invoice has no amount")]
    Amountless,
    /// The invoice's amount is not the `amount` tag's.
    #[error("the invoice is for {invoice_msat} msat, the amount tag says {tag_msat} msat")]
    AmountMismatch {
        /// The invoice's amount.
        invoice_msat: u64,
        /// The tag's amount.
        tag_msat: u64,
    },
    /// The invoice is for another network than the configured one.
    #[error("the invoice is for {invoice}, not {expected}")]
    WrongNetwork {
        /// The invoice's network (its BOLT11 prefix).
        invoice: String,
        /// The configured network.
        expected: String,
    },
    /// The invoice has expired.
    #[error("the invoice expired at {expired_at}")]
    Expired {
        /// When it expired.
        expired_at: Timestamp,
    },
}

/// Checks `bolt11` against what the customer expects: a valid signed invoice on `network`,
/// for exactly `tag_msat` millisats, not expired at `now`.
pub fn check_invoice(
    bolt11: &str,
    tag_msat: u64,
    network: &Currency,
    now: Timestamp,
) -> Result<CheckedInvoice, InvoiceError> {
    let invoice = Invoice::parse(bolt11).map_err(|e| InvoiceError::Unparsable(e.to_string()))?;
    let currency = invoice.currency();
    if currency != *network {
        return Err(InvoiceError::WrongNetwork {
            invoice: currency.to_string(),
            expected: network.to_string(),
        });
    }
    let amount_msat = invoice.amount_msat().ok_or(InvoiceError::Amountless)?;
    if amount_msat != tag_msat {
        return Err(InvoiceError::AmountMismatch {
            invoice_msat: amount_msat,
            tag_msat,
        });
    }
    let expires_at = invoice.expires_at();
    let checked = CheckedInvoice {
        amount_msat,
        payment_hash: invoice.payment_hash(),
        expires_at: Timestamp::from(expires_at),
    };
    checked.unexpired(now)?;
    Ok(checked)
}

impl CheckedInvoice {
    /// `Ok` while the invoice can still be paid at `now`.
    pub fn unexpired(&self, now: Timestamp) -> Result<(), InvoiceError> {
        if now >= self.expires_at {
            return Err(InvoiceError::Expired {
                expired_at: self.expires_at,
            });
        }
        Ok(())
    }
}
