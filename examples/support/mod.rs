//! What the examples share: an in-process relay (`local_relay`, also used by the runtime
//! tests and bench), the summarisation task, the provider and customer printing, a tiny flag
//! parser and key loading.
//!
//! A module directory (`examples/support/mod.rs`), so cargo does not build it as an example
//! of its own; each example includes it with `mod support;`.

// Each example uses a subset of these items, and the rest would warn as dead code in it.
#![allow(dead_code)]

pub mod local_relay;

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::io::Write as _;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nostr_dvm::customer::{self, Notification as CustomerNote, Output};
use nostr_dvm::nip89::{HandlerInfo, HandlerMetadata, ParamSpec, HANDLER_INFO_KIND};
use nostr_dvm::nip90::FeedbackStatus;
use nostr_dvm::nostr::{Alphabet, Filter, Keys, Kind, PublicKey, SingleLetterTag, ToBech32};
use nostr_dvm::provider::{Notification as ProviderNote, PaymentVia, ProviderConfig};
use nostr_dvm::runtime::nostr_sdk::Client;
use nostr_dvm::runtime::{CustomerRuntime, ProviderRuntime, RuntimeError};
use nostr_dvm::task::{FixedPrice, Progress, Task, TaskError, TaskOutput, TaskRequest};
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The examples' error type: anything, printed by [`finish`].
pub type Error = Box<dyn std::error::Error>;
/// The examples' result type.
pub type Result<T> = std::result::Result<T, Error>;

/// The job request kind of text summarisation (NIP-90: 5001; results are 6001).
pub const SUMMARISE: u16 = 5001;

/// How long any one step of an offline demo may take before the example gives up.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable [`load_keys`] reads a secret key from (nsec or hex).
pub const SECRET_KEY_ENV: &str = "NOSTR_DVM_SECRET_KEY";

/// The text the demos summarise.
pub const TEXT: &str = "Data Vending Machines are Nostr services that sell computation for sats. \
A customer publishes a job request event describing the input and the kind of work it wants. \
Any provider that serves that kind may answer, first with feedback and then with a result event. \
Providers can ask for payment before they start, sending a Lightning invoice in payment-required feedback. \
The customer pays the invoice, or zaps the feedback, and the provider verifies the payment before it works. \
The weather in the examples is always sunny. \
Because every message is a signed Nostr event, customers can compare providers and keep the ones that deliver.";

/// Runs an example's body: on error, prints `name failed: ...` and exits with status 1.
pub fn finish(name: &str, result: Result<()>) {
    if let Err(e) = result {
        eprintln!("{name} failed: {e}");
        std::process::exit(1);
    }
}

/// Awaits `step`, failing after [`STEP_TIMEOUT`] with `what` in the message.
pub async fn within<T>(what: &str, step: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .map_err(|_| format!("{what}: no answer within {} s", STEP_TIMEOUT.as_secs()).into())
}

/// The first 12 characters of an id or key, for readable logs.
pub fn short(hex: impl ToString) -> String {
    let s = hex.to_string();
    s[..s.len().min(12)].to_owned()
}

/// Prints lines stamped with the time since the example started.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock started now.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Milliseconds since the start.
    pub fn ms(&self) -> f64 {
        self.0.elapsed().as_secs_f64() * 1e3
    }

    /// Prints `what`, said by `who`, with the time.
    pub fn say(&self, who: &str, what: impl Display) {
        println!("{:>7.1} ms {who:<9} {what}", self.ms());
    }

    /// Prints a provider notification the way all the examples do.
    pub fn provider_note(&self, note: &ProviderNote) {
        let line = match note {
            ProviderNote::JobReceived { job, .. } => format!("job {} received", short(job)),
            ProviderNote::PaymentRequired { amount_msat, .. } => format!(
                "payment-required sent: {} sats, bolt11 from its node",
                amount_msat / 1000
            ),
            ProviderNote::PaymentReceived {
                amount_msat, via, ..
            } => {
                let via = match via {
                    PaymentVia::Zap { receipt } => format!("zap receipt {}", short(receipt)),
                    PaymentVia::Wallet => "its wallet".to_owned(),
                };
                format!("payment verified: {} sats, {via}", amount_msat / 1000)
            }
            ProviderNote::JobStarted { .. } => "processing".to_owned(),
            ProviderNote::JobCompleted { .. } => "result published".to_owned(),
            other => other.to_string(),
        };
        self.say("provider", line);
    }

    /// Prints a customer output the way all the examples do.
    pub fn customer_output(&self, output: &Output) {
        let line = match output {
            Output::Notify(CustomerNote::Paid {
                amount_msat,
                fee_msat,
                ..
            }) => format!(
                "the wallet paid {} sats (fee {fee_msat} msat)",
                amount_msat / 1000
            ),
            Output::Notify(CustomerNote::PaymentFailed { reason, .. }) => {
                format!("payment failed: {reason}")
            }
            Output::Notify(CustomerNote::InvoiceRefused { reason, .. }) => {
                format!("invoice refused, not paid: {reason}")
            }
            Output::Notify(CustomerNote::Refused { reason, .. }) => {
                format!("ignored an event: {reason}")
            }
            other => format!("{other:?}"),
        };
        self.say("customer", line);
    }
}

// ---- the relay -----------------------------------------------------------------------------

/// Starts an in-memory relay on 127.0.0.1 (served by [`local_relay::serve`], with Nagle's
/// algorithm off) and returns it with its `ws://` URL.
pub async fn start_relay(clock: Clock) -> Result<(LocalRelay, String)> {
    let relay = LocalRelay::new(RelayBuilder::default());
    let url = local_relay::serve(relay.clone()).await?;
    clock.say("relay", format!("listening on {url}"));
    Ok((relay, url))
}

// ---- the task ------------------------------------------------------------------------------

/// Extractive summarisation: scores each sentence by the frequency of its content words in
/// the whole text and keeps the best `length` sentences (param, default 2), in text order.
/// Serves the request kinds it is given (kind 5001, text summarisation, by default).
pub struct Summarise {
    /// The request kinds it serves.
    pub kinds: Vec<Kind>,
}

impl Default for Summarise {
    fn default() -> Self {
        Self {
            kinds: vec![Kind::from(SUMMARISE)],
        }
    }
}

#[async_trait::async_trait]
impl Task for Summarise {
    fn kinds(&self) -> Vec<Kind> {
        self.kinds.clone()
    }

    async fn run(
        &self,
        request: TaskRequest,
        progress: Progress,
    ) -> std::result::Result<TaskOutput, TaskError> {
        let text: String = request.texts().collect::<Vec<_>>().join(" ");
        if text.trim().is_empty() {
            return Err(TaskError::new("no text input to summarise"));
        }
        let keep: usize = match request.param("length") {
            Some(n) => n
                .parse()
                .map_err(|_| TaskError::new("param length must be a number of sentences"))?,
            None => 2,
        };
        let sentences = split_sentences(&text);
        progress.partial(format!("ranking {} sentences", sentences.len()));
        Ok(TaskOutput::new(summarise(&sentences, keep)))
    }
}

/// Splits `text` after each `.`, `!` or `?` followed by white space or the end.
pub fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?') {
            let end = i + c.len_utf8();
            let next = text[end..].chars().next();
            if next.is_none_or(char::is_whitespace) {
                let s = text[start..end].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = end;
            }
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The lower-cased content words of a sentence (stop words and one-letter words left out).
fn words(sentence: &str) -> impl Iterator<Item = String> + '_ {
    const STOP: &[&str] = &[
        "a", "an", "and", "any", "are", "as", "at", "be", "before", "by", "can", "first", "for",
        "in", "is", "it", "its", "of", "on", "or", "that", "the", "then", "they", "to", "with",
    ];
    sentence
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .map(str::to_lowercase)
        .filter(|w| w.len() > 1 && !STOP.contains(&w.as_str()))
}

/// The `keep` best-scoring sentences, in their original order, joined by spaces.
pub fn summarise(sentences: &[&str], keep: usize) -> String {
    let mut freq: HashMap<String, f64> = HashMap::new();
    for s in sentences {
        for w in words(s) {
            *freq.entry(w).or_default() += 1.0;
        }
    }
    let mut scored: Vec<(usize, f64)> = sentences
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ws: Vec<String> = words(s).collect();
            let score = ws.iter().map(|w| freq[w]).sum::<f64>() / (ws.len().max(1) as f64).sqrt();
            (i, score)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let chosen: HashSet<usize> = scored.iter().take(keep).map(|(i, _)| *i).collect();
    sentences
        .iter()
        .enumerate()
        .filter(|(i, _)| chosen.contains(i))
        .map(|(_, s)| *s)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---- the provider --------------------------------------------------------------------------

/// The NIP-89 announcement of the summarisation provider: what it is, its `length` param,
/// its price (`amount`: millisats, like every NIP-90 amount, or "free"), and the private
/// deliveries the provider really reads (it decrypts NIP-44 and NIP-04 requests and unwraps
/// NIP-59 gift wraps, answering each in the same way).
pub fn summarise_metadata(relays: &[String], price_msat: u64) -> HandlerMetadata {
    let length = ParamSpec {
        required: Some(false),
        ..ParamSpec::default()
    };
    HandlerMetadata {
        name: Some("summarise".into()),
        about: Some(
            "Extractive summaries of text: keeps the `length` best sentences (default 2). \
             A nostr-dvm example."
                .into(),
        ),
        nip90_params: [("length".to_owned(), length)].into(),
        encryption_supported: Some(true),
        accepts_gift_wraps: Some(true),
        relays: relays.to_vec(),
        amount: Some(match price_msat {
            0 => "free".to_owned(),
            msat => msat.to_string(),
        }),
        ..HandlerMetadata::default()
    }
}

/// A summarisation provider's config: kind 5001 on `relays`, announced (NIP-89), free or at
/// a fixed `price_msat` (pay-first, the default policy), with the default RNG (seeded from the operating system).
pub fn summarise_config(relays: &[String], price_msat: u64) -> ProviderConfig {
    let config = ProviderConfig::new([Kind::from(SUMMARISE)])
        .relays(relays.iter().cloned())
        .announcement(summarise_metadata(relays, price_msat));
    match price_msat {
        0 => config,
        msat => config.pricing(FixedPrice(msat)),
    }
}

/// A runtime serving [`Summarise`] with `keys` and `config`, printing its notifications.
pub fn summarise_runtime(keys: Keys, config: ProviderConfig, clock: Clock) -> ProviderRuntime {
    ProviderRuntime::new(keys, config)
        .task(Arc::new(Summarise::default()))
        .on_notification(move |note| clock.provider_note(note))
}

/// A provider runtime running on its own tokio task until [`stop`](Self::stop).
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::result::Result<(), RuntimeError>>,
}

impl Running {
    /// Spawns `runtime`.
    pub fn spawn(runtime: ProviderRuntime) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(runtime.run(async {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    /// Stops the runtime and waits (up to [`STEP_TIMEOUT`]) for it to save and disconnect.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        within("provider shutdown", self.task).await???;
        Ok(())
    }
}

/// Waits (up to [`STEP_TIMEOUT`]) until `author`'s NIP-89 announcement for `kind` is on the
/// relays of `client`, and returns it, read and verified by
/// [`discover`](nostr_dvm::customer::discover).
pub async fn find_announcement(
    client: &Client,
    kind: Kind,
    author: PublicKey,
) -> Result<HandlerInfo> {
    let filter = Filter::new()
        .kind(Kind::from(HANDLER_INFO_KIND))
        .author(author)
        .custom_tag(SingleLetterTag::lowercase(Alphabet::K), kind.to_string());
    let search = async {
        loop {
            let events = client.fetch_events(filter.clone(), STEP_TIMEOUT).await?;
            if let Some(info) = customer::discover(events.iter(), kind).into_iter().next() {
                return Ok::<_, Error>(info);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    within("the provider's announcement", search).await?
}

/// One line about an announced provider: key, name, price, and what it accepts.
pub fn describe_handler(info: &HandlerInfo) -> String {
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not said",
    };
    let npub = info
        .author
        .to_bech32()
        .unwrap_or_else(|_| info.author.to_hex());
    match &info.metadata {
        Some(meta) => format!(
            "{npub} \"{}\": {} (amount: {}; encrypted requests: {}; gift wraps: {})",
            meta.name.as_deref().unwrap_or("?"),
            meta.about.as_deref().unwrap_or(""),
            meta.amount.as_deref().unwrap_or("not said"),
            yes_no(meta.encryption_supported),
            yes_no(meta.accepts_gift_wraps),
        ),
        None => format!("{npub} (no metadata)"),
    }
}

// ---- the customer --------------------------------------------------------------------------

/// Follows a submitted job until its result, printing each feedback and partial result, and
/// returns the result's content. Payment requests (and the `PayInvoice`/`SendZap` outputs
/// that follow `pay`/`zap`) go to `payment`. Fails when the provider reports an error, when
/// the job times out, or when nothing arrives for `wait`.
pub async fn follow_job(
    customer: &mut CustomerRuntime,
    clock: Clock,
    wait: Duration,
    mut payment: impl AsyncFnMut(&mut CustomerRuntime, Output) -> Result<()>,
) -> Result<String> {
    loop {
        let output = tokio::time::timeout(wait, customer.next())
            .await
            .map_err(|_| format!("no answer within {} s", wait.as_secs()))?
            .ok_or("relay connection closed")?;
        match output {
            Output::Notify(CustomerNote::Feedback { status, info, .. }) => {
                if !matches!(
                    status,
                    FeedbackStatus::PaymentRequired | FeedbackStatus::Partial
                ) {
                    let info = info.map(|i| format!(" ({i})")).unwrap_or_default();
                    clock.say("customer", format!("feedback: {status}{info}"));
                }
            }
            Output::Notify(CustomerNote::Partial { content, .. }) => {
                clock.say("customer", format!("partial: {content}"));
            }
            Output::Notify(CustomerNote::Result { content, .. }) => {
                clock.say("customer", "result received");
                return Ok(content);
            }
            Output::Notify(CustomerNote::Failed { reason, .. }) => {
                return Err(format!("the provider failed the job: {reason}").into());
            }
            Output::Notify(CustomerNote::TimedOut { .. }) => return Err("the job timed out".into()),
            Output::Notify(CustomerNote::Unsupported { provider, what, .. }) => {
                return Err(format!(
                    "provider {} announces it does not read {what}",
                    short(provider)
                )
                .into());
            }
            pay @ (Output::Notify(CustomerNote::PaymentRequested { .. })
            | Output::PayInvoice { .. }
            | Output::SendZap { .. }) => payment(customer, pay).await?,
            other => clock.customer_output(&other),
        }
    }
}

// ---- command line --------------------------------------------------------------------------

/// Removes a SQLite database and the files SQLite and [`SqliteStore`] keep beside it (its
/// write-ahead log, shared memory and lock), once nothing has it open.
///
/// [`SqliteStore`]: nostr_dvm::runtime::SqliteStore
pub fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
}

/// The LNbits URL (`--lnbits-url` or `$NOSTR_DVM_LNBITS_URL`) and wallet key (`--KEY_FLAG` or
/// `$KEY_ENV`) on the command line: `None` when neither is given, an error when only one is.
pub fn lnbits_credentials(
    flags: &Flags,
    key_flag: &str,
    key_env: &str,
) -> Result<Option<(String, String)>> {
    let url = flags
        .value("lnbits-url")
        .map(str::to_owned)
        .or_else(|| std::env::var("NOSTR_DVM_LNBITS_URL").ok());
    let key = flags
        .value(key_flag)
        .map(str::to_owned)
        .or_else(|| std::env::var(key_env).ok());
    match (url, key) {
        (None, None) => Ok(None),
        (Some(url), Some(key)) => Ok(Some((url, key))),
        _ => Err(format!("LNbits needs both --lnbits-url and --{key_flag}").into()),
    }
}

/// The Nostr Wallet Connect URI of `--nwc` (or `$NOSTR_DVM_NWC`), if given. It holds the
/// secret that spends: it is never printed.
pub fn nwc_uri(flags: &Flags) -> Option<String> {
    flags
        .value("nwc")
        .map(str::to_owned)
        .or_else(|| std::env::var("NOSTR_DVM_NWC").ok())
}

/// What an example accepts on its command line.
pub struct Spec {
    /// Printed for `--help` (and after a usage error).
    pub usage: &'static str,
    /// Flags that take a value: `--name VALUE` or `--name=VALUE`, possibly repeated.
    pub values: &'static [&'static str],
    /// Flags without a value.
    pub switches: &'static [&'static str],
    /// Whether other arguments are allowed (after the flags, or after `--`).
    pub positional: bool,
}

/// Parsed command-line flags.
#[derive(Debug, Default)]
pub struct Flags {
    values: Vec<(String, String)>,
    switches: HashSet<String>,
    rest: Vec<String>,
}

impl Flags {
    /// Parses the process's arguments: prints the usage and exits 0 on `--help`/`-h`, exits 2
    /// on a usage error.
    pub fn from_env(spec: &Spec) -> Self {
        match Self::parse(spec, std::env::args().skip(1)) {
            Ok(Some(flags)) => flags,
            Ok(None) => {
                print!("{}", spec.usage);
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("error: {e}\n\n{}", spec.usage);
                std::process::exit(2);
            }
        }
    }

    /// Parses `args`; `Ok(None)` when help was asked for.
    pub fn parse(
        spec: &Spec,
        args: impl IntoIterator<Item = String>,
    ) -> std::result::Result<Option<Self>, String> {
        let mut flags = Flags::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Ok(None);
            }
            if arg == "--" {
                flags.rest.extend(args.by_ref());
                continue;
            }
            let Some(flag) = arg.strip_prefix("--") else {
                flags.rest.push(arg);
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (flag, None),
            };
            if spec.values.contains(&name) {
                let value = match inline {
                    Some(value) => value,
                    None => args.next().ok_or(format!("--{name} needs a value"))?,
                };
                flags.values.push((name.to_owned(), value));
            } else if spec.switches.contains(&name) && inline.is_none() {
                flags.switches.insert(name.to_owned());
            } else {
                return Err(format!("unknown flag --{name}"));
            }
        }
        if !spec.positional && !flags.rest.is_empty() {
            return Err(format!("unexpected argument {:?}", flags.rest[0]));
        }
        Ok(Some(flags))
    }

    /// Every value of a repeatable flag, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The last value of a flag.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.all(name).pop()
    }

    /// The last value of a flag, parsed.
    pub fn number<T: FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.value(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("--{name}: not a number: {v}").into())
            })
            .transpose()
    }

    /// Whether a switch was given.
    pub fn switch(&self, name: &str) -> bool {
        self.switches.contains(name)
    }

    /// The arguments that are not flags.
    pub fn rest(&self) -> &[String] {
        &self.rest
    }
}

// ---- keys ----------------------------------------------------------------------------------

/// Keys and where they came from.
pub struct Identity {
    /// The keys.
    pub keys: Keys,
    /// Generated for this run only: nothing else will ever sign with them.
    pub ephemeral: bool,
}

/// Loads `who`'s keys: from `--key-file PATH` (an nsec or 64-hex secret key; when the file
/// does not exist, new keys are generated and their nsec written to it, mode 0600 on unix),
/// else from the environment variable [`SECRET_KEY_ENV`] (nsec or hex), else fresh keys for
/// this run. Says which, with the npub.
pub fn load_keys(flags: &Flags, who: &str, clock: Clock) -> Result<Identity> {
    let (keys, from, ephemeral) = if let Some(path) = flags.value("key-file") {
        let path = Path::new(path);
        if path.exists() {
            let text = std::fs::read_to_string(path)?;
            let keys = Keys::parse(text.trim())
                .map_err(|e| format!("{}: not an nsec or hex secret key: {e}", path.display()))?;
            (keys, format!("from {}", path.display()), false)
        } else {
            let keys = Keys::generate();
            write_secret(path, &keys.secret_key().to_bech32()?)?;
            let from = format!("generated, nsec written to {}", path.display());
            (keys, from, false)
        }
    } else if let Ok(secret) = std::env::var(SECRET_KEY_ENV) {
        let keys = Keys::parse(secret.trim())
            .map_err(|e| format!("{SECRET_KEY_ENV}: not an nsec or hex secret key: {e}"))?;
        (keys, format!("from ${SECRET_KEY_ENV}"), false)
    } else {
        (Keys::generate(), "fresh for this run".to_owned(), true)
    };
    clock.say(
        who,
        format!("keys {from}: {}", keys.public_key().to_bech32()?),
    );
    Ok(Identity { keys, ephemeral })
}

/// Writes a new secret-key file, readable by its owner only on unix.
fn write_secret(path: &Path, nsec: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(file, "{nsec}")?;
    file.sync_all()?;
    Ok(())
}
