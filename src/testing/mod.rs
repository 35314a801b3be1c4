//! Real parts for tests, fuzzing and benches (feature `test-util`).
//!
//! Nothing here is a mock: [`TestLightningNode`] issues real BOLT11 invoices signed with a node
//! key through `lightning-invoice`, and [`TestZapper`] signs real NIP-57 zap receipts, exactly
//! as an LNURL server with a Nostr key would. Everything is deterministic: keys come from
//! seeds, time and randomness are passed in.

use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use nostr::hashes::{sha256, Hash as _};
use nostr::secp256k1::{Message, Secp256k1, SecretKey as NodeSecretKey};
use nostr::{Event, EventId, JsonUtil, Keys, Kind, PublicKey, Tag, Timestamp, UnsignedEvent};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::nip57::ZAP_RECEIPT_KIND;

pub mod sim;

pub use sim::{Network, SimRelay, TestWallet};

/// Keys derived from a one-byte seed, for readable tests: the secret key is
/// `[seed; 32]`-like and always valid.
pub fn keys_from_seed(seed: u8) -> Keys {
    let mut bytes = [seed.max(1); 32];
    bytes[0] = 0x11; // keeps the scalar far below the curve order
    match nostr::SecretKey::from_slice(&bytes) {
        Ok(secret) => Keys::new(secret),
        Err(_) => unreachable!("0x11.. is a valid secp256k1 scalar"),
    }
}

/// What an invoice commits to as its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceDescription {
    /// A description hash (`h` field): what NIP-57 zaps use, `sha256(zap request JSON)`.
    Hash([u8; 32]),
    /// A plain description (`d` field), at most 639 bytes: what some wallets use instead.
    Direct(String),
}

/// The fields of an invoice to issue.
#[derive(Debug, Clone)]
pub struct InvoiceParams {
    /// The amount, in millisats; `None` for an invoice without amount.
    pub amount_msat: Option<u64>,
    /// The description or its hash.
    pub description: InvoiceDescription,
    /// The invoice's timestamp.
    pub created_at: Timestamp,
    /// Seconds until it expires.
    pub expiry_secs: u64,
    /// The payment preimage; its sha256 is the payment hash.
    pub preimage: [u8; 32],
}

/// An issued invoice with its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestInvoice {
    /// The BOLT11 string.
    pub bolt11: String,
    /// The preimage that settles it.
    pub preimage: [u8; 32],
    /// `sha256(preimage)`.
    pub payment_hash: [u8; 32],
}

/// A Lightning node that signs real BOLT11 invoices with its node key.
#[derive(Debug, Clone)]
pub struct TestLightningNode {
    node_key: NodeSecretKey,
    network: Currency,
}

impl TestLightningNode {
    /// A mainnet node whose key is derived from `seed`.
    pub fn new(seed: u8) -> Self {
        let mut bytes = [seed.max(1); 32];
        bytes[0] = 0x22;
        match NodeSecretKey::from_slice(&bytes) {
            Ok(node_key) => Self {
                node_key,
                network: Currency::Bitcoin,
            },
            Err(_) => unreachable!("0x22.. is a valid secp256k1 scalar"),
        }
    }

    /// The same node on another network.
    pub fn on_network(mut self, network: Currency) -> Self {
        self.network = network;
        self
    }

    /// The node's public key (what `lightning-invoice` recovers from a signature).
    pub fn node_id(&self) -> nostr::secp256k1::PublicKey {
        nostr::secp256k1::PublicKey::from_secret_key(&Secp256k1::signing_only(), &self.node_key)
    }

    /// Issues and signs an invoice.
    pub fn invoice(&self, params: &InvoiceParams) -> TestInvoice {
        let payment_hash: [u8; 32] = Sha256::digest(params.preimage).into();
        let builder = InvoiceBuilder::new(self.network.clone());
        let builder = match &params.description {
            InvoiceDescription::Hash(hash) => {
                builder.description_hash(sha256::Hash::from_byte_array(*hash))
            }
            InvoiceDescription::Direct(text) => builder.description(text.clone()),
        };
        let builder = builder
            .payment_hash(sha256::Hash::from_byte_array(payment_hash))
            .payment_secret(PaymentSecret([0x5e; 32]))
            .duration_since_epoch(std::time::Duration::from_secs(params.created_at.as_secs()))
            .expiry_time(std::time::Duration::from_secs(params.expiry_secs))
            .min_final_cltv_expiry_delta(144);
        let builder = match params.amount_msat {
            Some(msat) => builder.amount_milli_satoshis(msat),
            None => builder,
        };
        let secp = Secp256k1::signing_only();
        let invoice = builder
            .build_signed(|hash: &Message| secp.sign_ecdsa_recoverable(hash, &self.node_key))
            .unwrap_or_else(|e| panic!("test invoice could not be built: {e}"));
        TestInvoice {
            bolt11: invoice.to_string(),
            preimage: params.preimage,
            payment_hash,
        }
    }
}

/// An LNURL server with a Nostr key: issues invoices for zap requests and signs their receipts.
#[derive(Debug, Clone)]
pub struct TestZapper {
    keys: Keys,
    node: TestLightningNode,
    expiry_secs: u64,
}

impl TestZapper {
    /// A zapper signing with `keys` (its `nostrPubkey`) and invoicing through `node`.
    pub fn new(keys: Keys, node: TestLightningNode) -> Self {
        Self {
            keys,
            node,
            expiry_secs: 3600,
        }
    }

    /// The zapper's `nostrPubkey`: whom a verifier must trust.
    pub fn pubkey(&self) -> PublicKey {
        self.keys.public_key()
    }

    /// The zapper's keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The Lightning node behind the zapper.
    pub fn node(&self) -> &TestLightningNode {
        &self.node
    }

    /// Issues the description-hash invoice for a zap request, as the LNURL callback does.
    pub fn invoice_for(
        &self,
        zap_request: &Event,
        amount_msat: u64,
        now: Timestamp,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> TestInvoice {
        let mut preimage = [0u8; 32];
        rng.fill_bytes(&mut preimage);
        let description: [u8; 32] = Sha256::digest(zap_request.as_json().as_bytes()).into();
        self.node.invoice(&InvoiceParams {
            amount_msat: Some(amount_msat),
            description: InvoiceDescription::Hash(description),
            created_at: now,
            expiry_secs: self.expiry_secs,
            preimage,
        })
    }

    /// The receipt tags NIP-57 Appendix E prescribes for a paid zap request.
    pub fn receipt_tags(zap_request: &Event, invoice: &TestInvoice) -> Vec<Tag> {
        let mut tags = Vec::new();
        for tag in zap_request.tags.iter() {
            if let [name, ..] = tag.as_slice() {
                if name == "p" || name == "e" || name == "a" {
                    tags.push(tag.clone());
                }
            }
        }
        let mut push = |values: Vec<String>| {
            if let Ok(tag) = Tag::parse(values) {
                tags.push(tag);
            }
        };
        push(vec!["P".into(), zap_request.pubkey.to_hex()]);
        push(vec!["bolt11".into(), invoice.bolt11.clone()]);
        push(vec!["description".into(), zap_request.as_json()]);
        push(vec!["preimage".into(), hex(&invoice.preimage)]);
        tags
    }

    /// Signs the receipt for a paid zap request, dated `paid_at`.
    pub fn receipt(
        &self,
        zap_request: &Event,
        invoice: &TestInvoice,
        paid_at: Timestamp,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Event {
        self.sign_receipt(Self::receipt_tags(zap_request, invoice), paid_at, rng)
    }

    /// Signs a kind 9735 event with exactly `tags`: for tests that break one rule.
    pub fn sign_receipt(
        &self,
        tags: Vec<Tag>,
        paid_at: Timestamp,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Event {
        sign(
            &self.keys,
            Kind::from(ZAP_RECEIPT_KIND),
            tags,
            "",
            paid_at,
            rng,
        )
    }
}

/// Signs an event deterministically (the signature's aux randomness comes from `rng`).
pub fn sign(
    keys: &Keys,
    kind: Kind,
    tags: Vec<Tag>,
    content: &str,
    created_at: Timestamp,
    rng: &mut (impl RngCore + CryptoRng),
) -> Event {
    UnsignedEvent::new(keys.public_key(), created_at, kind, tags, content)
        .sign_with_ctx(nostr::SECP256K1, rng, keys)
        .unwrap_or_else(|e| panic!("signing a test event failed: {e}"))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// An event id from 32 bytes, for tests that need "some other event".
pub fn event_id(byte: u8) -> EventId {
    EventId::from_byte_array([byte; 32])
}
