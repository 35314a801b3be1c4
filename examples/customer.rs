//! Submits a NIP-90 job from the command line with [`CustomerRuntime`], and prints what comes
//! back.
//!
//! ```text
//! cargo run --example customer                      # offline demo against a local provider
//! cargo run --example customer -- --relay wss://relay.example The text to summarise.
//! cargo run --example customer -- --relay wss://relay.example --provider npub1... --encrypt \
//!     --param length=1 The text to summarise.
//! cargo run --example customer -- --help
//! ```
//!
//! It lists the providers that announce the job kind (NIP-89, [`CustomerRuntime::discover`]),
//! submits the request (public, addressed to `--provider`, encrypted to it with `--encrypt`
//! (NIP-44, or NIP-04 with `--scheme nip04`), or gift-wrapped to it with `--gift-wrap`),
//! prints every feedback, partial
//! result and payment request, and exits with the result, or non-zero on an error, a
//! timeout (`--timeout`) or a failed job. With an LNbits wallet (`--lnbits-url`,
//! `--lnbits-admin-key`) or a Nostr Wallet Connect one (`--nwc nostr+walletconnect://...`, or
//! `$NOSTR_DVM_NWC`) it pays a valid invoice up to `--auto-pay SATS` itself; without one,
//! on a payment request it prints the BOLT11 invoice for you to pay with yours, and keeps
//! waiting. With `--zap` it pays by a NIP-57 zap instead, from the same wallet, to the
//! lightning address of the provider's signed profile ([`CustomerRuntime::set_lnurl`],
//! [`CustomerRuntime::zap`]): the zap invoice must match the zap request, and is recorded
//! before it is paid.
//!
//! **Offline demo** (no `--relay`): starts a relay on 127.0.0.1 and a free summarisation
//! provider ([`ProviderRuntime`](nostr_dvm::runtime::ProviderRuntime)) on it in this process,
//! then does all of the above against them, with a default text when none is given. With
//! `--encrypt` or `--gift-wrap` and no `--provider`, the job goes to the demo's provider. It
//! needs no network and finishes in well under a second.
//!
//! Keys: `--key-file PATH` (created, with new keys, when it does not exist), else
//! `$NOSTR_DVM_SECRET_KEY` (nsec or hex), else fresh keys for this run.

mod support;

use std::sync::Arc;
use std::time::Duration;

use nostr_dvm::customer::{CustomerConfig, Delivery, Notification as CustomerNote, Output};
use nostr_dvm::encryption::Scheme;
use nostr_dvm::nip90::{JobInput, JobRequest};
use nostr_dvm::nostr::{Keys, Kind, PublicKey};
use nostr_dvm::runtime::{CustomerRuntime, LnbitsWallet, LnurlClient, NwcWallet, Wallet};
use support::{short, Clock, Flags, Running, Spec, SUMMARISE};

/// The command line.
const SPEC: Spec = Spec {
    usage: "\
Submits a NIP-90 job with nostr-dvm's CustomerRuntime and prints the answers.

usage: cargo run --example customer -- [options] [TEXT...]

  --relay URL        a relay to use (repeatable); none: offline demo with a local relay
                     and an in-process summarisation provider
  --kind N           the job request kind (default: 5001, summarisation)
  --provider KEY     send the job to this provider (npub or hex); default: any provider
  --encrypt          encrypt the inputs and params to --provider (NIP-90 `encrypted`)
  --scheme S         with --encrypt: nip44 (default) or nip04 (legacy, for providers
                     that only read NIP-04; needs the crate's default `nip04` feature)
  --gift-wrap        gift-wrap the whole request to --provider (NIP-59)
  --nip44-extended   allow NIP-44's extended length prefix, for requests whose encrypted
                     part exceeds 65,535 bytes; most providers cannot read it (default:
                     off, and such a request is refused before it is sent)
  --param KEY=VALUE  a job parameter (repeatable), e.g. --param length=1
  --timeout SECS     give up after this long without a result (default: 120; demo: 10)
  --key-file PATH    the customer's secret key (nsec or hex); created when missing
                     (default: $NOSTR_DVM_SECRET_KEY, else fresh keys for this run)

paying (without a wallet it prints the invoice for you to pay):
  --lnbits-url URL   an LNbits server to pay from (https; http only to 127.0.0.1)
                     (default: $NOSTR_DVM_LNBITS_URL)
  --lnbits-admin-key KEY
                     that LNbits wallet's admin key, which spends: keep it secret
                     (default: $NOSTR_DVM_LNBITS_ADMIN_KEY)
  --nwc URI          a Nostr Wallet Connect wallet to pay from (nostr+walletconnect://...;
                     it needs pay_invoice and lookup_invoice; give the connection a budget
                     in the wallet: NIP-47 carries no fee limit; the URI holds a secret:
                     prefer the variable) (default: $NOSTR_DVM_NWC)
  --bid SATS         the most the job may pay the provider (the request's bid)
  --auto-pay SATS    pay a valid invoice of the provider without asking, up to this much
                     per job, routing fees included (default: 0, pay nothing)
  --max-fee SATS     the most routing fee per payment (default: 1; LNbits reserves at
                     least 2 sats by default, so raise it to pay through LNbits)
  --zap              pay by a NIP-57 zap instead of the invoice: to the lightning address
                     of the provider's profile (kind 0), whose service must take zaps,
                     from the wallet, when the amount plus --max-fee is within
                     --auto-pay; the zap request is signed with the customer's key
  --insecure-lnurl   with --zap: reach the provider's LNURL service over plain http (a
                     test service on 127.0.0.1 only, never for money on a network you do
                     not control)

  -h, --help         this help

TEXT is the job's text input (the arguments joined by spaces; the demo has a default).
",
    values: &[
        "relay",
        "kind",
        "provider",
        "param",
        "timeout",
        "key-file",
        "scheme",
        "lnbits-url",
        "lnbits-admin-key",
        "nwc",
        "bid",
        "auto-pay",
        "max-fee",
    ],
    switches: &[
        "encrypt",
        "gift-wrap",
        "nip44-extended",
        "zap",
        "insecure-lnurl",
    ],
    positional: true,
};

/// A flag's value in sats, as millisats.
fn sats(flags: &Flags, name: &str) -> support::Result<Option<u64>> {
    match flags.number::<u64>(name)? {
        None => Ok(None),
        Some(sats) => Ok(Some(
            sats.checked_mul(1000)
                .ok_or_else(|| format!("--{name}: too large"))?,
        )),
    }
}

/// The LNbits wallet of `--lnbits-url` and `--lnbits-admin-key` (or their environment
/// variables), with its URL; `None` when neither is given.
fn lnbits_wallet(flags: &Flags) -> support::Result<Option<(LnbitsWallet, String)>> {
    let credentials =
        support::lnbits_credentials(flags, "lnbits-admin-key", "NOSTR_DVM_LNBITS_ADMIN_KEY")?;
    match credentials {
        None => Ok(None),
        Some((url, key)) => Ok(Some((LnbitsWallet::new(&url, &key)?, url))),
    }
}

#[tokio::main]
async fn main() {
    support::finish("customer", customer().await);
}

/// Parses the command line, starts the demo's relay and provider when there is no
/// `--relay`, and runs one job.
async fn customer() -> support::Result<()> {
    let flags = Flags::from_env(&SPEC);
    let clock = Clock::start();
    let kind = Kind::from(flags.number::<u16>("kind")?.unwrap_or(SUMMARISE));
    let mut relays: Vec<String> = flags.all("relay").into_iter().map(str::to_owned).collect();
    let mut target = flags
        .value("provider")
        .map(PublicKey::parse)
        .transpose()
        .map_err(|e| format!("--provider: not an npub or hex key: {e}"))?;
    let private = flags.switch("encrypt") || flags.switch("gift-wrap");
    let mut params = Vec::new();
    for param in flags.all("param") {
        let (key, value) = param
            .split_once('=')
            .ok_or_else(|| format!("--param {param}: expected KEY=VALUE"))?;
        params.push((key.to_owned(), value.to_owned()));
    }

    // The offline demo: a local relay and a free summarisation provider on it.
    let demo = match relays.is_empty() {
        true => {
            if kind != Kind::from(SUMMARISE) {
                return Err(format!("the demo's provider serves kind {SUMMARISE} only").into());
            }
            let (relay, url) = support::start_relay(clock).await?;
            relays.push(url);
            let keys = Keys::generate();
            let config = support::summarise_config(&relays, 0);
            let provider = Running::spawn(support::summarise_runtime(keys.clone(), config, clock));
            let pk = keys.public_key();
            clock.say(
                "provider",
                format!("{} serves kind {SUMMARISE} for free", short(pk)),
            );
            if private && target.is_none() {
                target = Some(pk);
            }
            Some((relay, provider, pk))
        }
        false => None,
    };
    let text = match (flags.rest().join(" "), &demo) {
        (text, _) if !text.trim().is_empty() => text,
        (_, Some(_)) => support::TEXT.to_owned(),
        (_, None) => return Err("no text input: give it as arguments (see --help)".into()),
    };
    let timeout = Duration::from_secs(flags.number("timeout")?.unwrap_or(if demo.is_some() {
        10
    } else {
        120
    }));
    let scheme = match flags.value("scheme") {
        None | Some("nip44") => Scheme::Nip44,
        Some("nip04") => Scheme::Nip04,
        Some(other) => return Err(format!("--scheme {other}: nip44 or nip04").into()),
    };
    if flags.value("scheme").is_some() && !flags.switch("encrypt") {
        return Err("--scheme chooses the encryption of --encrypt: add --encrypt".into());
    }
    let delivery = match (target, flags.switch("encrypt"), flags.switch("gift-wrap")) {
        (_, true, true) => return Err("--encrypt and --gift-wrap: choose one".into()),
        (None, false, false) => Delivery::Public,
        (None, _, _) => return Err("--encrypt and --gift-wrap need --provider".into()),
        (Some(p), true, false) => Delivery::Encrypted(p, scheme),
        (Some(p), false, true) => Delivery::GiftWrap(p),
        (Some(p), false, false) => Delivery::To(p),
    };

    let identity = support::load_keys(&flags, "customer", clock)?;
    let mut config = CustomerConfig::new(relays.iter().cloned());
    config.timeout_secs = timeout.as_secs();
    config.nip44_extended_prefix = flags.switch("nip44-extended");
    config.auto_pay_limit_msat = sats(&flags, "auto-pay")?;
    if let Some(fee) = sats(&flags, "max-fee")? {
        config.max_fee_msat = fee;
    }
    let wallet: Option<(Arc<dyn Wallet>, String)> =
        match (lnbits_wallet(&flags)?, support::nwc_uri(&flags)) {
            (Some(_), Some(_)) => {
                return Err("one wallet pays: --lnbits-url or --nwc, not both".into())
            }
            (Some((wallet, url)), None) => Some((Arc::new(wallet), format!("LNbits at {url}"))),
            (None, Some(uri)) => {
                let wallet = NwcWallet::new(&uri).map_err(|e| format!("--nwc: {e}"))?;
                let named = format!("the NWC wallet {}", short(wallet.wallet()));
                Some((Arc::new(wallet), named))
            }
            (None, None) => None,
        };
    let auto_pay = config.auto_pay_limit_msat.unwrap_or(0);
    let max_fee = config.max_fee_msat;
    let has_wallet = wallet.is_some();
    let zap = flags.switch("zap");
    if zap && !has_wallet {
        return Err(
            "--zap pays from a wallet: add --lnbits-url and --lnbits-admin-key, or \
                    --nwc"
                .into(),
        );
    }
    if flags.switch("insecure-lnurl") && !zap {
        return Err("--insecure-lnurl is for the LNURL service of --zap: add --zap".into());
    }
    if zap {
        // Zaps are paid on purpose below, within --auto-pay; invoices are not paid.
        config.auto_pay_limit_msat = None;
    }
    let mut customer = CustomerRuntime::connect(identity.keys, config).await?;
    if let Some((wallet, named)) = wallet {
        clock.say("customer", format!("pays from {named}"));
        customer.set_wallet(wallet);
    }
    if zap {
        let mut lnurl = LnurlClient::new()?;
        if flags.switch("insecure-lnurl") {
            lnurl = lnurl.allow_insecure_http();
        }
        customer.set_lnurl(lnurl);
        clock.say(
            "customer",
            "pays by zapping the provider's lightning address",
        );
    }
    let pool = customer.client().relays().await;
    if !pool.values().any(|relay| relay.is_connected()) {
        return Err(format!("could not connect to {}", flags.all("relay").join(", ")).into());
    }
    if let Some((_, _, pk)) = &demo {
        // Wait until the demo's provider is up, so that discovery finds it.
        support::find_announcement(customer.client(), kind, *pk).await?;
    }

    let discover_timeout = timeout.min(Duration::from_secs(5));
    let providers = customer.discover(kind, discover_timeout).await?;
    clock.say(
        "customer",
        format!("{} provider(s) announce kind {kind}:", providers.len()),
    );
    for info in &providers {
        println!("             {}", support::describe_handler(info));
    }

    let mut request = JobRequest::builder(kind).input(JobInput::text(text));
    if let Some(bid) = sats(&flags, "bid")? {
        request = request.bid(bid);
    }
    for (key, value) in params {
        request = request.param(key, value);
    }
    let job = customer.submit(request, delivery).await?;
    let how = match delivery {
        Delivery::Public => "public, for any provider".to_owned(),
        Delivery::To(p) => format!("addressed to {}", short(p)),
        Delivery::Encrypted(p, scheme) => format!("encrypted ({scheme}) to {}", short(p)),
        Delivery::GiftWrap(p) => format!("gift-wrapped to {}", short(p)),
    };
    clock.say(
        "customer",
        format!("job request {} published, {how}", short(job)),
    );

    let pay = async |customer: &mut CustomerRuntime, output: Output| -> support::Result<()> {
        if let Output::Notify(CustomerNote::PaymentRequested {
            job,
            provider,
            amount_msat,
            bolt11,
        }) = output
        {
            clock.say(
                "customer",
                format!("{} asks {} sats", short(provider), amount_msat / 1000),
            );
            let within = amount_msat.saturating_add(max_fee) <= auto_pay;
            if zap && within {
                let offered = match bolt11 {
                    Some(_) => "it also sent an invoice, left unpaid",
                    None => "it sent no invoice",
                };
                println!(
                    "             within --auto-pay: zapping its lightning address ({offered})"
                );
                customer.zap(job, provider).await?;
                clock.say("customer", "zapped; waiting for the result...");
                return Ok(());
            }
            match bolt11 {
                Some(_) if has_wallet && !zap && within => {
                    println!("             within --auto-pay: the wallet pays it")
                }
                Some(bolt11) => println!(
                    "             pay this invoice with your wallet (above --auto-pay, or no \
                     wallet given), the result comes once the provider sees it paid:\n             {bolt11}"
                ),
                None => println!(
                    "             it sent no invoice: zap its feedback to pay (--zap, with \
                     --auto-pay and a wallet, does it)"
                ),
            }
            clock.say("customer", "waiting...");
        }
        Ok(())
    };
    // The customer reports its own timeout; the margin only guards against a silent hang.
    let wait = timeout + Duration::from_secs(5);
    let result = support::follow_job(&mut customer, clock, wait, pay).await?;
    println!("\nresult:\n  {result}\n");

    customer.disconnect().await;
    if let Some((relay, provider, _)) = demo {
        provider.stop().await?;
        relay.shutdown();
    }
    println!("done in {:.1} ms", clock.ms());
    Ok(())
}
