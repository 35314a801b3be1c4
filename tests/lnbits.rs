//! Real money through a real LNbits (FakeWallet funding source, started by the test support
//! on 127.0.0.1) and a real relay: a provider that invoices from its LNbits wallet
//! ([`LnbitsBackend`]) and a customer that pays from another ([`LnbitsWallet`]). Payments
//! between two wallets of one LNbits are internal: no routing fee, so balances move by exactly
//! the price.
#![cfg(all(feature = "lnbits", feature = "test-util"))]

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nostr_dvm::bolt11::Invoice;
use nostr_dvm::customer::{
    CustomerConfig, Delivery, InvoiceError, Notification as CustomerNote, Output, PaymentOutcome,
    PaymentRef,
};
use nostr_dvm::nip90::{FeedbackStatus, JobFeedback, JobInput, JobRequest};
use nostr_dvm::nostr::{EventId, Filter, Keys, Kind, Timestamp};
use nostr_dvm::provider::{Notification as ProviderNote, PaymentProof, PaymentVia, ProviderConfig};
use nostr_dvm::runtime::{
    CustomerRuntime, LnbitsBackend, LnbitsWallet, LnurlClient, LnurlError, LnurlPay,
    ProviderRuntime, RuntimeError, Wallet,
};
use nostr_dvm::task::FixedPrice;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use support::lnbits::{Lnbits, LnbitsTestWallet};
use support::zapper::LnbitsZapper;
use support::{
    customer_output, provider_note, relay, requested_invoice, result_content, CountedProvider,
    CountingShout, Running, KIND, WAIT,
};
use tokio::sync::mpsc;

/// The price of a job in these tests: 21 sats.
const PRICE_MSAT: u64 = 21_000;
/// What LNbits reserves for routing fees at least (2 sats): the customer must allow it.
const MAX_FEE_MSAT: u64 = 2_000;

/// A priced provider invoicing from `wallet`, reporting its notifications on a channel.
struct PaidProvider {
    counted: CountedProvider,
    /// The LNURL-pay service whose zaps it takes, if any.
    zaps: Option<LnurlPay>,
}

impl std::ops::Deref for PaidProvider {
    type Target = CountedProvider;

    fn deref(&self) -> &CountedProvider {
        &self.counted
    }
}

impl PaidProvider {
    fn new() -> Self {
        Self {
            counted: CountedProvider::new(),
            zaps: None,
        }
    }

    /// A runtime of this provider (keys, store, task counter shared by every restart).
    fn runtime(
        &self,
        relay: &str,
        lnbits: &Lnbits,
        wallet: &LnbitsTestWallet,
    ) -> (ProviderRuntime, mpsc::UnboundedReceiver<ProviderNote>) {
        let mut config = ProviderConfig::new([Kind::from(KIND)])
            .relays([relay.to_owned()])
            .pricing(FixedPrice(PRICE_MSAT));
        if let Some(pay) = &self.zaps {
            config = config.zaps_via(pay).expect("the zapper takes zaps");
        }
        let backend = LnbitsBackend::new(lnbits.url(), &wallet.invoice_key)
            .expect("loopback http is accepted")
            .poll_interval(Duration::from_secs(1));
        self.counted.runtime(config, backend)
    }
}

/// The test LNbits, a provider's empty wallet and a customer's wallet of 1,000 sats.
async fn wallets() -> (&'static Lnbits, LnbitsTestWallet, LnbitsTestWallet) {
    let lnbits = Lnbits::shared();
    let earner = lnbits.wallet("provider").await;
    let payer = lnbits.wallet("customer").await;
    lnbits.fund(&payer, 1_000).await;
    (lnbits, earner, payer)
}

/// A customer on `relay` paying from `wallet` up to `auto_pay_msat` without asking.
async fn paying_customer(
    relay: &str,
    lnbits: &Lnbits,
    wallet: &LnbitsTestWallet,
    auto_pay_msat: Option<u64>,
) -> CustomerRuntime {
    let mut config = CustomerConfig::new([relay.to_owned()]);
    config.auto_pay_limit_msat = auto_pay_msat;
    config.max_fee_msat = MAX_FEE_MSAT;
    let mut customer = CustomerRuntime::connect(Keys::generate(), config)
        .await
        .expect("the customer connects");
    let paying = LnbitsWallet::new(lnbits.url(), &wallet.admin_key).expect("loopback http");
    customer.set_wallet(Arc::new(paying));
    customer
}

/// Submits "pay me" addressed to `provider`.
async fn submit(customer: &mut CustomerRuntime, provider: &Keys) -> EventId {
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("pay me"));
    customer
        .submit(request, Delivery::To(provider.public_key()))
        .await
        .expect("the request goes out")
}

/// The payment hash (hex) of a BOLT11 invoice.
fn payment_hash(bolt11: &str) -> String {
    hex::encode(
        Invoice::parse(bolt11)
            .expect("a BOLT11 invoice")
            .payment_hash(),
    )
}

/// The results on the relay that answer `job`.
async fn results_for(customer: &CustomerRuntime, job: EventId) -> usize {
    let filter = Filter::new().kind(Kind::from(KIND + 1000)).event(job);
    customer
        .client()
        .fetch_events(filter, WAIT)
        .await
        .expect("the relay answers")
        .len()
}

/// The price moved from `payer` to `earner` exactly, the job ran once and has one result.
async fn paid_and_run_once(
    lnbits: &Lnbits,
    (earner, payer): (&LnbitsTestWallet, &LnbitsTestWallet),
    provider: &PaidProvider,
    customer: CustomerRuntime,
    job: EventId,
) {
    assert_eq!(lnbits.balance_msat(earner).await, PRICE_MSAT);
    assert_eq!(lnbits.balance_msat(payer).await, 1_000_000 - PRICE_MSAT);
    assert_eq!(provider.runs.load(Ordering::SeqCst), 1);
    assert_eq!(results_for(&customer, job).await, 1);
    customer.disconnect().await;
}

/// Publishes `keys`'s profile naming the lightning address `lud16`.
async fn publish_profile(url: &str, keys: &Keys, lud16: &str) {
    let profile = nostr_dvm::testing::sign(
        keys,
        Kind::Metadata,
        Vec::new(),
        &serde_json::json!({ "lud16": lud16 }).to_string(),
        Timestamp::now(),
        &mut OsRng,
    );
    // Through another connection: nostr-sdk does not hand a client the events it published.
    let mut other = CustomerRuntime::connect(Keys::generate(), CustomerConfig::new([url]))
        .await
        .expect("connects");
    other.publish(&profile).await.expect("published");
    other.disconnect().await;
}

#[tokio::test]
async fn a_priced_job_is_paid_from_one_lnbits_wallet_to_another_and_delivered() {
    let (lnbits, earner, payer) = wallets().await;
    let (_relay, url) = relay().await;
    let provider = PaidProvider::new();
    let (runtime, mut notes) = provider.runtime(&url, lnbits, &earner);
    let running = Running::start(runtime);
    let mut customer = paying_customer(&url, lnbits, &payer, Some(PRICE_MSAT + MAX_FEE_MSAT)).await;

    let job = submit(&mut customer, &provider.keys).await;
    let (paid, fee) = customer_output(&mut customer, |o| match o {
        Output::Notify(CustomerNote::Paid {
            amount_msat,
            fee_msat,
            ..
        }) => Some((amount_msat, fee_msat)),
        _ => None,
    })
    .await;
    assert_eq!(
        (paid, fee),
        (PRICE_MSAT, 0),
        "an internal payment has no fee"
    );
    let content = result_content(&mut customer, job).await;
    assert_eq!(content, "PAY ME");
    let received = provider_note(&mut notes, |n| match n {
        ProviderNote::PaymentReceived { amount_msat, .. } => Some(*amount_msat),
        _ => None,
    })
    .await;
    assert_eq!(received, PRICE_MSAT);

    paid_and_run_once(lnbits, (&earner, &payer), &provider, customer, job).await;
    running.stop().await;
}

#[tokio::test]
async fn a_job_paid_while_its_provider_is_down_runs_once_after_the_restart() {
    let (lnbits, earner, payer) = wallets().await;
    let (_relay, url) = relay().await;
    let provider = PaidProvider::new();
    let (runtime, _notes) = provider.runtime(&url, lnbits, &earner);
    let running = Running::start(runtime);
    // No auto-pay: the customer pays when the test says so.
    let mut customer = paying_customer(&url, lnbits, &payer, None).await;
    let job = submit(&mut customer, &provider.keys).await;
    let (provider_pk, bolt11) = customer_output(&mut customer, |o| match o {
        Output::Notify(CustomerNote::PaymentRequested {
            provider,
            bolt11: Some(bolt11),
            ..
        }) => Some((provider, bolt11)),
        _ => None,
    })
    .await;
    running.stop().await;

    // The customer pays while the provider is down.
    customer.pay(job, provider_pk).await.expect("a payment");
    customer_output(&mut customer, |o| match o {
        Output::Notify(CustomerNote::Paid { .. }) => Some(()),
        Output::Notify(CustomerNote::PaymentFailed { reason, .. }) => panic!("{reason}"),
        _ => None,
    })
    .await;
    assert!(lnbits.is_paid(&earner, &payment_hash(&bolt11)).await);
    assert_eq!(provider.runs.load(Ordering::SeqCst), 0);

    // Back up: the restored provider asks LNbits about its pending invoice and runs the job.
    let (runtime, mut notes) = provider.runtime(&url, lnbits, &earner);
    let running = Running::start(runtime);
    let content = result_content(&mut customer, job).await;
    assert_eq!(content, "PAY ME");
    provider_note(&mut notes, |n| {
        matches!(n, ProviderNote::JobCompleted { job: j } if *j == job).then_some(())
    })
    .await;
    // Another poll and a reconnect later, still one run and one result.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(provider.runs.load(Ordering::SeqCst), 1);
    assert_eq!(results_for(&customer, job).await, 1);
    assert_eq!(lnbits.balance_msat(&earner).await, PRICE_MSAT);
    assert_eq!(lnbits.balance_msat(&payer).await, 1_000_000 - PRICE_MSAT);
    customer.disconnect().await;
    running.stop().await;
}

#[tokio::test]
async fn the_preimage_of_another_paid_invoice_starts_nothing() {
    let (lnbits, earner, payer) = wallets().await;
    let (_relay, url) = relay().await;
    let provider = PaidProvider::new();
    let (runtime, mut notes) = provider.runtime(&url, lnbits, &earner);
    let settlements = runtime.settlements();
    let running = Running::start(runtime);
    let mut customer = paying_customer(&url, lnbits, &payer, None).await;
    let job = submit(&mut customer, &provider.keys).await;
    let bolt11 = requested_invoice(&mut customer).await;

    // A real, paid invoice of the same wallet and amount, but not this job's.
    let (other, other_hash) = lnbits.create_invoice(&earner, 21, "another").await;
    lnbits.pay(&payer, &other).await;
    let preimage = lnbits.payment(&earner, &other_hash).await["preimage"]
        .as_str()
        .map(|p| hex::decode(p).expect("hex"))
        .expect("a paid invoice has a preimage");
    let preimage: [u8; 32] = preimage.try_into().expect("32 bytes");
    assert_eq!(hex::encode(Sha256::digest(preimage)), other_hash);
    settlements
        .try_settle(job, PaymentProof::Preimage(preimage))
        .expect("the runtime takes it");
    let refused = provider_note(&mut notes, |n| match n {
        ProviderNote::PaymentRefused { job: j, .. } => Some(*j),
        ProviderNote::JobStarted { .. } | ProviderNote::PaymentReceived { .. } => {
            panic!("a foreign preimage was taken: {n:?}")
        }
        _ => None,
    })
    .await;
    assert_eq!(refused, Some(job));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(provider.runs.load(Ordering::SeqCst), 0);
    assert!(!lnbits.is_paid(&earner, &payment_hash(&bolt11)).await);
    assert_eq!(results_for(&customer, job).await, 0);
    customer.disconnect().await;
    running.stop().await;
}

/// Publishes, as a provider the test plays by hand, `payment-required` for `job` with
/// `amount_msat` in its amount tag and `bolt11` as its invoice.
async fn ask_payment(
    url: &str,
    customer: &CustomerRuntime,
    job: EventId,
    amount_msat: u64,
    bolt11: &str,
) {
    let events = customer
        .client()
        .fetch_events(Filter::new().id(job), WAIT)
        .await
        .expect("the relay answers");
    let request = events
        .into_iter()
        .next()
        .expect("the request is on the relay");
    let request = JobRequest::from_event(&request, None).expect("our own request");
    let feedback = JobFeedback::builder(&request, FeedbackStatus::PaymentRequired)
        .amount(amount_msat, bolt11.to_owned())
        .sign(&Keys::generate(), Timestamp::now(), &mut OsRng)
        .expect("a feedback event");
    // Through another connection: nostr-sdk does not hand a client the events it published.
    let mut other = CustomerRuntime::connect(Keys::generate(), CustomerConfig::new([url]))
        .await
        .expect("connects");
    other.publish(&feedback).await.expect("published");
    other.disconnect().await;
}

/// A customer paying from a funded LNbits wallet up to `auto_pay_msat`, whose job a
/// provider played by hand asks 21 sats for, with an LNbits invoice of `invoice_sats`.
struct Asked {
    lnbits: &'static Lnbits,
    earner: LnbitsTestWallet,
    payer: LnbitsTestWallet,
    customer: CustomerRuntime,
    bolt11: String,
    hash: String,
    _relay: nostr_relay_builder::LocalRelay,
}

impl Asked {
    async fn new(auto_pay_msat: u64, invoice_sats: u64) -> Self {
        let (lnbits, earner, payer) = wallets().await;
        let (relay, url) = relay().await;
        let customer = paying_customer(&url, lnbits, &payer, Some(auto_pay_msat)).await;
        let mut asked = Self {
            lnbits,
            earner,
            payer,
            customer,
            bolt11: String::new(),
            hash: String::new(),
            _relay: relay,
        };
        let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("q"));
        let job = asked
            .customer
            .submit(request, Delivery::Public)
            .await
            .unwrap();
        (asked.bolt11, asked.hash) = lnbits
            .create_invoice(&asked.earner, invoice_sats, "asked")
            .await;
        ask_payment(&url, &asked.customer, job, PRICE_MSAT, &asked.bolt11).await;
        asked
    }

    /// Runs the customer a second more, then checks that nothing was paid.
    async fn nothing_paid(mut self) {
        settle_down(&mut self.customer).await;
        assert!(!self.lnbits.is_paid(&self.earner, &self.hash).await);
        assert_eq!(self.lnbits.balance_msat(&self.payer).await, 1_000_000);
        self.customer.disconnect().await;
    }
}

#[tokio::test]
async fn an_invoice_for_another_amount_is_refused_and_never_paid() {
    // It asks 21 sats with an invoice of 22; the customer would pay up to 100.
    let mut asked = Asked::new(100_000, 22).await;
    let reason = customer_output(&mut asked.customer, |o| match o {
        Output::Notify(CustomerNote::InvoiceRefused { reason, .. }) => Some(reason),
        Output::Notify(CustomerNote::Paid { .. }) => panic!("paid"),
        _ => None,
    })
    .await;
    assert!(
        matches!(reason, InvoiceError::AmountMismatch { .. }),
        "{reason:?}"
    );
    asked.nothing_paid().await;
}

#[tokio::test]
async fn an_invoice_above_the_auto_pay_limit_is_asked_about_and_never_paid() {
    // 10 sats without asking, fees included; the provider asks 21.
    let mut asked = Asked::new(10_000, 21).await;
    let offered = customer_output(&mut asked.customer, |o| match o {
        Output::Notify(CustomerNote::PaymentRequested { bolt11, .. }) => Some(bolt11),
        Output::Notify(CustomerNote::Paid { .. }) => panic!("paid above the limit"),
        _ => None,
    })
    .await;
    assert_eq!(
        offered.as_deref(),
        Some(asked.bolt11.as_str()),
        "a valid invoice, left to the user"
    );
    asked.nothing_paid().await;
}

/// Lets the customer run a second more, failing if it pays anything.
async fn settle_down(customer: &mut CustomerRuntime) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(output) = customer.next().await {
            if let Output::Notify(CustomerNote::Paid { .. }) = output {
                panic!("paid");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_lightning_address_on_lnbits_is_paid_through_lnurl_pay() {
    let (lnbits, earner, payer) = wallets().await;
    let name = earner
        .lightning_name
        .clone()
        .expect("LNbits gives every wallet a lightning address");
    let lnurl = LnurlClient::new().unwrap().allow_insecure_http();
    let pay = lnurl
        .resolve_address(&lnbits.address(&name))
        .await
        .expect("LNbits serves LUD-16");
    assert!(pay.min_sendable_msat <= PRICE_MSAT && PRICE_MSAT <= pay.max_sendable_msat);
    let bolt11 = lnurl.invoice(&pay, PRICE_MSAT).await.expect("an invoice");
    let invoice = Invoice::parse(&bolt11).unwrap();
    assert_eq!(invoice.amount_msat(), Some(PRICE_MSAT));

    let wallet = LnbitsWallet::new(lnbits.url(), &payer.admin_key).unwrap();
    let outcome = wallet.pay_invoice(&bolt11, MAX_FEE_MSAT).await;
    let PaymentOutcome::Paid {
        preimage: Some(preimage),
        ..
    } = outcome
    else {
        panic!("not paid: {outcome:?}");
    };
    assert_eq!(
        <[u8; 32]>::from(Sha256::digest(preimage)),
        invoice.payment_hash()
    );
    // Paid once: the same invoice again is refused by LNbits, and nothing more moves.
    let again = wallet.pay_invoice(&bolt11, MAX_FEE_MSAT).await;
    assert!(matches!(again, PaymentOutcome::Failed { .. }), "{again:?}");
    assert_eq!(lnbits.balance_msat(&earner).await, PRICE_MSAT);
    assert_eq!(lnbits.balance_msat(&payer).await, 1_000_000 - PRICE_MSAT);

    // Core LNbits has no NIP-57: a provider cannot take zaps through it, and says why.
    let zaps = ProviderConfig::new([Kind::from(KIND)]).zaps_via(&pay);
    assert!(matches!(zaps, Err(LnurlError::NoNostr)), "{zaps:?}");
}

#[tokio::test]
async fn a_customer_zaps_the_providers_lightning_address_and_the_receipt_starts_the_job() {
    let (lnbits, earner, payer) = wallets().await;
    let (_relay, url) = relay().await;
    // Core LNbits has no NIP-57: this zapper, run by the test, stands in for a wallet's zap
    // service; its invoices are LNbits invoices to the provider's wallet.
    let zapper = LnbitsZapper::start(lnbits, earner.clone()).await;
    let lnurl = LnurlClient::new().unwrap().allow_insecure_http();
    let pay = lnurl.resolve_address(&zapper.address).await.unwrap();
    assert_eq!(pay.nostr_pubkey, Some(zapper.keys.public_key()));
    let mut provider = PaidProvider::new();
    provider.zaps = Some(pay);
    let (runtime, mut notes) = provider.runtime(&url, lnbits, &earner);
    let running = Running::start(runtime);

    // The provider's profile names its lightning address (NIP-57 Appendix A).
    publish_profile(&url, &provider.keys, &zapper.address).await;

    let mut customer = paying_customer(&url, lnbits, &payer, None).await;
    customer.set_lnurl(lnurl);
    let job = submit(&mut customer, &provider.keys).await;
    let provider_pk = customer_output(&mut customer, |o| match o {
        Output::Notify(CustomerNote::PaymentRequested { provider, .. }) => Some(provider),
        _ => None,
    })
    .await;
    let reference = customer.zap(job, provider_pk).await.expect("zappable");
    assert!(matches!(reference, PaymentRef::Zap(_)));
    let paid = customer_output(&mut customer, |o| match o {
        Output::Notify(CustomerNote::Paid {
            payment,
            amount_msat,
            ..
        }) if payment == reference => Some(amount_msat),
        Output::Notify(CustomerNote::PaymentFailed { reason, .. }) => panic!("{reason}"),
        Output::SendZap { .. } => panic!("the runtime zaps itself"),
        _ => None,
    })
    .await;
    assert_eq!(paid, PRICE_MSAT);
    assert_eq!(result_content(&mut customer, job).await, "PAY ME");
    let via = provider_note(&mut notes, |n| match n {
        ProviderNote::PaymentReceived { via, .. } => Some(*via),
        _ => None,
    })
    .await;
    assert!(matches!(via, PaymentVia::Zap { .. }), "{via:?}");
    paid_and_run_once(lnbits, (&earner, &payer), &provider, customer, job).await;
    running.stop().await;
}

#[tokio::test]
async fn a_provider_without_a_zappable_address_is_not_zapped() {
    let (lnbits, earner, payer) = wallets().await;
    let (_relay, url) = relay().await;
    let provider = PaidProvider::new();
    let (runtime, _notes) = provider.runtime(&url, lnbits, &earner);
    let running = Running::start(runtime);
    // Its profile names LNbits's own lightning address, which takes no zaps.
    let name = earner.lightning_name.clone().expect("a lightning address");
    publish_profile(&url, &provider.keys, &lnbits.address(&name)).await;
    let mut customer = paying_customer(&url, lnbits, &payer, None).await;
    customer.set_lnurl(LnurlClient::new().unwrap().allow_insecure_http());
    let job = submit(&mut customer, &provider.keys).await;
    let provider_pk = customer_output(&mut customer, |o| match o {
        Output::Notify(CustomerNote::PaymentRequested { provider, .. }) => Some(provider),
        _ => None,
    })
    .await;
    let refused = customer.zap(job, provider_pk).await;
    assert!(
        matches!(refused, Err(RuntimeError::ZapService { .. })),
        "{refused:?}"
    );
    settle_down(&mut customer).await;
    assert_eq!(lnbits.balance_msat(&payer).await, 1_000_000);
    assert_eq!(provider.runs.load(Ordering::SeqCst), 0);
    customer.disconnect().await;
    running.stop().await;
}

#[tokio::test]
async fn a_provider_run_from_its_lightning_address_alone_is_paid_by_zaps() {
    let (lnbits, earner, payer) = wallets().await;
    let (_relay, url) = relay().await;
    // Core LNbits has no NIP-57: this zapper, run by the test, stands in for a wallet's zap
    // service; its invoices are LNbits invoices to the provider's wallet.
    let zapper = LnbitsZapper::start(lnbits, earner.clone()).await;
    let lnurl = LnurlClient::new().unwrap().allow_insecure_http();
    let provider = PaidProvider::new();
    // No Lightning backend: the address is all the runtime is told.
    let config = ProviderConfig::new([Kind::from(KIND)])
        .relays([url.clone()])
        .pricing(FixedPrice(PRICE_MSAT));
    let runtime = ProviderRuntime::new(provider.keys.clone(), config)
        .task(Arc::new(CountingShout(provider.runs.clone())))
        .lightning_address(zapper.address.clone(), lnurl.clone());
    let running = Running::start(runtime);
    publish_profile(&url, &provider.keys, &zapper.address).await;

    let mut customer = paying_customer(&url, lnbits, &payer, None).await;
    customer.set_lnurl(lnurl);
    let job = submit(&mut customer, &provider.keys).await;
    let (provider_pk, invoice) = customer_output(&mut customer, |o| match o {
        Output::Notify(CustomerNote::PaymentRequested {
            provider, bolt11, ..
        }) => Some((provider, bolt11)),
        _ => None,
    })
    .await;
    assert_eq!(invoice, None, "paid by zaps alone: no invoice");
    customer.zap(job, provider_pk).await.expect("zappable");
    assert_eq!(result_content(&mut customer, job).await, "PAY ME");
    paid_and_run_once(lnbits, (&earner, &payer), &provider, customer, job).await;
    running.stop().await;
}

#[tokio::test]
async fn a_lightning_address_that_takes_no_zaps_stops_the_provider_at_start() {
    let (lnbits, earner, _) = wallets().await;
    let (_relay, url) = relay().await;
    let name = earner.lightning_name.clone().expect("a lightning address");
    let address = lnbits.address(&name);
    let config = ProviderConfig::new([Kind::from(KIND)])
        .relays([url])
        .pricing(FixedPrice(PRICE_MSAT));
    let lnurl = LnurlClient::new().unwrap().allow_insecure_http();
    let runtime = ProviderRuntime::new(Keys::generate(), config).lightning_address(&address, lnurl);
    let ran = tokio::time::timeout(WAIT, runtime.run(std::future::pending()))
        .await
        .expect("refused at once");
    match ran {
        Err(RuntimeError::LightningAddress { address: a, reason }) => {
            assert_eq!(a, address);
            assert!(reason.contains("allowsNostr"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Without the plain-http opt-in the address is read over https, which this server does
    // not speak: refused too.
    let config = ProviderConfig::new([Kind::from(KIND)]);
    let runtime = ProviderRuntime::new(Keys::generate(), config)
        .lightning_address(&address, LnurlClient::new().unwrap());
    let ran = tokio::time::timeout(WAIT, runtime.run(std::future::pending()))
        .await
        .expect("refused at once");
    assert!(
        matches!(ran, Err(RuntimeError::LightningAddress { .. })),
        "{ran:?}"
    );
}
