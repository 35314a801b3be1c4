//! BOLT11 invoices, parsed and checked with `lightning-invoice`, as every part of the crate
//! reads them (provider, customer, NIP-57 zap receipts, the wallet backends).
//!
//! One relaxation of `lightning-invoice`'s checks: an invoice **without a feature field**
//! (`9`) is accepted. `lightning-invoice` requires that field since the payment-secret feature
//! became mandatory, but invoices in the field still omit it (LNbits's FakeWallet, older
//! node software); BOLT 9 makes the features it would carry assumed, and no rule of this crate
//! depends on them. Every other check stays: exactly one payment hash, one description (or
//! description hash) and one payment secret, a whole number of millisats, and a valid
//! signature by the node that made the invoice. An invoice whose feature field is present
//! with unknown mandatory bits is still refused.

use core::str::FromStr;

use lightning_invoice::{
    Bolt11Invoice, Bolt11SemanticError, Currency, SignedRawBolt11Invoice, DEFAULT_EXPIRY_TIME,
};

/// Why a string is not an acceptable BOLT11 invoice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvoiceParseError {
    /// Not a BOLT11 string.
    #[error("not a BOLT11 invoice: {0}")]
    Malformed(String),
    /// The signature does not match the invoice.
    #[error("the invoice's signature is invalid")]
    InvalidSignature,
    /// Well-formed but breaks a BOLT11 rule (fields missing or repeated, unknown required
    /// features, an amount that is not a whole number of millisats).
    #[error("invalid invoice: {0}")]
    Invalid(String),
}

/// What an invoice's description is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceDescription<'a> {
    /// The description itself (`d`).
    Direct(&'a str),
    /// The SHA-256 of the description (`h`).
    Hash([u8; 32]),
}

/// A BOLT11 invoice whose signature and fields were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    signed: SignedRawBolt11Invoice,
}

impl Invoice {
    /// Parses and checks `bolt11` (surrounding whitespace ignored).
    pub fn parse(bolt11: &str) -> Result<Self, InvoiceParseError> {
        let signed = SignedRawBolt11Invoice::from_str(bolt11.trim())
            .map_err(|e| InvoiceParseError::Malformed(e.to_string()))?;
        match Bolt11Invoice::from_signed(signed.clone()) {
            Ok(invoice) => Ok(Self {
                signed: invoice.into_signed_raw(),
            }),
            // The field counts passed (they are checked first); only the absent feature
            // field failed: the signature and the amount are then checked here.
            Err(Bolt11SemanticError::InvalidFeatures)
                if signed.raw_invoice().features().is_none() =>
            {
                if !signed.check_signature() {
                    return Err(InvoiceParseError::InvalidSignature);
                }
                if signed
                    .raw_invoice()
                    .amount_pico_btc()
                    .is_some_and(|pico| pico % 10 != 0)
                {
                    return Err(InvoiceParseError::Invalid(
                        Bolt11SemanticError::ImpreciseAmount.to_string(),
                    ));
                }
                Ok(Self { signed })
            }
            Err(Bolt11SemanticError::InvalidSignature) => Err(InvoiceParseError::InvalidSignature),
            Err(other) => Err(InvoiceParseError::Invalid(other.to_string())),
        }
    }

    /// Its amount in millisats, when it names one.
    pub fn amount_msat(&self) -> Option<u64> {
        self.signed
            .raw_invoice()
            .amount_pico_btc()
            .map(|pico| pico / 10)
    }

    /// Its payment hash.
    pub fn payment_hash(&self) -> [u8; 32] {
        let hash = self
            .signed
            .raw_invoice()
            .payment_hash()
            .expect("checked: exactly one payment hash");
        *hash.0.as_ref()
    }

    /// The network it is for.
    pub fn currency(&self) -> Currency {
        self.signed.raw_invoice().currency()
    }

    /// When it was made, in seconds since the Unix epoch.
    pub fn created_at(&self) -> u64 {
        self.signed
            .raw_invoice()
            .data
            .timestamp
            .as_duration_since_epoch()
            .as_secs()
    }

    /// How long it may be paid after it was made, in seconds (BOLT11's default, 3,600, when
    /// it says nothing).
    pub fn expiry_secs(&self) -> u64 {
        self.signed
            .raw_invoice()
            .expiry_time()
            .map_or(DEFAULT_EXPIRY_TIME, |expiry| expiry.as_seconds())
    }

    /// When it expires, in seconds since the Unix epoch (saturating).
    pub fn expires_at(&self) -> u64 {
        self.created_at().saturating_add(self.expiry_secs())
    }

    /// Its description, or the hash of it.
    pub fn description(&self) -> InvoiceDescription<'_> {
        let raw = self.signed.raw_invoice();
        match (raw.description(), raw.description_hash()) {
            (Some(text), _) => InvoiceDescription::Direct(text.as_inner().0.as_str()),
            (None, Some(hash)) => InvoiceDescription::Hash(*hash.0.as_ref()),
            (None, None) => unreachable!("checked: exactly one description"),
        }
    }
}

impl FromStr for Invoice {
    type Err = InvoiceParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real LNbits (FakeWallet) invoice: 21 sats, no feature field.
    const LNBITS_FAKEWALLET: &str = "lnbc210n1p43rlpzdq8v3jkzusxqrrsssp5jzvjft2ktlhr566vv7tlv5apc0lcle2lwrug9ct6csgzu066gcaspp56taghyq503lw3k2p0j9d6mk2h2utq3f0eww7dtxv0f0czfe572gqrjt70ffk3zdt670l0hhg7l02h2yysvya89cdc2c8uzs83twn2zth0dqegxvpwqwaasqecgkxcrs9rvxjm947yd9uqrkn8pwt2e8m3dqpggqmu7";

    #[test]
    fn an_invoice_without_a_feature_field_is_read() {
        assert!(LNBITS_FAKEWALLET.parse::<Bolt11Invoice>().is_err());
        let invoice = Invoice::parse(LNBITS_FAKEWALLET).unwrap();
        assert_eq!(invoice.amount_msat(), Some(21_000));
        assert_eq!(invoice.currency(), Currency::Bitcoin);
        assert_eq!(invoice.expiry_secs(), 3_600);
        assert_eq!(invoice.description(), InvoiceDescription::Direct("dear"));
        assert_eq!(
            hex::encode(invoice.payment_hash()),
            "d2fa8b90147c7ee8d9417c8add6ecabab8b0452fcb9de6accc7a5f812734f290"
        );
    }

    #[test]
    fn a_feature_less_invoice_signed_by_another_than_its_payee_is_refused() {
        use lightning_invoice::{PayeePubKey, RawTaggedField, TaggedField};
        use secp256k1::{PublicKey, Secp256k1, SecretKey};

        let secp = Secp256k1::new();
        let payee = SecretKey::from_slice(&[2; 32]).unwrap();
        let stranger = SecretKey::from_slice(&[3; 32]).unwrap();
        let (mut raw, _, _) = SignedRawBolt11Invoice::from_str(LNBITS_FAKEWALLET)
            .unwrap()
            .into_parts();
        raw.data
            .tagged_fields
            .push(RawTaggedField::KnownSemantics(TaggedField::PayeePubKey(
                PayeePubKey(PublicKey::from_secret_key(&secp, &payee)),
            )));
        let signed_by = |key: &SecretKey| {
            raw.clone()
                .sign::<_, ()>(|hash| Ok(secp.sign_ecdsa_recoverable(hash, key)))
                .unwrap()
                .to_string()
        };
        assert!(Invoice::parse(&signed_by(&payee)).is_ok());
        assert_eq!(
            Invoice::parse(&signed_by(&stranger)),
            Err(InvoiceParseError::InvalidSignature)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            Invoice::parse("lnbc1garbage"),
            Err(InvoiceParseError::Malformed(_))
        ));
    }
}
