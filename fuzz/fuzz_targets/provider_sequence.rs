//! A `Provider` driven by an arbitrary sequence of inputs over the simulated network.
//!
//! Each input picks a configuration (payment policy, automatic acceptance, deferred invoices,
//! paid by zaps alone or not, persisted by snapshots or by updates, claiming each job first or
//! not (one process of a fleet; the simulated host wins every claim), live-job cap, rate
//! limit, and whether jobs are pruned: short retention, a job table of 6)
//! and up to 48 actions: real requests (plain, NIP-44, NIP-04 or gift-wrapped; free, priced,
//! refused; with bids, job inputs and expirations; dated ahead of the clock), floods of cheap
//! low-bid requests that roll the job table over, zaps (valid, overpaid, underpaid, forged by
//! an untrusted zapper, replayed), wallet proofs, task results and progress, invoice answers,
//! kind-5 deletions, host commands, time jumps (with the timers run, or late, so that a
//! payment reaches the provider past its deadline before the timer does), restarts, crashes,
//! duplicate deliveries, and hostile events: any string through
//! `Event::from_json`, structured events with arbitrary kind, tags and content (signed by a
//! customer or a stranger, or carrying a made-up signature), and past events with one field
//! changed (re-signed when the fuzzer holds the author's key).
//!
//! Invariants, checked after every action:
//! - nothing panics;
//! - (a) under pay-first, no `RunTask` for a priced job before a valid payment for it;
//! - (b) at most one result event published per job;
//! - (c) a terminal state stays terminal (`Delivered { paid: false }` may become `paid: true`);
//! - (f) no task starts for a request that has expired, and every `Output::Refund` is for a
//!   job that was really paid;
//! - the host never errs when it does the right thing (the network's log stays empty), and
//!   every pending task belongs to a running job.
//!
//! With pruning, jobs are forgotten (retention passed, or evicted by a flood) and their public
//! request and receipts stay replayable: (b) then says a forgotten job never runs again.
#![no_main]

use std::collections::{HashMap, HashSet};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nostr_dvm::encryption::Scheme;
use nostr_dvm::job::JobState;
use nostr_dvm::nip90::{JobInput, JobRequest};
use nostr_dvm::nostr::secp256k1::schnorr::Signature;
use nostr_dvm::nostr::{Event, EventId, JsonUtil, Keys, Kind, Tag, Timestamp, UnsignedEvent};
use nostr_dvm::provider::{Admission, Output, PaymentPolicy, PaymentProof, RateLimit};
use nostr_dvm::task::{Quote, TaskError, TaskOutput};
use nostr_dvm::testing::sim::{CustomerId, InvoiceMode, Network, SimReply, Via};

const PRICES: [u64; 3] = [1_000, 21_000, 500_000];
const KINDS: [u16; 8] = [5050, 1059, 9735, 5, 6050, 7000, 5051, 21059];
const MAX_ACTIONS: usize = 48;

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u8,
    policy: u8,
    auto_accept: bool,
    deferred_invoices: bool,
    zaps_only: bool,
    updates: bool,
    claims: bool,
    max_live_jobs: u8,
    rate_limit: Option<u8>,
    pruning: bool,
    actions: Vec<Act>,
}

#[derive(Arbitrary, Debug)]
enum Act {
    Request {
        customer: u8,
        how: u8,
        price: u8,
        bid: u8,
        chain: Option<u8>,
        expires_in: Option<u16>,
        ahead: Option<u16>,
        text: String,
        params: Vec<(String, String)>,
    },
    Flood(u8),
    Late(u16),
    Again,
    Duplicate(u16),
    Zap {
        job: u8,
        kind: u8,
        to_request: bool,
    },
    Wallet {
        job: u8,
        right: bool,
        settled_hash: bool,
    },
    Task {
        pick: u8,
        what: u8,
    },
    Invoice {
        pick: u8,
        fail: bool,
    },
    Delete {
        job: u8,
        by_author: bool,
    },
    Host {
        job: u8,
        what: u8,
    },
    Jump(u16),
    NextTimeout,
    Restart,
    Crash,
    Json(String),
    Raw {
        kind: u8,
        raw_kind: u16,
        author: u8,
        signed: bool,
        tags: Vec<Vec<String>>,
        job_tags: Vec<(bool, u8)>,
        content: String,
        age: i16,
        sig: [u8; 8],
    },
    Mutate {
        pick: u16,
        field: u8,
        data: String,
        resign: bool,
    },
}

fn pick<T: Copy>(items: &[T], i: impl Into<usize>) -> Option<T> {
    (!items.is_empty()).then(|| items[i.into() % items.len()])
}

fn price_of(request: &JobRequest) -> Quote {
    match request.param("price") {
        Some("refuse") => Quote::Reject {
            reason: "not today".into(),
        },
        Some(p) => p
            .parse()
            .map_or(Quote::Free, |amount_msat| Quote::Price { amount_msat }),
        None => Quote::Free,
    }
}

fn network(input: &Input) -> Network {
    let mut builder = Network::builder()
        .seed(u64::from(input.seed))
        .deferred_tasks()
        .task(|request| {
            let text = request.texts().collect::<Vec<_>>().join(" ");
            Ok(TaskOutput::new(format!("done: {text}")).with_sample("sample"))
        });
    if input.deferred_invoices {
        builder = builder.invoices(InvoiceMode::Deferred);
    }
    if input.updates {
        builder = builder.updates();
    }
    let policy = match input.policy % 3 {
        0 => PaymentPolicy::PayFirst,
        1 => PaymentPolicy::PayAfterResult,
        _ => PaymentPolicy::PartialThenPay,
    };
    let auto_accept = input.auto_accept;
    let zaps_only = input.zaps_only;
    let claims = input.claims;
    let max_live_jobs = usize::from(input.max_live_jobs % 16) + 1;
    let rate_limit = input.rate_limit.map(|r| RateLimit {
        max_requests: u32::from(r % 8) + 1,
        window_secs: 60,
    });
    let pruning = input.pruning;
    let mut net = builder.build(move |mut config| {
        config.payment = policy;
        config.auto_accept = auto_accept;
        config.zaps_only = zaps_only;
        config.claim_jobs = claims;
        config.success_feedback = true;
        config.admission = Admission {
            max_live_jobs,
            rate_limit,
            ..Admission::default()
        };
        if pruning {
            config.retention_secs = 600;
            config.admission.max_jobs = 6;
        } else {
            config.retention_secs = 30 * 24 * 3600;
        }
        config.pricing(price_of)
    });
    for _ in 0..3 {
        net.add_customer();
    }
    net
}

/// The keys the fuzzer may sign with: the customers' and a stranger's (never the trusted
/// zapper's, whose signature is what makes a receipt a payment).
fn signer(net: &Network, who: u8) -> Keys {
    match who % 4 {
        3 => net.stranger().clone(),
        c => net.customer(CustomerId(usize::from(c))).keys.clone(),
    }
}

fn to_tags(raw: &[Vec<String>]) -> Vec<Tag> {
    raw.iter()
        .take(32)
        .filter_map(|t| Tag::parse(t.iter().take(8).cloned()).ok())
        .collect()
}

fn build(
    net: &mut Network,
    keys: &Keys,
    kind: u16,
    tags: Vec<Tag>,
    content: &str,
    at: Timestamp,
) -> Event {
    UnsignedEvent::new(keys.public_key(), at, Kind::from(kind), tags, content)
        .sign_with_ctx(nostr_dvm::nostr::SECP256K1, net.rng_mut(), keys)
        .unwrap()
}

struct Model {
    policy: PaymentPolicy,
    pruning: bool,
    jobs: Vec<EventId>,
    paid: HashSet<EventId>,
    receipts: Vec<Event>,
    results: HashMap<EventId, usize>,
    terminal: HashMap<EventId, JobState>,
    read: usize,
}

fn act(net: &mut Network, m: &mut Model, action: &Act) {
    let now = net.now();
    match action {
        Act::Request {
            customer,
            how,
            price,
            bid,
            chain,
            expires_in,
            ahead,
            text,
            params,
        } => {
            let mut b = JobRequest::builder(5050).input(JobInput::text(text.clone()));
            let amount = PRICES[usize::from(*price) % PRICES.len()];
            match price % 5 {
                0 | 1 => {}
                2 => b = b.param("price", "refuse"),
                _ => b = b.param("price", amount.to_string()),
            }
            match bid % 4 {
                1 => b = b.bid(amount - 1),
                2 => b = b.bid(amount * 2),
                _ => {}
            }
            for (name, value) in params.iter().take(4) {
                b = b.param(name.clone(), value.clone());
            }
            if let Some(dep) = chain.and_then(|c| pick(&m.jobs, c)) {
                b = b.input(JobInput::job(dep, None));
            }
            if let Some(secs) = expires_in {
                b = b.expiration(Timestamp::from(now.as_secs() + u64::from(*secs % 1_000)));
            }
            let me = net.provider_pubkey();
            let via = match how % 5 {
                1 => {
                    b = b.provider(me).encrypt(Scheme::Nip44);
                    Via::Public
                }
                2 => {
                    b = b.provider(me).encrypt(Scheme::Nip04);
                    Via::Public
                }
                3 => Via::GiftWrap,
                _ => Via::Public,
            };
            let customer = CustomerId(usize::from(customer % 3));
            let dated = Timestamp::from(now.as_secs() + u64::from(ahead.unwrap_or(0) % 1_000));
            let (job, event) = net.sign_request_dated(customer, b, via, dated);
            net.publish(event);
            m.jobs.push(job);
        }
        Act::Flood(n) => {
            for i in 0..(n % 16) {
                let b = JobRequest::builder(5050)
                    .input(JobInput::text(format!("flood {} {i}", m.jobs.len())))
                    .param("price", "21000")
                    .bid(1_000);
                net.submit(CustomerId(usize::from(i % 3)), b);
            }
        }
        Act::Late(secs) => net.advance_without_timers(u64::from(*secs) % 1_000),
        Act::Again => {
            if let Some(event) = net.handled().last().cloned() {
                net.deliver(event);
            }
        }
        Act::Duplicate(i) => {
            if let Some(event) = handled(net, *i) {
                net.deliver(event);
            }
        }
        Act::Zap {
            job,
            kind,
            to_request,
        } => {
            if kind % 5 == 4 {
                if let Some(receipt) = (!m.receipts.is_empty())
                    .then(|| m.receipts[usize::from(*job) % m.receipts.len()].clone())
                {
                    net.deliver(receipt);
                }
                return;
            }
            let Some(job) = pick(&m.jobs, *job) else {
                return;
            };
            let Some(customer) = net.customer_of(&job) else {
                return;
            };
            let price = match net.provider().job_request(&job).map(price_of) {
                Some(Quote::Price { amount_msat }) => amount_msat,
                _ => 0,
            };
            let keys = net.customer(customer).keys.clone();
            let bind_to = match net.payment_request(job) {
                Some(p) if !to_request => p.feedback,
                _ => job,
            };
            let base = price.max(1_000);
            let (amount, zapper, valid) = match kind % 5 {
                0 => (base, net.zapper().clone(), true),
                1 => (base + 1, net.zapper().clone(), true),
                2 if price > 0 => (price - 1, net.zapper().clone(), false),
                2 => (base, net.zapper().clone(), true),
                _ => (base, net.untrusted_zapper().clone(), false),
            };
            let receipt = net.zap_receipt(&keys, bind_to, amount, &zapper);
            if valid {
                m.paid.insert(job);
                m.receipts.push(receipt.clone());
            }
            net.publish(receipt);
        }
        Act::Wallet {
            job,
            right,
            settled_hash,
        } => {
            let Some(job) = pick(&m.jobs, *job) else {
                return;
            };
            if *right {
                let invoice = net.wallet().invoice_for_job(&job).cloned();
                if let Some(invoice) = invoice {
                    let proof = if *settled_hash {
                        net.wallet_mut().settle(&invoice.invoice.payment_hash)
                    } else {
                        net.wallet_mut().pay(&invoice.invoice.bolt11)
                    };
                    if let Some(proof) = proof {
                        if net.handle_payment(job, proof).is_ok() {
                            m.paid.insert(job);
                        }
                    }
                }
            } else {
                let mark = net.mark();
                let answer = net.handle_payment(job, PaymentProof::SettledPaymentHash([7; 32]));
                assert!(answer.is_err(), "a made-up payment proof was accepted");
                assert!(net.outputs_since(mark).is_empty());
            }
        }
        Act::Task { pick: i, what } => {
            let pending: Vec<EventId> = net.pending_tasks().iter().map(|t| t.job).collect();
            if let Some(job) = pick(&pending, *i) {
                let answer = match what % 3 {
                    0 => net.complete_task(job).unwrap_or(Ok(())),
                    1 => net.finish_task(job, Err(TaskError::new("boom"))),
                    _ => net.task_progress(job, "half way"),
                };
                assert!(answer.is_ok(), "a running job refused its task's report");
            } else if let Some(job) = pick(&m.jobs, *i) {
                let mark = net.mark();
                let answer = net.finish_task(job, Ok(TaskOutput::new("made up")));
                assert!(answer.is_err(), "a result for a task that does not run");
                assert!(net.outputs_since(mark).is_empty());
            }
        }
        Act::Invoice { pick: i, fail } => {
            let pending: Vec<EventId> = net.pending_invoices().iter().map(|p| p.job).collect();
            if let Some(job) = pick(&pending, *i) {
                let answer = if *fail {
                    net.fail_invoice(job, "node offline")
                } else {
                    net.answer_invoice(job)
                };
                assert!(matches!(answer, Some(Ok(()))), "{answer:?}");
            }
        }
        Act::Delete { job, by_author } => {
            if let Some(job) = pick(&m.jobs, *job) {
                match net.customer_of(&job) {
                    Some(customer) if *by_author => {
                        net.delete(customer, job);
                    }
                    _ => {
                        let stranger = net.stranger().clone();
                        net.delete_as(&stranger, job);
                    }
                }
            }
        }
        Act::Host { job, what } => {
            if let Some(job) = pick(&m.jobs, *job) {
                let _ = match what % 3 {
                    0 => net.provider_mut().accept(now, job),
                    1 => net.provider_mut().reject(now, job, "host says no"),
                    _ => net.provider_mut().cancel(now, job),
                };
                net.run_until_idle();
            }
        }
        Act::Jump(secs) => {
            let cap = if m.pruning { 20_000 } else { 3_600 };
            net.advance(u64::from(*secs) % cap)
        }
        Act::NextTimeout => {
            if net
                .provider()
                .poll_timeout()
                .is_some_and(|t| t.as_secs() <= now.as_secs() + 3_600)
            {
                net.advance_to_next_timeout();
            }
        }
        Act::Restart => net.restart(),
        Act::Crash => net.crash_and_resume(),
        Act::Json(json) => {
            if let Ok(event) = Event::from_json(json) {
                net.deliver(event);
            }
        }
        Act::Raw {
            kind,
            raw_kind,
            author,
            signed,
            tags,
            job_tags,
            content,
            age,
            sig,
        } => {
            let kind = KINDS.get(usize::from(*kind)).copied().unwrap_or(*raw_kind);
            let mut tags = to_tags(tags);
            for (request_tag, i) in job_tags.iter().take(4) {
                if let Some(job) = pick(&m.jobs, *i) {
                    tags.push(Tag::event(job));
                    if *request_tag {
                        tags.push(Tag::public_key(net.provider_pubkey()));
                    }
                }
            }
            let keys = signer(net, *author);
            let at = Timestamp::from(now.as_secs().saturating_add_signed(i64::from(*age)));
            let event = build(net, &keys, kind, tags, content, at);
            let event = if *signed {
                event
            } else {
                // the same event with a made-up signature (and, sometimes, a made-up id):
                // anyone can claim any key
                let mut bytes = [0u8; 64];
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b = sig[i % 8].wrapping_add(i as u8);
                }
                let Ok(sig) = Signature::from_slice(&bytes) else {
                    return;
                };
                let id = if bytes[0] & 1 == 0 {
                    event.id
                } else {
                    EventId::from_byte_array(bytes[..32].try_into().unwrap())
                };
                Event::new(
                    id,
                    event.pubkey,
                    event.created_at,
                    event.kind,
                    event.tags.to_vec(),
                    event.content,
                    sig,
                )
            };
            net.deliver(event);
        }
        Act::Mutate {
            pick: i,
            field,
            data,
            resign,
        } => {
            let Some(original) = handled(net, *i) else {
                return;
            };
            let mut tags: Vec<Vec<String>> = original
                .tags
                .iter()
                .map(|t| t.as_slice().to_vec())
                .collect();
            let mut content = original.content.clone();
            let mut kind = original.kind.as_u16();
            match field % 5 {
                0 => content = data.clone(),
                1 => tags.push(vec!["param".into(), data.clone()]),
                2 if !tags.is_empty() => {
                    let n = usize::from(*field) % tags.len();
                    if let Some(last) = tags[n].last_mut() {
                        *last = data.clone();
                    }
                }
                3 if !tags.is_empty() => {
                    let n = usize::from(*field) % tags.len();
                    tags.remove(n);
                }
                _ => kind = KINDS[usize::from(*field) % KINDS.len()],
            }
            let tags = to_tags(&tags);
            let author = (0..4u8)
                .map(|w| signer(net, w))
                .find(|k| k.public_key() == original.pubkey);
            let event = match author {
                Some(keys) if *resign => {
                    build(net, &keys, kind, tags, &content, original.created_at)
                }
                _ => Event::new(
                    original.id,
                    original.pubkey,
                    original.created_at,
                    Kind::from(kind),
                    tags,
                    content,
                    original.sig,
                ),
            };
            net.deliver(event);
        }
    }
}

/// A past event the provider handled, by index.
fn handled(net: &Network, i: u16) -> Option<Event> {
    let handled = net.handled();
    (!handled.is_empty()).then(|| handled[usize::from(i) % handled.len()].clone())
}

fn check(net: &Network, m: &mut Model, mark: usize) {
    assert!(
        net.host_errors().is_empty(),
        "host errors: {:?}",
        net.host_errors()
    );
    // (f)
    for output in net.outputs_since(mark) {
        match output {
            Output::RunTask(request) => assert!(
                !request.request.is_expired(net.now()),
                "(f) a task started for the expired request {}",
                request.job
            ),
            Output::Refund(refund) => assert!(
                m.paid.contains(&refund.job),
                "(f) a refund of a payment never made: {refund:?}"
            ),
            _ => {}
        }
    }
    // (a)
    for output in net.outputs_since(mark) {
        if let Output::RunTask(request) = output {
            let priced = matches!(price_of(&request.request), Quote::Price { .. });
            if m.policy == PaymentPolicy::PayFirst && priced {
                assert!(
                    m.paid.contains(&request.job),
                    "(a) RunTask for the unpaid priced job {}",
                    request.job
                );
            }
        }
    }
    // (b)
    let published = &net.published()[m.read..];
    m.read = net.published().len();
    for event in published {
        if let Some(SimReply::Result(result)) = net.read_reply(event) {
            let count = m.results.entry(result.request_id).or_default();
            *count += 1;
            assert!(*count <= 1, "(b) a second result for {}", result.request_id);
        }
    }
    // (c)
    for (id, state) in net.provider().jobs() {
        if let Some(before) = m.terminal.get(id) {
            assert!(
                state == before
                    || (*before == JobState::Delivered { paid: false }
                        && *state == JobState::Delivered { paid: true }),
                "(c) job {id} left {before:?} for {state:?}"
            );
        }
        if state.is_terminal() {
            m.terminal.insert(*id, state.clone());
        }
    }
    for task in net.pending_tasks() {
        assert_eq!(
            net.provider().job_state(&task.job),
            Some(&JobState::Running),
            "a pending task of a job that does not run"
        );
    }
}

fuzz_target!(|input: Input| {
    let mut net = network(&input);
    let mut m = Model {
        policy: net.config().payment,
        pruning: input.pruning,
        jobs: Vec::new(),
        paid: HashSet::new(),
        receipts: Vec::new(),
        results: HashMap::new(),
        terminal: HashMap::new(),
        read: 0,
    };
    for action in input.actions.iter().take(MAX_ACTIONS) {
        let mark = net.mark();
        act(&mut net, &mut m, action);
        check(&net, &mut m, mark);
    }
});
