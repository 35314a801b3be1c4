//! NIP-89 handler information (31990) and recommendation (31989) parsing on hostile events.
//!
//! - `Json`: any string as event JSON (skipped when `nostr` cannot read it), into both
//!   `from_verified_event` parsers and the discovery helper.
//! - `Structured`: arbitrary tags and content on a 31990 or 31989 signed with a fixed key; the
//!   content is either any text or a JSON object made of arbitrary keys and values, so the
//!   lenient metadata reader sees every key it knows with every value type.
//!
//! Invariant: metadata written back and read again is stable after one round.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nostr_dvm::nip89::{providers_for_kind, HandlerInfo, HandlerMetadata, Recommendation};
use nostr_dvm::nostr::serde_json::{Map, Value};
use nostr_dvm::nostr::{Event, JsonUtil, Keys, Kind, Tag, Timestamp, UnsignedEvent};
use rand::rngs::StdRng;
use rand::SeedableRng;

const KEYS: [&str; 14] = [
    "name",
    "about",
    "picture",
    "nip90Params",
    "supportsEncryption",
    "encryptionSupported",
    "acceptsGiftWraps",
    "giftWrap",
    "relays",
    "amount",
    "personalized",
    "acceptsNutZaps",
    "required",
    "values",
];

#[derive(Arbitrary, Debug)]
enum Val {
    Null,
    Bool(bool),
    Num(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Val>),
    Obj(Vec<(u8, String, Val)>),
}

fn to_value(v: Val, depth: u8) -> Value {
    if depth > 4 {
        return Value::Null;
    }
    match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(b),
        Val::Num(n) => Value::from(n),
        Val::Float(f) => Value::from(f),
        Val::Str(s) => Value::String(s),
        Val::Arr(items) => Value::Array(
            items
                .into_iter()
                .take(8)
                .map(|i| to_value(i, depth + 1))
                .collect(),
        ),
        Val::Obj(entries) => Value::Object(object(entries, depth + 1)),
    }
}

fn object(entries: Vec<(u8, String, Val)>, depth: u8) -> Map<String, Value> {
    entries
        .into_iter()
        .take(16)
        .map(|(k, name, v)| {
            let key = KEYS
                .get(usize::from(k))
                .map(|s| s.to_string())
                .unwrap_or(name);
            (key, to_value(v, depth))
        })
        .collect()
}

#[derive(Arbitrary, Debug)]
enum Content {
    Text(String),
    Object(Vec<(u8, String, Val)>),
}

#[derive(Arbitrary, Debug)]
enum Input {
    Json(String),
    Structured {
        recommendation: bool,
        tags: Vec<Vec<String>>,
        content: Content,
    },
}

fn parse(event: &Event) {
    if let Ok(info) = HandlerInfo::from_verified_event(event) {
        if let Some(meta) = info.metadata {
            let once = HandlerMetadata::from_json_object(meta.to_json_object());
            let twice = HandlerMetadata::from_json_object(once.to_json_object());
            assert_eq!(once, twice);
        }
    }
    let _ = Recommendation::from_verified_event(event);
    let _ = providers_for_kind(Kind::from(5050), [event]);
}

fuzz_target!(|input: Input| {
    match input {
        Input::Json(json) => {
            if let Ok(event) = Event::from_json(json) {
                parse(&event);
            }
        }
        Input::Structured {
            recommendation,
            tags,
            content,
        } => {
            let keys = Keys::parse(&format!("{:064x}", 0x8989)).unwrap();
            let tags: Vec<Tag> = tags
                .into_iter()
                .take(64)
                .filter_map(|t| Tag::parse(t.into_iter().take(8)).ok())
                .collect();
            let content = match content {
                Content::Text(s) => s,
                Content::Object(entries) => Value::Object(object(entries, 0)).to_string(),
            };
            let kind = if recommendation { 31989 } else { 31990 };
            let event = UnsignedEvent::new(
                keys.public_key(),
                Timestamp::from(1_700_000_000),
                Kind::from(kind),
                tags,
                content,
            )
            .sign_with_ctx(
                nostr_dvm::nostr::SECP256K1,
                &mut StdRng::seed_from_u64(0),
                &keys,
            )
            .unwrap();
            parse(&event);
        }
    }
});
