//! `verify_zap_receipt` on mutated receipts.
//!
//! Starts from a valid receipt (real invoice signed by a test node key, real zap request,
//! receipt signed by the trusted test zapper) and lets the fuzzer replace, drop, duplicate or
//! corrupt its tags, then re-signs with the zapper key so the mutations reach every rule past
//! the signature check. A few inputs also skip the re-signing to exercise the id and
//! signature checks themselves.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nostr_dvm::nip57::{verify_zap_receipt, ZapExpectation, ZapRequestBuilder};
use nostr_dvm::nostr::{Event, EventId, Keys, Tag, Timestamp};
use nostr_dvm::testing::{event_id, keys_from_seed, TestLightningNode, TestZapper};
use rand::rngs::StdRng;
use rand::SeedableRng;

const NOW: u64 = 1_760_000_000;

struct Base {
    zapper: TestZapper,
    provider: Keys,
    job: EventId,
    tags: Vec<Vec<String>>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(1);
        let zapper = TestZapper::new(keys_from_seed(1), TestLightningNode::new(2));
        let provider = keys_from_seed(3);
        let sender = keys_from_seed(4);
        let job = event_id(0xaa);
        let request = ZapRequestBuilder::new(provider.public_key(), ["wss://r.example"])
            .amount_msat(21_000)
            .event(job)
            .sign(&sender, Timestamp::from(NOW - 30), &mut rng)
            .unwrap();
        let invoice = zapper.invoice_for(&request, 21_000, Timestamp::from(NOW - 20), &mut rng);
        let tags = TestZapper::receipt_tags(&request, &invoice)
            .into_iter()
            .map(|t| t.to_vec())
            .collect();
        Base {
            zapper,
            provider,
            job,
            tags,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Replace { tag: u8, index: u8, value: String },
    Corrupt { tag: u8, at: u16, byte: u8 },
    Drop { tag: u8 },
    Duplicate { tag: u8 },
    Push { values: Vec<String> },
}

#[derive(Arbitrary, Debug)]
struct Input {
    edits: Vec<Edit>,
    paid_at_offset: i16,
    lenient: bool,
    resign: bool,
}

fuzz_target!(|input: Input| {
    let base = base();
    let mut tags = base.tags.clone();
    for edit in input.edits.into_iter().take(8) {
        let n = tags.len().max(1);
        match edit {
            Edit::Replace { tag, index, value } => {
                if let Some(t) = tags.get_mut(tag as usize % n) {
                    let i = index as usize % (t.len() + 1);
                    if i < t.len() {
                        t[i] = value;
                    } else {
                        t.push(value);
                    }
                }
            }
            Edit::Corrupt { tag, at, byte } => {
                if let Some(t) = tags.get_mut(tag as usize % n) {
                    if let Some(v) = t.get_mut(1) {
                        let mut bytes = v.clone().into_bytes();
                        if !bytes.is_empty() {
                            let i = at as usize % bytes.len();
                            bytes[i] = byte;
                        }
                        *v = String::from_utf8_lossy(&bytes).into_owned();
                    }
                }
            }
            Edit::Drop { tag } => {
                if !tags.is_empty() {
                    tags.remove(tag as usize % n);
                }
            }
            Edit::Duplicate { tag } => {
                if let Some(t) = tags.get(tag as usize % n).cloned() {
                    tags.push(t);
                }
            }
            Edit::Push { values } => tags.push(values),
        }
    }
    let tags: Vec<Tag> = tags
        .into_iter()
        .filter_map(|t| Tag::parse(t).ok())
        .collect();
    let paid_at = Timestamp::from((NOW as i64 + input.paid_at_offset as i64) as u64);
    let mut rng = StdRng::seed_from_u64(2);
    let receipt: Event = base.zapper.sign_receipt(tags, paid_at, &mut rng);
    let receipt = if input.resign {
        receipt
    } else {
        // Keep the signature of a different event: the id/sig checks must refuse it.
        let other = base.zapper.sign_receipt(vec![], paid_at, &mut rng);
        Event::new(
            receipt.id,
            receipt.pubkey,
            receipt.created_at,
            receipt.kind,
            receipt.tags.clone().to_vec(),
            receipt.content.clone(),
            other.sig,
        )
    };
    let mut expect = ZapExpectation::new(
        base.provider.public_key(),
        [base.zapper.pubkey()],
        [base.job],
        1_000,
        Timestamp::from(NOW),
    );
    if input.lenient {
        expect = expect.lenient_description_hash();
    }
    if let Ok(zap) = verify_zap_receipt(&receipt, &expect) {
        assert_eq!(zap.bound_to, base.job);
        assert!(zap.amount_msat >= 1_000);
        assert!(input.resign);
    }
});
