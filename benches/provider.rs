//! The provider's costs next to the signature operations it cannot avoid, and its memory per
//! live job.
//!
//! `cargo bench --features test-util --bench provider` prints, after criterion's own lines, the
//! three ratios the provider issue sets:
//!
//! 1. **Ingest**: a batch of signed job requests (from many customers; one text input and two
//!    params each) fed through `Provider::handle_event` with every output drained, next to the
//!    Schnorr signature check alone of the same events. The ingest rate must be >= 0.9x the
//!    verify rate, i.e. time(ingest) / time(verify) <= 1/0.9.
//! 2. **A whole paid job** (pay-first, zap to the `payment-required` feedback): request ->
//!    invoice -> `payment-required` -> zap receipt -> task -> result, next to the sum of its
//!    signature operations measured alone: <= 1.25x.
//! 3. **Memory**: the bytes a live job costs at 100,000 live jobs, above the request event
//!    itself, counted by a counting global allocator: <= 1024 B.
//!
//! Everything a job needs (requests, invoices, receipts) is built outside the timed regions.

use nostr_dvm::relay::RelayCommand;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use lightning_invoice::Bolt11Invoice;
use nostr_dvm::job::JobState;
use nostr_dvm::nip57::ZapRequestBuilder;
use nostr_dvm::nip90::{FeedbackStatus, JobFeedback, JobInput, JobRequest, KindRegistry};
use nostr_dvm::nostr::secp256k1::Message;
use nostr_dvm::nostr::{Event, EventId, Keys, Kind, Timestamp, SECP256K1};
use nostr_dvm::provider::{Admission, Output, PaymentPolicy, Provider, ProviderConfig};
use nostr_dvm::task::{FixedPrice, TaskOutput};
use nostr_dvm::testing::{
    keys_from_seed, InvoiceDescription, InvoiceParams, TestLightningNode, TestZapper,
};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

#[path = "support/mod.rs"]
mod support;
use support::{report, Goal};

const T0: u64 = 1_760_000_000;
const KIND: u16 = 5050;
const PRICE: u64 = 21_000;
const FEEDBACK_KIND: u16 = 7000;
/// Requests fed to one fresh provider per timed ingest iteration.
const INGEST_BATCH: usize = 1_000;
/// Live jobs for the memory measurement.
const MEMORY_JOBS: usize = 100_000;
/// Distinct customers the requests come from.
const CUSTOMERS: usize = 1_000;
const MEMORY_GOAL_BYTES: f64 = 1024.0;

// ---- a counting allocator -------------------------------------------------------------------

/// Wraps the system allocator and, while [`COUNTING`] is on, adds up the bytes and blocks
/// allocated minus those freed. Deltas over a window are exact changes in live heap (requested
/// sizes, not the allocator's rounding). Off outside the memory measurement, so the timed
/// benches pay one relaxed load per allocation.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static NET_BYTES: AtomicIsize = AtomicIsize::new(0);
static NET_BLOCKS: AtomicIsize = AtomicIsize::new(0);

fn count(bytes: isize, blocks: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        NET_BYTES.fetch_add(bytes, Ordering::Relaxed);
        NET_BLOCKS.fetch_add(blocks, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract `System` upholds is upheld here; the counting touches only atomics and
// never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (the caller guarantees a non-zero-size layout).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize, 1);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize, 1);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every method forwards there).
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` and `layout` come from `System` as above; the caller upholds the rest.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size as isize - layout.size() as isize, 0);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// The net bytes and blocks `f` leaves allocated.
fn net_heap<T>(f: impl FnOnce() -> T) -> (T, isize, isize) {
    let (bytes0, blocks0) = (
        NET_BYTES.load(Ordering::SeqCst),
        NET_BLOCKS.load(Ordering::SeqCst),
    );
    COUNTING.store(true, Ordering::SeqCst);
    let value = f();
    COUNTING.store(false, Ordering::SeqCst);
    (
        value,
        NET_BYTES.load(Ordering::SeqCst) - bytes0,
        NET_BLOCKS.load(Ordering::SeqCst) - blocks0,
    )
}

// ---- fixtures -------------------------------------------------------------------------------

fn now() -> Timestamp {
    Timestamp::from(T0)
}

/// Admission that refuses nothing the benches send (the rate limits and the unpaid cap are
/// lifted: the benches measure costs, not limits).
fn open_admission() -> Admission {
    Admission {
        rate_limit: None,
        global_rate_limit: None,
        invoice_rate_limit: None,
        max_unpaid_jobs: 10 * MEMORY_JOBS,
        max_live_jobs: 10 * MEMORY_JOBS,
        max_jobs: 10 * MEMORY_JOBS,
        ..Admission::default()
    }
}

/// Pay-first at a fixed price: each request makes one `RequestInvoice`, and nothing is signed
/// before payment.
fn ingest_config(zapper: &TestZapper) -> ProviderConfig {
    let mut config = ProviderConfig::new([Kind::from(KIND)])
        .pricing(FixedPrice(PRICE))
        .payment(PaymentPolicy::PayFirst)
        .zappers([zapper.pubkey()])
        .relays(["wss://dvm.example"])
        .admission(open_admission())
        .deterministic_seed([7; 32]);
    config.processing_feedback = false;
    config
}

fn fresh_provider(keys: &Keys, config: &ProviderConfig) -> Provider {
    let mut provider = Provider::new(keys.clone(), config.clone(), now());
    while provider.poll_output().is_some() {}
    provider
}

/// The customers the requests come from.
fn customers() -> Vec<Keys> {
    let mut rng = StdRng::seed_from_u64(90);
    (0..CUSTOMERS)
        .map(|_| Keys::generate_with_rng(&mut rng))
        .collect()
}

/// `n` typical small requests (one text input, two params), from `customers` in turn.
fn requests(customers: &[Keys], n: usize) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(91);
    (0..n)
        .map(|i| {
            JobRequest::builder(Kind::from(KIND))
                .input(JobInput::text(format!(
                    "Translate sentence number {i} of the document into French."
                )))
                .param("lang", "fr")
                .param("max_tokens", "256")
                .sign(&customers[i % customers.len()], now(), &mut rng)
                .unwrap_or_else(|e| panic!("request {i}: {e}"))
        })
        .collect()
}

/// The signature check alone: what any relay client must do for every event it accepts.
fn verify_signature(event: &Event) {
    let pubkey = event.pubkey.xonly().unwrap();
    SECP256K1
        .verify_schnorr(
            &event.sig,
            &Message::from_digest(event.id.to_bytes()),
            &pubkey,
        )
        .unwrap();
}

/// The id computation and Schnorr signature of `event`, as the provider does them when it
/// signs it: the signing floor.
fn sign_like(keys: &Keys, event: &Event, rng: &mut StdRng) -> EventId {
    let id = EventId::new(
        &event.pubkey,
        &event.created_at,
        &event.kind,
        &event.tags,
        &event.content,
    );
    let sig = keys.sign_schnorr_with_ctx(SECP256K1, &Message::from_digest(id.to_bytes()), rng);
    black_box(sig);
    id
}

fn drain_into(provider: &mut Provider, out: &mut Vec<Output>) {
    while let Some(o) = provider.poll_output() {
        out.push(o);
    }
}

fn published(out: &[Output], kind: u16) -> Vec<&Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Relay(RelayCommand::Publish { event, .. }) if event.kind.as_u16() == kind => {
                Some(event)
            }
            _ => None,
        })
        .collect()
}

// ---- 1. ingest ------------------------------------------------------------------------------

fn bench_ingest(c: &mut Criterion, events: &[Event], keys: &Keys, config: &ProviderConfig) {
    let batch = &events[..INGEST_BATCH];
    // Every request must be admitted and produce a RequestInvoice, or the bench measures
    // refusals.
    {
        let mut provider = fresh_provider(keys, config);
        let mut invoices = 0;
        for e in batch {
            provider.handle_event(now(), e.clone());
            while let Some(o) = provider.poll_output() {
                invoices += usize::from(matches!(o, Output::RequestInvoice { .. }));
            }
        }
        assert_eq!(invoices, INGEST_BATCH);
        assert_eq!(provider.live_jobs(), INGEST_BATCH);
    }

    let mut group = c.benchmark_group("provider_ingest");
    group.throughput(Throughput::Elements(INGEST_BATCH as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("handle_event", |b| {
        b.iter_batched(
            || (fresh_provider(keys, config), batch.to_vec()),
            |(mut provider, events)| {
                for event in events {
                    provider.handle_event(now(), event);
                    while let Some(output) = provider.poll_output() {
                        black_box(output);
                    }
                }
                provider // dropped outside the timed region
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("verify_signature", |b| {
        b.iter(|| {
            for event in black_box(batch) {
                verify_signature(event);
            }
        })
    });
    group.finish();

    // Where the ingest time goes beyond the signature check, per batch (for the breakdown).
    let registry = KindRegistry::nip90();
    let mut group = c.benchmark_group("provider_ingest_parts");
    group.throughput(Throughput::Elements(INGEST_BATCH as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("verify_id", |b| {
        b.iter(|| {
            for event in black_box(batch) {
                assert!(event.verify_id());
            }
        })
    });
    group.bench_function("verify_id_streamed", |b| {
        b.iter(|| {
            for event in black_box(batch) {
                assert!(nostr_dvm::nip01::verify_id(event));
            }
        })
    });
    group.bench_function("parse_verified", |b| {
        b.iter(|| {
            for event in black_box(batch) {
                let parsed = JobRequest::from_verified_event_with(event, Some(keys), &registry);
                black_box(parsed.unwrap());
            }
        })
    });
    group.bench_function("invoice_description", |b| {
        b.iter(|| {
            for event in black_box(batch) {
                let kind = event.kind.as_u16();
                black_box(format!("DVM job {} (kind {kind})", event.id.to_hex()));
            }
        })
    });
    group.finish();
}

// ---- 1b. duplicates ----------------------------------------------------------------------------

/// The same request from five relays: the four duplicates must cost next to nothing beside
/// the one signature check (plain) or unwrap (gift wrap) the first delivery needs. Goal: a
/// duplicate costs <= 5% of a verify, and a duplicate wrap <= 5% of an unwrap.
fn bench_duplicates(
    c: &mut Criterion,
    events: &[Event],
    customers: &[Keys],
    keys: &Keys,
    config: &ProviderConfig,
) {
    const N: usize = 200;
    let plain = &events[..N];
    let mut rng = StdRng::seed_from_u64(92);
    let wraps: Vec<Event> = events[N..2 * N]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let rumor = nostr_dvm::nostr::UnsignedEvent::from(e.clone());
            nostr_dvm::nip59::gift_wrap(
                &customers[(N + i) % customers.len()],
                &keys.public_key(),
                rumor,
                now(),
                &mut rng,
            )
            .unwrap()
        })
        .collect();
    let mut provider = fresh_provider(keys, config);
    for e in plain.iter().chain(&wraps) {
        provider.handle_event(now(), e.clone());
        while provider.poll_output().is_some() {}
    }
    assert_eq!(provider.live_jobs(), 2 * N, "every first delivery is a job");

    let mut group = c.benchmark_group("provider_duplicates");
    group.throughput(Throughput::Elements(N as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("plain_duplicate", |b| {
        b.iter(|| {
            for e in black_box(plain) {
                provider.handle_event(now(), e.clone());
                assert!(provider.poll_output().is_none());
            }
        })
    });
    group.bench_function("wrapped_duplicate", |b| {
        b.iter(|| {
            for e in black_box(&wraps) {
                provider.handle_event(now(), e.clone());
                assert!(provider.poll_output().is_none());
            }
        })
    });
    group.bench_function("verify_signature", |b| {
        b.iter(|| {
            for event in black_box(plain) {
                verify_signature(event);
            }
        })
    });
    group.bench_function("unwrap", |b| {
        b.iter(|| {
            for wrap in black_box(&wraps) {
                black_box(nostr_dvm::nip59::unwrap(keys, wrap).unwrap());
            }
        })
    });
    group.finish();
}

// ---- 1c. encrypted replies -------------------------------------------------------------------

/// An encrypted (NIP-44) result signed with the conversation key derived each time, as every
/// reply did before, and with the key from the provider's cache.
fn bench_encrypted_reply(c: &mut Criterion, customer: &Keys, keys: &Keys) {
    let mut rng = StdRng::seed_from_u64(93);
    let request = JobRequest::builder(Kind::from(KIND))
        .input(JobInput::text("a private question"))
        .provider(keys.public_key())
        .encrypt(nostr_dvm::encryption::Scheme::Nip44)
        .sign(customer, now(), &mut rng)
        .unwrap();
    let request = JobRequest::from_event(&request, Some(keys)).unwrap();
    let mut cache = nostr_dvm::nip44::ConversationKeyCache::new(keys.secret_key().clone(), 1_024);
    let mut group = c.benchmark_group("provider_encrypted_reply");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("derived_each_time", |b| {
        b.iter(|| {
            nostr_dvm::nip90::JobResult::builder(&request, "a private answer")
                .sign(keys, now(), &mut rng)
                .unwrap()
        })
    });
    group.bench_function("cached_key", |b| {
        b.iter(|| {
            let key = cache.get(&request.author).unwrap();
            nostr_dvm::nip90::JobResult::builder(&request, "a private answer")
                .conversation_key(key)
                .sign(keys, now(), &mut rng)
                .unwrap()
        })
    });
    group.finish();
}

/// Per-request figures of the ingest breakdown, in microseconds, when all were measured.
fn ingest_breakdown() {
    let per = |id: &str| support::mean_ns(id).map(|ns| ns / INGEST_BATCH as f64 / 1000.0);
    let parts = (
        per("provider_ingest/handle_event"),
        per("provider_ingest/verify_signature"),
        per("provider_ingest_parts/verify_id"),
        per("provider_ingest_parts/verify_id_streamed"),
        per("provider_ingest_parts/parse_verified"),
        per("provider_ingest_parts/invoice_description"),
    );
    if let (Some(all), Some(sig), Some(id), Some(streamed), Some(parse), Some(desc)) = parts {
        println!(
            "  ingest per request: {all:.2} us = Schnorr check {sig:.2} + id check {id:.2} \
             (streamed into the hash: {streamed:.2}) + JobRequest parse {parse:.2} + the rest \
             {:.2} (bookkeeping, outputs, drops; of which the invoice description {desc:.2})",
            all - sig - id - parse
        );
    }
}

// ---- 2. a whole paid job --------------------------------------------------------------------

struct PaidJob {
    keys: Keys,
    config: ProviderConfig,
    request: Event,
    host_bolt11: String,
    receipt: Event,
    zap_request: Event,
    zap_bolt11: String,
    /// The events the provider signs along the way, as published in the reference run.
    payment_required: Event,
    processing: Event,
    result: Event,
}

/// Drives one whole pay-first job: what the timed routine runs.
fn run_paid_job(
    provider: &mut Provider,
    request: Event,
    host_bolt11: String,
    receipt: Event,
    out: &mut Vec<Output>,
) {
    let job = request.id;
    provider.handle_event(now(), request);
    drain_into(provider, out); // RequestInvoice
    provider
        .handle_invoice(now(), job, Ok(host_bolt11))
        .unwrap();
    drain_into(provider, out); // payment-required
    provider.handle_event(now(), receipt);
    drain_into(provider, out); // processing, RunTask
    provider
        .handle_task_result(now(), job, Ok(TaskOutput::new(RESULT)))
        .unwrap();
    drain_into(provider, out); // the result
}

const RESULT: &str = "Traduisez la phrase numéro 0 du document en français.";

fn paid_job_fixture(request: Event, customer: &Keys) -> PaidJob {
    let keys = keys_from_seed(10);
    let zapper = TestZapper::new(keys_from_seed(11), TestLightningNode::new(12));
    let host_node = TestLightningNode::new(13);
    assert_eq!(customer.public_key(), request.pubkey);
    let mut rng = StdRng::seed_from_u64(57);
    // Default timers, limits and feedback (processing feedback on): a realistic paid provider.
    let config = ProviderConfig::new([Kind::from(KIND)])
        .pricing(FixedPrice(PRICE))
        .payment(PaymentPolicy::PayFirst)
        .zappers([zapper.pubkey()])
        .relays(["wss://dvm.example"])
        .deterministic_seed([7; 32]);
    assert!(config.processing_feedback);

    let mut preimage = [0u8; 32];
    rng.fill_bytes(&mut preimage);
    let host_bolt11 = host_node
        .invoice(&InvoiceParams {
            amount_msat: Some(PRICE),
            description: InvoiceDescription::Direct(format!("DVM job {}", request.id.to_hex())),
            created_at: now(),
            expiry_secs: config.payment_window_secs,
            preimage,
        })
        .bolt11;

    // Untimed: learn the payment-required feedback's id, which the zap must be bound to; it is
    // deterministic for fixed keys, seed, time and invoice.
    let payment_required_id = || {
        let mut provider = fresh_provider(&keys, &config);
        let mut out = Vec::new();
        provider.handle_event(now(), request.clone());
        drain_into(&mut provider, &mut out);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::RequestInvoice { job, amount_msat: PRICE, .. } if *job == request.id
        )));
        provider
            .handle_invoice(now(), request.id, Ok(host_bolt11.clone()))
            .unwrap();
        drain_into(&mut provider, &mut out);
        let feedback = published(&out, FEEDBACK_KIND);
        assert_eq!(feedback.len(), 1);
        let parsed = JobFeedback::from_event(feedback[0], None).unwrap();
        assert_eq!(parsed.status, FeedbackStatus::PaymentRequired);
        feedback[0].id
    };
    let fid = payment_required_id();
    assert_eq!(
        fid,
        payment_required_id(),
        "payment-required id not deterministic"
    );

    let zap_request = ZapRequestBuilder::new(keys.public_key(), ["wss://dvm.example"])
        .amount_msat(PRICE)
        .event(fid)
        .sign(customer, now(), &mut rng)
        .unwrap();
    let zap_invoice = zapper.invoice_for(&zap_request, PRICE, now(), &mut rng);
    let receipt = zapper.receipt(&zap_request, &zap_invoice, now(), &mut rng);

    // The reference run: the whole job, checked step by step.
    let mut provider = fresh_provider(&keys, &config);
    let mut out = Vec::new();
    run_paid_job(
        &mut provider,
        request.clone(),
        host_bolt11.clone(),
        receipt.clone(),
        &mut out,
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::RunTask(t) if t.job == request.id)));
    assert_eq!(
        provider.job_state(&request.id),
        Some(&JobState::Delivered { paid: true })
    );
    let feedback: Vec<Event> = published(&out, FEEDBACK_KIND)
        .into_iter()
        .cloned()
        .collect();
    let statuses: Vec<FeedbackStatus> = feedback
        .iter()
        .map(|e| JobFeedback::from_event(e, None).unwrap().status)
        .collect();
    assert_eq!(
        statuses,
        [FeedbackStatus::PaymentRequired, FeedbackStatus::Processing]
    );
    assert_eq!(feedback[0].id, fid);
    let results = published(&out, KIND + 1000);
    assert_eq!(results.len(), 1);
    // Exactly three signatures went out.
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Output::Relay(RelayCommand::Publish { .. })))
            .count(),
        3
    );

    PaidJob {
        keys,
        config,
        request,
        host_bolt11,
        receipt,
        zap_request,
        zap_bolt11: zap_invoice.bolt11,
        payment_required: feedback[0].clone(),
        processing: feedback[1].clone(),
        result: results[0].clone(),
    }
}

fn bench_paid_job(c: &mut Criterion, fx: &PaidJob) {
    let mut rng = StdRng::seed_from_u64(1);
    for e in [&fx.payment_required, &fx.processing, &fx.result] {
        assert_eq!(sign_like(&fx.keys, e, &mut rng), e.id);
    }

    let mut group = c.benchmark_group("provider_paid_job");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(6));
    group.bench_function("whole_job", |b| {
        b.iter_batched(
            || {
                (
                    fresh_provider(&fx.keys, &fx.config),
                    fx.request.clone(),
                    fx.host_bolt11.clone(),
                    fx.receipt.clone(),
                    Vec::with_capacity(16),
                )
            },
            |(mut provider, request, bolt11, receipt, mut out)| {
                run_paid_job(&mut provider, request, bolt11, receipt, &mut out);
                (provider, out) // dropped outside the timed region
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("signature_ops_only", |b| {
        b.iter(|| {
            // The request's id + Schnorr signature.
            black_box(&fx.request).verify().unwrap();
            // The host's invoice: its signature recovery (lightning-invoice parses it whole).
            black_box(Bolt11Invoice::from_str(black_box(&fx.host_bolt11)).unwrap());
            // payment-required: id + Schnorr signature.
            black_box(sign_like(&fx.keys, &fx.payment_required, &mut rng));
            // The zap: receipt and zap request id + Schnorr, and the zap invoice's recovery.
            black_box(&fx.receipt).verify().unwrap();
            black_box(&fx.zap_request).verify().unwrap();
            black_box(Bolt11Invoice::from_str(black_box(&fx.zap_bolt11)).unwrap());
            // processing feedback and the result: id + Schnorr signature each.
            black_box(sign_like(&fx.keys, &fx.processing, &mut rng));
            black_box(sign_like(&fx.keys, &fx.result, &mut rng));
        })
    });
    group.finish();
}

// ---- 3. memory ------------------------------------------------------------------------------

struct MemoryFigures {
    per_job: f64,
    provider_per_job: f64,
    event_per_job: f64,
    parsed_per_job: f64,
    blocks_per_job: f64,
}

fn measure_memory(events: &[Event], keys: &Keys, config: &ProviderConfig) -> MemoryFigures {
    let n = events.len() as f64;
    let mut provider = fresh_provider(keys, config);
    let ((), provider_bytes, provider_blocks) = net_heap(|| {
        for event in events {
            provider.handle_event(now(), event.clone());
            while provider.poll_output().is_some() {}
        }
    });
    assert_eq!(provider.live_jobs(), events.len());
    // The request events themselves: what keeping a copy of each costs (inline + heap).
    let (copies, event_bytes, event_blocks) = net_heap(|| events.to_vec());
    drop(copies);
    // For the breakdown: the parsed requests alone (each holds its event too).
    let registry = KindRegistry::nip90();
    let (parsed, parsed_bytes, _) = net_heap(|| {
        events
            .iter()
            .map(|e| JobRequest::from_verified_event_with(e, None, &registry).unwrap())
            .collect::<Vec<_>>()
    });
    drop(parsed);
    drop(provider);
    MemoryFigures {
        per_job: (provider_bytes - event_bytes) as f64 / n,
        provider_per_job: provider_bytes as f64 / n,
        event_per_job: event_bytes as f64 / n,
        parsed_per_job: (parsed_bytes - event_bytes) as f64 / n,
        blocks_per_job: (provider_blocks - event_blocks) as f64 / n,
    }
}

fn main() {
    let started = Instant::now();
    let customers = customers();
    let events = requests(&customers, MEMORY_JOBS);
    println!(
        "built {} signed requests in {:.1} s",
        events.len(),
        started.elapsed().as_secs_f64()
    );
    let keys = keys_from_seed(10);
    let zapper = TestZapper::new(keys_from_seed(11), TestLightningNode::new(12));
    let config = ingest_config(&zapper);

    let memory = measure_memory(&events, &keys, &config);
    let paid = paid_job_fixture(events[0].clone(), &customers[0]);

    let mut c = Criterion::default().configure_from_args();
    bench_ingest(&mut c, &events, &keys, &config);
    bench_duplicates(&mut c, &events, &customers, &keys, &config);
    bench_encrypted_reply(&mut c, &customers[0], &keys);
    bench_paid_job(&mut c, &paid);
    c.final_summary();

    println!();
    report(
        "provider ingest time / Schnorr verify time (rate ratio = inverse, goal >= 0.9)",
        "provider_ingest/handle_event",
        "provider_ingest/verify_signature",
        Goal::AtMost(1.0 / 0.9),
    );
    ingest_breakdown();
    report(
        "a duplicate request / a Schnorr verify (goal <= 0.05)",
        "provider_duplicates/plain_duplicate",
        "provider_duplicates/verify_signature",
        Goal::AtMost(0.05),
    );
    report(
        "an encrypted reply with the cached key / with a derived key (lower is better)",
        "provider_encrypted_reply/cached_key",
        "provider_encrypted_reply/derived_each_time",
        Goal::AtMost(1.0),
    );
    report(
        "a duplicate gift wrap / a NIP-59 unwrap (goal <= 0.05)",
        "provider_duplicates/wrapped_duplicate",
        "provider_duplicates/unwrap",
        Goal::AtMost(0.05),
    );
    report(
        "provider whole paid job / its signature operations",
        "provider_paid_job/whole_job",
        "provider_paid_job/signature_ops_only",
        Goal::AtMost(1.25),
    );
    let ratio = memory.per_job / MEMORY_GOAL_BYTES;
    println!(
        "ratio provider memory per live job above the event: {:.0} B / {MEMORY_GOAL_BYTES:.0} B = \
         {ratio:.3}x (goal <= 1.0x) {}",
        memory.per_job,
        if ratio <= 1.0 { "MET" } else { "MISSED" }
    );
    println!(
        "  at {MEMORY_JOBS} live jobs: provider {:.0} B/job, the request event {:.0} B/job, \
         parsed JobRequest above its event {:.0} B/job, {:.1} heap blocks/job above the event's",
        memory.provider_per_job, memory.event_per_job, memory.parsed_per_job, memory.blocks_per_job,
    );
    println!(
        "  sizes: Event {} B, Tag {} B, JobRequest {} B, JobInput {} B, Param {} B, Output {} B, JobState {} B",
        std::mem::size_of::<Event>(),
        std::mem::size_of::<nostr_dvm::nostr::Tag>(),
        std::mem::size_of::<JobRequest>(),
        std::mem::size_of::<JobInput>(),
        std::mem::size_of::<nostr_dvm::nip90::Param>(),
        std::mem::size_of::<Output>(),
        std::mem::size_of::<JobState>(),
    );
}
