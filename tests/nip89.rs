//! NIP-89: the two real kind 31990 handlers, builder round trips, lenient metadata, malformed
//! content, recommendations, and provider discovery.

use nostr_dvm::nip89::{
    latest_handlers, providers_for_kind, HandlerInfo, HandlerLink, HandlerMetadata, HandlerRef,
    ParamSpec, ParseError, Recommendation,
};
use nostr_dvm::nostr::{Event, JsonUtil, Keys, Kind, Tag, Timestamp, UnsignedEvent};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

const FIXTURE: &str = include_str!("data/nip89.json");

fn keys(n: u64) -> Keys {
    Keys::parse(&format!("{:064x}", n + 0x2000)).unwrap()
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(89)
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from(secs)
}

fn tag(values: &[&str]) -> Tag {
    Tag::parse(values.iter().copied()).unwrap()
}

fn sign_raw(keys: &Keys, kind: u16, tags: Vec<Tag>, content: &str, time: u64) -> Event {
    UnsignedEvent::new(keys.public_key(), at(time), Kind::from(kind), tags, content)
        .sign_with_ctx(nostr_dvm::nostr::SECP256K1, &mut rng(), keys)
        .unwrap()
}

fn fixture() -> Vec<(Event, Value)> {
    let root: Value = serde_json::from_str(FIXTURE).unwrap();
    root["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (Event::from_json(e["event"].to_string()).unwrap(), e.clone()))
        .collect()
}

#[test]
fn real_app_handlers_parse() {
    let events = fixture();
    assert_eq!(events.len(), 2);
    for (event, entry) in &events {
        let info = HandlerInfo::from_event(event).unwrap();
        let k_tags: Vec<Kind> = entry["k_tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| Kind::from(k.as_str().unwrap().parse::<u16>().unwrap()))
            .collect();
        assert_eq!(info.kinds, k_tags);
        assert_eq!(info.author, event.pubkey);
        assert!(info.metadata_error.is_none());
        let meta = info.metadata.as_ref().unwrap();
        assert!(meta.name.is_some() && meta.about.is_some() && meta.picture.is_some());
        assert!(meta.extra.is_empty(), "{:?}", meta.extra);
        // None of them is a DVM announcement.
        assert!(!info
            .kinds
            .iter()
            .any(|k| (5000..=5999).contains(&k.as_u16())));
        // Every tag is accounted for: d, k, platform links, the rest kept.
        assert_eq!(
            1 + info.kinds.len() + info.links.len() + info.unknown_tags.len(),
            event.tags.len()
        );
        assert_eq!(
            info.coordinate(),
            format!("31990:{}:{}", event.pubkey.to_hex(), info.identifier)
        );
    }
    let highlighter = HandlerInfo::from_event(&events[0].0).unwrap();
    assert_eq!(highlighter.identifier, "1704502265408");
    assert_eq!(
        highlighter.metadata.unwrap().name.as_deref(),
        Some("Highlighter")
    );
    assert_eq!(highlighter.links.len(), 4);
    assert_eq!(
        highlighter.links[0],
        HandlerLink {
            platform: "web".into(),
            url: "https://highlighter.com/a/<bech32>".into(),
            entity: Some("naddr".into()),
        }
    );
    let yaki = HandlerInfo::from_event(&events[1].0).unwrap();
    assert_eq!(yaki.links.len(), 7 + 3 + 3);
    assert!(yaki.supports(Kind::from(31990)));
    assert!(!yaki.supports(Kind::from(5050)));
}

#[test]
fn tampered_and_wrong_kind_are_refused() {
    let (event, _) = &fixture()[0];
    let mut json: Value = serde_json::from_str(&event.as_json()).unwrap();
    json["content"] = Value::String("{}".into());
    let edited = Event::from_json(json.to_string()).unwrap();
    assert_eq!(
        HandlerInfo::from_event(&edited).unwrap_err(),
        ParseError::InvalidId
    );
    assert!(HandlerInfo::from_verified_event(&edited).is_ok());
    let note = sign_raw(&keys(1), 1, vec![], "", 1);
    assert_eq!(
        HandlerInfo::from_event(&note).unwrap_err(),
        ParseError::WrongKind {
            kind: Kind::from(1),
            expected: 31990
        }
    );
    assert!(matches!(
        Recommendation::from_event(&note),
        Err(ParseError::WrongKind {
            expected: 31989,
            ..
        })
    ));
}

fn dvm_metadata() -> HandlerMetadata {
    let mut meta = HandlerMetadata {
        name: Some("Summariser".into()),
        about: Some("I summarise".into()),
        picture: Some("https://example.com/p.png".into()),
        encryption_supported: Some(true),
        accepts_gift_wraps: Some(true),
        relays: vec!["wss://relay.example".into()],
        amount: Some("free".into()),
        personalized: Some(false),
        accepts_nut_zaps: Some(false),
        ..Default::default()
    };
    meta.nip90_params.insert(
        "length".into(),
        ParamSpec {
            required: Some(false),
            values: vec!["1 paragraph".into(), "3 paragraphs".into()],
            ..Default::default()
        },
    );
    meta.extra.insert("lud16".into(), Value::from(7));
    meta.extra.insert("x-custom".into(), Value::from("kept"));
    meta
}

#[test]
fn handler_info_round_trips() {
    let provider = keys(2);
    let meta = dvm_metadata();
    let link = HandlerLink {
        platform: "web".into(),
        url: "https://dvm.example/e/<bech32>".into(),
        entity: Some("nevent".into()),
    };
    let event = HandlerInfo::builder("dvm-1")
        .kinds([Kind::from(5001), Kind::from(5002)])
        .metadata(meta.clone())
        .link(link.clone())
        .tag(tag(&["t", "summaries"]))
        .sign(&provider, at(1_700_000_000), &mut rng())
        .unwrap();
    assert_eq!(event.kind, Kind::from(31990));
    let info = HandlerInfo::from_event(&event).unwrap();
    assert_eq!(info.identifier, "dvm-1");
    assert_eq!(info.kinds, vec![Kind::from(5001), Kind::from(5002)]);
    assert_eq!(info.metadata, Some(meta));
    assert_eq!(info.links, vec![link]);
    assert_eq!(info.unknown_tags, vec![tag(&["t", "summaries"])]);
    // Both encryption keys are written, for nostrdvm and for the registry's readers.
    let content: Value = serde_json::from_str(&event.content).unwrap();
    assert_eq!(content["supportsEncryption"], true);
    assert_eq!(content["encryptionSupported"], true);
    assert_eq!(content["acceptsGiftWraps"], true);
    assert_eq!(
        content["nip90Params"]["length"]["values"][1],
        "3 paragraphs"
    );
    assert_eq!(content["x-custom"], "kept");
    // Reproducible byte for byte.
    let again = HandlerInfo::builder("dvm-1")
        .kinds([Kind::from(5001), Kind::from(5002)])
        .metadata(dvm_metadata())
        .link(info.links[0].clone())
        .tag(tag(&["t", "summaries"]))
        .sign(&provider, at(1_700_000_000), &mut rng())
        .unwrap();
    assert_eq!(again, event);
}

#[test]
fn nostrdvm_style_content_is_read_leniently() {
    let content = r#"{"name":"Noogle","about":"search","supportsEncryption":true,
        "acceptsNutZaps":"False","personalized":0,"amount":"free",
        "nip90Params":{"max_results":{"required":false,"values":[]},"users":{"required":"TRUE","values":[1,2]}},
        "cashuAccepted":true}"#;
    let event = sign_raw(
        &keys(3),
        31990,
        vec![
            tag(&["d", "abc"]),
            tag(&["k", "5302"]),
            tag(&["k", "not-a-kind"]),
        ],
        content,
        5,
    );
    let info = HandlerInfo::from_event(&event).unwrap();
    assert_eq!(info.kinds, vec![Kind::from(5302)]);
    assert_eq!(info.unknown_tags, vec![tag(&["k", "not-a-kind"])]);
    let meta = info.metadata.unwrap();
    assert_eq!(meta.encryption_supported, Some(true));
    assert_eq!(meta.accepts_nut_zaps, Some(false));
    assert_eq!(meta.personalized, Some(false));
    assert_eq!(meta.amount.as_deref(), Some("free"));
    assert_eq!(meta.nip90_params["max_results"].values.len(), 0);
    assert_eq!(meta.nip90_params["users"].required, Some(true));
    assert_eq!(meta.nip90_params["users"].values, vec!["1", "2"]);
    assert_eq!(meta.extra.get("cashuAccepted"), Some(&Value::Bool(true)));
}

#[test]
fn malformed_content_still_yields_the_tags() {
    // The DVM registry's own example: Python booleans and a trailing comma.
    let content = "{\n  \"name\": \"Dali Vending Machine\",\n  \"encryptionSupported\": True,\n}";
    let tags = vec![tag(&["d", "td51xbgxwbt5116r"]), tag(&["k", "5100"])];
    let event = sign_raw(&keys(4), 31990, tags.clone(), content, 5);
    let info = HandlerInfo::from_event(&event).unwrap();
    assert_eq!(info.kinds, vec![Kind::from(5100)]);
    assert_eq!(info.identifier, "td51xbgxwbt5116r");
    assert!(info.metadata.is_none());
    assert!(info.metadata_error.is_some());
    // Not an object.
    let array = sign_raw(&keys(4), 31990, tags.clone(), "[1,2]", 5);
    let info = HandlerInfo::from_event(&array).unwrap();
    assert_eq!(
        info.metadata_error.as_deref(),
        Some("content is not a JSON object")
    );
    // Empty content is no error: NIP-89 says to read the author's kind 0.
    let empty = sign_raw(&keys(4), 31990, tags, "  ", 5);
    let info = HandlerInfo::from_event(&empty).unwrap();
    assert!(info.metadata.is_none() && info.metadata_error.is_none());
    // No d tag: the empty identifier (NIP-01).
    let no_d = sign_raw(&keys(4), 31990, vec![tag(&["k", "5100"])], "{}", 5);
    assert_eq!(HandlerInfo::from_event(&no_d).unwrap().identifier, "");
}

#[test]
fn recommendations_round_trip_and_refuse_bad_d() {
    let recommender = keys(5);
    let handler = HandlerInfo::from_event(
        &HandlerInfo::builder("dvm-1")
            .kind(Kind::from(5050))
            .sign(&keys(6), at(10), &mut rng())
            .unwrap(),
    )
    .unwrap();
    let refs = vec![
        HandlerRef {
            pubkey: handler.author,
            identifier: handler.identifier.clone(),
            relay: Some("wss://relay1".into()),
            platform: Some("web".into()),
        },
        HandlerRef {
            pubkey: keys(7).public_key(),
            identifier: "x:y".into(),
            relay: None,
            platform: Some("ios".into()),
        },
    ];
    let event =
        Recommendation::sign(Kind::from(5050), &refs, &recommender, at(20), &mut rng()).unwrap();
    let rec = Recommendation::from_event(&event).unwrap();
    assert_eq!(rec.recommended_kind, Kind::from(5050));
    assert_eq!(rec.handlers, refs);
    assert!(rec.handlers[0].points_at(&handler));
    assert!(!rec.handlers[1].points_at(&handler));

    // The spec's example shape, with an `a` tag that is not a 31990 kept aside.
    let pk = keys(8).public_key().to_hex();
    let spec = sign_raw(
        &recommender,
        31989,
        vec![
            tag(&["d", "31337"]),
            tag(&["a", &format!("31990:{pk}:abcd"), "wss://relay", "web"]),
            tag(&["a", &format!("30023:{pk}:post")]),
        ],
        "",
        5,
    );
    let rec = Recommendation::from_event(&spec).unwrap();
    assert_eq!(rec.handlers.len(), 1);
    assert_eq!(rec.handlers[0].coordinate(), format!("31990:{pk}:abcd"));
    assert_eq!(rec.unknown_tags.len(), 1);

    let no_d = sign_raw(&recommender, 31989, vec![], "", 5);
    assert_eq!(
        Recommendation::from_event(&no_d).unwrap_err(),
        ParseError::MissingTag { tag: "d" }
    );
    let bad_d = sign_raw(&recommender, 31989, vec![tag(&["d", "kind-one"])], "", 5);
    assert_eq!(
        Recommendation::from_event(&bad_d).unwrap_err(),
        ParseError::InvalidKind {
            value: "kind-one".into()
        }
    );
}

fn announce(keys: &Keys, d: &str, kinds: &[u16], time: u64, name: &str) -> Event {
    HandlerInfo::builder(d)
        .kinds(kinds.iter().map(|k| Kind::from(*k)))
        .metadata(HandlerMetadata {
            name: Some(name.into()),
            ..Default::default()
        })
        .sign(keys, at(time), &mut rng())
        .unwrap()
}

#[test]
fn discovery_keeps_the_newest_per_author_and_d() {
    let a = keys(10);
    let b = keys(11);
    let c = keys(12);
    let events = vec![
        announce(&a, "one", &[5050, 5001], 100, "a-old"),
        announce(&a, "one", &[5001], 200, "a-new"), // dropped 5050
        announce(&a, "two", &[5050], 150, "a-two"),
        announce(&b, "one", &[5050], 100, "b"),
        announce(&c, "x", &[5050], 50, "c-old"),
        announce(&c, "x", &[5002], 40, "c-older"),
        sign_raw(&a, 1, vec![], "not a handler", 300),
    ];
    // A forged announcement (bad signature) is skipped.
    let mut forged: Value =
        serde_json::from_str(&announce(&b, "one", &[5050], 999, "forged").as_json()).unwrap();
    forged["sig"] = Value::String(events[0].sig.to_string());
    let forged = Event::from_json(forged.to_string()).unwrap();
    let mut all = events.clone();
    all.push(forged);

    let latest = latest_handlers(&all);
    let names: Vec<(String, String)> = latest
        .iter()
        .map(|i| {
            (
                i.identifier.clone(),
                i.metadata.as_ref().unwrap().name.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(latest.len(), 4);
    assert!(names.contains(&("one".into(), "a-new".into())));
    assert!(names.contains(&("one".into(), "b".into())));
    assert!(names.contains(&("x".into(), "c-old".into())));

    let serving: Vec<String> = providers_for_kind(Kind::from(5050), &all)
        .iter()
        .map(|i| i.metadata.as_ref().unwrap().name.clone().unwrap())
        .collect();
    let mut serving_sorted = serving.clone();
    serving_sorted.sort();
    assert_eq!(serving_sorted, vec!["a-two", "b", "c-old"]);
    assert_eq!(providers_for_kind(Kind::from(5002), &all).len(), 0);
    assert_eq!(providers_for_kind(Kind::from(5001), &all).len(), 1);

    // Same second: the lowest id wins, whatever the order of arrival.
    let x = announce(&a, "tie", &[5050], 500, "x");
    let y = announce(&a, "tie", &[5050], 500, "y");
    let winner = if x.id < y.id { "x" } else { "y" };
    for pair in [vec![&x, &y], vec![&y, &x]] {
        let got = latest_handlers(pair);
        assert_eq!(
            got[0].metadata.as_ref().unwrap().name.as_deref(),
            Some(winner)
        );
    }
}
