//! NIP-57 zaps: zap requests (kind 9734) and **complete** zap receipt (kind 9735) verification.
//!
//! A DVM that takes zaps as payment must not start work on a receipt that is forged, replayed,
//! underpaid, for someone else, or for another job. [`verify_zap_receipt`] is one pure function
//! that checks every rule NIP-57 and Lightning give us and returns either the [`VerifiedZap`]
//! (amount, payment hash, sender, the event it pays for, the receipt id: what a replay ledger
//! needs) or a [`ZapError`] naming the one rule that failed.
//!
//! # What is checked, in order
//!
//! 1. The receipt is kind 9735, and its author is one of the trusted zappers (the LNURL
//!    server's `nostrPubkey`), not anyone: a receipt is only as good as its signer. This
//!    lookup comes first, so a stranger's receipt costs no curve math.
//! 2. Its id is its NIP-01 hash, and its signature is valid.
//! 3. It has exactly one `bolt11` tag and one `description` tag, and at most one `P` tag.
//! 4. The invoice parses with `lightning-invoice` (never by slicing strings), its signature is
//!    valid, and it is for the expected network (mainnet by default).
//! 5. The receipt is not dated after the verification time by more than the clock-skew
//!    tolerance, and the invoice had not expired when it was paid (judged at the receipt's
//!    `created_at`, the paid-at time, against the invoice's own timestamp + expiry; no clock
//!    is read: `lightning-invoice`'s `is_expired()` is not used).
//! 6. The `description` is a kind 9734 zap request with a valid id and signature, and the
//!    checks of NIP-57 Appendix D hold for it (see [`ZapRequest::from_event`]).
//! 7. `sha256(description)` equals the invoice's description hash. NIP-57 downgraded this to a
//!    SHOULD and some wallets omit it, so [`ZapExpectation::lenient_description_hash`] skips
//!    it; strict is the default.
//! 8. The invoice has an amount; it equals the zap request's `amount` tag when there is one
//!    (Appendix F's MUST), and it is at least the minimum expected.
//! 9. The receipt's `p` and the zap request's `p` are both the expected recipient.
//! 10. The zap request's `e` is one of the events the payment may bind to (a job request or
//!     our payment-required feedback), and the receipt carries the same `e` (and the same `a`
//!     when the zap request has one), as NIP-57 Appendix E says it MUST;
//!     [`ZapExpectation::lenient_receipt_tags`] accepts a receipt that omits them (never one
//!     that names another event).
//! 11. The zap request's `lnurl`, when both it and an expected LNURL are present, decodes (with
//!     `bech32`) to the same URL (Appendix F's SHOULD, enforced when you give the LNURL).
//! 12. The receipt's `P` tag, when present, is the zap request's author.
//! 13. A `preimage` tag, when present, hashes to the invoice's payment hash.
//!
//! A verified zap proves that the trusted zapper says this invoice was paid. It does not stop
//! the same receipt, or another receipt for the same invoice, from being shown twice: keep the
//! [`VerifiedZap::receipt_id`] and [`VerifiedZap::payment_hash`] in a replay ledger.

use std::collections::BTreeSet;

use lightning_invoice::Currency;
use nostr::nips::nip01::Coordinate;
use nostr::{Event, EventId, JsonUtil, Keys, Kind, PublicKey, Tag, Timestamp, UnsignedEvent};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::bolt11::{Invoice, InvoiceDescription, InvoiceParseError};

/// Kind of a zap request.
pub const ZAP_REQUEST_KIND: u16 = 9734;
/// Kind of a zap receipt.
pub const ZAP_RECEIPT_KIND: u16 = 9735;
/// How far in the future, in seconds, a receipt may be dated against the verification time
/// before it is refused: 10 minutes, for clocks that disagree.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 600;
/// The largest `description` tag [`verify_zap_receipt`] parses, in bytes. A zap request is a
/// few hundred bytes; the limit stops a hostile receipt from making us parse megabytes.
pub const MAX_DESCRIPTION_LEN: usize = 64 * 1024;

/// Why a zap request or a zap receipt was refused: one variant for each rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZapError {
    /// The receipt is not kind 9735.
    #[error("not a zap receipt: kind {0}")]
    NotAReceipt(u16),
    /// The receipt's id is not the hash of its content.
    #[error("zap receipt id does not match its content")]
    InvalidReceiptId,
    /// The receipt's signature does not verify.
    #[error("zap receipt signature is invalid")]
    InvalidReceiptSignature,
    /// The receipt is not signed by a trusted zapper.
    #[error("zap receipt signed by {0}, which is not a trusted zapper")]
    UntrustedZapper(PublicKey),
    /// A tag the rules require is missing.
    #[error("missing `{0}` tag")]
    MissingTag(&'static str),
    /// A tag that must appear at most once appears more often.
    #[error("`{0}` tag appears more than once")]
    DuplicateTag(&'static str),
    /// The `bolt11` tag is not a valid BOLT11 invoice.
    #[error("invalid bolt11 invoice: {0}")]
    InvalidInvoice(String),
    /// The invoice's signature does not verify.
    #[error("bolt11 invoice signature is invalid")]
    InvalidInvoiceSignature,
    /// The invoice is for another Lightning network.
    #[error("invoice is for {found:?}, expected {expected:?}")]
    WrongNetwork {
        /// The network the expectation names.
        expected: Currency,
        /// The network of the invoice.
        found: Currency,
    },
    /// The receipt is dated after the verification time by more than the clock-skew tolerance.
    #[error("zap receipt dated {created_at}, after the verification time {now}")]
    ReceiptFromTheFuture {
        /// The receipt's `created_at`.
        created_at: u64,
        /// The verification time.
        now: u64,
    },
    /// The invoice had expired when the receipt says it was paid.
    #[error("invoice expired at {expired_at}, receipt dated {paid_at}")]
    InvoiceExpired {
        /// The invoice's timestamp plus its expiry, in seconds since the epoch.
        expired_at: u64,
        /// The receipt's `created_at`.
        paid_at: u64,
    },
    /// The receipt's `description` is not a JSON event.
    #[error("description is not a zap request event: {0}")]
    InvalidZapRequestJson(String),
    /// The `description` is longer than [`MAX_DESCRIPTION_LEN`].
    #[error("description of {0} bytes is too long")]
    DescriptionTooLong(usize),
    /// The zap request is not kind 9734.
    #[error("not a zap request: kind {0}")]
    NotAZapRequest(u16),
    /// The zap request's id is not the hash of its content.
    #[error("zap request id does not match its content")]
    InvalidZapRequestId,
    /// The zap request's signature does not verify.
    #[error("zap request signature is invalid")]
    InvalidZapRequestSignature,
    /// The zap request has no tags (Appendix D: it MUST have tags).
    #[error("zap request has no tags")]
    ZapRequestWithoutTags,
    /// The zap request does not have exactly one `p` tag.
    #[error("zap request has {0} `p` tags, expected exactly one")]
    ZapRequestRecipientCount(usize),
    /// The zap request has more than one `e` tag.
    #[error("zap request has {0} `e` tags, expected at most one")]
    ZapRequestEventCount(usize),
    /// The zap request has more than one `P` tag.
    #[error("zap request has {0} `P` tags, expected at most one")]
    ZapRequestSenderCount(usize),
    /// The zap request's `a` tag is not a valid event coordinate.
    #[error("zap request `a` tag is not a valid event coordinate")]
    InvalidCoordinate,
    /// A pubkey or event id in a tag is not valid hex of the right length.
    #[error("malformed `{0}` tag")]
    MalformedTag(&'static str),
    /// The invoice has a plain description where a description hash is required (strict mode).
    #[error("invoice has no description hash")]
    MissingDescriptionHash,
    /// `sha256(description)` differs from the invoice's description hash.
    #[error("invoice description hash does not match the zap request")]
    DescriptionHashMismatch,
    /// The invoice has no amount.
    #[error("invoice has no amount")]
    InvoiceWithoutAmount,
    /// The zap request's `amount` tag is not a number of millisats.
    #[error("zap request amount {0:?} is not a number of millisats")]
    MalformedAmount(String),
    /// The invoice amount differs from the zap request's `amount` tag.
    #[error("invoice is for {invoice_msat} msat, zap request says {request_msat} msat")]
    AmountMismatch {
        /// The invoice's amount.
        invoice_msat: u64,
        /// The zap request's `amount` tag.
        request_msat: u64,
    },
    /// The amount is below the minimum expected.
    #[error("paid {amount_msat} msat, at least {min_msat} msat expected")]
    AmountTooLow {
        /// The invoice's amount.
        amount_msat: u64,
        /// The minimum the expectation names.
        min_msat: u64,
    },
    /// The receipt's `p` tag is not the expected recipient.
    #[error("zap receipt is for {0}, not the expected recipient")]
    ReceiptRecipientMismatch(PublicKey),
    /// The zap request's `p` tag is not the expected recipient.
    #[error("zap request is for {0}, not the expected recipient")]
    ZapRequestRecipientMismatch(PublicKey),
    /// The zap request zaps no event, so it cannot pay for one.
    #[error("zap request is not bound to any event")]
    NotBound,
    /// The zap request zaps an event that is not one of those expected.
    #[error("zap request is for event {0}, not one this payment may bind to")]
    BoundToOtherEvent(EventId),
    /// The receipt's `e` tag differs from the zap request's.
    #[error("zap receipt `e` tag differs from the zap request's")]
    ReceiptEventMismatch,
    /// The expected LNURL given to [`ZapExpectation::lnurl`] is not a bech32 `lnurl`.
    #[error("the expected LNURL is not a valid bech32 lnurl")]
    InvalidExpectedLnurl,
    /// The zap request's `lnurl` tag is not a bech32 `lnurl`.
    #[error("zap request `lnurl` tag is not a valid bech32 lnurl")]
    InvalidLnurl,
    /// The zap request's `lnurl` is not the expected one.
    #[error("zap request is for another LNURL")]
    LnurlMismatch,
    /// The receipt's `P` tag is not the zap request's author.
    #[error("zap receipt `P` tag is not the zap request's author")]
    SenderMismatch,
    /// The `preimage` tag is not 32 bytes of hex.
    #[error("malformed preimage")]
    MalformedPreimage,
    /// The preimage does not hash to the invoice's payment hash.
    #[error("preimage does not match the payment hash")]
    PreimageMismatch,
    /// A zap request could not be built (local misuse).
    #[error("cannot build zap request: {0}")]
    Build(String),
}

/// What a zap receipt must prove to count as payment: who it pays, who may vouch for it, what
/// it pays for, how much, on which network, and when it is checked.
#[derive(Debug, Clone)]
pub struct ZapExpectation {
    recipient: PublicKey,
    zappers: BTreeSet<PublicKey>,
    bind_to: BTreeSet<EventId>,
    min_amount_msat: u64,
    now: Timestamp,
    network: Currency,
    lnurl: Option<Result<Vec<u8>, ()>>,
    strict_description_hash: bool,
    strict_receipt_tags: bool,
    clock_skew_secs: u64,
}

impl ZapExpectation {
    /// The expectation for a payment to `recipient` (our provider key), vouched for by one of
    /// `zappers` (the LNURL server's `nostrPubkey`), for one of the events in `bind_to` (the
    /// job request and our payment-required feedback), of at least `min_amount_msat`, checked
    /// at `now`. Mainnet, strict description hash, no LNURL check, and a clock-skew tolerance
    /// of [`DEFAULT_CLOCK_SKEW_SECS`] until set otherwise.
    pub fn new(
        recipient: PublicKey,
        zappers: impl IntoIterator<Item = PublicKey>,
        bind_to: impl IntoIterator<Item = EventId>,
        min_amount_msat: u64,
        now: Timestamp,
    ) -> Self {
        Self {
            recipient,
            zappers: zappers.into_iter().collect(),
            bind_to: bind_to.into_iter().collect(),
            min_amount_msat,
            now,
            network: Currency::Bitcoin,
            lnurl: None,
            strict_description_hash: true,
            strict_receipt_tags: true,
            clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
        }
    }

    /// The Lightning network the invoice must be for (default: mainnet, `Currency::Bitcoin`).
    pub fn network(mut self, network: Currency) -> Self {
        self.network = network;
        self
    }

    /// The recipient's LNURL (the bech32 `lnurl1...` string): a zap request with an `lnurl`
    /// tag must then name the same URL. An invalid string here makes every verification fail
    /// with [`ZapError::InvalidExpectedLnurl`] rather than silently skipping the check.
    pub fn lnurl(mut self, lnurl: &str) -> Self {
        self.lnurl = Some(decode_lnurl(lnurl).ok_or(()));
        self
    }

    /// Accepts invoices whose description hash is missing or differs from
    /// `sha256(description)`. NIP-57 made the match a SHOULD and some wallets (Primal's
    /// internal invoices, for one) use a plain description. Every other check still holds;
    /// the zap request is then tied to the invoice by the zapper's word and the amount only.
    pub fn lenient_description_hash(mut self) -> Self {
        self.strict_description_hash = false;
        self
    }

    /// Accepts a receipt that does not carry the zap request's `e` (or `a`) tag, which NIP-57
    /// Appendix E says it MUST. A receipt that names another event is still refused.
    pub fn lenient_receipt_tags(mut self) -> Self {
        self.strict_receipt_tags = false;
        self
    }

    /// How far after `now`, in seconds, a receipt may be dated (default
    /// [`DEFAULT_CLOCK_SKEW_SECS`]).
    pub fn clock_skew(mut self, secs: u64) -> Self {
        self.clock_skew_secs = secs;
        self
    }

    /// The recipient the zap must pay.
    pub fn recipient(&self) -> &PublicKey {
        &self.recipient
    }

    /// The verification time.
    pub fn now(&self) -> Timestamp {
        self.now
    }
}

/// A zap receipt that passed every check: what a payment ledger records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifiedZap {
    /// The amount paid, in millisats (the invoice's amount).
    pub amount_msat: u64,
    /// The invoice's payment hash: one invoice pays once.
    pub payment_hash: [u8; 32],
    /// Who paid: the zap request's author.
    pub sender: PublicKey,
    /// The event the payment is for (one of the expectation's `bind_to`).
    pub bound_to: EventId,
    /// The receipt's id: one receipt pays once.
    pub receipt_id: EventId,
    /// The zap request's id.
    pub zap_request_id: EventId,
    /// The zapper that signed the receipt.
    pub zapper: PublicKey,
    /// When the receipt says the invoice was paid (its `created_at`).
    pub paid_at: Timestamp,
    /// The zap request's content: the sender's comment, possibly empty.
    pub comment: String,
}

/// Verifies a zap receipt against what the payment must be. Pure: no clock, no network.
///
/// See the [module documentation](self) for every rule, in the order they are checked.
pub fn verify_zap_receipt(
    receipt: &Event,
    expect: &ZapExpectation,
) -> Result<VerifiedZap, ZapError> {
    // 1. the receipt and its claimed signer: a lookup before any curve math
    if receipt.kind.as_u16() != ZAP_RECEIPT_KIND {
        return Err(ZapError::NotAReceipt(receipt.kind.as_u16()));
    }
    if !expect.zappers.contains(&receipt.pubkey) {
        return Err(ZapError::UntrustedZapper(receipt.pubkey));
    }
    // 2. its id and signature
    if !crate::nip01::verify_id(receipt) {
        return Err(ZapError::InvalidReceiptId);
    }
    if !receipt.verify_signature() {
        return Err(ZapError::InvalidReceiptSignature);
    }
    // 3. its tags
    let tags = ReceiptTags::read(receipt)?;

    // 4. the invoice
    let invoice = parse_invoice(tags.bolt11)?;
    if invoice.currency() != expect.network {
        return Err(ZapError::WrongNetwork {
            expected: expect.network.clone(),
            found: invoice.currency(),
        });
    }

    // 5. time
    let paid_at = receipt.created_at.as_secs();
    let now = expect.now.as_secs();
    if paid_at > now.saturating_add(expect.clock_skew_secs) {
        return Err(ZapError::ReceiptFromTheFuture {
            created_at: paid_at,
            now,
        });
    }
    let expired_at = invoice.expires_at();
    if paid_at > expired_at {
        return Err(ZapError::InvoiceExpired {
            expired_at,
            paid_at,
        });
    }

    // 6. the zap request
    if tags.description.len() > MAX_DESCRIPTION_LEN {
        return Err(ZapError::DescriptionTooLong(tags.description.len()));
    }
    let zap_request_event = Event::from_json(tags.description)
        .map_err(|e| ZapError::InvalidZapRequestJson(e.to_string()))?;
    let zap_request = ZapRequest::from_event(&zap_request_event)?;

    // 7. the description hash
    match invoice.description() {
        InvoiceDescription::Hash(hash) => {
            let digest: [u8; 32] = Sha256::digest(tags.description.as_bytes()).into();
            if expect.strict_description_hash && hash != digest {
                return Err(ZapError::DescriptionHashMismatch);
            }
        }
        InvoiceDescription::Direct(_) => {
            if expect.strict_description_hash {
                return Err(ZapError::MissingDescriptionHash);
            }
        }
    }

    // 8. the amount
    let amount_msat = invoice
        .amount_msat()
        .ok_or(ZapError::InvoiceWithoutAmount)?;
    if let Some(request_msat) = zap_request.amount_msat {
        if request_msat != amount_msat {
            return Err(ZapError::AmountMismatch {
                invoice_msat: amount_msat,
                request_msat,
            });
        }
    }
    if amount_msat < expect.min_amount_msat {
        return Err(ZapError::AmountTooLow {
            amount_msat,
            min_msat: expect.min_amount_msat,
        });
    }

    // 9. the recipient
    let receipt_recipient = parse_pubkey(tags.p, "p")?;
    if receipt_recipient != expect.recipient {
        return Err(ZapError::ReceiptRecipientMismatch(receipt_recipient));
    }
    if zap_request.recipient != expect.recipient {
        return Err(ZapError::ZapRequestRecipientMismatch(zap_request.recipient));
    }

    // 10. the binding
    let bound_to = zap_request.event.ok_or(ZapError::NotBound)?;
    if !expect.bind_to.contains(&bound_to) {
        return Err(ZapError::BoundToOtherEvent(bound_to));
    }
    match tags.e {
        Some(e) if parse_event_id(e, "e")? != bound_to => {
            return Err(ZapError::ReceiptEventMismatch);
        }
        Some(_) => {}
        None if expect.strict_receipt_tags => return Err(ZapError::MissingTag("e")),
        None => {}
    }
    if let Some(coordinate) = &zap_request.coordinate {
        match tags.a {
            Some(a) if a == coordinate => {}
            Some(_) => return Err(ZapError::ReceiptEventMismatch),
            None if expect.strict_receipt_tags => return Err(ZapError::MissingTag("a")),
            None => {}
        }
    }

    // 11. the LNURL
    if let Some(expected) = &expect.lnurl {
        let expected = expected
            .as_ref()
            .map_err(|_| ZapError::InvalidExpectedLnurl)?;
        if let Some(lnurl) = &zap_request.lnurl {
            let url = decode_lnurl(lnurl).ok_or(ZapError::InvalidLnurl)?;
            if &url != expected {
                return Err(ZapError::LnurlMismatch);
            }
        }
    }

    // 12. the sender
    if let Some(sender) = tags.sender {
        if parse_pubkey(sender, "P")? != zap_request.sender {
            return Err(ZapError::SenderMismatch);
        }
    }

    // 13. the preimage
    let payment_hash = invoice.payment_hash();
    if let Some(preimage) = tags.preimage {
        let mut bytes = [0u8; 32];
        hex_decode_32(preimage, &mut bytes).ok_or(ZapError::MalformedPreimage)?;
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if digest != payment_hash {
            return Err(ZapError::PreimageMismatch);
        }
    }

    Ok(VerifiedZap {
        amount_msat,
        payment_hash,
        sender: zap_request.sender,
        bound_to,
        receipt_id: receipt.id,
        zap_request_id: zap_request.id,
        zapper: receipt.pubkey,
        paid_at: receipt.created_at,
        comment: zap_request.content,
    })
}

/// The receipt's tags this module reads, each found once.
struct ReceiptTags<'a> {
    bolt11: &'a str,
    description: &'a str,
    p: &'a str,
    e: Option<&'a str>,
    a: Option<&'a str>,
    sender: Option<&'a str>,
    preimage: Option<&'a str>,
}

impl<'a> ReceiptTags<'a> {
    fn read(receipt: &'a Event) -> Result<Self, ZapError> {
        let mut bolt11 = None;
        let mut description = None;
        let mut p = None;
        let mut e = None;
        let mut a = None;
        let mut sender = None;
        let mut preimage = None;
        for tag in receipt.tags.iter() {
            let (slot, name) = match tag.as_slice() {
                [name, ..] if name == "bolt11" => (&mut bolt11, "bolt11"),
                [name, ..] if name == "description" => (&mut description, "description"),
                [name, ..] if name == "p" => (&mut p, "p"),
                [name, ..] if name == "e" => (&mut e, "e"),
                [name, ..] if name == "a" => (&mut a, "a"),
                [name, ..] if name == "P" => (&mut sender, "P"),
                [name, ..] if name == "preimage" => (&mut preimage, "preimage"),
                _ => continue,
            };
            let value = tag
                .as_slice()
                .get(1)
                .map(String::as_str)
                .ok_or(ZapError::MalformedTag(name))?;
            if slot.replace(value).is_some() {
                return Err(ZapError::DuplicateTag(name));
            }
        }
        Ok(Self {
            bolt11: bolt11.ok_or(ZapError::MissingTag("bolt11"))?,
            description: description.ok_or(ZapError::MissingTag("description"))?,
            p: p.ok_or(ZapError::MissingTag("p"))?,
            e,
            a,
            sender,
            preimage,
        })
    }
}

/// Parses a BOLT11 invoice ([`Invoice`]), telling a bad signature from a bad string.
fn parse_invoice(bolt11: &str) -> Result<Invoice, ZapError> {
    Invoice::parse(bolt11).map_err(|e| match e {
        InvoiceParseError::InvalidSignature => ZapError::InvalidInvoiceSignature,
        InvoiceParseError::Malformed(why) | InvoiceParseError::Invalid(why) => {
            ZapError::InvalidInvoice(why)
        }
    })
}

/// A parsed, validated zap request (kind 9734).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZapRequest {
    /// The zap request's id.
    pub id: EventId,
    /// Its author: who pays.
    pub sender: PublicKey,
    /// The `p` tag: who is paid.
    pub recipient: PublicKey,
    /// The `e` tag: the event zapped, if any.
    pub event: Option<EventId>,
    /// The `a` tag: the addressable event zapped, if any.
    pub coordinate: Option<String>,
    /// The `amount` tag, in millisats, if any.
    pub amount_msat: Option<u64>,
    /// The `lnurl` tag (bech32), if any.
    pub lnurl: Option<String>,
    /// The relays the receipt should be published to.
    pub relays: Vec<String>,
    /// The `k` tag: the kind of the zapped event, if any.
    pub zapped_kind: Option<String>,
    /// The sender's comment.
    pub content: String,
    /// When it was signed.
    pub created_at: Timestamp,
}

impl ZapRequest {
    /// Parses and validates a zap request, with the checks of NIP-57 Appendix D: kind 9734,
    /// valid id and signature, tags present, exactly one `p`, at most one `e`, at most one
    /// `P`, a valid coordinate in `a`, and numeric `amount`. A missing `relays` tag is
    /// accepted (the NIP says "should").
    pub fn from_event(event: &Event) -> Result<Self, ZapError> {
        if event.kind.as_u16() != ZAP_REQUEST_KIND {
            return Err(ZapError::NotAZapRequest(event.kind.as_u16()));
        }
        if !crate::nip01::verify_id(event) {
            return Err(ZapError::InvalidZapRequestId);
        }
        if !event.verify_signature() {
            return Err(ZapError::InvalidZapRequestSignature);
        }
        if event.tags.is_empty() {
            return Err(ZapError::ZapRequestWithoutTags);
        }
        let mut recipients = Vec::new();
        let mut events = Vec::new();
        let mut senders = 0usize;
        let mut coordinate = None;
        let mut amount_msat = None;
        let mut lnurl = None;
        let mut relays = Vec::new();
        let mut zapped_kind = None;
        for tag in event.tags.iter() {
            let values = tag.as_slice();
            let (Some(name), value) = (values.first(), values.get(1).map(String::as_str)) else {
                continue;
            };
            match (name.as_str(), value) {
                ("p", Some(v)) => recipients.push(parse_pubkey(v, "p")?),
                ("p", None) => return Err(ZapError::MalformedTag("p")),
                ("e", Some(v)) => events.push(parse_event_id(v, "e")?),
                ("e", None) => return Err(ZapError::MalformedTag("e")),
                ("P", _) => senders += 1,
                ("a", Some(v)) => {
                    Coordinate::parse(v).map_err(|_| ZapError::InvalidCoordinate)?;
                    coordinate = Some(v.to_owned());
                }
                ("a", None) => return Err(ZapError::InvalidCoordinate),
                ("amount", Some(v)) => amount_msat = Some(parse_msat(v)?),
                ("lnurl", Some(v)) => lnurl = Some(v.to_owned()),
                ("relays", _) => relays.extend(values.iter().skip(1).cloned()),
                ("k", Some(v)) => zapped_kind = Some(v.to_owned()),
                _ => {}
            }
        }
        if recipients.len() != 1 {
            return Err(ZapError::ZapRequestRecipientCount(recipients.len()));
        }
        if events.len() > 1 {
            return Err(ZapError::ZapRequestEventCount(events.len()));
        }
        if senders > 1 {
            return Err(ZapError::ZapRequestSenderCount(senders));
        }
        Ok(Self {
            id: event.id,
            sender: event.pubkey,
            recipient: recipients[0],
            event: events.first().copied(),
            coordinate,
            amount_msat,
            lnurl,
            relays,
            zapped_kind,
            content: event.content.clone(),
            created_at: event.created_at,
        })
    }

    /// Appendix D, rule 6, for LNURL servers: the `amount` tag, when present, must equal the
    /// `amount` query parameter of the callback.
    pub fn check_callback_amount(&self, amount_msat: u64) -> Result<(), ZapError> {
        match self.amount_msat {
            Some(request_msat) if request_msat != amount_msat => Err(ZapError::AmountMismatch {
                invoice_msat: amount_msat,
                request_msat,
            }),
            _ => Ok(()),
        }
    }
}

/// Builds a signed zap request (kind 9734).
#[derive(Debug, Clone)]
pub struct ZapRequestBuilder {
    recipient: PublicKey,
    relays: Vec<String>,
    amount_msat: Option<u64>,
    lnurl: Option<String>,
    event: Option<EventId>,
    coordinate: Option<String>,
    zapped_kind: Option<u16>,
    content: String,
}

impl ZapRequestBuilder {
    /// A zap request paying `recipient`, with its receipt to be published on `relays`.
    pub fn new(recipient: PublicKey, relays: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            recipient,
            relays: relays.into_iter().map(Into::into).collect(),
            amount_msat: None,
            lnurl: None,
            event: None,
            coordinate: None,
            zapped_kind: None,
            content: String::new(),
        }
    }

    /// The amount the sender intends to pay, in millisats (the `amount` tag).
    pub fn amount_msat(mut self, amount_msat: u64) -> Self {
        self.amount_msat = Some(amount_msat);
        self
    }

    /// The recipient's LNURL, bech32-encoded (`lnurl1...`; see [`encode_lnurl`]).
    pub fn lnurl(mut self, lnurl: impl Into<String>) -> Self {
        self.lnurl = Some(lnurl.into());
        self
    }

    /// The event zapped: for a DVM, the job request or the payment-required feedback.
    pub fn event(mut self, event: EventId) -> Self {
        self.event = Some(event);
        self
    }

    /// The addressable event zapped (`kind:pubkey:d`).
    pub fn coordinate(mut self, coordinate: impl Into<String>) -> Self {
        self.coordinate = Some(coordinate.into());
        self
    }

    /// The kind of the event zapped (the `k` tag).
    pub fn zapped_kind(mut self, kind: u16) -> Self {
        self.zapped_kind = Some(kind);
        self
    }

    /// A comment from the sender.
    pub fn content(mut self, content: impl Into<String>) -> Self {
        self.content = content.into();
        self
    }

    /// Signs the zap request with the sender's keys at `now`; `rng` supplies the signature's
    /// auxiliary randomness.
    pub fn sign(
        self,
        sender: &Keys,
        now: Timestamp,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Event, ZapError> {
        let mut tags = Vec::new();
        let mut relays = vec!["relays".to_owned()];
        relays.extend(self.relays);
        tags.push(relays);
        if let Some(amount) = self.amount_msat {
            tags.push(vec!["amount".into(), amount.to_string()]);
        }
        if let Some(lnurl) = self.lnurl {
            tags.push(vec!["lnurl".into(), lnurl]);
        }
        tags.push(vec!["p".into(), self.recipient.to_hex()]);
        if let Some(event) = self.event {
            tags.push(vec!["e".into(), event.to_hex()]);
        }
        if let Some(coordinate) = self.coordinate {
            Coordinate::parse(&coordinate).map_err(|_| ZapError::InvalidCoordinate)?;
            tags.push(vec!["a".into(), coordinate]);
        }
        if let Some(kind) = self.zapped_kind {
            tags.push(vec!["k".into(), kind.to_string()]);
        }
        let tags = tags
            .into_iter()
            .map(|t| Tag::parse(t).map_err(|e| ZapError::Build(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        UnsignedEvent::new(
            sender.public_key(),
            now,
            Kind::from(ZAP_REQUEST_KIND),
            tags,
            self.content,
        )
        .sign_with_ctx(nostr::SECP256K1, rng, sender)
        .map_err(|e| ZapError::Build(e.to_string()))
    }
}

/// Encodes a URL as an LNURL (bech32 with the `lnurl` prefix, lowercase).
///
/// Fails only for URLs too long for a bech32 string (over about 600 bytes).
pub fn encode_lnurl(url: &str) -> Result<String, ZapError> {
    let hrp = bech32::Hrp::parse_unchecked("lnurl");
    bech32::encode::<bech32::Bech32>(hrp, url.as_bytes())
        .map_err(|e| ZapError::Build(e.to_string()))
}

/// Decodes a bech32 LNURL to the bytes of its URL; `None` when it is not a valid `lnurl`.
pub fn decode_lnurl(lnurl: &str) -> Option<Vec<u8>> {
    let (hrp, data) = bech32::decode(lnurl.trim()).ok()?;
    if !hrp.as_str().eq_ignore_ascii_case("lnurl") {
        return None;
    }
    Some(data)
}

fn parse_pubkey(hex: &str, tag: &'static str) -> Result<PublicKey, ZapError> {
    PublicKey::from_hex(hex).map_err(|_| ZapError::MalformedTag(tag))
}

fn parse_event_id(hex: &str, tag: &'static str) -> Result<EventId, ZapError> {
    EventId::from_hex(hex).map_err(|_| ZapError::MalformedTag(tag))
}

/// A millisat amount: ASCII digits only (no sign, no `_`, no exponent), fitting in a `u64`.
fn parse_msat(value: &str) -> Result<u64, ZapError> {
    crate::nip90::parse_msat(value).ok_or_else(|| ZapError::MalformedAmount(value.to_owned()))
}

/// Decodes exactly 64 hex characters into `out`.
fn hex_decode_32(hex: &str, out: &mut [u8; 32]) -> Option<()> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msat_amounts_are_plain_digits() {
        assert_eq!(parse_msat("21000"), Ok(21000));
        assert_eq!(parse_msat("0"), Ok(0));
        for bad in [
            "",
            "100_000",
            "-5",
            "+5",
            "1e3",
            " 5",
            "21000.0",
            "99999999999999999999",
        ] {
            assert!(
                matches!(parse_msat(bad), Err(ZapError::MalformedAmount(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn lnurl_round_trips_and_refuses_other_prefixes() {
        let url = "https://service.example/.well-known/lnurlp/alice";
        let lnurl = encode_lnurl(url).unwrap();
        assert!(lnurl.starts_with("lnurl1"));
        assert_eq!(decode_lnurl(&lnurl).unwrap(), url.as_bytes());
        assert_eq!(decode_lnurl(&lnurl.to_uppercase()).unwrap(), url.as_bytes());
        let other =
            bech32::encode::<bech32::Bech32>(bech32::Hrp::parse_unchecked("npub"), b"x").unwrap();
        assert_eq!(decode_lnurl(&other), None);
        assert_eq!(decode_lnurl("lnurl1qqqq"), None);
        assert!(encode_lnurl(&"x".repeat(5000)).is_err());
    }

    #[test]
    fn hex_preimage_decoding() {
        let mut out = [0u8; 32];
        assert!(hex_decode_32(&"ab".repeat(32), &mut out).is_some());
        assert_eq!(out, [0xab; 32]);
        assert!(hex_decode_32(&"ab".repeat(31), &mut out).is_none());
        assert!(hex_decode_32(&"zz".repeat(32), &mut out).is_none());
        assert!(hex_decode_32(&"é".repeat(32), &mut out).is_none());
    }
}
