//! LNbits for real money (feature `lnbits`): [`LnbitsBackend`], a provider's
//! [`LightningBackend`] on an LNbits wallet, and [`LnbitsWallet`], a customer's [`Wallet`].
//!
//! Invoices come from LNbits's HTTP API (`POST /api/v1/payments`); settlements from its
//! websocket (`/api/v1/ws/{invoice key}`), and from a status poll of every pending invoice
//! whenever that websocket (re)connects, at start, and every [`LnbitsBackend::poll_interval`],
//! so a job paid while the provider or the connection was down starts once it is back. The proof
//! handed to the provider is the preimage, checked against the invoice's payment hash: LNbits
//! is trusted to say an invoice is paid, not to make up a preimage.
//!
//! Only the wallet's **invoice key** is needed (it can create invoices and read their status,
//! not spend). It travels in a header: plain `http://` is refused unless the host is a
//! loopback address or [`LnbitsBackend::allow_insecure_http`] says so.

use std::sync::Arc;
use std::time::Duration;

use crate::bolt11::Invoice;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::pending_invoices::PendingInvoices;
use super::{InvoiceRequest, LightningBackend, PendingInvoice, Settlements, Wallet};
use crate::customer::{PaymentOutcome, WalletFailure};
use crate::provider::PaymentProof;

/// How long one HTTP call to LNbits may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest wait between two websocket connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What can go wrong setting up an LNbits connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LnbitsError {
    /// The URL is not an `http(s)://` URL.
    #[error("not an http(s) URL: {0}")]
    InvalidUrl(String),
    /// Plain `http://` to a host that is not a loopback address, without
    /// [`LnbitsBackend::allow_insecure_http`]: the key would travel in the clear.
    #[error("plain http to {0} would send the LNbits key in the clear: use https")]
    InsecureHttp(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// An LNbits server and one of its wallet's keys, over HTTP.
#[derive(Debug, Clone)]
pub(crate) struct LnbitsApi {
    base: String,
    key: String,
    http: reqwest::Client,
}

/// A failed call: refused by the server (with its HTTP status), or of unknown effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The server answered with this status: it did not do it.
    Refused(u16, String),
    /// No answer (or an unreadable one): it may or may not have done it.
    Unknown(String),
}

impl core::fmt::Display for CallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CallError::Refused(_, why) | CallError::Unknown(why) => f.write_str(why),
        }
    }
}

/// What LNbits says of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InvoiceStatus {
    /// Paid, with a preimage that hashes to the payment hash.
    Paid([u8; 32]),
    /// Not paid (yet).
    Pending,
    /// LNbits marked it failed or expired.
    Failed,
}

impl LnbitsApi {
    /// `url` (the server's base URL) and a wallet `key`; `http://` only to a loopback host
    /// unless `allow_http`.
    pub(crate) fn new(url: &str, key: &str, allow_http: bool) -> Result<Self, LnbitsError> {
        let base = url.trim().trim_end_matches('/').to_owned();
        let parsed =
            reqwest::Url::parse(&base).map_err(|_| LnbitsError::InvalidUrl(base.clone()))?;
        match parsed.scheme() {
            "https" => {}
            "http" => {
                let host = parsed.host_str().unwrap_or_default();
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let loopback = host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !loopback && !allow_http {
                    return Err(LnbitsError::InsecureHttp(base));
                }
            }
            _ => return Err(LnbitsError::InvalidUrl(base)),
        }
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| LnbitsError::Client(e.to_string()))?;
        Ok(Self {
            base,
            key: key.to_owned(),
            http,
        })
    }

    /// The websocket URL that reports this key's wallet's payments.
    fn websocket_url(&self) -> String {
        let ws = match self.base.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => format!("ws://{}", self.base.trim_start_matches("http://")),
        };
        format!("{ws}/api/v1/ws/{}", self.key)
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Value, String> {
        self.call_with_status(request)
            .await
            .map_err(|e| e.to_string())
    }

    /// One call; an answer that is not a success keeps its HTTP status, so a refusal (the
    /// server said no) is told apart from not knowing what happened.
    async fn call_with_status(&self, request: reqwest::RequestBuilder) -> Result<Value, CallError> {
        let response = request
            .header("X-Api-Key", &self.key)
            .send()
            .await
            .map_err(|e| CallError::Unknown(format!("LNbits unreachable: {e}")))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| CallError::Unknown(format!("LNbits answer unreadable: {e}")))?;
        if !status.is_success() {
            let detail = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("detail").map(|d| d.to_string()))
                .unwrap_or(body);
            return Err(CallError::Refused(
                status.as_u16(),
                format!("LNbits answered {status}: {detail}"),
            ));
        }
        serde_json::from_str(&body)
            .map_err(|e| CallError::Unknown(format!("LNbits answer is not JSON: {e}")))
    }

    /// Creates an incoming invoice of `sats` with `memo`, valid `expiry_secs`, tagged with
    /// `extra`; returns its BOLT11 string and payment hash, checked against each other.
    pub(crate) async fn create_invoice(
        &self,
        sats: u64,
        memo: &str,
        expiry_secs: u64,
        extra: Value,
    ) -> Result<(String, [u8; 32]), String> {
        let body = json!({
            "out": false,
            "amount": sats,
            "memo": memo,
            "expiry": expiry_secs,
            "extra": extra,
        });
        let answer = self
            .call(
                self.http
                    .post(format!("{}/api/v1/payments", self.base))
                    .json(&body),
            )
            .await?;
        let bolt11 = answer
            .get("bolt11")
            .or_else(|| answer.get("payment_request"))
            .and_then(Value::as_str)
            .ok_or("LNbits sent no invoice")?
            .to_owned();
        let invoice =
            Invoice::parse(&bolt11).map_err(|e| format!("LNbits sent an invalid invoice: {e}"))?;
        let hash = invoice.payment_hash();
        if let Some(said) = answer.get("payment_hash").and_then(Value::as_str) {
            if said != hex(&hash) {
                return Err("LNbits's payment hash is not the invoice's".into());
            }
        }
        if invoice.amount_msat() != Some(sats.saturating_mul(1000)) {
            return Err(format!(
                "LNbits made an invoice for {:?} msat, not {} sats",
                invoice.amount_msat(),
                sats
            ));
        }
        Ok((bolt11, hash))
    }

    /// What LNbits says of the invoice with `payment_hash`.
    pub(crate) async fn status(&self, payment_hash: &[u8; 32]) -> Result<InvoiceStatus, String> {
        self.payment(payment_hash)
            .await
            .map(|(status, _)| status)
            .map_err(|e| e.to_string())
    }

    /// What LNbits says of the payment with `payment_hash` (incoming or outgoing), and its
    /// fee in millisats.
    async fn payment(&self, payment_hash: &[u8; 32]) -> Result<(InvoiceStatus, u64), CallError> {
        let url = format!("{}/api/v1/payments/{}", self.base, hex(payment_hash));
        let answer = self.call_with_status(self.http.get(url)).await?;
        let fee_msat = answer
            .get("details")
            .and_then(|d| d.get("fee"))
            .and_then(Value::as_i64)
            .map_or(0, i64::unsigned_abs);
        if answer.get("paid").and_then(Value::as_bool) == Some(true) {
            let preimage = answer
                .get("preimage")
                .and_then(Value::as_str)
                .and_then(parse_hash)
                .ok_or_else(|| {
                    CallError::Unknown("LNbits says paid but gave no preimage".into())
                })?;
            if <[u8; 32]>::from(Sha256::digest(preimage)) != *payment_hash {
                return Err(CallError::Unknown(
                    "LNbits's preimage does not hash to the payment hash".into(),
                ));
            }
            return Ok((InvoiceStatus::Paid(preimage), fee_msat));
        }
        let status = answer
            .get("status")
            .or_else(|| answer.get("details").and_then(|d| d.get("status")))
            .and_then(Value::as_str);
        let status = match status {
            Some("failed") | Some("expired") => InvoiceStatus::Failed,
            _ => InvoiceStatus::Pending,
        };
        Ok((status, fee_msat))
    }
}

/// A provider's [`LightningBackend`] on an LNbits wallet (its **invoice key**, which makes
/// invoices and reads their status but cannot spend).
///
/// Invoices come from LNbits's HTTP API, in whole sats rounded up (never below the price),
/// expiring with the payment window. Settlements come from LNbits's websocket, and from a
/// status poll of every pending invoice at start, whenever the websocket (re)connects and every
/// [`poll_interval`](Self::poll_interval), so a job paid while the provider or the connection
/// was down starts once it is back. The proof handed to the provider is the preimage, checked
/// against the invoice's payment hash. Plain `http://` is refused unless the host is a
/// loopback address or [`allow_insecure_http`](Self::allow_insecure_http) says so.
///
/// ```no_run
/// # fn example(keys: nostr_dvm::nostr::Keys, config: nostr_dvm::provider::ProviderConfig) -> Result<(), Box<dyn std::error::Error>> {
/// use nostr_dvm::runtime::{LnbitsBackend, ProviderRuntime};
///
/// let lnbits = LnbitsBackend::new("https://lnbits.example", "<the wallet's invoice key>")?;
/// let runtime = ProviderRuntime::new(keys, config).lightning(lnbits);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LnbitsBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    api: LnbitsApi,
    invoices: PendingInvoices,
}

impl LnbitsBackend {
    /// The LNbits server at `url` and a wallet's invoice key. `http://` is refused unless the
    /// host is a loopback address ([`allow_insecure_http`](Self::allow_insecure_http)
    /// otherwise).
    pub fn new(url: &str, invoice_key: &str) -> Result<Self, LnbitsError> {
        Self::build(url, invoice_key, false, Duration::from_secs(60))
    }

    /// Like [`new`](Self::new), accepting plain `http://` to any host: the invoice key then
    /// travels in the clear. Only for a server on a network you trust.
    pub fn allow_insecure_http(url: &str, invoice_key: &str) -> Result<Self, LnbitsError> {
        Self::build(url, invoice_key, true, Duration::from_secs(60))
    }

    /// Sets how often every pending invoice's status is polled besides the websocket's
    /// reports (default 60 s; at least 1 s). Takes effect from the next wait.
    pub fn poll_interval(self, every: Duration) -> Self {
        self.inner.invoices.set_poll_interval(every);
        self
    }

    fn build(
        url: &str,
        key: &str,
        allow_http: bool,
        poll_interval: Duration,
    ) -> Result<Self, LnbitsError> {
        Ok(Self {
            inner: Arc::new(Inner {
                api: LnbitsApi::new(url, key, allow_http)?,
                invoices: PendingInvoices::new(poll_interval),
            }),
        })
    }

    /// How many invoices it watches for payment.
    pub fn pending_invoices(&self) -> usize {
        self.inner.invoices.len()
    }
}

#[async_trait::async_trait]
impl LightningBackend for LnbitsBackend {
    async fn create_invoice(&self, request: InvoiceRequest) -> Result<String, String> {
        // LNbits takes whole sats: round up, never below the price.
        let sats = request.amount_msat.div_ceil(1000);
        let mut memo = request.description.clone();
        truncate_utf8(&mut memo, 600);
        let extra = json!({ "nostr_dvm_job": request.job.to_hex() });
        let (bolt11, hash) = self
            .inner
            .api
            .create_invoice(sats, &memo, request.expiry_secs, extra)
            .await?;
        let expires = super::now().as_secs().saturating_add(request.expiry_secs);
        self.inner.invoices.add(hash, request.job, expires);
        Ok(bolt11)
    }

    fn watch(&self, invoices: Vec<PendingInvoice>) {
        self.inner.invoices.restore(invoices);
    }

    fn attach(&self, settlements: Settlements) {
        let watcher = watch(Arc::downgrade(&self.inner), settlements);
        self.inner.invoices.start_watcher("LnbitsBackend", watcher);
    }
}

/// A customer's [`Wallet`] on an LNbits wallet (its **admin key**, which can spend: keep it
/// secret).
///
/// Before paying it asks LNbits the most it may spend on routing fees for the invoice
/// (`GET /api/v1/payments/fee-reserve`: LNbits reserves at least `LNBITS_RESERVE_FEE_MIN`,
/// 2 sats by default, or 1 % of the amount) and pays only when that is within the
/// `max_fee_msat` the customer allows
/// ([`CustomerConfig::max_fee_msat`](crate::customer::CustomerConfig::max_fee_msat): raise it
/// to what your LNbits reserves), so fees stay bounded. A payment whose call gets no clear
/// answer is reported pending and looked up, never assumed failed.
#[derive(Debug, Clone)]
pub struct LnbitsWallet {
    api: LnbitsApi,
}

impl LnbitsWallet {
    /// The LNbits server at `url` and a wallet's admin key. `http://` is refused unless the
    /// host is a loopback address.
    pub fn new(url: &str, admin_key: &str) -> Result<Self, LnbitsError> {
        Ok(Self {
            api: LnbitsApi::new(url, admin_key, false)?,
        })
    }

    /// Like [`new`](Self::new), accepting plain `http://` to any host: the admin key then
    /// travels in the clear. Only for a server on a network you trust.
    pub fn allow_insecure_http(url: &str, admin_key: &str) -> Result<Self, LnbitsError> {
        Ok(Self {
            api: LnbitsApi::new(url, admin_key, true)?,
        })
    }

    /// The most LNbits may spend on routing fees paying `bolt11`, in millisats.
    async fn fee_reserve(&self, bolt11: &str) -> Result<u64, String> {
        let url = format!("{}/api/v1/payments/fee-reserve", self.api.base);
        let answer = self
            .api
            .call(self.api.http.get(url).query(&[("invoice", bolt11)]))
            .await?;
        answer
            .get("fee_reserve")
            .and_then(Value::as_i64)
            .map(i64::unsigned_abs)
            .ok_or_else(|| "LNbits gave no fee reserve".to_owned())
    }

    /// The outcome of the payment with `hash`, as LNbits says now.
    async fn outcome(&self, hash: &[u8; 32]) -> PaymentOutcome {
        match self.api.payment(hash).await {
            Ok((InvoiceStatus::Paid(preimage), fee_msat)) => PaymentOutcome::Paid {
                preimage: Some(preimage),
                fee_msat,
            },
            Ok((InvoiceStatus::Failed, _)) => PaymentOutcome::failed(
                WalletFailure::PaymentFailed,
                "LNbits reports the payment failed",
            ),
            Ok((InvoiceStatus::Pending, _)) => PaymentOutcome::Pending,
            // This wallet has no such payment: it never started it.
            Err(CallError::Refused(404, _)) => PaymentOutcome::failed(
                WalletFailure::NotFound,
                "LNbits has no such payment: it was never made",
            ),
            Err(e) => {
                tracing::warn!("LNbits payment {}: {e}", hex(hash));
                PaymentOutcome::Pending
            }
        }
    }
}

#[async_trait::async_trait]
impl Wallet for LnbitsWallet {
    async fn pay_invoice(&self, bolt11: &str, max_fee_msat: u64) -> PaymentOutcome {
        let invoice = match Invoice::parse(bolt11) {
            Ok(invoice) => invoice,
            Err(e) => return PaymentOutcome::failed(WalletFailure::Other, e.to_string()),
        };
        let hash = invoice.payment_hash();
        match self.fee_reserve(bolt11).await {
            Ok(reserve) if reserve > max_fee_msat => {
                return PaymentOutcome::failed(
                    WalletFailure::FeeAboveLimit,
                    format!(
                        "LNbits may spend up to {reserve} msat on fees, above the limit of \
                         {max_fee_msat} msat: not paid"
                    ),
                )
            }
            Ok(_) => {}
            Err(e) => {
                return PaymentOutcome::failed(WalletFailure::Other, format!("not paid: {e}"))
            }
        }
        let url = format!("{}/api/v1/payments", self.api.base);
        let body = json!({ "out": true, "bolt11": bolt11 });
        match self
            .api
            .call_with_status(self.api.http.post(url).json(&body))
            .await
        {
            Ok(_) => self.outcome(&hash).await,
            // A refusal (4xx), or LNbits's own "payment failed" (520): nothing was paid.
            Err(CallError::Refused(status, why)) if status < 500 || status == 520 => {
                let failure = if why.to_lowercase().contains("insufficient balance") {
                    WalletFailure::InsufficientBalance
                } else {
                    WalletFailure::PaymentFailed
                };
                PaymentOutcome::failed(failure, why)
            }
            // It may have gone through: look it up rather than call it failed.
            Err(CallError::Refused(_, why) | CallError::Unknown(why)) => {
                tracing::warn!("LNbits payment {}: {why}", hex(&hash));
                self.outcome(&hash).await
            }
        }
    }

    async fn lookup_payment(&self, payment_hash: [u8; 32]) -> PaymentOutcome {
        self.outcome(&payment_hash).await
    }
}

/// The watcher: websocket reports and polls, until the runtime stops or the backend is
/// dropped.
async fn watch(inner: std::sync::Weak<Inner>, settlements: Settlements) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let Some(backend) = inner.upgrade() else {
            return;
        };
        let url = backend.api.websocket_url();
        let connected = tokio_tungstenite::connect_async(url.as_str()).await;
        // Poll on every (re)connection, and at start: what was paid meanwhile.
        if !poll(&backend, &settlements).await {
            return;
        }
        match connected {
            Ok((mut socket, _)) => {
                backoff = Duration::from_secs(1);
                drop(backend);
                loop {
                    // No reference to the backend while waiting: dropping it stops this.
                    let Some(next_poll) = inner.upgrade().map(|b| b.invoices.next_poll()) else {
                        return;
                    };
                    tokio::select! {
                        message = socket.next() => match message {
                            Some(Ok(message)) => {
                                let text = message.into_text().unwrap_or_default();
                                let hashes = mentioned_hashes(&text);
                                let Some(backend) = inner.upgrade() else {
                                    return;
                                };
                                if !hashes.is_empty() && !check(&backend, &settlements, &hashes).await {
                                    return;
                                }
                            }
                            Some(Err(e)) => {
                                tracing::warn!("LNbits websocket: {e}");
                                break;
                            }
                            None => break,
                        },
                        () = next_poll.wait() => {
                            let Some(backend) = inner.upgrade() else {
                                return;
                            };
                            if !poll(&backend, &settlements).await {
                                return;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!("LNbits websocket {}: {e}", redact(&url));
                let every = backend.invoices.poll_interval();
                drop(backend);
                // Until it reconnects, the polls still find payments.
                tokio::time::sleep(backoff.min(every)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Polls every pending invoice; `false` once the runtime has stopped.
async fn poll(backend: &Inner, settlements: &Settlements) -> bool {
    check(backend, settlements, &backend.invoices.hashes()).await
}

/// Asks LNbits for the status of each of `hashes` that is pending and reports the paid ones;
/// `false` once the runtime has stopped.
async fn check(backend: &Inner, settlements: &Settlements, hashes: &[[u8; 32]]) -> bool {
    let now = super::now().as_secs();
    for hash in hashes {
        let Some((job, expires)) = backend.invoices.get(hash) else {
            continue;
        };
        match backend.api.status(hash).await {
            Ok(InvoiceStatus::Paid(preimage)) => {
                if !settlements
                    .settle(job, PaymentProof::Preimage(preimage))
                    .await
                {
                    return false;
                }
                backend.invoices.remove(hash);
            }
            Ok(InvoiceStatus::Failed) => backend.invoices.remove(hash),
            Ok(InvoiceStatus::Pending) => {
                if PendingInvoices::given_up(expires, now) {
                    backend.invoices.remove(hash);
                }
            }
            Err(e) => tracing::warn!("LNbits status of job {job}'s invoice: {e}"),
        }
    }
    true
}

/// Every 64-hex-digit `payment_hash` value in a websocket message.
fn mentioned_hashes(text: &str) -> Vec<[u8; 32]> {
    fn walk(value: &Value, out: &mut Vec<[u8; 32]>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    if key == "payment_hash" {
                        if let Some(hash) = v.as_str().and_then(parse_hash) {
                            out.push(hash);
                        }
                    } else {
                        walk(v, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::String(s) if s.starts_with('{') => {
                if let Ok(inner) = serde_json::from_str(s) {
                    walk(&inner, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        walk(&value, &mut out);
    }
    out
}

/// A 32-byte value from 64 hex digits.
fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// `url` without its last path segment (the key), for logs.
fn redact(url: &str) -> String {
    match url.rfind('/') {
        Some(i) => format!("{}/<key>", &url[..i]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        assert!(LnbitsApi::new("http://127.0.0.1:5000", "k", false).is_ok());
        assert!(LnbitsApi::new("http://localhost:5000/", "k", false).is_ok());
        assert!(LnbitsApi::new("http://[::1]:5000", "k", false).is_ok());
        assert_eq!(
            LnbitsApi::new("http://lnbits.example", "k", false).unwrap_err(),
            LnbitsError::InsecureHttp("http://lnbits.example".into())
        );
        assert!(LnbitsApi::new("http://lnbits.example", "k", true).is_ok());
        assert!(LnbitsApi::new("https://lnbits.example", "k", false).is_ok());
        assert!(matches!(
            LnbitsApi::new("ftp://lnbits.example", "k", true),
            Err(LnbitsError::InvalidUrl(_))
        ));
    }

    #[test]
    fn websocket_url_follows_the_scheme() {
        let api = LnbitsApi::new("https://lnbits.example/", "abc", false).unwrap();
        assert_eq!(api.websocket_url(), "wss://lnbits.example/api/v1/ws/abc");
        let api = LnbitsApi::new("http://127.0.0.1:5000", "abc", false).unwrap();
        assert_eq!(api.websocket_url(), "ws://127.0.0.1:5000/api/v1/ws/abc");
        assert_eq!(
            redact(&api.websocket_url()),
            "ws://127.0.0.1:5000/api/v1/ws/<key>"
        );
    }

    #[test]
    fn payment_hashes_are_found_anywhere_in_a_message() {
        let h = "ab".repeat(32);
        let text = format!(
            r#"{{"payment": {{"payment_hash": "{h}", "amount": 1}}, "x": [{{"payment_hash": "zz"}}]}}"#
        );
        assert_eq!(mentioned_hashes(&text), vec![[0xab; 32]]);
        let nested =
            serde_json::to_string(&json!({ "data": format!(r#"{{"payment_hash":"{h}"}}"#) }))
                .unwrap();
        assert_eq!(mentioned_hashes(&nested), vec![[0xab; 32]]);
        assert!(mentioned_hashes("not json").is_empty());
    }

    #[test]
    fn memos_are_cut_on_a_char_boundary() {
        let mut s = "é".repeat(400);
        truncate_utf8(&mut s, 601);
        assert_eq!(s.len(), 600);
    }
}
