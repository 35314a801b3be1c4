//! A paid job through a real LNbits next to the same free job (issue 13's figure): one job at
//! a time, from `submit` on a [`CustomerRuntime`] to its result, over an in-process relay on
//! 127.0.0.1.
//!
//! - `job/free`: a free provider answers;
//! - `job/paid_lnbits`: a provider charging 1 sat invoices from its LNbits wallet
//!   ([`LnbitsBackend`]), the customer's [`LnbitsWallet`] auto-pays it, LNbits's websocket tells
//!   the provider, the job runs.
//!
//! LNbits (FakeWallet funding source, internal payments) is installed and started by the
//! tests' support (`tests/support/lnbits.rs`). The issue names no limit: the bench prints the
//! median and p99 of each and the latency the payment adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use nostr_dvm::customer::{CustomerConfig, Delivery, Notification, Output};
use nostr_dvm::nip90::{JobInput, JobRequest};
use nostr_dvm::nostr::{Keys, Kind, PublicKey};
use nostr_dvm::provider::{Admission, ProviderConfig};
use nostr_dvm::runtime::{CustomerRuntime, LnbitsBackend, LnbitsWallet, ProviderRuntime};
use nostr_dvm::task::FixedPrice;
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use tokio::runtime::Runtime;

#[path = "support/echo.rs"]
mod echo;
#[allow(dead_code)]
#[path = "../tests/support/lnbits.rs"]
mod lnbits;
#[path = "../examples/support/local_relay.rs"]
mod local_relay;

use echo::{Echo, KIND};

/// The paid provider's price: 1 sat.
const PRICE_MSAT: u64 = 1_000;

/// A provider on `url`, free or invoicing from `invoice_key`; admission limits lifted, since
/// one customer sends every job of the run.
fn provider(url: &str, invoice_key: Option<&str>, lnbits_url: &str) -> PublicKey {
    let keys = Keys::generate();
    let admission = Admission {
        rate_limit: None,
        global_rate_limit: None,
        invoice_rate_limit: None,
        ..Admission::default()
    };
    let mut config = ProviderConfig::new([Kind::from(KIND)])
        .relays([url.to_owned()])
        .admission(admission);
    let mut runtime;
    match invoice_key {
        Some(key) => {
            config = config.pricing(FixedPrice(PRICE_MSAT));
            runtime = ProviderRuntime::new(keys.clone(), config);
            runtime = runtime.lightning(LnbitsBackend::new(lnbits_url, key).unwrap());
        }
        None => runtime = ProviderRuntime::new(keys.clone(), config),
    }
    tokio::spawn(
        runtime
            .task(Arc::new(Echo::default()))
            .run(std::future::pending()),
    );
    keys.public_key()
}

/// One job to `provider`, from submission to result.
async fn one_job(customer: &mut CustomerRuntime, provider: PublicKey) -> Duration {
    let began = Instant::now();
    // A new text each time: the same request signed in the same second is the same job.
    static SENT: AtomicU64 = AtomicU64::new(0);
    let text = format!("ping {}", SENT.fetch_add(1, Ordering::Relaxed));
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text(text));
    let job = customer
        .submit(request, Delivery::To(provider))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match customer.next().await.expect("the relay is up") {
                Output::Notify(Notification::Result { job: j, .. }) if j == job => return,
                Output::Notify(Notification::PaymentFailed { reason, .. }) => panic!("{reason}"),
                _ => {}
            }
        }
    })
    .await
    .expect("the job ends in time");
    began.elapsed()
}

/// Median and 99th percentile, in milliseconds.
fn median_p99(samples: &[Duration]) -> (f64, f64) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let lnbits = lnbits::Lnbits::shared();
    let (mut customer, free, paid, _relay) = rt.block_on(async {
        let earner = lnbits.wallet("bench provider").await;
        let payer = lnbits.wallet("bench customer").await;
        lnbits.fund(&payer, 1_000_000).await;
        // LocalRelay's default limit is 60 events a minute per connection.
        let limit = RateLimit {
            max_reqs: 1_000_000, // the customer opens a subscription per job
            notes_per_minute: u32::MAX,
        };
        let relay = LocalRelay::new(RelayBuilder::default().rate_limit(limit));
        let url = local_relay::serve(relay.clone()).await.unwrap();
        let free = provider(&url, None, lnbits.url());
        let paid = provider(&url, Some(&earner.invoice_key), lnbits.url());
        let mut config = CustomerConfig::new([url.clone()]);
        config.auto_pay_limit_msat = Some(PRICE_MSAT + 2_000);
        config.max_fee_msat = 2_000;
        let mut customer = CustomerRuntime::connect(Keys::generate(), config)
            .await
            .unwrap();
        let wallet = LnbitsWallet::new(lnbits.url(), &payer.admin_key).unwrap();
        customer.set_wallet(Arc::new(wallet));
        // Wait until both providers serve.
        for provider in [free, paid] {
            one_job(&mut customer, provider).await;
        }
        (customer, free, paid, relay)
    });

    let samples: Arc<Mutex<[Vec<Duration>; 2]>> = Arc::default();
    let mut group = c.benchmark_group("job");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for (index, name, provider) in [(0, "free", free), (1, "paid_lnbits", paid)] {
        let samples = samples.clone();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let took = rt.block_on(one_job(&mut customer, provider));
                    samples.lock().unwrap()[index].push(took);
                    total += took;
                }
                total
            })
        });
    }
    group.finish();

    let samples = samples.lock().unwrap();
    if samples.iter().all(|s| !s.is_empty()) {
        let (free_p50, free_p99) = median_p99(&samples[0]);
        let (paid_p50, paid_p99) = median_p99(&samples[1]);
        println!(
            "job/free: median {free_p50:.1} ms, p99 {free_p99:.1} ms ({} jobs)",
            samples[0].len()
        );
        println!(
            "job/paid_lnbits: median {paid_p50:.1} ms, p99 {paid_p99:.1} ms ({} jobs)",
            samples[1].len()
        );
        println!(
            "payment through LNbits adds: median {:.1} ms, p99 {:.1} ms (no limit set: a figure)",
            paid_p50 - free_p50,
            paid_p99 - free_p99
        );
    }
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
