//! A private job: the summarisation request gift-wrapped (NIP-59) to the provider, its
//! answers gift-wrapped back, and a look at what the relay stored.
//!
//! ```text
//! cargo run --example private_job
//! ```
//!
//! In one process, with no network access: a relay on 127.0.0.1, a free summarisation
//! provider announcing `acceptsGiftWraps` (NIP-89), and a customer that checks that
//! announcement, then submits the job with [`Delivery::GiftWrap`]. The relay gets a kind
//! 1059 event from a one-time key, tagged to the provider: it sees neither the customer nor
//! the job kind. The provider unwraps it, runs the job, and gift-wraps its feedback and its
//! result to the customer.
//!
//! Then a plain nostr-sdk client asks the relay for everything it stored and prints the
//! kinds: only gift wraps (1059) and the provider's public announcement (31990). The example
//! exits non-zero if the relay holds any other event, a job request, feedback or result in
//! the clear above all, or a gift wrap signed by the customer's or provider's own key; or if
//! any step fails or takes more than 10 s. What the relay still learns: who each wrap is
//! for (its `p` tag), and roughly when (wraps are back-dated at random by up to two days).

mod support;

use std::collections::{BTreeMap, BTreeSet};

use nostr_dvm::customer::{CustomerConfig, Delivery, Output};
use nostr_dvm::nip59::GIFT_WRAP_KIND;
use nostr_dvm::nip89::HANDLER_INFO_KIND;
use nostr_dvm::nip90::{JobInput, JobRequest};
use nostr_dvm::nostr::{Event, Filter, Keys, Kind, PublicKey, Tag};
use nostr_dvm::runtime::nostr_sdk::Client;
use nostr_dvm::runtime::CustomerRuntime;
use support::{short, Clock, Flags, Running, Spec, STEP_TIMEOUT, SUMMARISE, TEXT};

/// The command line: nothing but `--help`.
const SPEC: Spec = Spec {
    usage: "\
Runs a gift-wrapped (NIP-59) summarisation job over a local relay, then shows what the relay
stored: gift wraps only.

usage: cargo run --example private_job
",
    values: &[],
    switches: &[],
    positional: false,
};

#[tokio::main]
async fn main() {
    support::finish("private_job", private_job().await);
}

/// Runs the job, then checks the relay's store.
async fn private_job() -> support::Result<()> {
    Flags::from_env(&SPEC);
    let clock = Clock::start();
    let (relay, url) = support::start_relay(clock).await?;
    let relays = [url.clone()];

    let provider_keys = Keys::generate();
    let provider_pk = provider_keys.public_key();
    let config = support::summarise_config(&relays, 0);
    let provider = Running::spawn(support::summarise_runtime(provider_keys, config, clock));
    clock.say(
        "provider",
        format!("{} serves kind {SUMMARISE} for free", short(provider_pk)),
    );

    let customer_keys = Keys::generate();
    let customer_pk = customer_keys.public_key();
    let config = CustomerConfig::new(relays.iter().cloned());
    let mut customer = CustomerRuntime::connect(customer_keys, config).await?;
    let kind = Kind::from(SUMMARISE);
    let info = support::find_announcement(customer.client(), kind, provider_pk).await?;
    clock.say(
        "customer",
        format!("found {}", support::describe_handler(&info)),
    );
    if info.metadata.and_then(|m| m.accepts_gift_wraps) != Some(true) {
        return Err("the provider does not announce acceptsGiftWraps".into());
    }

    let request = JobRequest::builder(kind)
        .input(JobInput::text(TEXT))
        .param("length", "2");
    let job = customer
        .submit(request, Delivery::GiftWrap(provider_pk))
        .await?;
    clock.say(
        "customer",
        format!(
            "job {} sent as a gift wrap (kind {GIFT_WRAP_KIND}) to {}",
            short(job),
            short(provider_pk)
        ),
    );
    let unpaid = async |_: &mut CustomerRuntime, output: Output| -> support::Result<()> {
        Err(format!("a free provider asked for payment: {output:?}").into())
    };
    let summary = support::follow_job(&mut customer, clock, STEP_TIMEOUT, unpaid).await?;
    println!("\nsummary:\n  {summary}\n");
    provider.stop().await?;
    customer.disconnect().await;

    let stored = relay_store(&url).await?;
    relay.shutdown();
    check_store(&stored, &[customer_pk, provider_pk])?;
    println!("\ndone in {:.1} ms", clock.ms());
    Ok(())
}

/// Everything the relay at `url` stored, as a plain client with no keys of the job sees it.
async fn relay_store(url: &str) -> support::Result<Vec<Event>> {
    let observer = Client::default();
    observer.add_relay(url).await?;
    observer.connect().await;
    observer.wait_for_connection(STEP_TIMEOUT).await;
    let events = support::within(
        "the relay's store",
        observer.fetch_events(Filter::new(), STEP_TIMEOUT),
    )
    .await??;
    observer.disconnect().await;
    Ok(events.into_iter().collect())
}

/// Prints the stored events by kind, and fails unless they are only gift wraps from one-time
/// keys and the provider's announcement.
fn check_store(events: &[Event], long_term: &[PublicKey]) -> support::Result<()> {
    let mut by_kind: BTreeMap<u16, Vec<&Event>> = BTreeMap::new();
    for event in events {
        by_kind.entry(event.kind.as_u16()).or_default().push(event);
    }
    println!("what the relay stored: {} events", events.len());
    for (kind, events) in &by_kind {
        let what = match *kind {
            GIFT_WRAP_KIND => {
                let authors: BTreeSet<_> = events.iter().map(|e| e.pubkey).collect();
                let to = |pk: &PublicKey| {
                    events
                        .iter()
                        .filter(|e| e.tags.public_keys().any(|p| p == pk))
                        .count()
                };
                format!(
                    "gift wraps, from {} one-time keys: {} to the provider, {} to the customer",
                    authors.len(),
                    to(&long_term[1]),
                    to(&long_term[0])
                )
            }
            HANDLER_INFO_KIND => "the provider's announcement (public on purpose)".to_owned(),
            _ => "not expected here".to_owned(),
        };
        println!("  kind {kind:>5} x{:<2} {what}", events.len());
    }

    let clear: Vec<u16> = by_kind
        .keys()
        .copied()
        .filter(|k| ![GIFT_WRAP_KIND, HANDLER_INFO_KIND].contains(k))
        .collect();
    if !clear.is_empty() {
        return Err(format!("the relay holds events it should not see: kinds {clear:?}").into());
    }
    let wraps = by_kind
        .get(&GIFT_WRAP_KIND)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if wraps.is_empty() {
        return Err("the relay holds no gift wrap".into());
    }
    if let Some(wrap) = wraps.iter().find(|w| long_term.contains(&w.pubkey)) {
        return Err(format!("gift wrap {} is signed by a long-term key", wrap.id).into());
    }
    let kind_tags = wraps
        .iter()
        .flat_map(|w| w.tags.iter().map(Tag::as_slice))
        .filter(|t| t.first().map(String::as_str) == Some("k"))
        .count();
    if kind_tags > 0 {
        return Err("a gift wrap names the job kind in a k tag".into());
    }
    println!(
        "ok: no job request ({SUMMARISE}), feedback (7000) or result ({}) in the clear",
        SUMMARISE + 1000
    );
    Ok(())
}
