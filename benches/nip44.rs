//! NIP-44 v2: ours next to the `nostr` crate's, and the conversation-key cache.
//!
//! `cargo bench --bench nip44` prints, after criterion's own lines, the ratios the crypto issue
//! sets: ours / theirs <= 1.0x at 16 B, 1 KiB and 60 KiB (encrypt and decrypt), and an uncached
//! short message (ECDH + encrypt) >= 20x the cost of a cached one.

use std::hint::black_box;

use base64::Engine;
use criterion::{BenchmarkId, Criterion, Throughput};
use nostr::nips::nip44::v2 as theirs;
use nostr_dvm::nip44::{self, ConversationKey, ConversationKeyCache, LengthPrefix};
use nostr_dvm::nostr::Keys;
use rand::SeedableRng;

#[path = "support/mod.rs"]
mod support;
use support::{report, Goal};

const SHARED_SIZES: [usize; 3] = [16, 1024, 60 * 1024];
const OURS_ONLY: usize = 1024 * 1024;

fn keys() -> (Keys, Keys) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(44);
    (
        Keys::generate_with_rng(&mut rng),
        Keys::generate_with_rng(&mut rng),
    )
}

fn bench_encrypt_decrypt(c: &mut Criterion) {
    let (alice, bob) = keys();
    let ours = ConversationKey::derive(alice.secret_key(), &bob.public_key()).unwrap();
    let their = theirs::ConversationKey::derive(alice.secret_key(), &bob.public_key()).unwrap();
    let engine = base64::engine::general_purpose::STANDARD;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);

    let mut enc = c.benchmark_group("nip44_encrypt");
    for size in SHARED_SIZES.into_iter().chain([OURS_ONLY]) {
        let text = "a".repeat(size);
        enc.throughput(Throughput::Bytes(size as u64));
        enc.bench_with_input(BenchmarkId::new("ours", size), &text, |b, text| {
            b.iter(|| {
                nip44::encrypt_with_prefix(&ours, black_box(text), LengthPrefix::Extended, &mut rng)
                    .unwrap()
            })
        });
        if size != OURS_ONLY {
            enc.bench_with_input(BenchmarkId::new("nostr", size), &text, |b, text| {
                b.iter(|| {
                    let raw = theirs::encrypt_to_bytes_with_rng(
                        &mut rng,
                        &their,
                        black_box(text.as_bytes()),
                    )
                    .unwrap();
                    engine.encode(raw)
                })
            });
        }
    }
    enc.finish();

    let mut dec = c.benchmark_group("nip44_decrypt");
    for size in SHARED_SIZES.into_iter().chain([OURS_ONLY]) {
        let text = "a".repeat(size);
        let payload =
            nip44::encrypt_with_prefix(&ours, &text, LengthPrefix::Extended, &mut rng).unwrap();
        dec.throughput(Throughput::Bytes(size as u64));
        dec.bench_with_input(BenchmarkId::new("ours", size), &payload, |b, payload| {
            b.iter(|| nip44::decrypt(&ours, black_box(payload)).unwrap())
        });
        if size != OURS_ONLY {
            dec.bench_with_input(BenchmarkId::new("nostr", size), &payload, |b, payload| {
                b.iter(|| {
                    let raw = engine.decode(black_box(payload)).unwrap();
                    let bytes = theirs::decrypt_to_bytes(&their, &raw).unwrap();
                    String::from_utf8(bytes).unwrap()
                })
            });
        }
    }
    dec.finish();
}

fn bench_cache(c: &mut Criterion) {
    let (alice, bob) = keys();
    let peer = bob.public_key();
    let mut cache = ConversationKeyCache::with_default_capacity(alice.secret_key().clone());
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let text = "a".repeat(16);

    let mut group = c.benchmark_group("nip44_short_message");
    group.bench_function("uncached", |b| {
        b.iter(|| {
            let key = ConversationKey::derive(alice.secret_key(), black_box(&peer)).unwrap();
            nip44::encrypt(&key, &text, &mut rng).unwrap()
        })
    });
    group.bench_function("cached", |b| {
        b.iter(|| {
            let key = cache.get(black_box(&peer)).unwrap();
            nip44::encrypt(&key, &text, &mut rng).unwrap()
        })
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_encrypt_decrypt(&mut c);
    bench_cache(&mut c);
    c.final_summary();

    println!();
    for op in ["encrypt", "decrypt"] {
        for size in SHARED_SIZES {
            report(
                &format!("nip44 {op} {size} B, ours / nostr"),
                &format!("nip44_{op}/ours/{size}"),
                &format!("nip44_{op}/nostr/{size}"),
                Goal::AtMost(1.0),
            );
        }
    }
    report(
        "nip44 16 B message, uncached (ECDH) / cached",
        "nip44_short_message/uncached",
        "nip44_short_message/cached",
        Goal::AtLeast(20.0),
    );
}
