//! A whole paid DVM job over a real relay, in one process, with no network access needed.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! - a nostr relay (`nostr-relay-builder`'s `LocalRelay`) on 127.0.0.1;
//! - a provider ([`ProviderRuntime`](nostr_dvm::runtime::ProviderRuntime)) selling extractive
//!   summarisation (kind 5001) for 21 sats, pay-first, with real BOLT11 invoices from a test
//!   Lightning node;
//! - a zapper (an LNURL server with a Nostr key) the provider trusts, signing real NIP-57
//!   receipts;
//! - a customer ([`CustomerRuntime`]) that submits a job, pays the `payment-required` by zap,
//!   and prints the summary.
//!
//! The provider starts work only once the zap receipt passes every NIP-57 check. Each step is
//! printed with the time since start; the process exits non-zero if any step fails or takes
//! longer than 10 s. The relay, the task and the printing are in `examples/support`, shared
//! with the other examples.

mod support;

use nostr_dvm::customer::{
    CustomerConfig, Delivery, Notification as CustomerNote, Output, PaymentOutcome, PaymentRef,
};
use nostr_dvm::nip90::{JobInput, JobRequest};
use nostr_dvm::nostr::{Keys, Kind, Timestamp};
use nostr_dvm::provider::PaymentPolicy;
use nostr_dvm::runtime::{CustomerRuntime, SqliteStore, TestLightningBackend};
use nostr_dvm::testing::{keys_from_seed, TestLightningNode, TestZapper};
use rand::rngs::OsRng;
use support::{short, Clock, Running, SUMMARISE, TEXT};

/// The price of a summary: 21 sats.
const PRICE_MSAT: u64 = 21_000;

#[tokio::main]
async fn main() {
    support::finish("quickstart", quickstart().await);
}

/// Runs the relay, the provider, the zapper and the customer through one paid job.
async fn quickstart() -> support::Result<()> {
    let clock = Clock::start();
    let (relay, url) = support::start_relay(clock).await?;

    // The provider: summarisation for 21 sats, pay-first, paid by zaps from a trusted zapper.
    let zapper = TestZapper::new(keys_from_seed(9), TestLightningNode::new(10));
    let provider_keys = Keys::generate();
    let provider_pk = provider_keys.public_key();
    let config = support::summarise_config(std::slice::from_ref(&url), PRICE_MSAT)
        .payment(PaymentPolicy::PayFirst)
        .zappers([zapper.pubkey()]);
    let database = std::env::temp_dir().join(format!(
        "nostr-dvm-quickstart-{}.sqlite",
        std::process::id()
    ));
    let runtime = support::summarise_runtime(provider_keys, config, clock)
        .lightning(TestLightningBackend::new(TestLightningNode::new(7)))
        .record_store(SqliteStore::open(&database)?);
    let provider = Running::spawn(runtime);
    clock.say(
        "provider",
        format!(
            "{} serves kind {SUMMARISE} at {} sats",
            short(provider_pk),
            PRICE_MSAT / 1000
        ),
    );

    // The customer.
    let config = CustomerConfig::new([url.clone()]);
    let mut customer = CustomerRuntime::connect(Keys::generate(), config).await?;
    let request = JobRequest::builder(Kind::from(SUMMARISE))
        .input(JobInput::text(TEXT))
        .param("length", "2");
    let job = customer.submit(request, Delivery::To(provider_pk)).await?;
    clock.say(
        "customer",
        format!(
            "job request {} published ({} bytes of text)",
            short(job),
            TEXT.len()
        ),
    );

    let pay = async |customer: &mut CustomerRuntime, output: Output| -> support::Result<()> {
        match output {
            Output::Notify(CustomerNote::PaymentRequested {
                provider,
                amount_msat,
                bolt11,
                ..
            }) => {
                clock.say(
                    "customer",
                    format!(
                        "payment-required: {} sats, invoice {}...",
                        amount_msat / 1000,
                        bolt11.as_deref().map(short).unwrap_or_default()
                    ),
                );
                customer.zap(job, provider).await?;
            }
            Output::SendZap {
                zap_request,
                amount_msat,
                ..
            } => {
                // What the provider's LNURL server does: an invoice committing to the zap
                // request, paid by the customer's wallet, then a signed receipt on the relays.
                let now = Timestamp::now();
                let invoice = zapper.invoice_for(&zap_request, amount_msat, now, &mut OsRng);
                clock.say(
                    "customer",
                    format!(
                        "zap request {} -> zapper invoice {}..., paid",
                        short(zap_request.id),
                        short(&invoice.bolt11)
                    ),
                );
                // The wallet tells the customer the zap is paid (it records every payment).
                customer
                    .payment_outcome(
                        PaymentRef::Zap(zap_request.id),
                        PaymentOutcome::Paid {
                            preimage: Some(invoice.preimage),
                            fee_msat: 0,
                        },
                    )
                    .await?;
                let receipt = zapper.receipt(&zap_request, &invoice, now, &mut OsRng);
                customer.publish(&receipt).await?;
                clock.say("zapper", format!("receipt {} published", short(receipt.id)));
            }
            other => clock.customer_output(&other),
        }
        Ok(())
    };
    let summary = support::follow_job(&mut customer, clock, support::STEP_TIMEOUT, pay).await?;

    println!(
        "\nsummary (2 of {} sentences):\n  {summary}\n",
        support::split_sentences(TEXT).len()
    );
    provider.stop().await?;
    customer.disconnect().await;
    relay.shutdown();
    support::remove_sqlite(&database);
    println!("done in {:.1} ms", clock.ms());
    Ok(())
}
