//! Real money through Nostr Wallet Connect: a real NIP-47 wallet service (Alby's
//! `NWCWalletService`, started by the test support) over wallets of a real LNbits, on a real
//! relay. A provider invoices into one NWC wallet ([`NwcBackend`]) and a customer pays from
//! another ([`NwcWallet`]). The service sends no NIP-47 notifications: these tests exercise
//! the polling path (`lookup_invoice`); the notification path is tested in the crate's unit
//! tests with recorded notification content.
#![cfg(all(feature = "nwc", feature = "lnbits", feature = "test-util", unix))]

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nostr_dvm::customer::{
    CustomerConfig, Delivery, Notification as CustomerNote, Output, PaymentOutcome, WalletFailure,
};
use nostr_dvm::nip90::{JobInput, JobRequest};
use nostr_dvm::nostr::{EventId, Keys, Kind, PublicKey};
use nostr_dvm::provider::{Notification as ProviderNote, ProviderConfig};
use nostr_dvm::runtime::{
    CustomerRuntime, MemoryStore, NwcBackend, NwcWallet, ProviderRuntime, Wallet,
};
use nostr_dvm::task::FixedPrice;
use support::lnbits::{Lnbits, LnbitsTestWallet};
use support::nwc::NwcService;
use support::{
    customer_output, provider_note, relay, requested_invoice, result_content, CountedProvider,
    Running, KIND,
};
use tokio::sync::mpsc;

/// The price of a job in these tests: 21 sats.
const PRICE_MSAT: u64 = 21_000;

/// A runtime of `provider`, priced, on `relay`, invoicing into the NWC wallet at `uri`
/// (polled every second).
fn nwc_runtime(
    provider: &CountedProvider,
    relay: &str,
    uri: &str,
) -> (ProviderRuntime, mpsc::UnboundedReceiver<ProviderNote>) {
    let config = ProviderConfig::new([Kind::from(KIND)])
        .relays([relay.to_owned()])
        .pricing(FixedPrice(PRICE_MSAT));
    let backend = NwcBackend::new(uri)
        .expect("a connection URI")
        .poll_interval(Duration::from_secs(1));
    provider.runtime(config, backend)
}

/// The test LNbits, a provider's empty wallet and a customer's wallet of `sats`.
async fn wallets(sats: u64) -> (&'static Lnbits, LnbitsTestWallet, LnbitsTestWallet) {
    let lnbits = Lnbits::shared();
    let earner = lnbits.wallet("provider").await;
    let payer = lnbits.wallet("customer").await;
    if sats > 0 {
        lnbits.fund(&payer, sats).await;
    }
    (lnbits, earner, payer)
}

/// A relay, two NWC wallet services over LNbits wallets (the provider's, empty, and the
/// customer's, funded with `fund_sats` and allowed to spend `budget_msat`, 0: no budget) and
/// a priced provider running on the relay, invoicing into its wallet.
struct World {
    lnbits: &'static Lnbits,
    earner: LnbitsTestWallet,
    payer: LnbitsTestWallet,
    _relay: nostr_relay_builder::LocalRelay,
    url: String,
    earning: NwcService,
    paying: NwcService,
    provider: CountedProvider,
    running: Running,
}

impl World {
    /// A customer paying from the paying wallet, without auto-pay: it pays when the test
    /// says so.
    async fn paying_customer(&self) -> CustomerRuntime {
        let mut config = CustomerConfig::new([self.url.clone()]);
        config.auto_pay_limit_msat = None;
        let mut customer = CustomerRuntime::connect(Keys::generate(), config)
            .await
            .expect("the customer connects");
        customer.set_wallet(Arc::new(NwcWallet::new(&self.paying.uri).expect("a URI")));
        customer
    }

    async fn start(
        fund_sats: u64,
        budget_msat: u64,
    ) -> (Self, mpsc::UnboundedReceiver<ProviderNote>) {
        let (lnbits, earner, payer) = wallets(fund_sats).await;
        let (relay, url) = relay().await;
        let earning = NwcService::start(&url, &earner, 0).await;
        let paying = NwcService::start(&url, &payer, budget_msat).await;
        let provider = CountedProvider::new();
        let (runtime, notes) = nwc_runtime(&provider, &url, &earning.uri);
        let world = Self {
            lnbits,
            earner,
            payer,
            _relay: relay,
            url,
            earning,
            paying,
            provider,
            running: Running::start(runtime),
        };
        (world, notes)
    }
}

/// A customer on `relay` paying from the NWC wallet at `uri`, up to the price and the fee
/// allowance without asking.
async fn paying_customer(relay: &str, uri: &str) -> CustomerRuntime {
    let mut config = CustomerConfig::new([relay.to_owned()]);
    config.auto_pay_limit_msat = Some(PRICE_MSAT + config.max_fee_msat);
    let mut customer = CustomerRuntime::connect(Keys::generate(), config)
        .await
        .expect("the customer connects");
    customer.set_wallet(Arc::new(NwcWallet::new(uri).expect("a connection URI")));
    customer
}

async fn submit(customer: &mut CustomerRuntime, provider: &Keys) -> EventId {
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("pay me"));
    customer
        .submit(request, Delivery::To(provider.public_key()))
        .await
        .expect("the request goes out")
}

/// The next payment request with a valid invoice the customer gets: its job and provider.
async fn next_payment_request(customer: &mut CustomerRuntime) -> (EventId, PublicKey) {
    customer_output(customer, |o| match o {
        Output::Notify(CustomerNote::PaymentRequested {
            job,
            provider,
            bolt11: Some(_),
            ..
        }) => Some((job, provider)),
        _ => None,
    })
    .await
}

/// Waits until the customer paid the price (its wallet, never a payment handed out to the
/// host) and got `job`'s result.
async fn paid_the_price_and_got_the_result(customer: &mut CustomerRuntime, job: EventId) {
    let paid = customer_output(customer, |o| match o {
        Output::PayInvoice { .. } => panic!("a payment handed out: {o:?}"),
        Output::Notify(CustomerNote::Paid { amount_msat, .. }) => Some(amount_msat),
        Output::Notify(CustomerNote::PaymentFailed { reason, .. }) => panic!("{reason}"),
        _ => None,
    })
    .await;
    assert_eq!(paid, PRICE_MSAT);
    assert_eq!(result_content(customer, job).await, "PAY ME");
}

#[tokio::test]
async fn a_priced_job_is_paid_from_an_nwc_wallet_into_an_nwc_wallet() {
    let (w, mut notes) = World::start(1_000, 0).await;
    let mut customer = paying_customer(&w.url, &w.paying.uri).await;

    let job = submit(&mut customer, &w.provider.keys).await;
    paid_the_price_and_got_the_result(&mut customer, job).await;
    let received = provider_note(&mut notes, |n| match n {
        ProviderNote::PaymentReceived { amount_msat, .. } => Some(*amount_msat),
        _ => None,
    })
    .await;
    assert_eq!(received, PRICE_MSAT);
    assert_eq!(w.lnbits.balance_msat(&w.earner).await, PRICE_MSAT);
    assert_eq!(
        w.lnbits.balance_msat(&w.payer).await,
        1_000_000 - PRICE_MSAT
    );
    assert_eq!(w.provider.runs.load(Ordering::SeqCst), 1);

    w.running.stop().await;
    customer.disconnect().await;
}

/// Submits a job to `provider` from a customer paying through `uri`, expects the payment to
/// fail with `failure`, and checks that nothing ran and nothing moved.
async fn refused(failure: WalletFailure, budget_msat: u64, fund_sats: u64) {
    let (w, _notes) = World::start(fund_sats, budget_msat).await;
    let mut customer = paying_customer(&w.url, &w.paying.uri).await;

    let job = submit(&mut customer, &w.provider.keys).await;
    let said = customer_output(&mut customer, |o| match o {
        Output::Notify(CustomerNote::PaymentFailed {
            job: j, failure, ..
        }) if j == job => Some(failure),
        Output::Notify(CustomerNote::Paid { .. }) => panic!("the wallet paid"),
        _ => None,
    })
    .await;
    assert_eq!(said, failure);
    // The provider is still waiting: nothing ran, nothing moved.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(w.provider.runs.load(Ordering::SeqCst), 0);
    assert_eq!(w.lnbits.balance_msat(&w.earner).await, 0);
    assert_eq!(w.lnbits.balance_msat(&w.payer).await, fund_sats * 1_000);

    w.running.stop().await;
    customer.disconnect().await;
}

#[tokio::test]
async fn a_wallet_over_its_budget_refuses_with_a_typed_error_and_nothing_runs() {
    refused(WalletFailure::BudgetExceeded, PRICE_MSAT - 1_000, 1_000).await;
}

#[tokio::test]
async fn a_wallet_without_the_funds_refuses_with_a_typed_error_and_nothing_runs() {
    refused(WalletFailure::InsufficientBalance, 0, 10).await;
}

#[tokio::test]
async fn a_job_paid_while_its_provider_is_down_is_found_by_lookup_on_restart() {
    let (w, _notes) = World::start(1_000, 0).await;
    let (lnbits, earner, provider) = (w.lnbits, &w.earner, &w.provider);
    let mut customer = w.paying_customer().await;
    let job = submit(&mut customer, &provider.keys).await;
    let (_, provider_pk) = next_payment_request(&mut customer).await;
    w.running.stop().await;

    customer.pay(job, provider_pk).await.expect("a payment");
    customer_output(&mut customer, |o| match o {
        Output::Notify(CustomerNote::Paid { .. }) => Some(()),
        Output::Notify(CustomerNote::PaymentFailed { reason, .. }) => panic!("{reason}"),
        _ => None,
    })
    .await;
    assert_eq!(provider.runs.load(Ordering::SeqCst), 0);

    // Back up: the restored provider looks its pending invoice up and runs the job once.
    let (runtime, mut notes) = nwc_runtime(provider, &w.url, &w.earning.uri);
    let running = Running::start(runtime);
    assert_eq!(result_content(&mut customer, job).await, "PAY ME");
    provider_note(&mut notes, |n| {
        matches!(n, ProviderNote::JobCompleted { job: j } if *j == job).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(provider.runs.load(Ordering::SeqCst), 1);
    assert_eq!(lnbits.balance_msat(earner).await, PRICE_MSAT);

    running.stop().await;
    customer.disconnect().await;
}

/// Several invoices paid while the provider was down, one left unpaid: on restart its poll
/// looks the pending invoices up (several at a time), runs each paid job once, and leaves the
/// unpaid one waiting.
#[tokio::test]
async fn invoices_paid_while_the_provider_is_down_are_all_found_on_restart() {
    const JOBS: usize = 4;
    let (w, _notes) = World::start(1_000, 0).await;
    let (lnbits, earner, provider) = (w.lnbits, &w.earner, &w.provider);
    let mut customer = w.paying_customer().await;
    let mut jobs = Vec::new();
    for n in 0..JOBS {
        let request =
            JobRequest::builder(Kind::from(KIND)).input(JobInput::text(format!("job {n}")));
        let job = customer
            .submit(request, Delivery::To(provider.keys.public_key()))
            .await
            .expect("the request goes out");
        jobs.push(job);
    }
    let mut asked = std::collections::HashSet::new();
    while asked.len() < JOBS {
        asked.insert(next_payment_request(&mut customer).await.0);
    }
    w.running.stop().await;

    let paid = &jobs[..JOBS - 1];
    for job in paid {
        customer
            .pay(*job, provider.keys.public_key())
            .await
            .expect("a payment");
        customer_output(&mut customer, |o| match o {
            Output::Notify(CustomerNote::Paid { job: j, .. }) if j == *job => Some(()),
            Output::Notify(CustomerNote::PaymentFailed { reason, .. }) => panic!("{reason}"),
            _ => None,
        })
        .await;
    }
    assert_eq!(provider.runs.load(Ordering::SeqCst), 0);

    let (runtime, _notes) = nwc_runtime(provider, &w.url, &w.earning.uri);
    let running = Running::start(runtime);
    // The results come in the order the look-ups answered.
    let mut results = std::collections::HashMap::new();
    while results.len() < paid.len() {
        let (job, content) = customer_output(&mut customer, |o| match o {
            Output::Notify(CustomerNote::Result { job, content, .. }) => Some((job, content)),
            _ => None,
        })
        .await;
        results.insert(job, content);
    }
    for (n, job) in paid.iter().enumerate() {
        assert_eq!(results.get(job), Some(&format!("JOB {n}")));
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(provider.runs.load(Ordering::SeqCst), JOBS - 1);
    assert_eq!(
        lnbits.balance_msat(earner).await,
        PRICE_MSAT * (JOBS as u64 - 1)
    );

    running.stop().await;
    customer.disconnect().await;
}

#[tokio::test]
async fn a_payment_is_looked_up_not_paid_again() {
    let (lnbits, earner, payer) = wallets(1_000).await;
    let (_relay, url) = relay().await;
    let paying = NwcService::start(&url, &payer, 0).await;
    let wallet = NwcWallet::new(&paying.uri).expect("a URI");
    let (bolt11, hash) = lnbits.create_invoice(&earner, 5, "twice?").await;
    let hash: [u8; 32] = hex::decode(hash).unwrap().try_into().unwrap();

    // Never paid: the wallet has no such payment.
    assert!(matches!(
        wallet.lookup_payment(hash).await,
        PaymentOutcome::Failed {
            failure: WalletFailure::NotFound,
            ..
        }
    ));
    let first = wallet.pay_invoice(&bolt11, 0).await;
    assert!(
        matches!(
            first,
            PaymentOutcome::Paid {
                preimage: Some(_),
                ..
            }
        ),
        "{first:?}"
    );
    // What a customer restarted after the payment asks: paid, with the preimage.
    assert_eq!(wallet.lookup_payment(hash).await, first);
    assert_eq!(lnbits.balance_msat(&payer).await, 1_000_000 - 5_000);
    assert_eq!(lnbits.balance_msat(&earner).await, 5_000);
}

/// A wallet whose payments go through, but whose answer is lost (a timeout, a crash before
/// the outcome was recorded): it says pending.
struct AnswerLost(NwcWallet);

#[async_trait::async_trait]
impl Wallet for AnswerLost {
    async fn pay_invoice(&self, bolt11: &str, max_fee_msat: u64) -> PaymentOutcome {
        let outcome = self.0.pay_invoice(bolt11, max_fee_msat).await;
        assert!(
            matches!(outcome, PaymentOutcome::Paid { .. }),
            "{outcome:?}"
        );
        PaymentOutcome::Pending
    }

    async fn lookup_payment(&self, _: [u8; 32]) -> PaymentOutcome {
        PaymentOutcome::Pending
    }
}

#[tokio::test]
async fn the_same_invoice_is_never_paid_twice_across_a_customer_restart() {
    use nostr_dvm::customer::CustomerSnapshot;
    use nostr_dvm::runtime::{ConnectOptions, SnapshotStore};

    let (w, _notes) = World::start(1_000, 0).await;
    let (lnbits, earner, payer, provider, paying) =
        (w.lnbits, &w.earner, &w.payer, &w.provider, &w.paying);

    let keys = Keys::generate();
    let mut config = CustomerConfig::new([w.url.clone()]);
    config.auto_pay_limit_msat = Some(PRICE_MSAT + config.max_fee_msat);
    let store = Arc::new(MemoryStore::<CustomerSnapshot>::default());
    let mut customer = CustomerRuntime::connect(keys.clone(), config.clone())
        .await
        .unwrap();
    customer.store(store.clone());
    customer.set_wallet(Arc::new(AnswerLost(NwcWallet::new(&paying.uri).unwrap())));
    let job = submit(&mut customer, &provider.keys).await;
    // The wallet paid; the customer never heard so: it dies with the payment in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while lnbits.balance_msat(payer).await == 1_000_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the wallet never paid"
        );
        tokio::select! {
            _ = customer.next() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    customer.disconnect().await;

    // Restored with a plain NWC wallet: the payment is looked up, found paid, not paid again.
    let snapshot = store.load().unwrap().expect("saved before paying");
    let mut customer =
        CustomerRuntime::restore_with(keys, config, snapshot, ConnectOptions::default())
            .await
            .unwrap();
    customer.store(store.clone());
    customer.set_wallet(Arc::new(NwcWallet::new(&paying.uri).unwrap()));
    paid_the_price_and_got_the_result(&mut customer, job).await;
    assert_eq!(lnbits.balance_msat(payer).await, 1_000_000 - PRICE_MSAT);
    assert_eq!(lnbits.balance_msat(earner).await, PRICE_MSAT);
    assert_eq!(provider.runs.load(Ordering::SeqCst), 1);

    w.running.stop().await;
    customer.disconnect().await;
}

#[tokio::test]
async fn an_invoice_for_less_than_the_price_is_refused_not_issued() {
    use nostr_dvm::runtime::{InvoiceRequest, LightningBackend};

    let (_lnbits, earner, _payer) = wallets(0).await;
    let (_relay, url) = relay().await;
    let request = |amount_msat| InvoiceRequest {
        job: EventId::all_zeros(),
        amount_msat,
        description: "a job".into(),
        expiry_secs: 600,
    };
    // A wallet rounding 21.5 sats down to 21 would undercut the price: refused.
    let careless = NwcService::start_rounding_down(&url, &earner).await;
    let backend = NwcBackend::new(&careless.uri).unwrap();
    let refused = backend.create_invoice(request(21_500)).await.unwrap_err();
    assert!(refused.contains("less than the price"), "{refused}");
    assert_eq!(backend.pending_invoices(), 0);
    // Rounded up (22 sats), the invoice asks at least the price: issued and watched.
    let careful = NwcService::start(&url, &earner, 0).await;
    let backend = NwcBackend::new(&careful.uri).unwrap();
    let methods = backend.methods().await.unwrap();
    for needed in ["make_invoice", "lookup_invoice"] {
        assert!(methods.iter().any(|m| m == needed), "{methods:?}");
    }
    let bolt11 = backend.create_invoice(request(21_500)).await.unwrap();
    let invoice = nostr_dvm::bolt11::Invoice::parse(&bolt11).unwrap();
    assert_eq!(invoice.amount_msat(), Some(22_000));
    assert_eq!(backend.pending_invoices(), 1);
}

#[tokio::test]
async fn a_payment_made_while_the_wallet_relay_was_down_is_found_when_it_is_back() {
    use support::faults::Proxy;

    let (lnbits, earner, payer) = wallets(1_000).await;
    let (_relay, url) = relay().await;
    let (_wallet_relay, wallet_url) = relay().await;
    let earning = NwcService::start(&wallet_url, &earner, 0).await;
    // The provider reaches its wallet through a proxy the test cuts; it polls once an hour,
    // so only the reconnection can make it look the invoice up in time.
    let proxy = Proxy::start(&wallet_url).await;
    let provider = CountedProvider::new();
    let config = ProviderConfig::new([Kind::from(KIND)])
        .relays([url.clone()])
        .pricing(FixedPrice(PRICE_MSAT));
    let backend = NwcBackend::new(&earning.uri_on(proxy.url()))
        .unwrap()
        .poll_interval(Duration::from_secs(3_600));
    let (runtime, mut notes) = provider.runtime(config, backend);
    let running = Running::start(runtime);
    let mut config = CustomerConfig::new([url.clone()]);
    config.auto_pay_limit_msat = None;
    let mut customer = CustomerRuntime::connect(Keys::generate(), config)
        .await
        .unwrap();
    let job = submit(&mut customer, &provider.keys).await;
    let bolt11 = requested_invoice(&mut customer).await;

    proxy.cut();
    lnbits.pay(&payer, &bolt11).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(provider.runs.load(Ordering::SeqCst), 0);
    proxy.restore();
    // nostr-sdk reconnects (after its retry interval), the backend sees it and polls.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while provider.runs.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the payment was not found after the reconnection"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    provider_note(&mut notes, |n| {
        matches!(n, ProviderNote::JobCompleted { job: j } if *j == job).then_some(())
    })
    .await;
    assert_eq!(provider.runs.load(Ordering::SeqCst), 1);
    assert_eq!(lnbits.balance_msat(&earner).await, PRICE_MSAT);

    running.stop().await;
    customer.disconnect().await;
}
