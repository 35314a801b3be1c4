//! NIP-90 request parsing next to the signature check every received event needs anyway.
//!
//! `cargo bench --bench nip90` prints, after criterion's own lines, the ratio the parsing issue
//! sets: `JobRequest::from_verified_event` on a typical request (a few `i` and `param` tags,
//! output, bid, relays, a provider) <= 0.10x the event's own `nip01::verify` (id hash +
//! Schnorr signature). Also measured: the full `from_event` (verify + parse), a NIP-44
//! encrypted request read by its provider (ECDH + decrypt + parse), and a NIP-44 encrypted
//! result read by its customer with a derived key and with the key from a
//! `ConversationKeyCache` (as the `Customer` reads answers), with their ratio.

use std::hint::black_box;

use criterion::Criterion;
use nostr_dvm::encryption::Scheme;
use nostr_dvm::nip90::{JobInput, JobRequest, JobResult, KindRegistry};
use nostr_dvm::nostr::{Event, Keys, Kind, Timestamp};
use rand::SeedableRng;

#[path = "support/mod.rs"]
mod support;
use support::{report, Goal};

fn keys() -> (Keys, Keys) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(90);
    (
        Keys::generate_with_rng(&mut rng),
        Keys::generate_with_rng(&mut rng),
    )
}

fn typical_request(customer: &Keys, provider: &Keys, scheme: Option<Scheme>) -> Event {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut builder = JobRequest::builder(Kind::from(5050))
        .input(JobInput::text(
            "Summarise the following article in three sentences.",
        ))
        .input(JobInput::url("https://example.com/article.html"))
        .param("model", "LLaMA-2")
        .param("max_tokens", "512")
        .param("temperature", "0.5")
        .output("text/plain")
        .bid(10_000)
        .relays(["wss://relay.damus.io", "wss://nos.lol"])
        .provider(provider.public_key());
    if let Some(scheme) = scheme {
        builder = builder.encrypt(scheme);
    }
    builder
        .sign(customer, Timestamp::from(1_700_000_000), &mut rng)
        .unwrap()
}

fn bench_request(c: &mut Criterion) {
    let (customer, provider) = keys();
    let plain = typical_request(&customer, &provider, None);
    let encrypted = typical_request(&customer, &provider, Some(Scheme::Nip44));

    let mut group = c.benchmark_group("nip90_request");
    group.bench_function("verify", |b| {
        b.iter(|| assert!(nostr_dvm::nip01::verify(black_box(&plain))))
    });
    group.bench_function("parse_verified", |b| {
        b.iter(|| JobRequest::from_verified_event(black_box(&plain), None).unwrap())
    });
    group.bench_function("from_event", |b| {
        b.iter(|| JobRequest::from_event(black_box(&plain), None).unwrap())
    });
    group.bench_function("parse_verified_nip44_provider", |b| {
        b.iter(|| JobRequest::from_verified_event(black_box(&encrypted), Some(&provider)).unwrap())
    });
    group.finish();

    let request = JobRequest::from_event(&encrypted, Some(&provider)).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let result = JobResult::builder(&request, "A three-sentence summary of the article.")
        .sign(&provider, Timestamp::from(1_700_000_010), &mut rng)
        .unwrap();
    let registry = KindRegistry::nip90();
    let mut cache = nostr_dvm::nip44::ConversationKeyCache::new(customer.secret_key().clone(), 256);
    let mut group = c.benchmark_group("nip90_encrypted_result");
    group.bench_function("derived_each_time", |b| {
        b.iter(|| {
            JobResult::from_verified_event_with(black_box(&result), Some(&customer), &registry)
                .unwrap()
        })
    });
    group.bench_function("cached_key", |b| {
        b.iter(|| {
            JobResult::from_verified_event_cached(black_box(&result), &mut cache, &registry)
                .unwrap()
        })
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_request(&mut c);
    c.final_summary();

    println!();
    report(
        "nip90 JobRequest::from_verified_event / nip01::verify",
        "nip90_request/parse_verified",
        "nip90_request/verify",
        Goal::AtMost(0.10),
    );
    report(
        "a customer reading an encrypted result, cached key / derived key (lower is better)",
        "nip90_encrypted_result/cached_key",
        "nip90_encrypted_result/derived_each_time",
        Goal::AtMost(1.0),
    );
}
