//! `verify_zap_receipt` next to the sum of the signature operations it must do.
//!
//! `cargo bench --bench nip57` prints the ratio the zap issue sets: a full verification <= 1.15x
//! the cost of its three signature checks alone (receipt id + Schnorr, zap request id +
//! Schnorr, invoice signature recovery).

use std::hint::black_box;
use std::str::FromStr;

use criterion::Criterion;
use lightning_invoice::Bolt11Invoice;
use nostr_dvm::nip57::{verify_zap_receipt, ZapExpectation, ZapRequestBuilder};
use nostr_dvm::nostr::{Event, JsonUtil, Timestamp};
use nostr_dvm::testing::{event_id, keys_from_seed, TestLightningNode, TestZapper};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[path = "support/mod.rs"]
mod support;
use support::{report, Goal};

const NOW: u64 = 1_760_000_000;

fn main() {
    let mut rng = StdRng::seed_from_u64(9);
    let zapper = TestZapper::new(keys_from_seed(1), TestLightningNode::new(2));
    let provider = keys_from_seed(3);
    let sender = keys_from_seed(4);
    let job = event_id(0xaa);
    let request = ZapRequestBuilder::new(
        provider.public_key(),
        ["wss://relay.example", "wss://nos.example"],
    )
    .amount_msat(21_000)
    .event(job)
    .content("for the transcription")
    .sign(&sender, Timestamp::from(NOW - 30), &mut rng)
    .unwrap();
    let invoice = zapper.invoice_for(&request, 21_000, Timestamp::from(NOW - 20), &mut rng);
    let receipt = zapper.receipt(&request, &invoice, Timestamp::from(NOW - 10), &mut rng);
    let expect = ZapExpectation::new(
        provider.public_key(),
        [zapper.pubkey()],
        [job],
        21_000,
        Timestamp::from(NOW),
    );
    assert!(verify_zap_receipt(&receipt, &expect).is_ok());
    let request_json = request.as_json();
    let bolt11 = invoice.bolt11.clone();

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("nip57");
    group.bench_function("verify_zap_receipt", |b| {
        b.iter(|| verify_zap_receipt(black_box(&receipt), &expect).unwrap())
    });
    group.bench_function("signature_checks_only", |b| {
        b.iter(|| {
            // The receipt's and the zap request's id + Schnorr signature, and the invoice's
            // signature recovery: the floor any complete verifier pays. The zap request is
            // taken already parsed, and the invoice parse is the cheapest one that checks the
            // signature.
            assert!(nostr_dvm::nip01::verify(black_box(&receipt)));
            assert!(nostr_dvm::nip01::verify(black_box(&request)));
            let invoice = Bolt11Invoice::from_str(black_box(&bolt11)).unwrap();
            black_box(invoice);
        })
    });
    group.finish();
    let _ = black_box((Event::from_json(&request_json).unwrap(), ()));
    c.final_summary();

    println!();
    report(
        "verify_zap_receipt / its signature checks",
        "nip57/verify_zap_receipt",
        "nip57/signature_checks_only",
        Goal::AtMost(1.15),
    );
}
