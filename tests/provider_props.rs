//! Property tests of the provider's invariants over random input sequences, driven through
//! the simulated network (real signed events, real BOLT11 invoices, real zap receipts).
//!
//! Each case picks a configuration (payment policy, automatic acceptance, deferred invoices,
//! paid by zaps alone or not, persisted by snapshots or by updates, claiming each job first as
//! one process of a fleet or not, admission limits) and a sequence of up to 30 actions: new requests (plain, NIP-44, NIP-04
//! or gift-wrapped; free, priced, refused by the pricing hook, with a bid below or above the
//! price; chained on an earlier job; with a NIP-40 expiration; dated ahead of the clock),
//! duplicate deliveries, floods of cheap low-bid requests that roll the job table over, zaps
//! (valid, overpaid, underpaid, forged by an untrusted zapper, replayed), wallet proofs (right
//! or wrong), task results and progress, invoice answers, kind-5 deletions by the author or a
//! stranger, host commands, time jumps (with the timers run, or late: a payment may then reach
//! the provider after its deadline before the timer does), restarts and crashes. After every
//! action it checks:
//!
//! - (a) pay first means pay first: under pay-first, no `RunTask` (and no result) for a priced
//!   job before a genuinely valid payment for it was delivered; under partial-then-pay, no
//!   full result before one;
//! - (b) at most one result event is published per job;
//! - (c) terminal states stay terminal (only `Delivered { paid: false }` may become
//!   `paid: true`), and a forgotten job does not come back;
//! - (d) a duplicate delivery is harmless: re-delivering an event at once, or later an event
//!   that took effect (a known request, a recorded receipt, a deletion), produces nothing but
//!   notifications;
//! - (e) snapshot/restore changes nothing: at a random cut the whole world is forked with its
//!   provider restored from a JSON snapshot (or, persisting by updates, from the records the
//!   host stored: a change an update missed makes the twin differ), both get the same later
//!   inputs, and their outputs must be equal, byte for byte;
//! - (f) no task starts for a job whose request has expired, and a payment handed back
//!   (`Output::Refund`) was a real payment for that job;
//! - (g) a provider paid by zaps alone never asks its host for an invoice, and its payment
//!   requests carry none;
//! - and that the host never errs when it does the right thing, host misuse changes nothing,
//!   every pending task belongs to a running job, and a paid job is not asked to pay again.
#![cfg(feature = "test-util")]

use std::collections::{HashMap, HashSet};

use nostr_dvm::encryption::Scheme;
use nostr_dvm::job::JobState;
use nostr_dvm::nip59;
use nostr_dvm::nip90::{FeedbackStatus, InputType, JobInput, JobRequest};
use nostr_dvm::nostr::{Event, EventId, Timestamp};
use nostr_dvm::provider::{Admission, Error, Output, PaymentPolicy, PaymentProof, RateLimit};
use nostr_dvm::rand_core::RngCore;
use nostr_dvm::task::{Quote, TaskError, TaskOutput};
use nostr_dvm::testing::sim::{CustomerId, InvoiceMode, Network, SimReply, Via};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const PRICES: [u64; 3] = [1_000, 21_000, 500_000];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Plain,
    Nip44,
    Nip04,
    GiftWrap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Price {
    Free,
    Priced(usize),
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bid {
    None,
    Below,
    Above,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZapKind {
    Valid,
    Overpaid,
    Underpaid,
    Untrusted,
    Replayed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Request {
        customer: u8,
        how: How,
        price: Price,
        bid: Bid,
        chain: Option<u8>,
        expires_in: Option<u16>,
        /// Seconds the request is dated ahead of the clock.
        ahead: Option<u16>,
    },
    /// This many cheap requests bidding below their price, each refused at once: the job
    /// table rolls over.
    Flood(u8),
    /// Re-deliver the last event the provider handled.
    Again,
    /// Re-deliver a past event the provider handled.
    Duplicate(u16),
    Zap {
        job: u8,
        kind: ZapKind,
        to_request: bool,
    },
    Wallet {
        job: u8,
        right: bool,
    },
    TaskOk(u8),
    TaskErr(u8),
    Progress(u8),
    Invoice {
        pick: u8,
        fail: bool,
    },
    Delete {
        job: u8,
        by_author: bool,
    },
    Accept(u8),
    Reject(u8),
    Cancel(u8),
    Jump(u16),
    /// The clock moves on but the host runs no timer yet.
    Late(u16),
    NextTimeout,
    Restart,
    Crash,
}

#[derive(Debug, Clone)]
struct Setup {
    seed: u64,
    policy: PaymentPolicy,
    auto_accept: bool,
    deferred_invoices: bool,
    /// Paid by zaps alone: no invoice is ever asked for.
    zaps_only: bool,
    /// The host persists by updates (acknowledged at once); restarts, crashes and twins
    /// restore from the records.
    updates: bool,
    /// One process of a fleet: every job claimed first (the simulated host wins every claim
    /// at once).
    claims: bool,
    max_live_jobs: usize,
    rate_limit: Option<u32>,
    /// Where the twin is forked from a snapshot (past the end: no twin).
    cut: usize,
    /// Whether jobs may be forgotten (short retention, few jobs kept, long jumps).
    pruning: bool,
    /// Whether the host saves only when `needs_persistence()` says so, and the twin is
    /// restored from that last save (a crash after it) instead of a fresh snapshot.
    save_when_dirty: bool,
}

fn setup(pruning: bool, save_when_dirty: bool) -> impl Strategy<Value = Setup> {
    (
        any::<u64>(),
        prop_oneof![
            2 => Just(PaymentPolicy::PayFirst),
            1 => Just(PaymentPolicy::PayAfterResult),
            1 => Just(PaymentPolicy::PartialThenPay),
        ],
        prop::bool::weighted(0.8),
        any::<bool>(),
        (
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.4),
            prop::bool::weighted(0.2),
        ),
        2usize..12,
        prop::option::weighted(0.3, 1u32..4),
        0usize..30,
    )
        .prop_map(
            move |(
                seed,
                policy,
                auto_accept,
                deferred_invoices,
                (zaps_only, updates, claims),
                max_live_jobs,
                rate_limit,
                cut,
            )| {
                Setup {
                    seed,
                    policy,
                    auto_accept,
                    deferred_invoices,
                    zaps_only,
                    updates,
                    claims,
                    max_live_jobs,
                    rate_limit,
                    cut,
                    pruning,
                    save_when_dirty,
                }
            },
        )
}

fn action(pruning: bool) -> impl Strategy<Value = Action> {
    let max_jump: u16 = if pruning { 5_000 } else { 700 };
    let how = prop_oneof![
        3 => Just(How::Plain),
        1 => Just(How::Nip44),
        1 => Just(How::Nip04),
        2 => Just(How::GiftWrap),
    ];
    let price = prop_oneof![
        2 => Just(Price::Free),
        4 => (0..PRICES.len()).prop_map(Price::Priced),
        1 => Just(Price::Refused),
    ];
    let bid = prop_oneof![4 => Just(Bid::None), 1 => Just(Bid::Below), 1 => Just(Bid::Above)];
    let zap = prop_oneof![
        4 => Just(ZapKind::Valid),
        1 => Just(ZapKind::Overpaid),
        2 => Just(ZapKind::Underpaid),
        2 => Just(ZapKind::Untrusted),
        2 => Just(ZapKind::Replayed),
    ];
    prop_oneof![
        8 => (
            0u8..3,
            how,
            price,
            bid,
            prop::option::weighted(0.15, any::<u8>()),
            prop::option::weighted(0.1, 0u16..900),
            prop::option::weighted(0.1, 0u16..700),
        )
            .prop_map(|(customer, how, price, bid, chain, expires_in, ahead)| Action::Request {
                customer,
                how,
                price,
                bid,
                chain,
                expires_in,
                ahead,
            }),
        1 => (1u8..=12).prop_map(Action::Flood),
        2 => Just(Action::Again),
        2 => any::<u16>().prop_map(Action::Duplicate),
        6 => (any::<u8>(), zap, any::<bool>())
            .prop_map(|(job, kind, to_request)| Action::Zap { job, kind, to_request }),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(job, right)| Action::Wallet { job, right }),
        4 => any::<u8>().prop_map(Action::TaskOk),
        1 => any::<u8>().prop_map(Action::TaskErr),
        1 => any::<u8>().prop_map(Action::Progress),
        3 => (any::<u8>(), prop::bool::weighted(0.2))
            .prop_map(|(pick, fail)| Action::Invoice { pick, fail }),
        2 => (any::<u8>(), any::<bool>())
            .prop_map(|(job, by_author)| Action::Delete { job, by_author }),
        1 => any::<u8>().prop_map(Action::Accept),
        1 => any::<u8>().prop_map(Action::Reject),
        1 => any::<u8>().prop_map(Action::Cancel),
        2 => (1..=max_jump).prop_map(Action::Jump),
        1 => (1u16..=900).prop_map(Action::Late),
        1 => Just(Action::NextTimeout),
        1 => Just(Action::Restart),
        1 => Just(Action::Crash),
    ]
}

fn network(s: &Setup) -> Network {
    let mut builder = Network::builder()
        .seed(s.seed)
        .deferred_tasks()
        .task(|request| {
            let text = request.texts().collect::<Vec<_>>().join(" ");
            Ok(TaskOutput::new(format!("done: {text}")).with_sample("sample"))
        });
    if s.deferred_invoices {
        builder = builder.invoices(InvoiceMode::Deferred);
    }
    if s.updates {
        builder = builder.updates();
    }
    let s = s.clone();
    let mut net = builder.build(move |mut config| {
        config.payment = s.policy;
        config.auto_accept = s.auto_accept;
        config.zaps_only = s.zaps_only;
        config.claim_jobs = s.claims;
        config.success_feedback = true;
        config.admission = Admission {
            max_live_jobs: s.max_live_jobs,
            rate_limit: s.rate_limit.map(|max_requests| RateLimit {
                max_requests,
                window_secs: 60,
            }),
            ..Admission::default()
        };
        if s.pruning {
            config.retention_secs = 600;
            config.admission.max_jobs = 6;
        } else {
            config.retention_secs = 30 * 24 * 3600;
        }
        config.pricing(|request: &JobRequest| match request.param("price") {
            Some("refuse") => Quote::Reject {
                reason: "not today".into(),
            },
            Some(p) => p
                .parse()
                .map_or(Quote::Free, |amount_msat| Quote::Price { amount_msat }),
            None => Quote::Free,
        })
    });
    for _ in 0..3 {
        net.add_customer();
    }
    net
}

/// What an action did, for the model.
#[derive(Debug, Default, PartialEq, Eq)]
struct Effect {
    /// A request was submitted: its job id and price (0 when free or refused).
    submitted: Option<(EventId, u64)>,
    /// Its NIP-40 expiration (unix seconds), if it has one.
    expires: Option<(EventId, u64)>,
    /// A genuinely valid payment for this job was delivered.
    paid: Option<EventId>,
    /// The valid receipt made, to replay later.
    receipt: Option<(EventId, Event)>,
    /// The outputs must all be notifications.
    notify_only: bool,
    /// The host misused the provider: it must answer `Err` and change nothing.
    misuse: Option<Result<(), Error>>,
    /// The host did the right thing: the provider must not answer `Err` (other than for a
    /// job it forgot).
    proper: Option<Result<(), Error>>,
}

/// Whether an event the provider already handled took effect then, so that handling it again
/// must change nothing.
fn took_effect(net: &Network, event: &Event) -> bool {
    let kind = event.kind.as_u16();
    if net.config().serves(event.kind) {
        net.provider().job_state(&event.id).is_some()
    } else if kind == nip59::GIFT_WRAP_KIND {
        match nip59::unwrap(net.provider_keys(), event) {
            Ok(gift) => gift
                .rumor
                .id
                .is_some_and(|id| net.provider().job_state(&id).is_some()),
            Err(_) => true,
        }
    } else if kind == nostr_dvm::nip57::ZAP_RECEIPT_KIND {
        net.provider().ledger().seen(Some(&event.id), &[0; 32])
    } else if net.config().registry.for_result(event.kind).is_some() {
        // A result handled before is new to a chained job that started waiting for it since
        // (its input subscription waits for the next refresh): it may feed that job.
        !feeds_a_waiting_job(net, event)
    } else {
        true
    }
}

/// Whether `result` answers a request that a job waiting for its inputs names as an input.
fn feeds_a_waiting_job(net: &Network, result: &Event) -> bool {
    let answers: Vec<&str> = result
        .tags
        .iter()
        .filter_map(|t| match t.as_slice() {
            [name, value, ..] if name == "e" => Some(value.as_str()),
            _ => None,
        })
        .collect();
    net.provider()
        .jobs()
        .filter(|(_, state)| **state == JobState::WaitingForInputs)
        .filter_map(|(id, _)| net.provider().job_request(id))
        .any(|request| {
            request
                .inputs
                .iter()
                .any(|i| i.input_type == InputType::Job && answers.contains(&i.data.as_str()))
        })
}

fn pick<T: Copy>(items: &[T], i: impl Into<usize>) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        Some(items[i.into() % items.len()])
    }
}

/// Applies one action to a network. `jobs` and `receipts` are the test's own records (the
/// same for a network and its twin).
fn apply(
    net: &mut Network,
    action: &Action,
    jobs: &[EventId],
    prices: &HashMap<EventId, u64>,
    receipts: &[(EventId, Event)],
    handled_in_last_action: bool,
    pruning: bool,
) -> Effect {
    let mut effect = Effect::default();
    let now = net.now();
    match action {
        Action::Request {
            customer,
            how,
            price,
            bid,
            chain,
            expires_in,
            ahead,
        } => {
            let n = jobs.len();
            let mut b = JobRequest::builder(5050).input(JobInput::text(format!("job {n}")));
            let amount = match price {
                Price::Free => 0,
                Price::Priced(i) => PRICES[*i],
                Price::Refused => 0,
            };
            match price {
                Price::Free => {}
                Price::Priced(_) => b = b.param("price", amount.to_string()),
                Price::Refused => b = b.param("price", "refuse"),
            }
            match bid {
                Bid::None => {}
                Bid::Below => b = b.bid(amount.saturating_sub(1)),
                Bid::Above => b = b.bid(amount * 2 + 1),
            }
            if let Some(dep) = chain.and_then(|c| pick(jobs, c)) {
                b = b.input(JobInput::job(dep, None));
            }
            if let Some(secs) = expires_in {
                b = b.expiration(Timestamp::from(now.as_secs() + u64::from(*secs)));
            }
            let me = net.provider_pubkey();
            let via = match how {
                How::Plain => Via::Public,
                How::Nip44 => {
                    b = b.provider(me).encrypt(Scheme::Nip44);
                    Via::Public
                }
                How::Nip04 => {
                    b = b.provider(me).encrypt(Scheme::Nip04);
                    Via::Public
                }
                How::GiftWrap => Via::GiftWrap,
            };
            let dated = Timestamp::from(now.as_secs() + u64::from(ahead.unwrap_or(0)));
            let (job, event) =
                net.sign_request_dated(CustomerId(usize::from(*customer)), b, via, dated);
            net.publish(event);
            let price = if *price == Price::Refused { 0 } else { amount };
            effect.submitted = Some((job, price));
            effect.expires = expires_in.map(|secs| (job, now.as_secs() + u64::from(secs)));
        }
        Action::Flood(n) => {
            for i in 0..*n {
                let b = JobRequest::builder(5050)
                    .input(JobInput::text(format!("flood {} {i}", jobs.len())))
                    .param("price", "21000")
                    .bid(1_000);
                net.submit(CustomerId(usize::from(i % 3)), b);
            }
        }
        Action::Again => {
            if let Some(event) = net.handled().last().cloned() {
                effect.notify_only = handled_in_last_action;
                net.deliver(event);
            }
        }
        Action::Duplicate(i) => {
            let handled = net.handled();
            if !handled.is_empty() {
                let event = handled[usize::from(*i) % handled.len()].clone();
                effect.notify_only = took_effect(net, &event);
                net.deliver(event);
            }
        }
        Action::Zap {
            job,
            kind,
            to_request,
        } => {
            if *kind == ZapKind::Replayed {
                if let Some(i) = (!receipts.is_empty()).then_some(usize::from(*job)) {
                    let (_, receipt) = receipts[i % receipts.len()].clone();
                    net.deliver(receipt);
                }
                return effect;
            }
            let Some(job) = pick(jobs, *job) else {
                return effect;
            };
            let price = prices.get(&job).copied().unwrap_or(0);
            let Some(customer) = net.customer_of(&job) else {
                return effect;
            };
            let keys = net.customer(customer).keys.clone();
            let bind_to = match net.payment_request(job) {
                Some(p) if !to_request => p.feedback,
                _ => job,
            };
            let base = price.max(1_000);
            let (amount, zapper, valid) = match kind {
                ZapKind::Valid => (base, net.zapper().clone(), true),
                ZapKind::Overpaid => (base + 1_000, net.zapper().clone(), true),
                ZapKind::Underpaid if price > 0 => (price - 1, net.zapper().clone(), false),
                ZapKind::Underpaid => (base, net.zapper().clone(), true),
                _ => (base, net.untrusted_zapper().clone(), false),
            };
            let receipt = net.zap_receipt(&keys, bind_to, amount, &zapper);
            if valid {
                effect.paid = Some(job);
                effect.receipt = Some((job, receipt.clone()));
            }
            net.publish(receipt);
        }
        Action::Wallet { job, right } => {
            let Some(job) = pick(jobs, *job) else {
                return effect;
            };
            if *right {
                let asked = net.payment_request(job).and_then(|p| p.bolt11);
                if let Some((_, answer)) = net.pay_by_wallet(job) {
                    if answer.is_ok() {
                        effect.paid = Some(job);
                    }
                    if asked.is_some() {
                        effect.proper = Some(answer);
                    }
                }
            } else {
                let mut preimage = [0u8; 32];
                net.rng_mut().fill_bytes(&mut preimage);
                effect.misuse = Some(net.handle_payment(job, PaymentProof::Preimage(preimage)));
            }
        }
        Action::TaskOk(i) | Action::TaskErr(i) | Action::Progress(i) => {
            let pending: Vec<EventId> = net.pending_tasks().iter().map(|t| t.job).collect();
            match (pick(&pending, *i), pick(jobs, *i)) {
                (Some(job), _) => {
                    effect.proper = Some(match action {
                        Action::TaskOk(_) => net.complete_task(job).unwrap_or(Ok(())),
                        Action::TaskErr(_) => net.finish_task(job, Err(TaskError::new("boom"))),
                        _ => net.task_progress(job, "half way"),
                    })
                }
                (None, Some(job)) => {
                    // no task runs: reporting one is the host's mistake
                    effect.misuse = Some(match action {
                        Action::Progress(_) => net.task_progress(job, "half way"),
                        _ => net.finish_task(job, Ok(TaskOutput::new("made up"))),
                    })
                }
                (None, None) => {}
            }
        }
        Action::Invoice { pick: i, fail } => {
            let pending: Vec<EventId> = net.pending_invoices().iter().map(|p| p.job).collect();
            if let Some(job) = pick(&pending, *i) {
                effect.proper = if *fail {
                    net.fail_invoice(job, "node offline")
                } else {
                    net.answer_invoice(job)
                };
            }
        }
        Action::Delete { job, by_author } => {
            if let Some(job) = pick(jobs, *job) {
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
        Action::Accept(i) | Action::Reject(i) | Action::Cancel(i) => {
            if let Some(job) = pick(jobs, *i) {
                let state = net.provider().job_state(&job).cloned();
                let result = match action {
                    Action::Accept(_) => net.provider_mut().accept(now, job),
                    Action::Reject(_) => net.provider_mut().reject(now, job, "host says no"),
                    _ => net.provider_mut().cancel(now, job),
                };
                net.run_until_idle();
                let allowed = match (action, &state) {
                    (_, None) => false,
                    (Action::Accept(_), Some(s)) => *s == JobState::Received,
                    (_, Some(s)) => !s.is_terminal(),
                };
                if allowed {
                    effect.proper = Some(result);
                } else {
                    effect.misuse = Some(result);
                }
            }
        }
        Action::Jump(secs) => net.advance(u64::from(*secs)),
        Action::Late(secs) => net.advance_without_timers(u64::from(*secs)),
        Action::NextTimeout => {
            // without pruning, never as far as the retention of terminal jobs
            let horizon = now.as_secs() + if pruning { u64::MAX / 4 } else { 24 * 3600 };
            if net
                .provider()
                .poll_timeout()
                .is_some_and(|t| t.as_secs() <= horizon)
            {
                net.advance_to_next_timeout();
            }
        }
        Action::Restart => net.restart(),
        Action::Crash => net.crash_and_resume(),
    }
    effect
}

/// Whether a payment made while the job was in this state may be asked for again: only when
/// the provider did not know the job (it was refused at capacity, say) and rightly ignored
/// the receipt; when the request comes back later, so may the receipt.
fn exempt_from_paid_once(state_when_paid: &str) -> bool {
    state_when_paid == "unknown"
}

/// The test's model and records of one run.
#[derive(Default)]
struct Model {
    jobs: Vec<EventId>,
    prices: HashMap<EventId, u64>,
    expires: HashMap<EventId, u64>,
    paid: HashSet<EventId>,
    /// The state each job was in when it was first paid.
    paid_in: HashMap<EventId, &'static str>,
    receipts: Vec<(EventId, Event)>,
    results: HashMap<EventId, usize>,
    terminal: HashMap<EventId, JobState>,
    forgotten: HashSet<EventId>,
    /// How many published events were read already.
    read: usize,
}

fn check_run(setup: &Setup, actions: &[Action]) -> Result<(), TestCaseError> {
    let mut net = network(setup);
    let mut twin: Option<Network> = None;
    let mut m = Model::default();
    let mut handled_in_last_action = false;
    for (step, action) in actions.iter().enumerate() {
        if step == setup.cut {
            twin = Some(if setup.save_when_dirty {
                net.fork_from_saved()
            } else {
                net.fork()
            });
        }
        let mark = net.mark();
        let handled_before = net.handled().len();
        let state_before: Vec<(EventId, JobState)> = {
            let mut v: Vec<_> = net
                .provider()
                .jobs()
                .map(|(id, s)| (*id, s.clone()))
                .collect();
            v.sort_by_key(|(id, _)| *id);
            v
        };
        let previous_handled = handled_in_last_action;
        let effect = apply(
            &mut net,
            action,
            &m.jobs,
            &m.prices,
            &m.receipts,
            previous_handled,
            setup.pruning,
        );
        handled_in_last_action = net.handled().len() > handled_before;
        if setup.save_when_dirty {
            net.save_if_dirty();
        }
        let ctx = || format!("step {step}: {action:?}");
        if let Some(twin) = twin.as_mut() {
            let twin_effect = apply(
                twin,
                action,
                &m.jobs,
                &m.prices,
                &m.receipts,
                previous_handled,
                setup.pruning,
            );
            prop_assert_eq!(&twin_effect.submitted, &effect.submitted, "{}", ctx());
            prop_assert!(
                net.outputs_since(mark) == twin.outputs_since(mark),
                "(e) the restored twin diverged at {}:\n{:#?}\nvs\n{:#?}",
                ctx(),
                net.outputs_since(mark),
                twin.outputs_since(mark)
            );
        }
        if let Some((job, price)) = effect.submitted {
            m.jobs.push(job);
            m.prices.insert(job, price);
        }
        if let Some((job, at)) = effect.expires {
            m.expires.insert(job, at);
        }
        if let Some(job) = effect.paid {
            if m.paid.insert(job) {
                let was = state_before
                    .iter()
                    .find(|(id, _)| *id == job)
                    .map(|(_, s)| s.name())
                    .unwrap_or("unknown");
                m.paid_in.insert(job, was);
            }
        }
        if let Some(r) = effect.receipt.clone() {
            m.receipts.push(r);
        }
        let out = net.outputs_since(mark);

        prop_assert!(
            net.host_errors().is_empty(),
            "host errors at {}: {:?}",
            ctx(),
            net.host_errors()
        );
        if let Some(answer) = &effect.proper {
            prop_assert!(
                answer.is_ok() || matches!(answer, Err(Error::UnknownJob(_))),
                "a proper host call failed at {}: {:?}",
                ctx(),
                answer
            );
        }
        if let Some(answer) = &effect.misuse {
            prop_assert!(answer.is_err(), "misuse accepted at {}", ctx());
            prop_assert!(
                out.is_empty(),
                "misuse changed something at {}: {:?}",
                ctx(),
                out
            );
        }
        // (d)
        if effect.notify_only {
            prop_assert!(
                out.iter().all(|o| matches!(o, Output::Notify(_))),
                "(d) a duplicate had effects at {}: {:#?}",
                ctx(),
                out
            );
            let mut after: Vec<_> = net
                .provider()
                .jobs()
                .map(|(id, s)| (*id, s.clone()))
                .collect();
            after.sort_by_key(|(id, _)| *id);
            prop_assert_eq!(&after, &state_before, "(d) at {}", ctx());
        }
        // (f), judged at the time each output was produced (a jump runs the timers due on
        // the way at their own times: a job may start before its expiration and expire later
        // in the same step)
        for (produced, o) in net.timed_outputs_since(mark) {
            match o {
                Output::RunTask(request) => {
                    let expired = m
                        .expires
                        .get(&request.job)
                        .is_some_and(|at| *at <= produced.as_secs());
                    prop_assert!(
                        !expired,
                        "(f) task started for expired job {} at {}",
                        request.job,
                        ctx()
                    );
                }
                Output::RequestInvoice { job, .. } => {
                    prop_assert!(
                        !setup.zaps_only,
                        "(g) an invoice asked for {} by a zaps-only provider at {}",
                        job,
                        ctx()
                    );
                }
                Output::Refund(refund) => {
                    prop_assert!(
                        m.paid.contains(&refund.job) && refund.amount_msat > 0,
                        "(f) refund of a payment never made: {:?} at {}",
                        refund,
                        ctx()
                    );
                }
                _ => {}
            }
        }
        // (a)
        for o in out {
            if let Output::RunTask(request) = o {
                let job = request.job;
                let price = m.prices.get(&job).copied().unwrap_or(0);
                if setup.policy == PaymentPolicy::PayFirst && price > 0 {
                    prop_assert!(
                        m.paid.contains(&job),
                        "(a) RunTask for unpaid priced job {} at {}",
                        job,
                        ctx()
                    );
                }
            }
        }
        // (b), (a) for results, and no payment request after payment
        let published = net.published()[m.read..].to_vec();
        m.read = net.published().len();
        for event in &published {
            match net.read_reply(event) {
                Some(SimReply::Result(result)) => {
                    let job = result.request_id;
                    let count = m.results.entry(job).or_default();
                    *count += 1;
                    prop_assert!(*count <= 1, "(b) second result for {} at {}", job, ctx());
                    if result.amount.is_some() {
                        let was = m.paid_in.get(&job).copied().unwrap_or("-");
                        prop_assert!(
                            exempt_from_paid_once(was) || !m.paid.contains(&job),
                            "job {} was paid (while {}) and its result asks for payment at {}",
                            job,
                            was,
                            ctx()
                        );
                    }
                    let price = m.prices.get(&job).copied().unwrap_or(0);
                    if price > 0 && setup.policy != PaymentPolicy::PayAfterResult {
                        prop_assert!(
                            m.paid.contains(&job),
                            "(a) result for unpaid priced job {} at {}",
                            job,
                            ctx()
                        );
                    }
                }
                Some(SimReply::Feedback(f)) if f.status == FeedbackStatus::PaymentRequired => {
                    prop_assert!(
                        !setup.zaps_only || f.amount.as_ref().is_some_and(|a| a.bolt11.is_none()),
                        "(g) a zaps-only payment request with an invoice: {:?} at {}",
                        f.amount,
                        ctx()
                    );
                    let was = m.paid_in.get(&f.request_id).copied().unwrap_or("-");
                    prop_assert!(
                        exempt_from_paid_once(was) || !m.paid.contains(&f.request_id),
                        "job {} was paid (while {}) and is asked to pay again at {}",
                        f.request_id,
                        was,
                        ctx()
                    );
                }
                _ => {}
            }
        }
        // (c)
        let mut present = HashSet::new();
        for (id, state) in net.provider().jobs() {
            present.insert(*id);
            prop_assert!(
                !m.forgotten.contains(id),
                "(c) forgotten job {} came back as {:?} at {}",
                id,
                state,
                ctx()
            );
            if let Some(before) = m.terminal.get(id) {
                let ok = state == before
                    || (*before == JobState::Delivered { paid: false }
                        && *state == JobState::Delivered { paid: true });
                prop_assert!(
                    ok,
                    "(c) job {} left {:?} for {:?} at {}",
                    id,
                    before,
                    state,
                    ctx()
                );
            }
            if state.is_terminal() {
                m.terminal.insert(*id, state.clone());
            }
        }
        let gone: Vec<EventId> = m
            .terminal
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        for id in gone {
            m.terminal.remove(&id);
            m.forgotten.insert(id);
        }
        // every pending task belongs to a running job
        for task in net.pending_tasks() {
            prop_assert_eq!(
                net.provider().job_state(&task.job),
                Some(&JobState::Running),
                "pending task of a job that does not run at {}",
                ctx()
            );
        }
    }
    Ok(())
}

/// Runs `cases` cases, or as many as the `DVM_PROP_CASES` environment variable says.
fn run(cases: u32, pruning: bool) {
    run_with(cases, pruning, false);
}

fn run_with(cases: u32, pruning: bool, save_when_dirty: bool) {
    let cases = std::env::var("DVM_PROP_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        setup(pruning, save_when_dirty),
        prop::collection::vec(action(pruning), 1..=30),
    );
    if let Err(e) = runner.run(&strategy, |(setup, actions)| check_run(&setup, &actions)) {
        panic!("{e}");
    }
}

/// The invariants over 96 random configurations and action sequences, jobs kept for a month.
#[test]
fn provider_invariants_hold_over_random_input_sequences() {
    run(96, false);
}

/// (e) for a host that saves only when `needs_persistence()` is true: a crash after any step,
/// restored from the last save, behaves exactly as a provider that never crashed. A state
/// change that does not mark the provider dirty makes the twin diverge.
#[test]
fn a_provider_saved_only_when_dirty_restores_like_one_that_never_crashed() {
    run_with(96, false, true);
    run_with(48, true, true);
}

/// The same with short retention, few jobs kept and long time jumps, so that terminal jobs
/// are forgotten. Ignored: a request delivered again after its job was forgotten is taken as
/// a new job (see `a_forgotten_request_delivered_again_runs_again`).
#[test]
fn provider_invariants_hold_when_jobs_are_forgotten() {
    run(96, true);
}

/// A job is forgotten once its retention has passed (or the job table is full); its request
/// and its zap receipt are public events that anyone can deliver again. The provider then
/// takes the request for a new job: a free job is done and published a second time for the
/// same job id, and a paid one is paid by its old receipt (when the zap was bound to the
/// request), whose ledger entry was forgotten with the job.
#[test]
fn a_forgotten_request_delivered_again_does_not_run_again() {
    let price = 21_000;
    let mut net = Network::builder()
        .seed(1)
        .build(|c| c.pricing(nostr_dvm::task::FixedPrice(price)));
    let alice = net.add_customer();
    let job = net.submit(alice, JobRequest::builder(5050).input(JobInput::text("x")));
    // the customer zaps the request itself (the provider takes that as payment too)
    let keys = net.customer(alice).keys.clone();
    let zapper = net.zapper().clone();
    let receipt = net.zap_receipt(&keys, job, price, &zapper);
    net.publish(receipt.clone());
    assert_eq!(net.results(job).len(), 1);
    let request = net.relay().get(&job).unwrap().clone();
    let retention = net.config().retention_secs;
    net.advance(retention + 10);
    assert!(net.provider().job_state(&job).is_none(), "forgotten");
    // anyone replays the two public events
    net.deliver(request);
    net.deliver(receipt);
    assert_eq!(
        net.results(job).len(),
        1,
        "the job ran a second time, paid by a spent receipt"
    );
}

/// A zap on the request while the job waits for the host's `accept`, or for the result of an
/// input job, is recorded (`PaymentReceived`), but `accept` / the input's arrival then send
/// `payment-required` anyway and the job waits for a second payment.
#[test]
fn a_payment_before_acceptance_or_inputs_is_not_asked_for_again() {
    let price = 21_000;
    // manual acceptance
    let mut net = Network::builder().seed(2).build(|mut c| {
        c.auto_accept = false;
        c.pricing(nostr_dvm::task::FixedPrice(price))
    });
    let alice = net.add_customer();
    let job = net.submit(alice, JobRequest::builder(5050).input(JobInput::text("x")));
    net.pay_by_zap(job, price); // no payment-required yet: bound to the request
    assert!(net.notifications().any(|n| matches!(
        n,
        nostr_dvm::provider::Notification::PaymentReceived { job: j, .. } if *j == job
    )));
    let now = net.now();
    net.provider_mut().accept(now, job).unwrap();
    net.run_until_idle();
    assert_eq!(net.payment_request(job), None, "paid, and asked to pay");
    assert_eq!(net.results(job).len(), 1);

    // waiting for an input job
    let mut net = Network::builder().seed(3).deferred_tasks().build(|c| {
        c.pricing(|r: &JobRequest| match r.param("price") {
            Some(_) => Quote::Price {
                amount_msat: 21_000,
            },
            None => Quote::Free,
        })
    });
    let alice = net.add_customer();
    let first = net.submit(alice, JobRequest::builder(5050).input(JobInput::text("x")));
    let second = net.submit(
        alice,
        JobRequest::builder(5050)
            .input(JobInput::job(first, None))
            .param("price", "21000"),
    );
    assert_eq!(
        net.provider().job_state(&second),
        Some(&JobState::WaitingForInputs)
    );
    net.pay_by_zap(second, price);
    net.complete_task(first).unwrap().unwrap();
    assert_eq!(net.payment_request(second), None, "paid, and asked to pay");
    assert_eq!(net.provider().job_state(&second), Some(&JobState::Running));
}

/// Under partial-then-pay and pay-after-result, a zap that arrives while the provider waits
/// for the invoice to attach to the result is recorded, but the invoice's arrival then asks
/// for payment anyway: `payment-required` again (partial-then-pay), or the result published
/// with an `amount` and the job ending `Delivered { paid: false }` (pay-after-result).
#[test]
fn a_payment_while_the_result_is_invoiced_is_not_asked_for_again() {
    let price = 21_000;
    for policy in [PaymentPolicy::PartialThenPay, PaymentPolicy::PayAfterResult] {
        let mut net = Network::builder()
            .seed(4)
            .invoices(InvoiceMode::Deferred)
            .build(|c| {
                c.pricing(nostr_dvm::task::FixedPrice(price))
                    .payment(policy)
            });
        let alice = net.add_customer();
        let job = net.submit(alice, JobRequest::builder(5050).input(JobInput::text("x")));
        // the task ran at once; the provider now waits for the result's invoice
        assert_eq!(net.pending_invoices().len(), 1, "{policy:?}");
        net.pay_by_zap(job, price);
        net.answer_invoice(job).unwrap().unwrap();
        assert_eq!(
            net.payment_request(job),
            None,
            "{policy:?}: paid, and asked to pay"
        );
        assert_eq!(
            net.provider().job_state(&job),
            Some(&JobState::Delivered { paid: true }),
            "{policy:?}"
        );
    }
}

/// The set-up of the regression tests: pay after result, jobs accepted at once.
fn pay_after_result(save_when_dirty: bool) -> Setup {
    Setup {
        seed: 0,
        policy: PaymentPolicy::PayAfterResult,
        auto_accept: true,
        deferred_invoices: false,
        zaps_only: false,
        updates: false,
        claims: false,
        max_live_jobs: 2,
        rate_limit: None,
        cut: 0,
        pruning: false,
        save_when_dirty,
    }
}

/// A free plain request of customer 0.
fn free_request(chain: Option<u8>, expires_in: Option<u16>) -> Action {
    Action::Request {
        customer: 0,
        how: How::Plain,
        price: Price::Free,
        bid: Bid::None,
        chain,
        expires_in,
        ahead: None,
    }
}

/// Found by the property above (2026-12-04), a false alarm of the check: a chained request
/// expiring at t+6 waits for its input; in a jump of 6 s the input subscription's refresh
/// timer (t+5) brings the input, the job starts before its expiration, and the expiration
/// timer (t+6) then cancels it. (f) judged the start by the time at the end of the jump; it
/// now judges each output by the time it was produced.
#[test]
fn regression_expired_chained_request_never_starts() {
    let setup = pay_after_result(true);
    let actions = [
        free_request(None, None),
        Action::Request {
            customer: 0,
            how: How::Plain,
            price: Price::Priced(0),
            bid: Bid::Below,
            chain: None,
            expires_in: None,
            ahead: None,
        },
        Action::TaskOk(0),
        free_request(None, None),
        Action::Late(5),
        Action::Crash,
        free_request(Some(39), Some(6)),
        Action::Jump(6),
    ];
    check_run(&setup, &actions).unwrap();
}

/// Found by the property above in CI (2026-12-04), a false alarm of (d): a chained request
/// made within the input subscription's refresh interval waits for that refresh
/// (`DELETION_REFRESH_SECS`) to bring its input, though the input (another job's result) was
/// delivered before, for an earlier chained job. The same result delivered again is new to
/// the waiting job, which rightly starts on it. (d) now expects no effect from a result only
/// when no waiting job names its request as an input. Every past event is delivered again.
#[test]
fn regression_a_result_delivered_again_feeds_a_job_that_waits_for_it() {
    let setup = pay_after_result(false);
    let free = |chain: Option<u8>| free_request(chain, None);
    for i in 0..8 {
        let actions = [
            free(None),
            Action::TaskOk(0),
            free(Some(0)),
            free(Some(0)),
            Action::Duplicate(i),
        ];
        check_run(&setup, &actions).unwrap();
    }
}
