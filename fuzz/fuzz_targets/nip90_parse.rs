//! NIP-90 job request / result / feedback parsing on hostile events.
//!
//! - `Json`: any string as event JSON (skipped when `nostr` cannot read it), into the three
//!   `from_verified_event` parsers, so the fuzzer is not stopped by the signature.
//! - `Structured`: an event made of arbitrary tags and content around a kind picked from the
//!   interesting ones, signed with a fixed key.
//! - `Encrypted`: arbitrary private tags (or any text) really encrypted to the provider with
//!   NIP-44 or NIP-04, so decryption succeeds and the private-tag reader sees attacker-chosen
//!   plaintext.
//!
//! Each is parsed without keys and with the provider's and the customer's keys. Invariant: a
//! plain request rebuilt with the builder parses back to the same fields.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nostr_dvm::nip90::{JobFeedback, JobRequest, JobResult};
use nostr_dvm::nostr::{Event, JsonUtil, Keys, Kind, Tag, Timestamp, UnsignedEvent};
use rand::rngs::StdRng;
use rand::SeedableRng;

const KINDS: [u16; 8] = [5050, 6050, 7000, 5000, 5999, 6969, 5392, 1];

#[derive(Arbitrary, Debug)]
enum Input {
    Json(String),
    Structured {
        kind: u8,
        raw_kind: u16,
        tags: Vec<Vec<String>>,
        content: String,
    },
    Encrypted {
        kind: u8,
        public: Vec<Vec<String>>,
        private: Vec<Vec<String>>,
        raw_plaintext: Option<String>,
        nip04: bool,
        declared: Option<String>,
    },
}

fn keys(n: u8) -> Keys {
    Keys::parse(&format!("{:064x}", u32::from(n) + 0x9000)).unwrap()
}

fn pick(kind: u8, raw: u16) -> u16 {
    KINDS.get(usize::from(kind)).copied().unwrap_or(raw)
}

fn to_tags(raw: Vec<Vec<String>>) -> Vec<Tag> {
    raw.into_iter()
        .take(64)
        .filter_map(|t| Tag::parse(t.into_iter().take(8)).ok())
        .collect()
}

fn sign(keys: &Keys, kind: u16, tags: Vec<Tag>, content: String) -> Event {
    UnsignedEvent::new(
        keys.public_key(),
        Timestamp::from(1_700_000_000),
        Kind::from(kind),
        tags,
        content,
    )
    .sign_with_ctx(
        nostr_dvm::nostr::SECP256K1,
        &mut StdRng::seed_from_u64(0),
        keys,
    )
    .unwrap()
}

fn parse_all(event: &Event, customer: &Keys, provider: &Keys) {
    for keys in [None, Some(customer), Some(provider)] {
        if let Ok(request) = JobRequest::from_verified_event(event, keys) {
            check_rebuild(&request, customer);
        }
        let _ = JobResult::from_verified_event(event, keys);
        let _ = JobFeedback::from_verified_event(event, keys);
    }
}

/// A plain request rebuilt from its parsed fields parses back to the same fields.
fn check_rebuild(request: &JobRequest, customer: &Keys) {
    if request.encrypted.is_some() {
        return;
    }
    let mut b = JobRequest::builder(request.kind).content(request.content.clone());
    for input in &request.inputs {
        b = b.input(input.clone());
    }
    for param in &request.params {
        b = b.param_values(param.name.clone(), param.values.clone());
    }
    if let Some(output) = &request.output {
        b = b.output(output.clone());
    }
    if let Some(bid) = request.bid {
        b = match bid.max_msat {
            Some(max) => b.bid_with_max(bid.amount_msat, max),
            None => b.bid(bid.amount_msat),
        };
    }
    b = b.relays(request.relays.clone());
    for p in &request.providers {
        b = b.provider(*p);
    }
    if let Some(at) = request.expiration {
        b = b.expiration(at);
    }
    for tag in &request.unknown_tags {
        b = b.tag(tag.clone());
    }
    let event = b
        .sign(customer, request.created_at, &mut StdRng::seed_from_u64(1))
        .unwrap();
    let again = JobRequest::from_event(&event, None).unwrap();
    assert_eq!(again.inputs, request.inputs);
    assert_eq!(again.params, request.params);
    assert_eq!(again.output, request.output);
    assert_eq!(again.bid, request.bid);
    assert_eq!(again.relays, request.relays);
    assert_eq!(again.providers, request.providers);
    assert_eq!(again.expiration, request.expiration);
    assert_eq!(again.content, request.content);
    assert_eq!(again.unknown_tags, request.unknown_tags);
}

fuzz_target!(|input: Input| {
    let customer = keys(1);
    let provider = keys(2);
    match input {
        Input::Json(json) => {
            if let Ok(event) = Event::from_json(json) {
                parse_all(&event, &customer, &provider);
            }
        }
        Input::Structured {
            kind,
            raw_kind,
            tags,
            content,
        } => {
            let event = sign(&customer, pick(kind, raw_kind), to_tags(tags), content);
            parse_all(&event, &customer, &provider);
        }
        Input::Encrypted {
            kind,
            public,
            private,
            raw_plaintext,
            nip04,
            declared,
        } => {
            let plaintext = raw_plaintext.unwrap_or_else(|| {
                nostr_dvm::nostr::serde_json::to_string(&private).unwrap_or_default()
            });
            let mut rng = StdRng::seed_from_u64(2);
            let content = if nip04 {
                nostr_dvm::nip04::encrypt(
                    customer.secret_key(),
                    &provider.public_key(),
                    &plaintext,
                    &mut rng,
                )
                .unwrap()
            } else {
                let key = nostr_dvm::nip44::ConversationKey::derive(
                    customer.secret_key(),
                    &provider.public_key(),
                )
                .unwrap();
                match nostr_dvm::nip44::encrypt(&key, &plaintext, &mut rng) {
                    Ok(c) => c,
                    Err(_) => return,
                }
            };
            let mut tags = to_tags(public);
            tags.push(Tag::parse(["p".to_owned(), provider.public_key().to_hex()]).unwrap());
            let mut encrypted = vec!["encrypted".to_owned()];
            encrypted.extend(declared);
            tags.push(Tag::parse(encrypted).unwrap());
            let event = sign(&customer, pick(kind, 5050), tags, content);
            parse_all(&event, &customer, &provider);
        }
    }
});
