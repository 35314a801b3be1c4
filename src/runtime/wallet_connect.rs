//! Nostr Wallet Connect (NIP-47, feature `nwc`): a provider paid into, and a customer paying
//! from, any wallet a `nostr+walletconnect://` URI reaches (Alby Hub, Coinos, cashu.me,
//! LNbits's NWC extension...), over the relay the URI names, with rust-nostr's `nwc` client.
//!
//! - [`NwcBackend`], a provider's [`LightningBackend`]: `make_invoice` for each job, and the
//!   settlements from NIP-47 `payment_received` notifications where the wallet sends them and
//!   from `lookup_invoice` polls of the pending invoices otherwise (at start, after a restart,
//!   every [`NwcBackend::poll_interval`]). A settlement needs the preimage of the invoice's
//!   payment hash.
//! - [`NwcWallet`], a customer's [`Wallet`]: `pay_invoice`, and `lookup_invoice` for what a
//!   timeout or a restart left in doubt. A wallet error that means nothing was paid is a
//!   [`PaymentOutcome::Failed`] of a [`WalletFailure`] kind; one that does not say (an internal
//!   error, no answer) is [`PaymentOutcome::Pending`]: the customer looks the payment up and
//!   never pays the same invoice twice.
//!
//! The connection secret is the key that spends: it appears in no `Debug` output, log line or
//! error message of this module (they name the wallet by its public key).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use nostr::nips::nip47::{
    self, ErrorCode, LookupInvoiceRequest, LookupInvoiceResponse, MakeInvoiceRequest,
    NostrWalletConnectURI, Notification, NotificationResult, PayInvoiceRequest, TransactionState,
};
use nostr::{EventId, PublicKey};
use nostr_sdk::pool::monitor::{Monitor, MonitorNotification};
use nwc::prelude::{NostrWalletConnectOptions, NWC};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use super::pending_invoices::PendingInvoices;
use super::{InvoiceRequest, LightningBackend, PendingInvoice, Settlements, Wallet};
use crate::bolt11::Invoice;
use crate::customer::{PaymentOutcome, WalletFailure};
use crate::provider::PaymentProof;

/// How long an NWC request waits for the wallet's answer by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a [`NwcBackend`] looks up its pending invoices by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Why an NWC wallet cannot be used. It never holds the connection URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NwcError {
    /// The text is not a `nostr+walletconnect://` URI with a wallet key, a relay and a secret.
    #[error(
        "not a Nostr Wallet Connect URI (nostr+walletconnect://<wallet key>?relay=..&secret=..)"
    )]
    InvalidUri,
}

/// How many `lookup_invoice` requests a poll of the pending invoices has under way at once.
const LOOKUPS_AT_ONCE: usize = 8;

/// How many relay status changes wait for the watcher before the oldest are dropped (it
/// then polls, as for a reconnection).
const MONITOR_CAPACITY: usize = 64;

/// A parsed connection: the `nwc` client and what may be shown of it.
#[derive(Clone)]
struct Connection {
    client: NWC,
    /// Every status change of the wallet's relays (a reconnection, however brief, included).
    monitor: Monitor,
    /// The wallet service's key: how logs and `Debug` name the wallet.
    wallet: PublicKey,
}

impl Connection {
    fn open(uri: &str, timeout: Duration) -> Result<Self, NwcError> {
        // The parser's own error may quote the text: it is not passed on.
        let uri = NostrWalletConnectURI::from_str(uri.trim()).map_err(|_| NwcError::InvalidUri)?;
        if uri.relays.is_empty() {
            return Err(NwcError::InvalidUri);
        }
        let wallet = uri.public_key;
        let monitor = Monitor::new(MONITOR_CAPACITY);
        let options = NostrWalletConnectOptions::new()
            .timeout(timeout)
            .monitor(monitor.clone());
        Ok(Self {
            client: NWC::with_opts(uri, options),
            monitor,
            wallet,
        })
    }

    async fn methods(&self) -> Result<Vec<String>, String> {
        let info = self.client.get_info().await.map_err(|e| describe(&e))?;
        Ok(info
            .methods
            .iter()
            .filter_map(|m| serde_json::to_value(m).ok()?.as_str().map(str::to_owned))
            .collect())
    }
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NwcConnection")
            .field("wallet", &self.wallet.to_hex())
            .finish_non_exhaustive()
    }
}

/// What an NWC call gave when it failed: the wallet's error code, or no answer at all.
fn error_code(error: &nwc::Error) -> Option<ErrorCode> {
    match error {
        nwc::Error::NIP47(nip47::Error::ErrorCode(e)) => Some(e.code),
        _ => None,
    }
}

/// The wallet's error, for a log line or a failure reason (never the URI: `nwc`'s errors
/// name relays and codes, not secrets).
fn describe(error: &nwc::Error) -> String {
    match error {
        nwc::Error::NIP47(nip47::Error::ErrorCode(e)) => {
            format!("the wallet answered {:?}: {}", e.code, e.message)
        }
        nwc::Error::PrematureExit | nwc::Error::Timeout => "the wallet did not answer".into(),
        other => other.to_string(),
    }
}

/// The kind of failure a NIP-47 error code means for a payment, when it means nothing was
/// paid; `None` when it does not say (`INTERNAL`, `OTHER`: look the payment up).
fn payment_failure(code: &ErrorCode) -> Option<WalletFailure> {
    Some(match code {
        ErrorCode::InsufficientBalance => WalletFailure::InsufficientBalance,
        ErrorCode::QuotaExceeded => WalletFailure::BudgetExceeded,
        ErrorCode::RateLimited => WalletFailure::RateLimited,
        ErrorCode::NotImplemented => WalletFailure::Unsupported,
        ErrorCode::Restricted | ErrorCode::Unauthorized => WalletFailure::NotAllowed,
        ErrorCode::PaymentFailed => WalletFailure::PaymentFailed,
        ErrorCode::NotFound => WalletFailure::NotFound,
        ErrorCode::Internal | ErrorCode::Other => return None,
    })
}

/// A 32-byte value from hex; `None` for anything else.
fn bytes32(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_text.trim()).ok()?;
    bytes.try_into().ok()
}

/// The preimage in `text` if it is the one of `payment_hash`.
fn proven_preimage(text: Option<&str>, payment_hash: &[u8; 32]) -> Option<[u8; 32]> {
    let preimage = bytes32(text?)?;
    let digest: [u8; 32] = Sha256::digest(preimage).into();
    (digest == *payment_hash).then_some(preimage)
}

/// Whether a looked-up transaction is settled.
fn settled(transaction: &LookupInvoiceResponse) -> bool {
    transaction.state == Some(TransactionState::Settled) || transaction.settled_at.is_some()
}

/// A provider's [`LightningBackend`] on an NWC wallet.
///
/// Invoices come from the wallet's `make_invoice` (in msat; an invoice for less than the
/// price, as a wallet rounding to whole sats down would make, or for any amount, is refused).
/// A job's payment is settled, with the preimage as proof, when the wallet's
/// `payment_received` notification or a `lookup_invoice` poll shows it settled. Many wallet
/// services send no notifications: the polls are what finds payments then (every
/// [`poll_interval`](Self::poll_interval), at start and for the invoices a restart left
/// pending).
///
/// ```no_run
/// # fn example(keys: nostr_dvm::nostr::Keys, config: nostr_dvm::provider::ProviderConfig) -> Result<(), Box<dyn std::error::Error>> {
/// use nostr_dvm::runtime::{NwcBackend, ProviderRuntime};
///
/// let uri = std::env::var("NOSTR_DVM_NWC")?; // nostr+walletconnect://...
/// let runtime = ProviderRuntime::new(keys, config).lightning(NwcBackend::new(&uri)?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NwcBackend {
    inner: Arc<BackendInner>,
}

#[derive(Debug)]
struct BackendInner {
    connection: Connection,
    invoices: PendingInvoices,
}

impl NwcBackend {
    /// The wallet a `nostr+walletconnect://` URI reaches (it needs `make_invoice` and
    /// `lookup_invoice`).
    pub fn new(uri: &str) -> Result<Self, NwcError> {
        Self::with_timeout(uri, DEFAULT_REQUEST_TIMEOUT)
    }

    /// Like [`new`](Self::new), waiting at most `timeout` for each answer of the wallet.
    pub fn with_timeout(uri: &str, timeout: Duration) -> Result<Self, NwcError> {
        Ok(Self {
            inner: Arc::new(BackendInner {
                connection: Connection::open(uri, timeout)?,
                invoices: PendingInvoices::new(DEFAULT_POLL_INTERVAL),
            }),
        })
    }

    /// Sets how often every pending invoice is looked up (default
    /// [`DEFAULT_POLL_INTERVAL`]; at least 1 s). Takes effect from the next wait.
    pub fn poll_interval(self, every: Duration) -> Self {
        self.inner.invoices.set_poll_interval(every);
        self
    }

    /// How many invoices it watches for payment.
    pub fn pending_invoices(&self) -> usize {
        self.inner.invoices.len()
    }

    /// The wallet service's public key.
    pub fn wallet(&self) -> PublicKey {
        self.inner.connection.wallet
    }

    /// The NIP-47 methods the wallet offers this connection (its `get_info` answer): a check
    /// of the connection before serving (it needs `make_invoice` and `lookup_invoice`).
    pub async fn methods(&self) -> Result<Vec<String>, String> {
        self.inner.connection.methods().await
    }
}

#[async_trait::async_trait]
impl LightningBackend for NwcBackend {
    async fn create_invoice(&self, request: InvoiceRequest) -> Result<String, String> {
        let asked = MakeInvoiceRequest {
            amount: request.amount_msat,
            description: Some(request.description.clone()),
            description_hash: None,
            expiry: Some(request.expiry_secs),
        };
        let made = self
            .inner
            .connection
            .client
            .make_invoice(asked)
            .await
            .map_err(|e| describe(&e))?;
        // The invoice itself, not the wallet's word about it, says what is paid and proven.
        let invoice = Invoice::parse(&made.invoice)
            .map_err(|e| format!("the wallet's invoice does not parse: {e}"))?;
        match invoice.amount_msat() {
            Some(amount) if amount >= request.amount_msat => {}
            Some(amount) => {
                return Err(format!(
                    "the wallet's invoice asks {amount} msat, less than the price of {} msat",
                    request.amount_msat
                ))
            }
            None => return Err("the wallet's invoice has no amount".into()),
        }
        let expires = super::now().as_secs().saturating_add(request.expiry_secs);
        self.inner
            .invoices
            .add(invoice.payment_hash(), request.job, expires);
        Ok(made.invoice)
    }

    fn watch(&self, invoices: Vec<PendingInvoice>) {
        self.inner.invoices.restore(invoices);
    }

    fn attach(&self, settlements: Settlements) {
        let watcher = watch(Arc::downgrade(&self.inner), settlements);
        self.inner.invoices.start_watcher("NwcBackend", watcher);
    }
}

/// The job and preimage a wallet notification settles, if it is a `payment_received` for a
/// pending invoice and carries that invoice's preimage.
fn notified_settlement(
    notification: &Notification,
    pending: &HashMap<[u8; 32], (EventId, u64)>,
) -> Option<([u8; 32], EventId, [u8; 32])> {
    let NotificationResult::PaymentReceived(payment) = &notification.notification else {
        return None;
    };
    let hash = bytes32(&payment.payment_hash)?;
    let (job, _) = pending.get(&hash)?;
    let preimage = proven_preimage(Some(&payment.preimage), &hash)?;
    Some((hash, *job, preimage))
}

/// The watcher: the wallet's notifications and the polls, until the runtime stops or the
/// backend is dropped.
async fn watch(inner: Weak<BackendInner>, settlements: Settlements) {
    let Some(backend) = inner.upgrade() else {
        return;
    };
    let client = backend.connection.client.clone();
    // Before the first subscription: a reconnection from now on is seen.
    let changes = backend.connection.monitor.subscribe();
    drop(backend);
    if let Err(e) = client.subscribe_to_notifications().await {
        tracing::warn!("NWC notifications: {}", describe(&e));
    }
    let notified = {
        let inner = inner.clone();
        let settlements = settlements.clone();
        let client = client.clone();
        async move {
            loop {
                let inner = inner.clone();
                let settlements = settlements.clone();
                let handled = client
                    .handle_notifications(move |notification| {
                        let inner = inner.clone();
                        let settlements = settlements.clone();
                        async move {
                            let Some(backend) = inner.upgrade() else {
                                return Ok(true);
                            };
                            let found = backend
                                .invoices
                                .with(|p| notified_settlement(&notification, p))
                                .flatten();
                            if let Some((hash, job, preimage)) = found {
                                if !settlements
                                    .settle(job, PaymentProof::Preimage(preimage))
                                    .await
                                {
                                    return Ok(true);
                                }
                                backend.invoices.remove(&hash);
                            }
                            Ok(false)
                        }
                    })
                    .await;
                match handled {
                    // Stopped on purpose (the runtime or the backend is gone), or the pool shut.
                    Ok(()) => return,
                    // A notification that did not parse ends `nwc`'s handler: listen again.
                    Err(e) => tracing::warn!("NWC notification: {}", describe(&e)),
                }
            }
        }
    };
    let polled = {
        let inner = inner.clone();
        async move {
            loop {
                let Some(backend) = inner.upgrade() else {
                    return;
                };
                if !poll(&backend, &settlements).await {
                    return;
                }
                // No reference to the backend while waiting: dropping it stops this.
                let next_poll = backend.invoices.next_poll();
                drop(backend);
                next_poll.wait().await;
            }
        }
    };
    tokio::select! {
        () = notified => {}
        () = polled => {}
        () = poll_on_reconnection(inner, client, changes) => {}
    }
}

/// Asks for a poll each time a relay of the wallet connects again (what was paid while the
/// connection was down, notifications included, is found then): every status change of the
/// wallet's relays comes from the pool's monitor, so a drop and a reconnection in quick
/// succession are both seen. Changes missed because the watcher lagged count as a
/// reconnection. Ends when the backend is dropped.
async fn poll_on_reconnection(
    inner: Weak<BackendInner>,
    client: NWC,
    mut changes: broadcast::Receiver<MonitorNotification>,
) {
    loop {
        let connected = match changes.recv().await {
            Ok(MonitorNotification::StatusChanged { status, .. }) => {
                status == nostr_sdk::RelayStatus::Connected
            }
            Err(broadcast::error::RecvError::Lagged(_)) => true,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !connected {
            continue;
        }
        let Some(backend) = inner.upgrade() else {
            return;
        };
        backend.invoices.poll_soon();
        drop(backend);
        // A subscription to the notifications that failed at start (the relay was down) is
        // made now; `nwc` does nothing when it is already made.
        if let Err(e) = client.subscribe_to_notifications().await {
            tracing::warn!("NWC notifications: {}", describe(&e));
        }
    }
}

/// Looks up every pending invoice and reports the settled ones; `false` once the runtime has
/// stopped.
async fn poll(backend: &BackendInner, settlements: &Settlements) -> bool {
    let now = super::now().as_secs();
    let lookups = backend
        .invoices
        .hashes()
        .into_iter()
        .filter_map(|hash| {
            let (job, expires) = backend.invoices.get(&hash)?;
            Some((hash, job, expires))
        })
        .map(|(hash, job, expires)| async move {
            let lookup = LookupInvoiceRequest {
                payment_hash: Some(hex::encode(hash)),
                invoice: None,
            };
            let answer = backend.connection.client.lookup_invoice(lookup).await;
            (hash, job, expires, answer)
        });
    // A few at a time: each is a round trip through the wallet's relay, and one at a time a
    // provider with many unpaid invoices would find a payment only at the end of a long round.
    let mut answers = futures_util::stream::iter(lookups).buffer_unordered(LOOKUPS_AT_ONCE);
    while let Some((hash, job, expires, answer)) = answers.next().await {
        let forget = match answer {
            Ok(transaction) if settled(&transaction) => {
                match proven_preimage(transaction.preimage.as_deref(), &hash) {
                    Some(preimage) => {
                        if !settlements
                            .settle(job, PaymentProof::Preimage(preimage))
                            .await
                        {
                            return false;
                        }
                        true
                    }
                    None => {
                        tracing::warn!(
                            %job,
                            "the wallet says the invoice is settled but gives no preimage of it"
                        );
                        false
                    }
                }
            }
            Ok(transaction) => {
                matches!(
                    transaction.state,
                    Some(TransactionState::Expired | TransactionState::Failed)
                ) || PendingInvoices::given_up(expires, now)
            }
            Err(e) => {
                tracing::warn!(%job, "NWC lookup of the job's invoice: {}", describe(&e));
                PendingInvoices::given_up(expires, now)
            }
        };
        if forget {
            backend.invoices.remove(&hash);
        }
    }
    true
}

/// A customer's [`Wallet`] on an NWC wallet (it needs `pay_invoice` and `lookup_invoice`).
///
/// The customer's limits (auto-pay, the job's bid, the budget) are checked by the customer
/// before anything reaches the wallet; the connection's own budget, set in the wallet, is a
/// second bound (`QUOTA_EXCEEDED` becomes [`WalletFailure::BudgetExceeded`]).
///
/// NIP-47's `pay_invoice` carries no fee limit: the wallet service decides what it spends on
/// routing. `max_fee_msat` is therefore checked after the fact on the fee the wallet reports:
/// a payment that cost more is still paid, and the customer tells the application
/// ([`Notification::FeeAboveLimit`](crate::customer::Notification::FeeAboveLimit)). Give the
/// connection a budget in the wallet to bound what fees can cost.
///
/// ```no_run
/// # async fn example(customer: &mut nostr_dvm::runtime::CustomerRuntime) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use nostr_dvm::runtime::NwcWallet;
///
/// let uri = std::env::var("NOSTR_DVM_NWC")?; // nostr+walletconnect://...
/// customer.set_wallet(Arc::new(NwcWallet::new(&uri)?));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NwcWallet {
    connection: Connection,
}

impl NwcWallet {
    /// The wallet a `nostr+walletconnect://` URI reaches.
    pub fn new(uri: &str) -> Result<Self, NwcError> {
        Self::with_timeout(uri, DEFAULT_REQUEST_TIMEOUT)
    }

    /// Like [`new`](Self::new), waiting at most `timeout` for each answer of the wallet (a
    /// payment not answered in time is reported pending and looked up later).
    pub fn with_timeout(uri: &str, timeout: Duration) -> Result<Self, NwcError> {
        Ok(Self {
            connection: Connection::open(uri, timeout)?,
        })
    }

    /// The wallet service's public key.
    pub fn wallet(&self) -> PublicKey {
        self.connection.wallet
    }

    /// The NIP-47 methods the wallet offers this connection (its `get_info` answer): a check
    /// of the connection before paying (it needs `pay_invoice` and `lookup_invoice`).
    pub async fn methods(&self) -> Result<Vec<String>, String> {
        self.connection.methods().await
    }
}

/// What a failed NWC call means for a payment: a failure of a kind when the wallet's code
/// says nothing was paid, otherwise (no answer, an internal error) pending, to be looked up.
fn unsure_or_failed(error: &nwc::Error) -> PaymentOutcome {
    match error_code(error).as_ref().and_then(payment_failure) {
        Some(failure) => PaymentOutcome::failed(failure, describe(error)),
        None => {
            tracing::warn!("NWC payment: {}: looked up later", describe(error));
            PaymentOutcome::Pending
        }
    }
}

/// What a failed look-up means for a payment: only `NOT_FOUND` says the wallet never made
/// it; any other error (rate limited, internal, no answer) says nothing about the payment,
/// which stays pending. Calling it failed would free its budget while it may be paid, and let
/// the job be paid again another way (a zap).
fn looked_up_error(error: &nwc::Error) -> PaymentOutcome {
    match error_code(error) {
        Some(ErrorCode::NotFound) => {
            PaymentOutcome::failed(WalletFailure::NotFound, describe(error))
        }
        _ => {
            tracing::warn!(
                "NWC payment look-up: {}: looked up again later",
                describe(error)
            );
            PaymentOutcome::Pending
        }
    }
}

#[async_trait::async_trait]
impl Wallet for NwcWallet {
    async fn pay_invoice(&self, bolt11: &str, max_fee_msat: u64) -> PaymentOutcome {
        let hash = match Invoice::parse(bolt11) {
            Ok(invoice) => invoice.payment_hash(),
            Err(e) => return PaymentOutcome::failed(WalletFailure::Other, e.to_string()),
        };
        let request = PayInvoiceRequest::new(bolt11);
        match self.connection.client.pay_invoice(request).await {
            Ok(paid) => match proven_preimage(Some(&paid.preimage), &hash) {
                Some(preimage) => {
                    let fee_msat = paid.fees_paid.unwrap_or(0);
                    if fee_msat > max_fee_msat {
                        tracing::error!(
                            fee_msat,
                            max_fee_msat,
                            "the NWC wallet spent more on fees than the limit"
                        );
                    }
                    PaymentOutcome::Paid {
                        preimage: Some(preimage),
                        fee_msat,
                    }
                }
                // Paid, says the wallet, without proof: ask it again later.
                None => {
                    tracing::warn!("the NWC wallet's preimage is not the invoice's: looked up");
                    PaymentOutcome::Pending
                }
            },
            Err(e) => unsure_or_failed(&e),
        }
    }

    async fn lookup_payment(&self, payment_hash: [u8; 32]) -> PaymentOutcome {
        let lookup = LookupInvoiceRequest {
            payment_hash: Some(hex::encode(payment_hash)),
            invoice: None,
        };
        match self.connection.client.lookup_invoice(lookup).await {
            Ok(transaction) if settled(&transaction) => {
                match proven_preimage(transaction.preimage.as_deref(), &payment_hash) {
                    Some(preimage) => PaymentOutcome::Paid {
                        preimage: Some(preimage),
                        fee_msat: transaction.fees_paid,
                    },
                    None => PaymentOutcome::Pending,
                }
            }
            Ok(transaction) => match transaction.state {
                Some(TransactionState::Failed | TransactionState::Expired) => {
                    PaymentOutcome::failed(
                        WalletFailure::PaymentFailed,
                        "the wallet reports the payment failed",
                    )
                }
                _ => PaymentOutcome::Pending,
            },
            Err(e) => looked_up_error(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_OF_ZEROS: &str = "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925";

    #[test]
    fn a_uri_error_never_holds_the_uri() {
        let secret = "ab".repeat(32);
        let bad =
            format!("nostr+walletconnect://notakey?relay=wss%3A%2F%2Fr.example&secret={secret}");
        let e = NwcBackend::new(&bad).unwrap_err();
        assert!(!e.to_string().contains(&secret));
        assert!(!format!("{e:?}").contains(&secret));
        let no_relay = format!(
            "nostr+walletconnect://{}?secret={secret}",
            nostr::Keys::generate().public_key().to_hex()
        );
        assert!(NwcWallet::new(&no_relay).is_err());
    }

    #[test]
    fn debug_shows_the_wallet_key_not_the_secret() {
        let wallet = nostr::Keys::generate().public_key();
        let secret = nostr::Keys::generate().secret_key().to_secret_hex();
        let uri = format!(
            "nostr+walletconnect://{}?relay=wss%3A%2F%2Frelay.example&secret={secret}",
            wallet.to_hex()
        );
        let backend = NwcBackend::new(&uri).unwrap();
        let shown = format!("{backend:?} {:?}", NwcWallet::new(&uri).unwrap());
        assert!(shown.contains(&wallet.to_hex()));
        assert!(!shown.contains(&secret));
    }

    #[test]
    fn error_codes_that_say_nothing_was_paid_are_failures_the_others_are_looked_up() {
        assert_eq!(
            payment_failure(&ErrorCode::InsufficientBalance),
            Some(WalletFailure::InsufficientBalance)
        );
        assert_eq!(
            payment_failure(&ErrorCode::QuotaExceeded),
            Some(WalletFailure::BudgetExceeded)
        );
        assert_eq!(
            payment_failure(&ErrorCode::RateLimited),
            Some(WalletFailure::RateLimited)
        );
        assert_eq!(
            payment_failure(&ErrorCode::NotImplemented),
            Some(WalletFailure::Unsupported)
        );
        assert_eq!(payment_failure(&ErrorCode::Internal), None);
        assert_eq!(payment_failure(&ErrorCode::Other), None);
        // A look-up: only NOT_FOUND means never made; a refusal of the look-up itself (rate
        // limited, budget, internal) leaves the payment pending.
        let wallet_error = |code| {
            nwc::Error::NIP47(nip47::Error::ErrorCode(nip47::NIP47Error {
                code,
                message: "from the wallet".into(),
            }))
        };
        assert!(matches!(
            looked_up_error(&wallet_error(ErrorCode::NotFound)),
            PaymentOutcome::Failed {
                failure: WalletFailure::NotFound,
                ..
            }
        ));
        for code in [
            ErrorCode::RateLimited,
            ErrorCode::QuotaExceeded,
            ErrorCode::InsufficientBalance,
            ErrorCode::Internal,
        ] {
            assert_eq!(
                looked_up_error(&wallet_error(code)),
                PaymentOutcome::Pending
            );
        }
        assert_eq!(
            looked_up_error(&nwc::Error::Timeout),
            PaymentOutcome::Pending
        );
        assert_eq!(
            unsure_or_failed(&nwc::Error::PrematureExit),
            PaymentOutcome::Pending
        );
    }

    #[test]
    fn a_preimage_proves_only_its_own_hash() {
        let hash = bytes32(HASH_OF_ZEROS).unwrap();
        assert_eq!(
            proven_preimage(Some(&"00".repeat(32)), &hash),
            Some([0; 32])
        );
        assert_eq!(proven_preimage(Some(&"01".repeat(32)), &hash), None);
        assert_eq!(proven_preimage(Some("zz"), &hash), None);
        assert_eq!(proven_preimage(None, &hash), None);
    }

    /// A `payment_received` notification as NIP-47 gives it (recorded shape: the wallet
    /// service sends it encrypted; this is its content).
    fn received(payment_hash: &str, preimage: &str) -> Notification {
        let json = serde_json::json!({
            "notification_type": "payment_received",
            "notification": {
                "type": "incoming",
                "state": "settled",
                "invoice": "lnbc10n1...",
                "description": "job",
                "preimage": preimage,
                "payment_hash": payment_hash,
                "amount": 1000,
                "fees_paid": 0,
                "created_at": 1_700_000_000,
                "settled_at": 1_700_000_010,
                "metadata": {}
            }
        });
        Notification::from_value(json).unwrap()
    }

    #[test]
    fn a_notification_settles_a_pending_invoice_with_its_preimage_only() {
        let job = EventId::all_zeros();
        let hash = bytes32(HASH_OF_ZEROS).unwrap();
        let pending = HashMap::from([(hash, (job, u64::MAX))]);
        let good = received(HASH_OF_ZEROS, &"00".repeat(32));
        assert_eq!(
            notified_settlement(&good, &pending),
            Some((hash, job, [0; 32]))
        );
        // A wrong preimage, an invoice not pending, a payment sent: nothing settles.
        let wrong = received(HASH_OF_ZEROS, &"01".repeat(32));
        assert_eq!(notified_settlement(&wrong, &pending), None);
        assert_eq!(notified_settlement(&good, &HashMap::new()), None);
    }

    /// A `payment_received` notification event as a wallet service publishes it (kind 23196,
    /// NIP-04 encrypted to the client, tagged to it, signed by `wallet`).
    fn notification_event(
        wallet: &nostr::Keys,
        client: &PublicKey,
        preimage: &str,
    ) -> nostr::Event {
        let content = serde_json::json!({
            "notification_type": "payment_received",
            "notification": {
                "type": "incoming", "state": "settled", "invoice": "lnbc10n1...",
                "preimage": preimage, "payment_hash": HASH_OF_ZEROS, "amount": 1000,
                "fees_paid": 0, "created_at": 1_700_000_000, "settled_at": 1_700_000_010
            }
        })
        .to_string();
        let encrypted = nostr::nips::nip04::encrypt(wallet.secret_key(), client, content).unwrap();
        nostr::EventBuilder::new(nostr::Kind::WalletConnectNotification, encrypted)
            .tag(nostr::Tag::public_key(*client))
            .sign_with_keys(wallet)
            .unwrap()
    }

    #[test]
    fn a_notification_event_from_the_wallet_settles_one_from_anyone_else_does_not() {
        let wallet = nostr::Keys::generate();
        let client = nostr::Keys::generate();
        let relay = nostr::RelayUrl::parse("wss://relay.example").unwrap();
        let uri = NostrWalletConnectURI::new(
            wallet.public_key(),
            vec![relay],
            client.secret_key().clone(),
            None,
        );
        let job = EventId::all_zeros();
        let hash = bytes32(HASH_OF_ZEROS).unwrap();
        let pending = HashMap::from([(hash, (job, u64::MAX))]);

        let event = notification_event(&wallet, &client.public_key(), &"00".repeat(32));
        let notification = Notification::from_event(&uri, &event).unwrap();
        assert_eq!(
            notified_settlement(&notification, &pending),
            Some((hash, job, [0; 32]))
        );
        // The same notification from another key (the relay's, a stranger's) is refused.
        let stranger = nostr::Keys::generate();
        let forged = notification_event(&stranger, &client.public_key(), &"00".repeat(32));
        assert!(Notification::from_event(&uri, &forged).is_err());
    }
}
