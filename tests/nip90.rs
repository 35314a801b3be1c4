//! NIP-90 job requests, results and feedback: the real events from the wild (with every
//! verdict explained by the fixture's flags), builder round trips in each scheme, replies in the
//! request's scheme checked against the `nostr` crate as an independent decryptor, and each
//! `ParseError` variant triggered once.

use std::collections::{BTreeMap, HashMap};

use nostr_dvm::encryption::{detect_scheme, Scheme};
use nostr_dvm::nip90::{
    kinds, limits, Bid, FeedbackStatus, InputType, JobFeedback, JobInput, JobRequest, JobResult,
    KindRegistry, KindRole, KindTriple, Param, ParseError,
};
use nostr_dvm::nostr::{
    Event, EventId, JsonUtil, Keys, Kind, PublicKey, Tag, Timestamp, UnsignedEvent,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

const FIXTURE: &str = include_str!("data/dvm_events.json");
const NOW: u64 = 1_750_000_000;

fn keys(n: u8) -> Keys {
    Keys::parse(&format!("{:064x}", u64::from(n) + 0x1000)).unwrap()
}

fn customer() -> Keys {
    keys(1)
}

fn provider() -> Keys {
    keys(2)
}

fn stranger() -> Keys {
    keys(3)
}

fn now() -> Timestamp {
    Timestamp::from(NOW)
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(90)
}

fn tag(values: &[&str]) -> Tag {
    Tag::parse(values.iter().copied()).unwrap()
}

/// Signs any event, for the negative cases the builders refuse to make.
fn sign_raw(keys: &Keys, kind: u16, tags: Vec<Tag>, content: &str) -> Event {
    UnsignedEvent::new(keys.public_key(), now(), Kind::from(kind), tags, content)
        .sign_with_ctx(nostr_dvm::nostr::SECP256K1, &mut rng(), keys)
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The fixture: 168 real events.
// ---------------------------------------------------------------------------------------------

/// The kinds `kinds::COLLISIONS` marks foreign, written out here from `INDEX.md`'s notes and
/// the fixture's `not_dvm` flag, so the test does not just read the table back.
const FOREIGN: &[u16] = &[
    5128, 5391, 5392, 5393, 5394, 6006, 6007, 6275, 6276, 6277, 6969,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Verdict {
    Request(Option<Scheme>),
    Result(Option<Scheme>),
    Feedback(Option<Scheme>),
    Refused(&'static str),
}

struct Entry {
    index: usize,
    event: Event,
    json: Value,
    flags: Value,
}

fn fixture() -> Vec<Entry> {
    let root: Value = serde_json::from_str(FIXTURE).unwrap();
    let events = root["events"].as_array().unwrap();
    assert_eq!(events.len(), 168);
    events
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            // Some entries carry extra keys (`seenOn`); keep the NIP-01 fields only.
            let raw = &entry["event"];
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
            let event = Event::from_json(Value::Object(clean).to_string()).unwrap();
            Entry {
                index,
                event,
                json: raw.clone(),
                flags: entry.clone(),
            }
        })
        .collect()
}

fn scheme_flag(flags: &Value) -> Option<Scheme> {
    match flags.get("encryption").and_then(Value::as_str) {
        Some("nip44-v2") => Some(Scheme::Nip44),
        Some("nip04") => Some(Scheme::Nip04),
        _ => None,
    }
}

/// What the fixture's flags (and two facts read from the raw JSON) say must happen.
fn expected(entry: &Entry) -> Verdict {
    let f = &entry.flags;
    if !f["id_valid"].as_bool().unwrap() {
        return Verdict::Refused("invalid id");
    }
    if !f["sig_valid"].as_bool().unwrap() {
        return Verdict::Refused("invalid signature");
    }
    let kind = entry.json["kind"].as_u64().unwrap() as u16;
    if FOREIGN.contains(&kind) {
        // All of these are flagged nonconforming (6969 also `not_dvm`).
        assert!(f["nip90_shape"]
            .as_str()
            .unwrap()
            .starts_with("nonconforming"));
        return Verdict::Refused("foreign kind");
    }
    let tags = entry.json["tags"].as_array().unwrap();
    let has = |name: &str| tags.iter().any(|t| t[0] == name);
    let role = f["role"].as_str().unwrap();
    if role != "request" && !has("e") {
        // Results and feedback must name their request; only nonconforming ones do not.
        assert!(f["nip90_shape"]
            .as_str()
            .unwrap()
            .starts_with("nonconforming"));
        return Verdict::Refused("missing e");
    }
    let bad_amount = tags.iter().any(|t| {
        t[0] == "amount"
            && !t[1]
                .as_str()
                .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
    });
    if bad_amount {
        return Verdict::Refused("invalid amount");
    }
    let scheme = scheme_flag(f);
    match role {
        "request" => Verdict::Request(scheme),
        "result" => Verdict::Result(scheme),
        "feedback" => Verdict::Feedback(scheme),
        other => panic!("unknown role {other}"),
    }
}

fn reason(err: &ParseError) -> &'static str {
    match err {
        ParseError::InvalidId => "invalid id",
        ParseError::InvalidSignature => "invalid signature",
        ParseError::ForeignKind { .. } => "foreign kind",
        ParseError::MissingTag { tag: "e" } => "missing e",
        ParseError::InvalidAmount { tag: "amount", .. } => "invalid amount",
        other => panic!("unexpected refusal: {other:?}"),
    }
}

fn actual(entry: &Entry) -> Verdict {
    let e = &entry.event;
    let k = e.kind.as_u16();
    let verdict = if (5000..=5999).contains(&k) {
        JobRequest::from_event(e, None).map(|r| Verdict::Request(r.encrypted.map(|x| x.scheme)))
    } else if (6000..=6999).contains(&k) {
        JobResult::from_event(e, None).map(|r| Verdict::Result(r.encrypted.map(|x| x.scheme)))
    } else {
        JobFeedback::from_event(e, None).map(|r| Verdict::Feedback(r.encrypted.map(|x| x.scheme)))
    };
    verdict.unwrap_or_else(|err| Verdict::Refused(reason(&err)))
}

#[test]
fn every_fixture_event_gets_the_verdict_its_flags_explain() {
    let entries = fixture();
    let mut counts: HashMap<Verdict, usize> = HashMap::new();
    for entry in &entries {
        let want = expected(entry);
        let got = actual(entry);
        assert_eq!(got, want, "event #{} ({})", entry.index, entry.event.id);
        *counts.entry(got).or_default() += 1;
    }
    let count = |v: Verdict| counts.get(&v).copied().unwrap_or(0);

    // Requests: 66 conformant (9 encrypted: 5 NIP-44, 4 NIP-04) + 8 of the 12 nonconforming,
    // kept with their tags as unknown tags. The other 4 nonconforming are kinds 5391-5394.
    assert_eq!(count(Verdict::Request(None)), 57 + 8);
    assert_eq!(count(Verdict::Request(Some(Scheme::Nip44))), 5);
    assert_eq!(count(Verdict::Request(Some(Scheme::Nip04))), 4);
    // Results: 45 conformant, minus one whose amount is "100_000" (6 encrypted: 4 + 2).
    assert_eq!(count(Verdict::Result(None)), 39 - 1);
    assert_eq!(count(Verdict::Result(Some(Scheme::Nip44))), 4);
    assert_eq!(count(Verdict::Result(Some(Scheme::Nip04))), 2);
    // Feedback: 28 conformant, minus two whose amount is "100_000" (6 encrypted: 3 + 3).
    assert_eq!(count(Verdict::Feedback(None)), 22 - 2);
    assert_eq!(count(Verdict::Feedback(Some(Scheme::Nip44))), 3);
    assert_eq!(count(Verdict::Feedback(Some(Scheme::Nip04))), 3);
    // Refused: the 2 negative cases (bad id); 4 requests (5391-5394) and 6 results (6006,
    // 6007, 6275-6277, and 6969 flagged not_dvm) of foreign kinds; the other 9 nonconforming
    // results, which name no request; and the 3 conformant events with amount "100_000".
    assert_eq!(count(Verdict::Refused("invalid id")), 2);
    assert_eq!(count(Verdict::Refused("foreign kind")), 4 + 6);
    assert_eq!(count(Verdict::Refused("missing e")), 9);
    assert_eq!(count(Verdict::Refused("invalid amount")), 3);
    assert_eq!(counts.values().sum::<usize>(), 168);

    // The same through the flags alone: parsed = valid conformant minus the 3 bad amounts,
    // plus the nonconforming requests of non-foreign kinds.
    let valid_conformant = entries
        .iter()
        .filter(|e| {
            e.flags["id_valid"] == true
                && e.flags["sig_valid"] == true
                && e.flags["nip90_shape"] == "conformant"
        })
        .count();
    assert_eq!(valid_conformant, 66 + 45 + 28);
    let parsed: usize = counts
        .iter()
        .filter(|(v, _)| !matches!(v, Verdict::Refused(_)))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(parsed, valid_conformant - 3 + 8);
}

#[test]
fn fixture_details() {
    let entries = fixture();
    let mut request_tags = (0, 0);
    for entry in &entries {
        let flags = &entry.flags;
        if !matches!(
            expected(entry),
            Verdict::Request(_) | Verdict::Result(_) | Verdict::Feedback(_)
        ) {
            continue;
        }
        let event = &entry.event;
        let first_p = event.tags.iter().find_map(|t| match t.as_slice() {
            [p, v, ..] if p == "p" && *v != event.pubkey.to_hex() => Some(v.clone()),
            _ => None,
        });
        match expected(entry) {
            Verdict::Request(scheme) => {
                let req = JobRequest::from_event(event, None).unwrap();
                if let Some(scheme) = scheme {
                    // Encrypted, unread: scheme and target known, private part untouched.
                    let enc = req.encrypted.unwrap();
                    assert_eq!(enc.scheme, scheme);
                    assert!(!enc.decrypted);
                    assert_eq!(Some(enc.target.to_hex()), first_p);
                    // Only the public i/param tags are read (#66, kind 5600, has public
                    // params next to its ciphertext).
                    let public =
                        |n: &str| event.tags.iter().filter(|t| t.as_slice()[0] == n).count();
                    assert_eq!(
                        (req.inputs.len(), req.params.len()),
                        (public("i"), public("param"))
                    );
                    assert!(req.content.is_empty());
                } else if flags["nip90_shape"] != "conformant" {
                    // Nonconforming requests are kept: every tag is an unknown tag.
                    assert!(req.inputs.is_empty());
                    assert_eq!(req.unknown_tags.len(), event.tags.len());
                } else {
                    let n_inputs = event.tags.iter().filter(|t| t.as_slice()[0] == "i").count();
                    assert_eq!(req.inputs.len(), n_inputs);
                }
                assert_eq!(req.id, event.id);
                assert_eq!(req.event, *event);
            }
            Verdict::Result(scheme) => {
                let res = JobResult::from_event(event, None).unwrap();
                assert_eq!(res.encrypted.map(|e| e.scheme), scheme);
                if scheme.is_some() {
                    assert!(res.content.is_empty());
                    assert!(
                        res.inputs.is_empty(),
                        "encrypted results do not echo inputs"
                    );
                }
                if res.request_json.is_some() {
                    match res.request_event() {
                        Ok(Some(req)) => {
                            assert_eq!(req.id, res.request_id);
                            request_tags.0 += 1;
                        }
                        Err(ParseError::MalformedTag { tag: "request", .. }) => request_tags.1 += 1,
                        other => panic!("{other:?}"),
                    }
                }
            }
            Verdict::Feedback(scheme) => {
                let fb = JobFeedback::from_event(event, None).unwrap();
                match scheme {
                    // Real encrypted feedback keeps its status in the ciphertext.
                    Some(s) => {
                        assert_eq!(fb.encrypted.unwrap().scheme, s);
                        assert_eq!(fb.status, FeedbackStatus::Encrypted);
                    }
                    None => assert_ne!(fb.status, FeedbackStatus::Encrypted),
                }
            }
            Verdict::Refused(_) => unreachable!(),
        }
    }
    // 34 results carry a `request` tag; #86 (a bare id there) is refused for its amount. Of
    // the other 33, 32 hold the request's JSON with the id the `e` tag names and one (#97) a
    // Python dict.
    assert_eq!(request_tags, (32, 1));
}

#[test]
fn fixture_feedback_statuses_and_amounts() {
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut amounts = Vec::new();
    for entry in fixture() {
        if entry.event.kind.as_u16() != 7000 {
            continue;
        }
        if let Ok(fb) = JobFeedback::from_event(&entry.event, None) {
            if fb.status != FeedbackStatus::Encrypted {
                *statuses.entry(fb.status.to_string()).or_default() += 1;
            }
            if let Some(a) = fb.amount {
                amounts.push(a.msat);
            }
        }
    }
    let want: BTreeMap<String, usize> = [
        ("error", 3),
        ("partial", 1),
        ("payment-required", 6),
        ("processing", 7),
        ("success", 3),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(statuses, want);
    amounts.sort_unstable();
    assert_eq!(amounts, vec![1000, 25000, 28125, 51000, 1545000, 1599000]);
}

#[test]
fn a_bad_signature_is_refused_and_unchecked_parsing_skips_it() {
    let entries = fixture();
    let entry = entries
        .iter()
        .find(|e| matches!(expected(e), Verdict::Request(None)))
        .unwrap();
    let mut json: Value = serde_json::from_str(&entry.event.as_json()).unwrap();
    let other = entries
        .iter()
        .find(|e| e.event.id != entry.event.id)
        .unwrap();
    json["sig"] = Value::String(other.event.sig.to_string());
    let forged = Event::from_json(json.to_string()).unwrap();
    assert_eq!(
        JobRequest::from_event(&forged, None).unwrap_err(),
        ParseError::InvalidSignature
    );
    assert!(JobRequest::from_verified_event(&forged, None).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Builders and round trips.
// ---------------------------------------------------------------------------------------------

fn sample_inputs() -> Vec<JobInput> {
    let id = EventId::from_hex("7cadd987daf15a530a01770423ab616e04482174c2ac4dd98369cb05b145409a")
        .unwrap();
    vec![
        JobInput::text("what is the capital of France?"),
        JobInput::url("https://example.com/a.mp3").with_marker("audio/mpeg"),
        JobInput::event(id, Some("wss://relay.example".into())),
        JobInput::job(id, None).with_marker("background"),
        JobInput::new("raw", InputType::Other("prompt".into())),
    ]
}

fn build_request(scheme: Option<Scheme>) -> Event {
    let mut b = JobRequest::builder(Kind::from(5050));
    for input in sample_inputs() {
        b = b.input(input);
    }
    b = b
        .param("model", "LLaMA-2")
        .param_values("range", ["10", "20"])
        .output("text/plain")
        .bid_with_max(5_000, 10_000)
        .relays(["wss://relay.example", "wss://other.example"])
        .provider(provider().public_key())
        .expiration(Timestamp::from(NOW + 3600))
        .tag(tag(&["t", "bitcoin"]));
    match scheme {
        Some(s) => b = b.encrypt(s),
        None => b = b.content("plain content"),
    }
    b.sign(&customer(), now(), &mut rng()).unwrap()
}

fn assert_private_fields(req: &JobRequest) {
    assert_eq!(req.inputs, sample_inputs());
    assert_eq!(
        req.params,
        vec![
            Param::new("model", "LLaMA-2"),
            Param::with_values("range", ["10", "20"])
        ]
    );
    assert_eq!(req.param("model"), Some("LLaMA-2"));
    assert_eq!(req.params_named("range").count(), 1);
}

fn assert_public_fields(req: &JobRequest) {
    assert_eq!(req.kind, Kind::from(5050));
    assert_eq!(req.author, customer().public_key());
    assert_eq!(req.created_at, now());
    assert_eq!(req.output.as_deref(), Some("text/plain"));
    assert_eq!(
        req.bid,
        Some(Bid {
            amount_msat: 5_000,
            max_msat: Some(10_000)
        })
    );
    assert_eq!(
        req.relays,
        vec!["wss://relay.example", "wss://other.example"]
    );
    assert_eq!(req.providers, vec![provider().public_key()]);
    assert!(req.addresses(&provider().public_key()));
    assert_eq!(req.expiration, Some(Timestamp::from(NOW + 3600)));
    assert!(!req.is_expired(now()));
    assert!(req.is_expired(Timestamp::from(NOW + 3600)));
    assert_eq!(req.unknown_tags, vec![tag(&["t", "bitcoin"])]);
    assert_eq!(req.result_kind(), Kind::from(6050));
    assert_eq!(req.feedback_kind(), Kind::from(7000));
}

/// The customer decrypts `content` from the provider with the `nostr` crate, independently of
/// this crate.
fn oracle_decrypt(scheme: Scheme, content: &str) -> String {
    let sk = customer();
    let pk = provider().public_key();
    match scheme {
        Scheme::Nip44 => {
            nostr_dvm::nostr::nips::nip44::decrypt(sk.secret_key(), &pk, content).unwrap()
        }
        Scheme::Nip04 => {
            nostr_dvm::nostr::nips::nip04::decrypt(sk.secret_key(), &pk, content).unwrap()
        }
    }
}

fn schemes() -> Vec<Option<Scheme>> {
    let mut s = vec![None, Some(Scheme::Nip44)];
    if cfg!(feature = "nip04") {
        s.push(Some(Scheme::Nip04));
    }
    s
}

#[test]
fn request_round_trips_in_each_scheme() {
    for scheme in schemes() {
        let event = build_request(scheme);
        assert!(event.verify().is_ok());
        let names: Vec<&str> = event
            .tags
            .iter()
            .map(|t| t.as_slice()[0].as_str())
            .collect();

        // The provider reads everything.
        let req = JobRequest::from_event(&event, Some(&provider())).unwrap();
        assert_public_fields(&req);
        assert_private_fields(&req);
        assert_eq!(req.scheme(), scheme);
        match scheme {
            None => {
                assert_eq!(req.content, "plain content");
                assert!(names.contains(&"i") && names.contains(&"param"));
                // Keys are not needed for a plain request.
                assert_eq!(JobRequest::from_event(&event, None).unwrap(), req);
            }
            Some(s) => {
                assert!(!names.contains(&"i") && !names.contains(&"param"));
                assert_eq!(detect_scheme(&event.content), Some(s));
                let enc = req.encrypted.unwrap();
                assert_eq!(enc.declared, Some(s));
                assert_eq!(enc.target, provider().public_key());
                assert!(enc.decrypted);
                assert!(req.content.is_empty());

                // Without keys: marked encrypted, private part unread.
                let unread = JobRequest::from_event(&event, None).unwrap();
                assert_public_fields(&unread);
                assert!(unread.inputs.is_empty() && unread.params.is_empty());
                assert_eq!(
                    unread.encrypted.map(|e| (e.scheme, e.decrypted)),
                    Some((s, false))
                );

                // The customer reads back its own request; a stranger cannot.
                let own = JobRequest::from_event(&event, Some(&customer())).unwrap();
                assert_private_fields(&own);
                let other = JobRequest::from_event(&event, Some(&stranger())).unwrap();
                assert!(!other.encrypted.unwrap().decrypted);
                assert!(other.inputs.is_empty());
            }
        }
    }
}

#[test]
fn results_reply_in_the_request_scheme() {
    for scheme in schemes() {
        let request = JobRequest::from_event(&build_request(scheme), Some(&provider())).unwrap();
        let invoice = "lnbc50u1pexample".to_owned();
        let event = JobResult::builder(&request, "Paris")
            .amount(5_000, Some(invoice.clone()))
            .tag(tag(&["alt", "a result"]))
            .sign(&provider(), now(), &mut rng())
            .unwrap();
        assert_eq!(event.kind, Kind::from(6050));
        assert_eq!(detect_scheme(&event.content), scheme);
        let echoed = event.tags.iter().filter(|t| t.as_slice()[0] == "i").count();
        assert_eq!(echoed, if scheme.is_some() { 0 } else { 5 });

        let result = JobResult::from_event(&event, Some(&customer())).unwrap();
        assert_eq!(result.content, "Paris");
        assert_eq!(result.request_id, request.id);
        assert_eq!(result.request_relay.as_deref(), Some("wss://relay.example"));
        assert_eq!(result.customer, Some(customer().public_key()));
        assert_eq!(result.provider(), provider().public_key());
        assert_eq!(result.amount.as_ref().map(|a| a.msat), Some(5_000));
        assert_eq!(result.amount.clone().and_then(|a| a.bolt11), Some(invoice));
        assert!(result.answers(&request));
        assert_eq!(result.unknown_tags, vec![tag(&["alt", "a result"])]);
        // The `request` tag parses back to the original request.
        let embedded = result.request_event().unwrap().unwrap();
        assert_eq!(embedded, request.event);
        assert_eq!(
            JobRequest::from_event(&embedded, Some(&provider())).unwrap(),
            request
        );

        match scheme {
            None => {
                assert_eq!(result.inputs, sample_inputs());
                assert!(result.encrypted.is_none());
            }
            Some(s) => {
                assert_eq!(oracle_decrypt(s, &event.content), "Paris");
                let enc = result.encrypted.unwrap();
                assert_eq!(
                    (enc.scheme, enc.declared, enc.decrypted),
                    (s, Some(s), true)
                );
                // The provider can read its own result back; without keys it stays closed.
                let own = JobResult::from_event(&event, Some(&provider())).unwrap();
                assert_eq!(own.content, "Paris");
                let closed = JobResult::from_event(&event, None).unwrap();
                assert!(closed.content.is_empty() && !closed.encrypted.unwrap().decrypted);
            }
        }
    }
}

#[test]
fn feedback_replies_in_the_request_scheme() {
    for scheme in schemes() {
        let request = JobRequest::from_event(&build_request(scheme), Some(&provider())).unwrap();
        let event = JobFeedback::builder(&request, FeedbackStatus::PaymentRequired)
            .extra_info("pay first")
            .amount(21_000, Some("lnbc210n1pexample".into()))
            .content("a sample")
            .sign(&provider(), now(), &mut rng())
            .unwrap();
        assert_eq!(event.kind, Kind::from(7000));
        let names: Vec<&str> = event
            .tags
            .iter()
            .map(|t| t.as_slice()[0].as_str())
            .collect();

        let fb = JobFeedback::from_event(&event, Some(&customer())).unwrap();
        assert_eq!(fb.status, FeedbackStatus::PaymentRequired);
        assert_eq!(fb.extra_info.as_deref(), Some("pay first"));
        assert_eq!(fb.amount.as_ref().map(|a| a.msat), Some(21_000));
        assert_eq!(
            fb.amount.as_ref().and_then(|a| a.bolt11.as_deref()),
            Some("lnbc210n1pexample")
        );
        assert_eq!(fb.content, "a sample");
        assert_eq!(fb.request_id, request.id);
        assert!(fb.answers(&request));
        assert!(fb.unknown_tags.is_empty());

        let closed = JobFeedback::from_event(&event, None).unwrap();
        match scheme {
            None => {
                assert_eq!(closed, fb);
                assert!(names.contains(&"status"));
            }
            Some(s) => {
                // As real providers do: only e, p and encrypted in the clear.
                assert_eq!(names, vec!["e", "p", "encrypted"]);
                let plain = oracle_decrypt(s, &event.content);
                let tags: Vec<Vec<String>> = serde_json::from_str(&plain).unwrap();
                assert_eq!(tags[0], vec!["status", "payment-required", "pay first"]);
                assert_eq!(closed.status, FeedbackStatus::Encrypted);
                assert!(closed.content.is_empty());
                assert!(closed.amount.is_none());
                assert_eq!(
                    closed.encrypted.map(|e| (e.scheme, e.decrypted)),
                    Some((s, false))
                );
            }
        }
    }
}

#[test]
fn every_status_round_trips() {
    let request = JobRequest::from_event(&build_request(None), None).unwrap();
    for status in [
        FeedbackStatus::PaymentRequired,
        FeedbackStatus::Processing,
        FeedbackStatus::Error,
        FeedbackStatus::Success,
        FeedbackStatus::Partial,
        FeedbackStatus::Unknown("cancelled".into()),
    ] {
        let event = JobFeedback::builder(&request, status.clone())
            .sign(&provider(), now(), &mut rng())
            .unwrap();
        let fb = JobFeedback::from_event(&event, None).unwrap();
        assert_eq!(fb.status, status.clone());
        assert_eq!(FeedbackStatus::parse(status.as_str()), status);
        assert_eq!(fb.extra_info, None);
        assert_eq!(fb.amount, None);
    }
}

#[test]
fn feedback_in_the_shapes_real_providers_encrypt() {
    let request = JobRequest::from_event(&build_request(Some(Scheme::Nip44)), None).unwrap();
    let encrypt = |plain: &str| {
        nostr_dvm::nostr::nips::nip44::encrypt(
            provider().secret_key(),
            &customer().public_key(),
            plain,
            nostr_dvm::nostr::nips::nip44::Version::V2,
        )
        .unwrap()
    };
    let public = |extra: &[&[&str]]| {
        let mut tags = vec![
            tag(&["encrypted"]),
            tag(&["p", &customer().public_key().to_hex()]),
            tag(&["e", &request.id.to_hex()]),
        ];
        tags.extend(extra.iter().map(|t| tag(t)));
        tags
    };
    // nostrdvm: the tags as a JSON array, the content in a `content` tag.
    let nostrdvm = sign_raw(
        &provider(),
        7000,
        public(&[]),
        &encrypt(r#"[["status", "processing"], ["content", "working on it"]]"#),
    );
    let fb = JobFeedback::from_event(&nostrdvm, Some(&customer())).unwrap();
    assert_eq!(fb.status, FeedbackStatus::Processing);
    assert_eq!(fb.content, "working on it");
    assert_eq!(fb.encrypted.unwrap().declared, None);
    // The 5905 registry page: a single tag.
    let single = sign_raw(
        &provider(),
        7000,
        public(&[]),
        &encrypt(r#"["status","success","scheduled"]"#),
    );
    let fb = JobFeedback::from_event(&single, Some(&customer())).unwrap();
    assert_eq!(fb.status, FeedbackStatus::Success);
    assert_eq!(fb.extra_info.as_deref(), Some("scheduled"));
    // Only the content encrypted, the status in the clear.
    let content_only = sign_raw(
        &provider(),
        7000,
        public(&[&["status", "partial"]]),
        &encrypt("[[\"e\",\"abc\"]]"),
    );
    let fb = JobFeedback::from_event(&content_only, Some(&customer())).unwrap();
    assert_eq!(fb.status, FeedbackStatus::Partial);
    assert_eq!(fb.content, "[[\"e\",\"abc\"]]");
    // Decrypted, but no status anywhere.
    let none = sign_raw(&provider(), 7000, public(&[]), &encrypt("just text"));
    assert_eq!(
        JobFeedback::from_event(&none, Some(&customer())).unwrap_err(),
        ParseError::MissingTag { tag: "status" }
    );
}

#[test]
fn requests_encrypted_by_another_implementation_are_read() {
    // A NIP-44 request made with the `nostr` crate, tagged ["encrypted", "nip04"]: the payload
    // decides, not the tag.
    let private = r#"[["i","what is the capital of France? ","text"],["param","model","LLaMA-2"],["param","max_tokens","512"]]"#;
    let content = nostr_dvm::nostr::nips::nip44::encrypt(
        customer().secret_key(),
        &provider().public_key(),
        private,
        nostr_dvm::nostr::nips::nip44::Version::V2,
    )
    .unwrap();
    let event = sign_raw(
        &customer(),
        5050,
        vec![
            tag(&["p", &provider().public_key().to_hex()]),
            tag(&["encrypted", "nip04"]),
        ],
        &content,
    );
    let req = JobRequest::from_event(&event, Some(&provider())).unwrap();
    let enc = req.encrypted.unwrap();
    assert_eq!(
        (enc.scheme, enc.declared),
        (Scheme::Nip44, Some(Scheme::Nip04))
    );
    assert_eq!(req.inputs[0].data, "what is the capital of France? ");
    assert_eq!(req.param("max_tokens"), Some("512"));
    // The reply follows the payload's scheme.
    let reply = JobResult::builder(&req, "Paris")
        .sign(&provider(), now(), &mut rng())
        .unwrap();
    assert_eq!(detect_scheme(&reply.content), Some(Scheme::Nip44));
    assert!(reply
        .tags
        .iter()
        .any(|t| t.as_slice() == ["encrypted", "nip44"]));
}

#[cfg(feature = "nip04")]
#[test]
fn nip04_requests_from_another_implementation_are_read() {
    let private = r#"[["i","hello","text"]]"#;
    let content = nostr_dvm::nostr::nips::nip04::encrypt(
        customer().secret_key(),
        &provider().public_key(),
        private,
    )
    .unwrap();
    let event = sign_raw(
        &customer(),
        5050,
        vec![
            tag(&["p", &provider().public_key().to_hex()]),
            tag(&["encrypted"]),
        ],
        &content,
    );
    let req = JobRequest::from_event(&event, Some(&provider())).unwrap();
    assert_eq!(req.scheme(), Some(Scheme::Nip04));
    assert_eq!(req.inputs, vec![JobInput::text("hello")]);
}

#[test]
fn custom_kind_triples_work_end_to_end() {
    let triple = KindTriple::new(Kind::from(25050), Kind::from(25051), Kind::from(25052));
    let registry = KindRegistry::nip90().with(triple);
    let event = JobRequest::builder(Kind::from(25050))
        .input(JobInput::text("hi"))
        .sign(&customer(), now(), &mut rng())
        .unwrap();
    assert!(matches!(
        JobRequest::from_event(&event, None),
        Err(ParseError::KindOutOfRange {
            expected: KindRole::Request,
            ..
        })
    ));
    let request = JobRequest::from_event_with(&event, None, &registry).unwrap();
    assert_eq!(request.kinds, triple);
    let result = JobResult::builder(&request, "out")
        .sign(&provider(), now(), &mut rng())
        .unwrap();
    assert_eq!(result.kind, Kind::from(25051));
    assert!(JobResult::from_event(&result, None).is_err());
    let parsed = JobResult::from_event_with(&result, None, &registry).unwrap();
    assert!(parsed.answers(&request));
    let feedback = JobFeedback::builder(&request, FeedbackStatus::Processing)
        .sign(&provider(), now(), &mut rng())
        .unwrap();
    assert_eq!(feedback.kind, Kind::from(25052));
    assert!(JobFeedback::from_event_with(&feedback, None, &registry)
        .unwrap()
        .answers(&request));
    // The registry's arithmetic is exposed as data too.
    assert_eq!(
        registry.result_kind_for(Kind::from(5001)),
        Some(Kind::from(6001))
    );
    assert_eq!(
        kinds::kind_info(Kind::from(5001)).unwrap().name,
        "Summarization"
    );
}

#[test]
fn builder_errors() {
    use nostr_dvm::nip90::BuildError;
    let none = JobRequest::builder(Kind::from(5050))
        .encrypt(Scheme::Nip44)
        .sign(&customer(), now(), &mut rng());
    assert!(matches!(
        none,
        Err(BuildError::EncryptionTarget { providers: 0 })
    ));
    let two = JobRequest::builder(Kind::from(5050))
        .provider(provider().public_key())
        .provider(stranger().public_key())
        .encrypt(Scheme::Nip44)
        .sign(&customer(), now(), &mut rng());
    assert!(matches!(
        two,
        Err(BuildError::EncryptionTarget { providers: 2 })
    ));
    let both = JobRequest::builder(Kind::from(5050))
        .provider(provider().public_key())
        .content("x")
        .encrypt(Scheme::Nip44)
        .sign(&customer(), now(), &mut rng());
    assert!(matches!(both, Err(BuildError::ContentWithEncryption)));
    // NIP-44 cannot carry an empty result.
    let request =
        JobRequest::from_event(&build_request(Some(Scheme::Nip44)), Some(&provider())).unwrap();
    let empty = JobResult::builder(&request, "").sign(&provider(), now(), &mut rng());
    assert!(matches!(empty, Err(BuildError::Nip44(_))));
}

#[test]
fn builds_are_reproducible() {
    for scheme in schemes() {
        assert_eq!(build_request(scheme), build_request(scheme));
    }
}

// ---------------------------------------------------------------------------------------------
// Each ParseError variant.
// ---------------------------------------------------------------------------------------------

fn request_with(tags: &[&[&str]]) -> Result<JobRequest, ParseError> {
    let event = sign_raw(&customer(), 5050, tags.iter().map(|t| tag(t)).collect(), "");
    JobRequest::from_event(&event, Some(&provider()))
}

fn result_with(tags: &[&[&str]], content: &str) -> Result<JobResult, ParseError> {
    let event = sign_raw(
        &provider(),
        6050,
        tags.iter().map(|t| tag(t)).collect(),
        content,
    );
    JobResult::from_event(&event, Some(&customer()))
}

fn feedback_with(tags: &[&[&str]]) -> Result<JobFeedback, ParseError> {
    let event = sign_raw(&provider(), 7000, tags.iter().map(|t| tag(t)).collect(), "");
    JobFeedback::from_event(&event, Some(&customer()))
}

#[test]
fn parse_errors_name_the_tag_and_the_reason() {
    let id = "7cadd987daf15a530a01770423ab616e04482174c2ac4dd98369cb05b145409a";
    let prov = provider().public_key().to_hex();
    let prov = prov.as_str();

    // Invalid id: the content was changed after signing.
    let mut json: Value = serde_json::from_str(&build_request(None).as_json()).unwrap();
    json["content"] = Value::String("edited".into());
    let edited = Event::from_json(json.to_string()).unwrap();
    assert_eq!(
        JobRequest::from_event(&edited, None).unwrap_err(),
        ParseError::InvalidId
    );

    // Kind out of range, for each parser.
    let note = sign_raw(&customer(), 1, vec![], "hi");
    assert_eq!(
        JobRequest::from_event(&note, None).unwrap_err(),
        ParseError::KindOutOfRange {
            kind: Kind::from(1),
            expected: KindRole::Request
        }
    );
    let req = build_request(None);
    assert!(matches!(
        JobResult::from_event(&req, None),
        Err(ParseError::KindOutOfRange {
            expected: KindRole::Result,
            ..
        })
    ));
    assert!(matches!(
        JobFeedback::from_event(&req, None),
        Err(ParseError::KindOutOfRange {
            expected: KindRole::Feedback,
            ..
        })
    ));
    // A kind another application uses.
    let poll = sign_raw(&provider(), 6969, vec![tag(&["e", id])], "");
    assert!(matches!(
        JobResult::from_event(&poll, None),
        Err(ParseError::ForeignKind { .. })
    ));

    // Missing tags.
    assert_eq!(
        result_with(&[], "x").unwrap_err(),
        ParseError::MissingTag { tag: "e" }
    );
    assert_eq!(
        feedback_with(&[]).unwrap_err(),
        ParseError::MissingTag { tag: "e" }
    );
    assert_eq!(
        feedback_with(&[&["e", id]]).unwrap_err(),
        ParseError::MissingTag { tag: "status" }
    );
    let no_p = sign_raw(&customer(), 5050, vec![tag(&["encrypted"])], "AgAAAAAA");
    assert_eq!(
        JobRequest::from_event(&no_p, None).unwrap_err(),
        ParseError::MissingTag { tag: "p" }
    );

    // Malformed tags.
    assert_eq!(
        request_with(&[&["i"]]).unwrap_err(),
        ParseError::MalformedTag {
            tag: "i",
            reason: "no data"
        }
    );
    assert!(matches!(
        request_with(&[&["param"]]),
        Err(ParseError::MalformedTag { tag: "param", .. })
    ));
    assert!(matches!(
        feedback_with(&[&["e", id], &["status"]]),
        Err(ParseError::MalformedTag { tag: "status", .. })
    ));

    // Numbers.
    assert_eq!(
        feedback_with(&[
            &["e", id],
            &["status", "payment-required"],
            &["amount", "100_000", "botlab@zeuspay.com"]
        ])
        .unwrap_err(),
        ParseError::InvalidAmount {
            tag: "amount",
            value: "100_000".into()
        }
    );
    assert_eq!(
        request_with(&[&["bid", "1e3"]]).unwrap_err(),
        ParseError::InvalidAmount {
            tag: "bid",
            value: "1e3".into()
        }
    );
    assert_eq!(
        request_with(&[&["expiration", "soon"]]).unwrap_err(),
        ParseError::InvalidNumber {
            tag: "expiration",
            value: "soon".into()
        }
    );

    // Ids and keys.
    assert!(matches!(
        result_with(&[&["e", "not-an-id"]], "x"),
        Err(ParseError::InvalidEventId { tag: "e", .. })
    ));
    assert!(matches!(
        request_with(&[&["p", "npub1xyz"]]),
        Err(ParseError::InvalidPublicKey { tag: "p", .. })
    ));

    // Encrypted content.
    assert_eq!(
        request_with(&[&["p", prov], &["encrypted"]]).unwrap_err(),
        ParseError::UnknownCiphertext
    );
    let to_provider = |plain: &str| {
        nostr_dvm::nostr::nips::nip44::encrypt(
            customer().secret_key(),
            &provider().public_key(),
            plain,
            nostr_dvm::nostr::nips::nip44::Version::V2,
        )
        .unwrap()
    };
    let not_json = sign_raw(
        &customer(),
        5050,
        vec![tag(&["p", prov]), tag(&["encrypted"])],
        &to_provider("not json"),
    );
    assert!(matches!(
        JobRequest::from_event(&not_json, Some(&provider())),
        Err(ParseError::EncryptedContent { .. })
    ));
    // A NIP-44 payload with one character changed: the MAC fails.
    let mut payload = to_provider(r#"[["i","x","text"]]"#).into_bytes();
    payload[60] = if payload[60] == b'A' { b'B' } else { b'A' };
    let altered = sign_raw(
        &customer(),
        5050,
        vec![tag(&["p", prov]), tag(&["encrypted"])],
        std::str::from_utf8(&payload).unwrap(),
    );
    assert_eq!(
        JobRequest::from_event(&altered, Some(&provider())).unwrap_err(),
        ParseError::Nip44(nostr_dvm::nip44::Error::InvalidMac)
    );
    // Without keys the same event still parses, marked encrypted.
    assert!(JobRequest::from_event(&altered, None).is_ok());
    #[cfg(feature = "nip04")]
    {
        let garbage = sign_raw(
            &customer(),
            5050,
            vec![tag(&["p", prov]), tag(&["encrypted"])],
            "AAAA?iv=AAAA",
        );
        assert!(matches!(
            JobRequest::from_event(&garbage, Some(&provider())),
            Err(ParseError::Nip04(_))
        ));
    }
    #[cfg(not(feature = "nip04"))]
    {
        let nip04 = sign_raw(
            &customer(),
            5050,
            vec![tag(&["p", prov]), tag(&["encrypted"])],
            "AAAA?iv=AAAA",
        );
        assert_eq!(
            JobRequest::from_event(&nip04, Some(&provider())).unwrap_err(),
            ParseError::SchemeUnavailable(Scheme::Nip04)
        );
    }

    // Limits.
    let many: Vec<Tag> = (0..=limits::MAX_INPUTS)
        .map(|i| tag(&["i", &i.to_string(), "text"]))
        .collect();
    let event = sign_raw(&customer(), 5050, many, "");
    assert_eq!(
        JobRequest::from_event(&event, None).unwrap_err(),
        ParseError::TooMany {
            tag: "i",
            count: limits::MAX_INPUTS + 1,
            max: limits::MAX_INPUTS
        }
    );

    // Error messages name the tag.
    let msg = ParseError::InvalidAmount {
        tag: "amount",
        value: "100_000".into(),
    }
    .to_string();
    assert!(msg.contains("amount") && msg.contains("100_000"));
}

#[test]
fn unknown_tags_and_repeats_are_kept() {
    let req = request_with(&[
        &["t", "x"],
        &["output", "text/plain"],
        &["output", "text/markdown"],
        &[""],
        &["weird", "1", "2"],
    ])
    .unwrap();
    assert_eq!(req.output.as_deref(), Some("text/plain"));
    assert_eq!(
        req.unknown_tags,
        vec![
            tag(&["t", "x"]),
            tag(&["output", "text/markdown"]),
            tag(&[""]),
            tag(&["weird", "1", "2"])
        ]
    );
}

#[test]
fn huge_remote_values_are_clipped_in_errors() {
    let big = "9".repeat(10_000) + "x";
    let err = request_with(&[&["bid", &big]]).unwrap_err();
    let ParseError::InvalidAmount { value, .. } = err else {
        panic!()
    };
    assert!(value.len() < 100);
}

// ---------------------------------------------------------------------------------------------
// No input panics.
// ---------------------------------------------------------------------------------------------

fn arb_tag() -> impl Strategy<Value = Vec<String>> {
    let name = prop_oneof![
        Just("i".to_owned()),
        Just("param".to_owned()),
        Just("bid".to_owned()),
        Just("amount".to_owned()),
        Just("e".to_owned()),
        Just("p".to_owned()),
        Just("status".to_owned()),
        Just("encrypted".to_owned()),
        Just("expiration".to_owned()),
        Just("relays".to_owned()),
        Just("request".to_owned()),
        Just("output".to_owned()),
        "[a-z]{0,3}",
    ];
    let value = prop_oneof![
        Just(String::new()),
        "[0-9]{1,25}",
        "[0-9a-f]{64}",
        Just(provider().public_key().to_hex()),
        Just(customer().public_key().to_hex()),
        ".{0,12}",
    ];
    (name, prop::collection::vec(value, 0..5)).prop_map(|(n, mut v)| {
        v.insert(0, n);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn arbitrary_tags_never_panic(
        kind in prop_oneof![Just(5050u16), Just(6050), Just(7000), 4990u16..7010],
        tags in prop::collection::vec(arb_tag(), 0..12),
        content in prop_oneof![Just(String::new()), ".{0,40}", Just("AgAAAAAA".to_owned()), Just("a?iv=b".to_owned())],
    ) {
        let tags: Vec<Tag> = tags.into_iter().map(|t| Tag::parse(t).unwrap()).collect();
        let event = sign_raw(&customer(), kind, tags, &content);
        for keys in [None, Some(&provider()), Some(&customer())] {
            let _ = JobRequest::from_event(&event, keys);
            let _ = JobResult::from_event(&event, keys);
            let _ = JobFeedback::from_event(&event, keys);
        }
    }
}

#[test]
fn public_key_helper_is_stable() {
    // Guard for the fixed test keys above.
    assert_ne!(customer().public_key(), provider().public_key());
    let _: PublicKey = stranger().public_key();
}

#[test]
fn kinds_and_invoices_take_plain_values() {
    let event = JobRequest::builder(5001)
        .input(JobInput::text("x"))
        .sign(&customer(), now(), &mut rng())
        .unwrap();
    let request = JobRequest::from_event(&event, None).unwrap();
    assert_eq!(request.kind, Kind::from(5001));
    assert!(nostr_dvm::nip90::is_job_request_kind(5001));
    assert_eq!(
        nostr_dvm::nip90::result_kind_for(5001),
        Some(Kind::from(6001))
    );
    let with_none = JobResult::builder(&request, "r")
        .amount(1_000, None)
        .sign(&provider(), now(), &mut rng())
        .unwrap();
    let with_string = JobFeedback::builder(&request, FeedbackStatus::PaymentRequired)
        .amount(1_000, "lnbc10n1pexample".to_owned())
        .sign(&provider(), now(), &mut rng())
        .unwrap();
    assert_eq!(
        JobResult::from_event(&with_none, None).unwrap().amount,
        Some(nostr_dvm::nip90::Amount::new(1_000, None))
    );
    assert_eq!(
        JobFeedback::from_event(&with_string, None)
            .unwrap()
            .amount
            .and_then(|a| a.bolt11)
            .as_deref(),
        Some("lnbc10n1pexample")
    );
}
