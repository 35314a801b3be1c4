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
//! keeps its state in a SQLite database ([`SqliteStore`], `--state`), so jobs in flight
//! survive a restart (even a killed process), and
//! runs until Ctrl-C, or until `--jobs N` jobs are completed. With `--postgres URL` and
//! `--node NAME` it keeps its state in PostgreSQL instead ([`PostgresStore`]), and several
//! processes with the same keys serve as one fleet: each job is answered once, by one of them.
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
//! pay (customers' jobs then expire after the payment window). Any Nostr Wallet Connect
//! wallet works too (`--nwc nostr+walletconnect://...`, or `$NOSTR_DVM_NWC`; it needs
//! `make_invoice` and `lookup_invoice`): [`NwcBackend`] invoices from it and finds payments by
//! the wallet's notifications and by looking the pending invoices up.
//!
//! **Zaps.** `--lightning-address NAME@DOMAIN` makes the provider take NIP-57 zaps to that
//! address, configured in one step: it reads the address's LNURL-pay service
//! ([`LnurlClient::resolve_address`]), refuses it unless it takes zaps, trusts only its
//! `nostrPubkey` as zapper and its LNURL in zap requests ([`ProviderConfig::zaps_via`]),
//! names the address in the announcement and publishes the provider's profile (kind 0) with
//! it, where customers look (NIP-57). With LNbits too, a customer may pay the invoice or zap;
//! without, payment requests carry only the amount ([`ProviderConfig::zaps_only`]) and the
//! customer zaps (the `customer` example's `--zap`). `--insecure-lnurl` allows a plain http
//! service, for tests on 127.0.0.1.
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
use nostr_dvm::runtime::{
    LnbitsBackend, LnurlClient, LnurlError, LnurlPay, NwcBackend, PostgresStore, ProviderRuntime,
    RecordStore, SqliteStore, TestLightningBackend,
};
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
  --state PATH       its SQLite database (default: in the temp dir, named after the npub);
                     one provider process per file
  --postgres URL     keep its state in PostgreSQL instead, shared by a fleet: run several
                     processes with the same keys, relays and URL, each with its own
                     --node; each job is answered by one of them, and the jobs of a process
                     that dies are taken over after its lease (30 s)
                     (default: $NOSTR_DVM_POSTGRES_URL)
  --node NAME        this process's name in the fleet (default: provider); a process
                     started again with its name gets its jobs back
  --max-tasks N      run at most N tasks at once, the others wait (default: no limit); in a
                     fleet, a process claims a new job only while it has room for it
  --price SATS       a fixed pay-first price (default: free); on real relays it needs
                     LNbits (--lnbits-url, --lnbits-invoice-key), an NWC wallet (--nwc),
                     a lightning address that takes zaps (--lightning-address), or
                     --test-invoices
  --nwc URI          a Nostr Wallet Connect wallet that invoices for this provider
                     (nostr+walletconnect://...; it needs make_invoice and lookup_invoice;
                     the URI holds a secret: prefer the variable) (default: $NOSTR_DVM_NWC)
  --lnbits-url URL   the LNbits server that invoices for this provider (https; http only
                     to 127.0.0.1) (default: $NOSTR_DVM_LNBITS_URL)
  --lnbits-invoice-key KEY
                     that LNbits wallet's invoice key: it makes invoices and reads their
                     status, it cannot spend (default: $NOSTR_DVM_LNBITS_INVOICE_KEY)
  --lightning-address NAME@DOMAIN
                     be paid by NIP-57 zaps to this address: its LNURL-pay service must
                     take zaps (allowsNostr, nostrPubkey), whose receipts are then the only
                     ones trusted; the provider publishes its profile (kind 0) naming the
                     address, which replaces any profile of these keys. Without LNbits,
                     payment requests carry no invoice and customers zap
                     (default: $NOSTR_DVM_LIGHTNING_ADDRESS)
  --insecure-lnurl   reach the address's service over plain http: for a test service on
                     127.0.0.1 only, never for money on a network you do not control
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
        "postgres",
        "node",
        "max-tasks",
        "price",
        "jobs",
        "kind",
        "announce-id",
        "rate-per-minute",
        "max-request-bytes",
        "lnbits-url",
        "lnbits-invoice-key",
        "lightning-address",
        "nwc",
    ],
    switches: &["test-invoices", "nip44-extended", "insecure-lnurl"],
    positional: false,
};

/// Why `--price` is refused on real relays without LNbits or `--test-invoices`.
const NO_LIGHTNING: &str = "--price on real relays needs a Lightning backend that issues \
payable invoices: give an LNbits wallet with --lnbits-url and --lnbits-invoice-key (or \
$NOSTR_DVM_LNBITS_URL and $NOSTR_DVM_LNBITS_INVOICE_KEY), a Nostr Wallet Connect wallet with \
--nwc (or $NOSTR_DVM_NWC), or a lightning address that takes \
zaps with --lightning-address, or implement \
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
    let nwc = match support::nwc_uri(&flags) {
        Some(uri) => Some(NwcBackend::new(&uri).map_err(|e| format!("--nwc: {e}"))?),
        None => None,
    };
    if lnbits.is_some() && nwc.is_some() {
        return Err("one wallet invoices: --lnbits-url or --nwc, not both".into());
    }
    let address = flags
        .value("lightning-address")
        .map(str::to_owned)
        .or_else(|| std::env::var("NOSTR_DVM_LIGHTNING_ADDRESS").ok());
    if offline && address.is_some() {
        return Err(
            "--lightning-address needs --relay: the offline demo pays through a test \
                    node"
                .into(),
        );
    }
    let paid_somehow =
        lnbits.is_some() || nwc.is_some() || address.is_some() || flags.switch("test-invoices");
    if price_msat > 0 && !offline && !paid_somehow {
        return Err(NO_LIGHTNING.into());
    }
    let zaps = match &address {
        Some(address) => Some(zap_service(&flags, address).await?),
        None => None,
    };
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
        None => std::env::temp_dir().join(format!("nostr-dvm-provider-{npub}.sqlite")),
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
    if let (Some(address), Some(pay)) = (&address, &zaps) {
        config = config.zaps_via(pay)?;
        // Without a wallet that invoices the only way to pay is a zap: ask for one, with no
        // invoice.
        config.zaps_only = lnbits.is_none() && nwc.is_none();
        if let Some(meta) = config.announcement.as_mut() {
            meta.lud16 = Some(address.clone());
        }
        publish_profile(clock, &keys, &relays, address).await?;
    }
    print_settings(clock, &config);
    let postgres = flags
        .value("postgres")
        .map(str::to_owned)
        .or_else(|| std::env::var("NOSTR_DVM_POSTGRES_URL").ok());
    let (store, where_kept): (Arc<dyn RecordStore>, String) = match &postgres {
        Some(url) => {
            let node = flags.value("node").unwrap_or("provider");
            let store = PostgresStore::connect(url, node)?;
            let described = format!("{store:?}");
            (Arc::new(store), described)
        }
        None => (
            Arc::new(SqliteStore::open(&state)?),
            state.display().to_string(),
        ),
    };
    let mut runtime = ProviderRuntime::new(keys.clone(), config)
        .task(Arc::new(Summarise { kinds }))
        .record_store_shared(store)
        .on_notification(hook);
    if let Some(n) = flags.number::<usize>("max-tasks")? {
        runtime = runtime.max_running_tasks(n);
    }
    match (lnbits, nwc) {
        (Some((backend, url)), _) => {
            clock.say("provider", format!("invoices from LNbits at {url}"));
            runtime = runtime.lightning(backend);
        }
        (None, Some(backend)) => {
            let wallet = short(backend.wallet());
            clock.say("provider", format!("invoices from the NWC wallet {wallet}"));
            runtime = runtime.lightning(backend);
        }
        (None, None) if zaps.is_some() => {}
        (None, None) if price_msat > 0 => runtime = runtime.lightning_shared(wallet.clone()),
        (None, None) => {}
    }
    if let (Some(address), Some(pay)) = (&address, &zaps) {
        let zapper = pay.nostr_pubkey.map(short).unwrap_or_default();
        clock.say(
            "provider",
            format!("takes zaps to {address} (receipts signed by {zapper})"),
        );
    }
    let price = match price_msat {
        0 => "for free".to_owned(),
        msat => format!("at {} sats, pay-first", msat / 1000),
    };
    clock.say(
        "provider",
        format!("serves {price} on {}", relays.join(", ")),
    );
    clock.say("provider", format!("state: {where_kept}"));
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
    if identity.ephemeral && flags.value("state").is_none() && postgres.is_none() {
        // Nobody will run this provider's keys again: its database is of no more use.
        support::remove_sqlite(&state);
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

/// The LNURL-pay service of the provider's lightning address: it must take zaps.
async fn zap_service(flags: &Flags, address: &str) -> support::Result<LnurlPay> {
    let mut lnurl = LnurlClient::new()?;
    if flags.switch("insecure-lnurl") {
        lnurl = lnurl.allow_insecure_http();
    }
    let pay = lnurl
        .resolve_address(address)
        .await
        .map_err(|e| format!("--lightning-address {address}: {e}"))?;
    if !pay.allows_nostr || pay.nostr_pubkey.is_none() {
        return Err(format!(
            "--lightning-address {address}: {}; use a wallet whose address takes zaps, or \
             LNbits invoices (--lnbits-url)",
            LnurlError::NoNostr
        )
        .into());
    }
    Ok(pay)
}

/// Publishes the provider's profile (kind 0) naming its lightning address, where NIP-57 says
/// a customer finds it.
async fn publish_profile(
    clock: Clock,
    keys: &Keys,
    relays: &[String],
    address: &str,
) -> support::Result<()> {
    let profile = serde_json::json!({
        "name": "nostr-dvm summariser",
        "about": "Extractive summaries (NIP-90 kind 5001), paid by zaps.",
        "lud16": address,
    });
    let event = EventBuilder::new(Kind::Metadata, profile.to_string()).sign_with_keys(keys)?;
    let client = Client::default();
    for relay in relays {
        client.add_relay(relay.as_str()).await?;
    }
    client.connect().await;
    client.wait_for_connection(support::STEP_TIMEOUT).await;
    let sent = client.send_event(&event).await;
    client.disconnect().await;
    match sent {
        Ok(output) if !output.success.is_empty() => {
            clock.say("provider", format!("profile (kind 0) names {address}"));
            Ok(())
        }
        Ok(output) => Err(format!("no relay took the profile: {:?}", output.failed).into()),
        Err(e) => Err(format!("the profile could not be published: {e}").into()),
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
