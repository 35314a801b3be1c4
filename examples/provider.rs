//! A summarisation provider (NIP-90 kind 5001) with [`ProviderRuntime`]: on your relays, or
//! offline in a demo.
//!
//! ```text
//! cargo run --example provider                      # offline demo: one job, then exit
//! cargo run --example provider -- --relay wss://relay.example --key-file provider.nsec
//! cargo run --example provider -- --help
//! ```
//!
//! The provider announces itself (NIP-89, kind 31990: name, about, its `length` param, its
//! price, and that it reads encrypted and gift-wrapped requests, which it does: NIP-44 and
//! NIP-04 requests are answered encrypted, NIP-59 gift wraps with gift wraps), then serves
//! extractive summaries of the text inputs of kind 5001 requests, printing each step. It
//! keeps its state in a snapshot file (`--state`), so jobs in flight survive a restart, and
//! runs until Ctrl-C, or until `--jobs N` jobs are completed.
//!
//! **Settings.** `--kind K` (repeatable) sets the request kinds it serves and announces
//! (default 5001), `--announce-id ID` the announcement's `d` identifier, `--rate-per-minute N`
//! and `--max-request-bytes N` its admission limits (the crate's defaults: 30 and 65,536), and
//! `--nip44-extended` lets replies use NIP-44's extended length prefix. It prints them all on
//! start, and every notification (refusals included) in plain words.
//!
//! **Payment.** It is free by default. `--price SATS` sets a fixed pay-first price, which
//! needs a Lightning node that issues invoices and reports them paid. On real relays give it
//! an LNbits wallet (`--lnbits-url`, `--lnbits-invoice-key`, or `$NOSTR_DVM_LNBITS_URL` and
//! `$NOSTR_DVM_LNBITS_INVOICE_KEY`): [`LnbitsBackend`] invoices from it and learns of
//! payments from LNbits, and the provider earns real sats. Without one, `--price` is refused
//! unless `--test-invoices` says you only want to see the payment-required flow with
//! [`TestLightningBackend`], whose invoices are signed by a made-up node that no wallet can
//! pay (customers' jobs then expire after the payment window).
//! In the offline demo, `--price` works end to end: the demo customer pays through the test
//! node, in process.
//!
//! **Offline demo** (no `--relay`): starts a relay on 127.0.0.1 in this process, runs the
//! provider on it, and a plain nostr-sdk [`Client`] (not this crate's customer: NIP-90 is
//! just events and tags) finds the provider's 31990 announcement, submits one job and prints
//! the result; then everything stops (`--jobs 1` is implied) and the process exits 0. Any
//! step that fails or takes more than 10 s makes it exit non-zero.
//!
//! Keys: `--key-file PATH` (created, with new keys, when it does not exist), else
//! `$NOSTR_DVM_SECRET_KEY` (nsec or hex), else fresh keys for this run.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use nostr_dvm::nostr::{Event, EventBuilder, Filter, Keys, Kind, PublicKey, Tag, ToBech32};
use nostr_dvm::provider::{Notification, ProviderConfig, RateLimit};
use nostr_dvm::runtime::nostr_sdk::{Client, RelayPoolNotification};
use nostr_dvm::runtime::{FileStore, LnbitsBackend, ProviderRuntime, TestLightningBackend};
use nostr_dvm::testing::TestLightningNode;
use support::{short, Clock, Flags, Spec, Summarise, SUMMARISE, TEXT};
use tokio::sync::Notify;

/// The command line.
const SPEC: Spec = Spec {
    usage: "\
Serves extractive summaries (NIP-90 kind 5001) with nostr-dvm's ProviderRuntime.

usage: cargo run --example provider -- [options]

  --relay URL        a relay to serve on (repeatable); none: offline demo on a local relay
  --key-file PATH    the provider's secret key (nsec or hex); created when missing
                     (default: $NOSTR_DVM_SECRET_KEY, else fresh keys for this run)
  --state PATH       the snapshot file (default: in the temp dir, named after the npub)
  --price SATS       a fixed pay-first price (default: free); on real relays it needs
                     --lnbits-url and --lnbits-invoice-key (or --test-invoices)
  --lnbits-url URL   the LNbits server that invoices for this provider (https; http only
                     to 127.0.0.1) (default: $NOSTR_DVM_LNBITS_URL)
  --lnbits-invoice-key KEY
                     that LNbits wallet's invoice key: it makes invoices and reads their
                     status, it cannot spend (default: $NOSTR_DVM_LNBITS_INVOICE_KEY)
  --test-invoices    with --relay and --price, no LNbits: send invoices from a made-up test
                     node that no wallet can pay, to see the payment-required flow
  --jobs N           stop after N completed jobs (default: run until Ctrl-C; demo: 1)

what it serves and announces (NIP-89):
  --kind K           a request kind to serve, 5000-5999 (repeatable; default: 5001)
  --announce-id ID   the announcement's `d` identifier (default: nostr-dvm); another id
                     makes another announcement next to this key's existing ones
  --nip44-extended   may answer with NIP-44's extended length prefix (replies over
                     65,535 bytes); most clients cannot read it (default: off, such a
                     reply fails the job with `error` feedback naming the limit)

admission limits (requests beyond them are refused; `error` feedback only when the
request names this provider and the refusal is not a flood defence):
  --rate-per-minute N      requests per customer per minute (default: 30; 0: no limit)
  --max-request-bytes N    the largest request: content plus tags (default: 65536)

  -h, --help         this help
",
    values: &[
        "relay",
        "key-file",
        "state",
        "price",
        "jobs",
        "kind",
        "announce-id",
        "rate-per-minute",
        "max-request-bytes",
        "lnbits-url",
        "lnbits-invoice-key",
    ],
    switches: &["test-invoices", "nip44-extended"],
    positional: false,
};

/// Why `--price` is refused on real relays without LNbits or `--test-invoices`.
const NO_LIGHTNING: &str = "--price on real relays needs a Lightning backend that issues \
payable invoices: give an LNbits wallet with --lnbits-url and --lnbits-invoice-key (or \
$NOSTR_DVM_LNBITS_URL and $NOSTR_DVM_LNBITS_INVOICE_KEY), or implement \
nostr_dvm::runtime::LightningBackend for your node. --test-invoices uses a made-up test node \
instead, whose invoices no wallet can pay, to see the payment-required flow.";

#[tokio::main]
async fn main() {
    support::finish("provider", provider().await);
}

/// Parses the command line, then serves on the given relays or runs the offline demo.
async fn provider() -> support::Result<()> {
    let flags = Flags::from_env(&SPEC);
    let clock = Clock::start();
    let mut relays: Vec<String> = flags.all("relay").into_iter().map(str::to_owned).collect();
    let offline = relays.is_empty();
    let price_msat = flags
        .number::<u64>("price")?
        .unwrap_or(0)
        .checked_mul(1000)
        .ok_or("--price: too large")?;
    let lnbits = lnbits_backend(&flags)?;
    if price_msat > 0 && !offline && lnbits.is_none() && !flags.switch("test-invoices") {
        return Err(NO_LIGHTNING.into());
    }
    let jobs = match flags.number::<usize>("jobs")? {
        Some(n) => Some(n),
        None if offline => Some(1),
        None => None,
    };

    let kinds = serve_kinds(&flags)?;
    if offline && kinds != [Kind::from(SUMMARISE)] {
        return Err(format!(
            "the offline demo's client asks for kind {SUMMARISE}: add --relay to serve other kinds"
        )
        .into());
    }

    let identity = support::load_keys(&flags, "provider", clock)?;
    let keys = identity.keys;
    let npub = keys.public_key().to_bech32()?;
    let demo = match offline {
        true => {
            let (relay, url) = support::start_relay(clock).await?;
            relays.push(url);
            Some(relay)
        }
        false => None,
    };
    let state = match flags.value("state") {
        Some(path) => PathBuf::from(path),
        None => std::env::temp_dir().join(format!("nostr-dvm-provider-{npub}.json")),
    };

    // Counts completed jobs; `done` fires at the `--jobs`-th.
    let done = Arc::new(Notify::new());
    let completed = Arc::new(AtomicUsize::new(0));
    let hook = {
        let (done, completed) = (done.clone(), completed.clone());
        move |note: &Notification| {
            clock.provider_note(note);
            if matches!(note, Notification::JobCompleted { .. }) {
                let n = completed.fetch_add(1, Ordering::SeqCst) + 1;
                if jobs.is_some_and(|jobs| n >= jobs) {
                    done.notify_one();
                }
            }
        }
    };
    let wallet = Arc::new(TestLightningBackend::new(TestLightningNode::new(7)));
    let mut config = support::summarise_config(&relays, price_msat);
    config.kinds = kinds.clone();
    if let Some(id) = flags.value("announce-id") {
        config.announcement_id = id.to_owned();
    }
    if let Some(n) = flags.number::<u32>("rate-per-minute")? {
        config.admission.rate_limit = (n > 0).then_some(RateLimit {
            max_requests: n,
            window_secs: 60,
        });
    }
    if let Some(bytes) = flags.number::<usize>("max-request-bytes")? {
        config.admission.max_request_bytes = bytes;
    }
    config.nip44_extended_prefix = flags.switch("nip44-extended");
    print_settings(clock, &config);
    let mut runtime = ProviderRuntime::new(keys.clone(), config)
        .task(Arc::new(Summarise { kinds }))
        .store(FileStore::new(&state))
        .on_notification(hook);
    match lnbits {
        Some((backend, url)) => {
            clock.say("provider", format!("invoices from LNbits at {url}"));
            runtime = runtime.lightning(backend);
        }
        None if price_msat > 0 => runtime = runtime.lightning_shared(wallet.clone()),
        None => {}
    }
    let price = match price_msat {
        0 => "for free".to_owned(),
        msat => format!("at {} sats, pay-first", msat / 1000),
    };
    clock.say(
        "provider",
        format!("serves {price} on {}", relays.join(", ")),
    );
    clock.say("provider", format!("snapshot: {}", state.display()));
    let until = match jobs {
        Some(n) => format!("{n} completed job(s) or Ctrl-C"),
        None => "Ctrl-C".to_owned(),
    };
    clock.say("provider", format!("running until {until}"));

    let shutdown = async move {
        tokio::select! {
            () = ctrl_c() => clock.say("provider", "Ctrl-C: stopping"),
            () = done.notified() => clock.say("provider", "enough jobs done: stopping"),
        }
    };
    match demo {
        None => runtime.run(shutdown).await?,
        Some(relay) => {
            let provider = tokio::spawn(runtime.run(shutdown));
            demo_customer(clock, &relays[0], keys.public_key(), &wallet).await?;
            support::within("provider shutdown", provider).await???;
            relay.shutdown();
        }
    }
    let n = completed.load(Ordering::SeqCst);
    clock.say("provider", format!("stopped after {n} completed job(s)"));
    if identity.ephemeral && flags.value("state").is_none() {
        // Nobody will run this provider's keys again: its snapshot is of no more use.
        let _ = std::fs::remove_file(&state);
    }
    Ok(())
}

/// The LNbits backend of `--lnbits-url` and `--lnbits-invoice-key` (or their environment
/// variables), with its URL; `None` when neither is given.
fn lnbits_backend(flags: &Flags) -> support::Result<Option<(LnbitsBackend, String)>> {
    let credentials =
        support::lnbits_credentials(flags, "lnbits-invoice-key", "NOSTR_DVM_LNBITS_INVOICE_KEY")?;
    match credentials {
        None => Ok(None),
        Some((url, key)) => Ok(Some((LnbitsBackend::new(&url, &key)?, url))),
    }
}

/// The request kinds of `--kind` (default: 5001), each a NIP-90 job request kind.
fn serve_kinds(flags: &Flags) -> support::Result<Vec<Kind>> {
    let mut kinds = Vec::new();
    for value in flags.all("kind") {
        let kind: u16 = value
            .parse()
            .map_err(|_| format!("--kind {value}: not a number"))?;
        if !(5000..=5999).contains(&kind) {
            return Err(format!("--kind {kind}: job request kinds are 5000-5999 (NIP-90)").into());
        }
        if !kinds.contains(&Kind::from(kind)) {
            kinds.push(Kind::from(kind));
        }
    }
    if kinds.is_empty() {
        kinds.push(Kind::from(SUMMARISE));
    }
    Ok(kinds)
}

/// Prints what the provider serves, announces and admits, as configured.
fn print_settings(clock: Clock, config: &ProviderConfig) {
    let kinds: Vec<String> = config
        .kinds
        .iter()
        .map(|k| k.as_u16().to_string())
        .collect();
    clock.say(
        "provider",
        format!(
            "kinds {} (results {}), announced as d={:?}",
            kinds.join(", "),
            config
                .kinds
                .iter()
                .map(|k| (k.as_u16() + 1000).to_string())
                .collect::<Vec<_>>()
                .join(", "),
            config.announcement_id
        ),
    );
    let admission = &config.admission;
    let rate = match admission.rate_limit {
        Some(r) => format!(
            "{} requests per customer per {} s",
            r.max_requests, r.window_secs
        ),
        None => "no per-customer rate limit".to_owned(),
    };
    clock.say(
        "provider",
        format!(
            "admits {rate}, requests up to {} bytes, {} live jobs at most; NIP-44 extended prefix {}",
            admission.max_request_bytes,
            admission.max_live_jobs,
            if config.nip44_extended_prefix { "on" } else { "off" }
        ),
    );
}

/// Completes when the process gets Ctrl-C (never, where that cannot be listened for).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The demo's customer: a plain nostr-sdk client that reads NIP-89 and NIP-90 as bare events
/// and tags. It finds the provider's announcement, submits one job, pays a payment request
/// through the test node (only a priced demo asks), and prints the result.
async fn demo_customer(
    clock: Clock,
    url: &str,
    provider: PublicKey,
    wallet: &TestLightningBackend,
) -> support::Result<()> {
    let client = Client::new(Keys::generate());
    client.add_relay(url).await?;
    client.connect().await;
    client.wait_for_connection(support::STEP_TIMEOUT).await;
    let info = support::find_announcement(&client, Kind::from(SUMMARISE), provider).await?;
    clock.say(
        "client",
        format!("found announcement {}", support::describe_handler(&info)),
    );

    let request = EventBuilder::new(Kind::from(SUMMARISE), "").tags([
        Tag::parse(["i", TEXT, "text"])?,
        Tag::parse(["param", "length", "2"])?,
        Tag::public_key(provider),
    ]);
    let request = client.sign_event_builder(request).await?;
    let answers = Filter::new()
        .kinds([Kind::from(SUMMARISE + 1000), Kind::from(7000)])
        .event(request.id);
    let mut notifications = client.notifications();
    client.subscribe(answers, None).await?;
    client.send_event(&request).await?;
    clock.say(
        "client",
        format!("job request {} published", short(request.id)),
    );

    let summary = loop {
        let note = support::within("the provider's answer", notifications.recv()).await??;
        let RelayPoolNotification::Event { event, .. } = note else {
            continue;
        };
        if event.kind == Kind::from(SUMMARISE + 1000) {
            clock.say("client", format!("result {} received", short(event.id)));
            break event.content.clone();
        }
        let status = tag(&event, "status").unwrap_or_default();
        let content = match event.content.as_str() {
            "" => String::new(),
            content => format!(": {content}"),
        };
        clock.say("client", format!("feedback {status}{content}"));
        match status.as_str() {
            "error" => return Err(format!("the provider failed the job{content}").into()),
            "payment-required" => {
                let bolt11 = event
                    .tags
                    .iter()
                    .map(Tag::as_slice)
                    .find(|t| t.first().map(String::as_str) == Some("amount"))
                    .and_then(|t| t.get(2))
                    .ok_or("payment-required without an invoice")?;
                wallet.pay(bolt11)?;
                clock.say("client", "invoice paid through the test node");
            }
            _ => {}
        }
    };
    println!("\nsummary:\n  {summary}\n");
    client.disconnect().await;
    Ok(())
}

/// The first value of `event`'s first tag named `name`.
fn tag(event: &Event, name: &str) -> Option<String> {
    event
        .tags
        .iter()
        .map(Tag::as_slice)
        .find(|t| t.first().map(String::as_str) == Some(name))
        .and_then(|t| t.get(1).cloned())
}
