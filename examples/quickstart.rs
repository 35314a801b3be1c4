//! A whole paid DVM job over a real relay, in one process, with no network access needed.
//!
//! ```text
//! cargo run --example quickstart --all-features
//! ```
//!
//! - a nostr relay (`nostr-relay-builder`'s `LocalRelay`) on 127.0.0.1;
//! - a provider ([`ProviderRuntime`]) selling extractive summarisation (kind 5001) for
//!   21 sats, pay-first, with real BOLT11 invoices from a test Lightning node;
//! - a zapper (an LNURL server with a Nostr key) the provider trusts, signing real NIP-57
//!   receipts;
//! - a customer ([`CustomerRuntime`]) that submits a job, pays the `payment-required` by zap,
//!   and prints the summary.
//!
//! The provider starts work only once the zap receipt passes every NIP-57 check. Each step is
//! printed with the time since start; the process exits non-zero if any step fails or takes
//! longer than 10 s.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use nostr_dvm::customer::{CustomerConfig, Delivery, Notification as CustomerNote, Output};
use nostr_dvm::nip90::{FeedbackStatus, JobInput, JobRequest};
use nostr_dvm::nostr::hashes::{sha1, Hash as _};
use nostr_dvm::nostr::{Keys, Kind, Timestamp};
use nostr_dvm::provider::{
    Notification as ProviderNote, PaymentPolicy, PaymentVia, ProviderConfig,
};
use nostr_dvm::runtime::{CustomerRuntime, FileStore, ProviderRuntime, TestLightningBackend};
use nostr_dvm::task::{FixedPrice, Progress, Task, TaskError, TaskOutput, TaskRequest};
use nostr_dvm::testing::{keys_from_seed, TestLightningNode, TestZapper};
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use rand::rngs::OsRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SUMMARISE: u16 = 5001;
const PRICE_MSAT: u64 = 21_000;
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

const TEXT: &str = "Data Vending Machines are Nostr services that sell computation for sats. \
A customer publishes a job request event describing the input and the kind of work it wants. \
Any provider that serves that kind may answer, first with feedback and then with a result event. \
Providers can ask for payment before they start, sending a Lightning invoice in payment-required feedback. \
The customer pays the invoice, or zaps the feedback, and the provider verifies the payment before it works. \
The weather in the examples is always sunny. \
Because every message is a signed Nostr event, customers can compare providers and keep the ones that deliver.";

/// Extractive summarisation: scores each sentence by the frequency of its content words in
/// the whole text and keeps the best `length` sentences (param, default 2), in text order.
struct Summarise;

#[async_trait::async_trait]
impl Task for Summarise {
    fn kinds(&self) -> Vec<Kind> {
        vec![Kind::from(SUMMARISE)]
    }

    async fn run(&self, request: TaskRequest, progress: Progress) -> Result<TaskOutput, TaskError> {
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

fn split_sentences(text: &str) -> Vec<&str> {
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

fn summarise(sentences: &[&str], keep: usize) -> String {
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

/// Serves `relay` on 127.0.0.1, accepting the TCP connections itself so it can turn Nagle
/// off (`LocalRelay::run` leaves it on, which adds ~40 ms to a reply that follows another).
async fn serve(relay: LocalRelay) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let relay = relay.clone();
            tokio::spawn(async move {
                if let Err(e) = websocket(relay, stream, peer).await {
                    eprintln!("relay connection from {peer}: {e}");
                }
            });
        }
    });
    Ok(format!("ws://{addr}"))
}

/// The server side of the WebSocket opening handshake (RFC 6455 §4.2), then the relay.
async fn websocket(
    relay: LocalRelay,
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    stream.set_nodelay(true)?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err("bad HTTP upgrade request".into());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let key = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, v)| v.trim().to_owned())
        .ok_or("no Sec-WebSocket-Key")?;
    let digest = sha1::Hash::hash(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.to_byte_array());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    relay
        .take_connection(stream, peer)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn short(hex: impl ToString) -> String {
    let s = hex.to_string();
    s[..s.len().min(12)].to_owned()
}

#[tokio::main]
async fn main() {
    if let Err(e) = quickstart().await {
        eprintln!("quickstart failed: {e}");
        std::process::exit(1);
    }
}

async fn quickstart() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let t = move || format!("{:>7.1} ms", start.elapsed().as_secs_f64() * 1e3);

    // The relay.
    let relay = LocalRelay::new(RelayBuilder::default());
    let url = serve(relay.clone()).await?;
    println!("{} relay     listening on {url}", t());

    // The provider: summarisation for 21 sats, pay-first, paid by zaps from a trusted zapper.
    let zapper = TestZapper::new(keys_from_seed(9), TestLightningNode::new(10));
    let provider_keys = Keys::generate();
    let provider_pk = provider_keys.public_key();
    let config = ProviderConfig::new([Kind::from(SUMMARISE)])
        .pricing(FixedPrice(PRICE_MSAT))
        .payment(PaymentPolicy::PayFirst)
        .zappers([zapper.pubkey()])
        .relays([url.clone()])
        .rng_seed(rand::random());
    let snapshot =
        std::env::temp_dir().join(format!("nostr-dvm-quickstart-{}.json", std::process::id()));
    let runtime = ProviderRuntime::new(provider_keys, config)
        .task(Arc::new(Summarise))
        .lightning(TestLightningBackend::new(TestLightningNode::new(7)))
        .store(FileStore::new(&snapshot))
        .on_notification(move |note| match note {
            ProviderNote::JobReceived { job, .. } => {
                println!("{} provider  job {} received", t(), short(job))
            }
            ProviderNote::PaymentRequired { amount_msat, .. } => {
                println!(
                    "{} provider  payment-required sent: {} sats, bolt11 from its node",
                    t(),
                    amount_msat / 1000
                )
            }
            ProviderNote::PaymentReceived {
                amount_msat, via, ..
            } => {
                let via = match via {
                    PaymentVia::Zap { receipt } => format!("zap receipt {}", short(receipt)),
                    PaymentVia::Wallet => "its wallet".to_owned(),
                };
                println!(
                    "{} provider  payment verified: {} sats, {via}",
                    t(),
                    amount_msat / 1000
                )
            }
            ProviderNote::JobStarted { .. } => println!("{} provider  processing", t()),
            ProviderNote::JobCompleted { .. } => println!("{} provider  result published", t()),
            other => println!("{} provider  {other:?}", t()),
        });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let provider = tokio::spawn(runtime.run(async {
        let _ = stopped.await;
    }));
    println!(
        "{} provider  {} serves kind {SUMMARISE} at {} sats",
        t(),
        short(provider_pk),
        PRICE_MSAT / 1000
    );

    // The customer.
    let mut config = CustomerConfig::new([url.clone()]);
    config.rng_seed = rand::random();
    let mut customer = CustomerRuntime::connect(Keys::generate(), config).await?;
    let request = JobRequest::builder(Kind::from(SUMMARISE))
        .input(JobInput::text(TEXT))
        .param("length", "2");
    let job = customer.submit(request, Delivery::To(provider_pk)).await?;
    println!(
        "{} customer  job request {} published ({} bytes of text)",
        t(),
        short(job),
        TEXT.len()
    );

    let summary = loop {
        let output = tokio::time::timeout(STEP_TIMEOUT, customer.next())
            .await
            .map_err(|_| "no answer within 10 s")?
            .ok_or("relay connection closed")?;
        match output {
            Output::Notify(CustomerNote::Feedback { status, .. }) => {
                if !matches!(
                    status,
                    FeedbackStatus::PaymentRequired | FeedbackStatus::Partial
                ) {
                    println!("{} customer  feedback: {status:?}", t());
                }
            }
            Output::Notify(CustomerNote::PaymentRequested {
                provider,
                amount_msat,
                bolt11,
                ..
            }) => {
                println!(
                    "{} customer  payment-required: {} sats, invoice {}...",
                    t(),
                    amount_msat / 1000,
                    bolt11.as_deref().map(short).unwrap_or_default()
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
                println!(
                    "{} customer  zap request {} -> zapper invoice {}..., paid",
                    t(),
                    short(zap_request.id),
                    short(&invoice.bolt11)
                );
                let receipt = zapper.receipt(&zap_request, &invoice, now, &mut OsRng);
                customer.publish(&receipt).await?;
                println!("{} zapper    receipt {} published", t(), short(receipt.id));
            }
            Output::Notify(CustomerNote::Partial { content, .. }) => {
                println!("{} customer  partial: {content}", t());
            }
            Output::Notify(CustomerNote::Result { content, .. }) => {
                println!("{} customer  result received", t());
                break content;
            }
            Output::Notify(CustomerNote::Failed { reason, .. }) => {
                return Err(format!("the provider failed the job: {reason}").into());
            }
            Output::Notify(CustomerNote::TimedOut { .. }) => return Err("the job timed out".into()),
            Output::Notify(CustomerNote::Refused { reason, .. }) => {
                println!("{} customer  ignored an event: {reason}", t());
            }
            other => println!("{} customer  {other:?}", t()),
        }
    };

    println!(
        "\nsummary (2 of {} sentences):\n  {summary}\n",
        split_sentences(TEXT).len()
    );
    let _ = stop.send(());
    tokio::time::timeout(STEP_TIMEOUT, provider).await???;
    customer.disconnect().await;
    relay.shutdown();
    let _ = std::fs::remove_file(&snapshot);
    println!("done in {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    Ok(())
}
