//! NIP-40 expiration and NIP-13 proof of work: the spec's examples, real events from the
//! fixture, and the edge cases.

use nostr_dvm::nip13::{
    check_pow, check_pow_committed, committed_target, difficulty, meets_pow, PowError,
};
use nostr_dvm::nip40;
use nostr_dvm::nostr::{Event, EventId, JsonUtil, Keys, Kind, Tag, Timestamp, UnsignedEvent};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

fn tag(values: &[&str]) -> Tag {
    Tag::parse(values.iter().copied()).unwrap()
}

fn event_with(tags: Vec<Tag>) -> Event {
    let keys = Keys::parse(&format!("{:064x}", 0x4040)).unwrap();
    UnsignedEvent::new(
        keys.public_key(),
        Timestamp::from(1_000_000_000),
        Kind::from(1),
        tags,
        "",
    )
    .sign_with_ctx(
        nostr_dvm::nostr::SECP256K1,
        &mut StdRng::seed_from_u64(40),
        &keys,
    )
    .unwrap()
}

fn fixture_events() -> Vec<Event> {
    let root: Value = serde_json::from_str(include_str!("data/dvm_events.json")).unwrap();
    root["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let raw = &e["event"];
            let mut clean = serde_json::Map::new();
            for key in [
                "id",
                "pubkey",
                "created_at",
                "kind",
                "tags",
                "content",
                "sig",
            ] {
                clean.insert(key.to_owned(), raw[key].clone());
            }
            Event::from_json(Value::Object(clean).to_string()).ok()
        })
        .collect()
}

#[test]
fn expiration_reads_the_spec_example() {
    let event = event_with(vec![tag(&["expiration", "1600000000"])]);
    assert_eq!(
        nip40::expiration(&event),
        Ok(Some(Timestamp::from(1_600_000_000)))
    );
    assert!(!nip40::is_expired(&event, Timestamp::from(1_599_999_999)));
    assert!(nip40::is_expired(&event, Timestamp::from(1_600_000_000)));
    assert!(nip40::is_expired(&event, Timestamp::from(1_600_000_001)));
    assert_eq!(
        nip40::tag(Timestamp::from(1_600_000_000)),
        tag(&["expiration", "1600000000"])
    );
}

#[test]
fn expiration_edge_cases() {
    let none = event_with(vec![tag(&["t", "x"])]);
    assert_eq!(nip40::expiration(&none), Ok(None));
    assert!(!nip40::is_expired(&none, Timestamp::from(u64::MAX)));

    for bad in ["", "soon", "1600000000.5", "-1", "+1600000000", "0x10"] {
        let event = event_with(vec![tag(&["expiration", bad])]);
        let err = nip40::expiration(&event).unwrap_err();
        assert_eq!(err.value(), bad);
        // Malformed counts as expired (see the function's docs).
        assert!(nip40::is_expired(&event, Timestamp::from(0)));
    }
    let bare = event_with(vec![tag(&["expiration"])]);
    assert!(nip40::expiration(&bare).is_err());

    // The first tag counts.
    let two = event_with(vec![tag(&["expiration", "10"]), tag(&["expiration", "x"])]);
    assert_eq!(nip40::expiration(&two), Ok(Some(Timestamp::from(10))));
}

#[test]
fn expiration_in_real_events() {
    let mut seen = Vec::new();
    for event in fixture_events() {
        if let Some(at) = nip40::expiration(&event).unwrap() {
            seen.push(at.as_secs());
            assert!(nip40::is_expired(&event, at));
            assert!(!nip40::is_expired(
                &event,
                Timestamp::from(at.as_secs() - 1)
            ));
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        vec![1738705814, 1740661196, 1742817964, 1743106197, 1743451881]
    );
}

#[test]
fn difficulty_matches_the_spec() {
    let id = |hex: &str| EventId::from_hex(hex).unwrap();
    assert_eq!(
        difficulty(&id(
            "000000000e9d97a1ab09fc381030b346cdd7a142ad57e6df0b46dc9bef6c7e2d"
        )),
        36
    );
    // "002f..." has 10 leading zero bits.
    assert_eq!(
        difficulty(&id(
            "002f00000e9d97a1ab09fc381030b346cdd7a142ad57e6df0b46dc9bef6c7e2d"
        )),
        10
    );
    // Every nibble below 8 counts.
    for (hex_digit, bits) in [('7', 1), ('3', 2), ('1', 3), ('8', 0), ('f', 0)] {
        let hex = format!("{hex_digit}{}", "f".repeat(63));
        assert_eq!(difficulty(&id(&hex)), bits, "{hex}");
    }
    assert_eq!(difficulty(&EventId::all_zeros()), 255);
}

/// The spec's mined note: 21 leading zero bits, committing to a target of 20.
fn mined_note() -> Event {
    Event::from_json(
        r#"{"id":"000006d8c378af1779d2feebc7603a125d99eca0ccf1085959b307f64e5dd358","pubkey":"a48380f4cfcc1ad5378294fcac36439770f9c878dd880ffa94bb74ea54a6f243","created_at":1651794653,"kind":1,"tags":[["nonce","776797","20"]],"content":"It's just me mining my own business","sig":"284622fc0a3f4f1303455d5175f7ba962a3300d136085b9566801bc2e0699de0c7e31e44c81fb40ad9049173742e904713c3594a1da0fc5d2382a25c11aba977"}"#,
    )
    .unwrap()
}

#[test]
fn committed_target_caps_what_an_event_can_claim() {
    let note = mined_note();
    assert!(note.verify_id());
    assert_eq!(difficulty(&note.id), 21);
    assert_eq!(committed_target(&note), Ok(Some(20)));
    assert!(meets_pow(&note, 0));
    assert!(meets_pow(&note, 20));
    // The id has 21 bits, but the miner aimed at 20: refused at 21 (NIP-13's example).
    assert_eq!(
        check_pow(&note, 21),
        Err(PowError::CommittedTargetTooLow {
            committed: 20,
            required: 21
        })
    );
    assert_eq!(
        check_pow(&note, 22),
        Err(PowError::Insufficient {
            difficulty: 21,
            required: 22
        })
    );
    assert_eq!(check_pow_committed(&note, 20), Ok(21));
}

#[test]
fn missing_and_malformed_commitments() {
    // Real DVM requests with a nonce tag and no target.
    let mined: Vec<Event> = fixture_events()
        .into_iter()
        .filter(|e| e.tags.iter().any(|t| t.as_slice()[0] == "nonce"))
        .collect();
    assert_eq!(mined.len(), 2);
    for event in &mined {
        let d = difficulty(&event.id);
        assert_eq!(committed_target(event), Ok(None));
        assert_eq!(check_pow(event, d), Ok(d));
        if d > 0 {
            assert_eq!(
                check_pow_committed(event, d),
                Err(PowError::MissingCommitment)
            );
        }
    }
    for bad in ["", "x", "256", "-1", "+20"] {
        let event = event_with(vec![tag(&["nonce", "1", bad])]);
        assert_eq!(
            committed_target(&event),
            Err(PowError::MalformedNonce),
            "{bad:?}"
        );
        // Requiring no work passes whatever the tags say.
        assert!(meets_pow(&event, 0));
    }
}
