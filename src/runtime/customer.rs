//! [`CustomerRuntime`]: a [`Customer`] on tokio and nostr-sdk.

use crate::relay::RelayCommand;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use nostr::{
    Alphabet, ClientMessage, Event, EventId, Filter, Keys, Kind, PublicKey, RelayMessage,
    SingleLetterTag,
};
use nostr_sdk::{Client, RelayOptions, RelayPoolNotification, RelayUrl, SubscriptionId};
use tokio::sync::{broadcast, mpsc};

#[cfg(feature = "lnurl")]
use super::lnurl::{LnurlClient, LnurlPay};
use super::outbox::OK_TIMEOUT;
use super::resubscribe::{RelayHandles, SeenTimes};
use super::{now, until, watch_reconnections, RuntimeError, SnapshotStore, Wallet};
use crate::bolt11::Invoice;
use crate::customer::{
    discover, Customer, CustomerConfig, CustomerSnapshot, Delivery, Output, PaymentOutcome,
    PaymentRef, WalletFailure,
};
use crate::nip89::{HandlerInfo, HANDLER_INFO_KIND};
use crate::nip90::JobRequestBuilder;

/// How a [`CustomerRuntime`] connects to its relays.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long [`CustomerRuntime::connect_with`] waits for the relays (nostr-sdk keeps
    /// trying the ones that did not connect in the background). Default: 10 s.
    pub timeout: Duration,
    /// The nostr-sdk options of every relay connection (reconnection interval, limits...).
    /// Default: nostr-sdk's.
    pub relay_options: RelayOptions,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            relay_options: RelayOptions::new(),
        }
    }
}

/// Drives a [`Customer`] over real relays, pull-style.
///
/// [`submit`](Self::submit) a job, then call [`next`](Self::next) (under a
/// `tokio::time::timeout` of your choice): it feeds relay events to the customer, does the
/// publishing and subscribing itself, and returns what the application must act on:
/// [`Output::Notify`], [`Output::PayInvoice`], [`Output::SendZap`] and
/// [`Output::LookupPayment`]. Pay with your wallet, or, for [`Output::SendZap`], through the
/// provider's LNURL server, and report the outcome with
/// [`payment_outcome`](Self::payment_outcome).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use nostr_dvm::customer::{CustomerConfig, Delivery, Notification, Output};
/// use nostr_dvm::nip90::{JobInput, JobRequest};
/// use nostr_dvm::nostr::{Keys, Kind};
/// use nostr_dvm::runtime::CustomerRuntime;
///
/// let config = CustomerConfig::new(["wss://relay.example"]);
/// let mut customer = CustomerRuntime::connect(Keys::generate(), config).await?;
/// let request = JobRequest::builder(Kind::from(5050)).input(JobInput::text("Hello?"));
/// customer.submit(request, Delivery::Public).await?;
/// while let Some(output) = customer.next().await {
///     if let Output::Notify(Notification::Result { content, .. }) = output {
///         println!("{content}");
///         break;
///     }
/// }
/// # Ok(()) }
/// ```
pub struct CustomerRuntime {
    customer: Customer,
    client: Client,
    notifications: broadcast::Receiver<RelayPoolNotification>,
    pending: VecDeque<Output>,
    /// The customer's subscriptions, sent again to a relay each time it reconnects.
    live: HashMap<String, Filter>,
    /// The newest event each relay sent on each subscription: a re-subscription asks only
    /// for what may have been missed.
    seen: SeenTimes,
    /// The relays' handles, to read which connection an event came on.
    handles: RelayHandles,
    reconnected: mpsc::Receiver<RelayUrl>,
    /// Pays what the customer asks, when set.
    wallet: Option<Arc<dyn Wallet>>,
    /// Where the customer's snapshot is saved, when set.
    store: Option<Arc<dyn SnapshotStore<CustomerSnapshot>>>,
    /// Payments and look-ups for the wallet, in the order the customer asked.
    wallet_due: VecDeque<WalletJob>,
    /// Payments whose outcome the wallet did not know yet (with their invoice's payment
    /// hash): looked up again at these times.
    recheck: Vec<(tokio::time::Instant, PaymentRef, [u8; 32])>,
    /// Finds providers' LNURL-pay services for zaps, when set.
    #[cfg(feature = "lnurl")]
    lnurl: Option<LnurlClient>,
    /// The LNURL-pay services already found, by provider.
    #[cfg(feature = "lnurl")]
    pay_services: HashMap<PublicKey, LnurlPay>,
}

/// What the wallet is asked to do.
#[derive(Debug)]
enum WalletJob {
    /// Pay an invoice.
    Pay {
        bolt11: String,
        payment_hash: [u8; 32],
        max_fee_msat: u64,
    },
    /// Fetch a zap's invoice from the provider's LNURL callback, record it, pay it.
    #[cfg(feature = "lnurl")]
    Zap {
        provider: PublicKey,
        zap_request: Event,
        max_fee_msat: u64,
    },
    /// Ask what became of a payment, by its invoice's hash (`None`: a zap that never got an
    /// invoice, so was never paid).
    Lookup {
        payment: PaymentRef,
        hash: Option<[u8; 32]>,
    },
}

/// How long after a wallet said "pending" the payment is looked up again.
const RECHECK_AFTER: Duration = Duration::from_secs(5);

impl CustomerRuntime {
    /// Connects to `config.relays` (waiting up to 10 s for them) with a customer of `keys`.
    pub async fn connect(keys: Keys, config: CustomerConfig) -> Result<Self, RuntimeError> {
        Self::connect_with(keys, config, ConnectOptions::default()).await
    }

    /// Connects to `config.relays` with `options` (how long to wait, how to reconnect).
    pub async fn connect_with(
        keys: Keys,
        config: CustomerConfig,
        options: ConnectOptions,
    ) -> Result<Self, RuntimeError> {
        let relays = config.relays.clone();
        Self::start(&relays, options, move || {
            Ok(Customer::new(keys, config, now()))
        })
        .await
    }

    /// Connects with a customer restored from `snapshot` ([`Customer::restore`]): it
    /// subscribes again to its jobs' answers, and the first outputs [`next`](Self::next)
    /// returns include an [`Output::LookupPayment`] for every payment that had no outcome
    /// when the snapshot was taken. Look each up in the wallet and report it with
    /// [`payment_outcome`](Self::payment_outcome); never pay it again.
    pub async fn restore_with(
        keys: Keys,
        config: CustomerConfig,
        snapshot: CustomerSnapshot,
        options: ConnectOptions,
    ) -> Result<Self, RuntimeError> {
        let relays = config.relays.clone();
        Self::start(&relays, options, move || {
            Customer::restore(keys, config, snapshot, now()).map_err(RuntimeError::from)
        })
        .await
    }

    async fn start(
        relays: &[String],
        options: ConnectOptions,
        customer: impl FnOnce() -> Result<Customer, RuntimeError>,
    ) -> Result<Self, RuntimeError> {
        let client = Client::default();
        for relay in relays {
            client
                .pool()
                .add_relay(relay.as_str(), options.relay_options.clone())
                .await
                .map_err(|e| RuntimeError::Client(format!("{relay}: {e}")))?;
        }
        let notifications = client.notifications();
        client.connect().await;
        client.wait_for_connection(options.timeout).await;
        let seen = SeenTimes::default();
        let reconnected = watch_reconnections(&client).await;
        let handles = RelayHandles::new(client.clone());
        let customer = customer()?;
        let mut runtime = Self {
            customer,
            client,
            notifications,
            pending: VecDeque::new(),
            live: HashMap::new(),
            seen,
            handles,
            reconnected,
            wallet: None,
            store: None,
            wallet_due: VecDeque::new(),
            recheck: Vec::new(),
            #[cfg(feature = "lnurl")]
            lnurl: None,
            #[cfg(feature = "lnurl")]
            pay_services: HashMap::new(),
        };
        runtime.drain().await;
        Ok(runtime)
    }

    /// The customer's whole state, to save (for instance whenever
    /// [`Customer::needs_persistence`] says so, and always before paying what
    /// [`Output::PayInvoice`] or [`Output::SendZap`] asks) and give to
    /// [`restore_with`](Self::restore_with) after a restart.
    pub fn snapshot(&mut self) -> CustomerSnapshot {
        self.customer.snapshot()
    }

    /// The customer state machine, for its getters.
    pub fn customer(&self) -> &Customer {
        &self.customer
    }

    /// The nostr-sdk client, to publish or fetch other events.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The providers that announce `kind` (NIP-89, kind 31990) on the customer's relays,
    /// with the encryption and gift-wrap support they announce. Waits up to `timeout` for
    /// the relays to answer; announcements that do not verify are left out. The customer
    /// learns them: a later [`submit`](Self::submit) in a scheme a provider announces it does
    /// not read fails at once ([`customer::Error::Unsupported`](crate::customer::Error::Unsupported)).
    pub async fn discover(
        &mut self,
        kind: Kind,
        timeout: Duration,
    ) -> Result<Vec<HandlerInfo>, RuntimeError> {
        let filter = Filter::new()
            .kind(Kind::from(HANDLER_INFO_KIND))
            .custom_tag(SingleLetterTag::lowercase(Alphabet::K), kind.to_string());
        let events = self
            .client
            .fetch_events(filter, timeout)
            .await
            .map_err(|e| RuntimeError::Client(e.to_string()))?;
        let now = now();
        for event in events.iter() {
            self.customer.handle_event(now, event.clone());
        }
        Ok(discover(events.iter(), kind))
    }

    /// Signs and publishes a job request (after subscribing to its answers). Returns the job
    /// id, or [`RuntimeError::NotPublished`] when no relay took the request (the customer
    /// still tracks the job until it times out: [`cancel`](Self::cancel) it or submit again).
    pub async fn submit(
        &mut self,
        request: JobRequestBuilder,
        delivery: Delivery,
    ) -> Result<EventId, RuntimeError> {
        let job = self.customer.submit(now(), request, delivery)?;
        let not_taken = self.drain().await;
        // A gift-wrapped request is published as its wrap, under another id: any failure
        // of this submission's publishes is the request's.
        if let Some((_, reason)) = not_taken.into_iter().next() {
            return Err(RuntimeError::NotPublished { job, reason });
        }
        Ok(job)
    }

    /// Asks to pay `provider`'s invoice for `job` (see [`Customer::pay`] for what is
    /// refused): the next [`next`](Self::next) returns [`Output::PayInvoice`]. Report what the
    /// wallet did with [`payment_outcome`](Self::payment_outcome).
    pub async fn pay(
        &mut self,
        job: EventId,
        provider: PublicKey,
    ) -> Result<PaymentRef, RuntimeError> {
        let payment = self.customer.pay(now(), job, provider)?;
        self.drain().await;
        Ok(payment)
    }

    /// Asks to zap `provider`'s payment request for `job`: the next [`next`](Self::next)
    /// returns [`Output::SendZap`] with the signed zap request. Report what became of the
    /// payment with [`payment_outcome`](Self::payment_outcome).
    ///
    /// With a [wallet](Self::set_wallet) and an LNURL client (`set_lnurl`), the runtime
    /// zaps itself: it first finds the provider's LNURL-pay service from its profile (a
    /// [`RuntimeError::ZapService`] when there is none that takes zaps; nothing is signed or
    /// paid), puts its LNURL in the zap request, and [`next`](Self::next) gets the invoice
    /// from the callback, records it ([`Customer::zap_invoice`]), saves, and pays it.
    pub async fn zap(
        &mut self,
        job: EventId,
        provider: PublicKey,
    ) -> Result<PaymentRef, RuntimeError> {
        #[cfg(feature = "lnurl")]
        if self.pays_zaps() {
            let pay = self
                .pay_service(provider)
                .await
                .map_err(|reason| RuntimeError::ZapService { provider, reason })?;
            let payment = self.customer.zap_via(now(), job, provider, &pay.lnurl)?;
            self.drain().await;
            return Ok(payment);
        }
        let payment = self.customer.zap(now(), job, provider)?;
        self.drain().await;
        Ok(payment)
    }

    /// Pays zaps too ([`Output::SendZap`]), with the [wallet](Self::set_wallet): the
    /// provider's LNURL-pay service comes from the `lud16` (or `lud06`) of its profile, through
    /// `lnurl` (feature `lnurl`).
    #[cfg(feature = "lnurl")]
    pub fn set_lnurl(&mut self, lnurl: LnurlClient) {
        self.lnurl = Some(lnurl);
        self.reroute_pending();
    }

    /// The LNURL-pay service of `provider` (found once, then kept).
    #[cfg(feature = "lnurl")]
    async fn pay_service(&mut self, provider: PublicKey) -> Result<LnurlPay, String> {
        if let Some(pay) = self.pay_services.get(&provider) {
            return Ok(pay.clone());
        }
        let lnurl = self.lnurl.as_ref().ok_or("no LNURL client is set")?;
        let pay = super::customer_zaps::pay_service(&self.client, lnurl, provider).await?;
        self.pay_services.insert(provider, pay.clone());
        Ok(pay)
    }

    /// Fetches the invoice of a zap from the provider's LNURL callback, records it in the
    /// customer and saves: its payment hash, ready to pay.
    #[cfg(feature = "lnurl")]
    async fn zap_invoice(
        &mut self,
        provider: PublicKey,
        zap_request: &Event,
    ) -> Result<(String, [u8; 32]), String> {
        let pay = self.pay_service(provider).await?;
        let lnurl = self.lnurl.as_ref().ok_or("no LNURL client is set")?;
        let bolt11 = lnurl
            .zap_invoice(&pay, zap_request)
            .await
            .map_err(|e| format!("the provider's LNURL callback: {e}"))?;
        let hash = self
            .customer
            .zap_invoice(now(), zap_request.id, &bolt11)
            .map_err(|e| e.to_string())?;
        // The invoice is on disk before any money moves.
        self.save(true)
            .map_err(|e| format!("not paid: the snapshot could not be saved: {e}"))?;
        Ok((bolt11, hash))
    }

    /// Reports what the wallet did with a payment ([`Output::PayInvoice`],
    /// [`Output::SendZap`], or the look-up asked by [`Output::LookupPayment`]).
    pub async fn payment_outcome(
        &mut self,
        payment: PaymentRef,
        outcome: PaymentOutcome,
    ) -> Result<(), RuntimeError> {
        self.customer
            .handle_payment_outcome(now(), payment, outcome)?;
        self.drain().await;
        Ok(())
    }

    /// Cancels a job (a kind-5 deletion of the request).
    pub async fn cancel(&mut self, job: EventId) -> Result<(), RuntimeError> {
        self.customer.cancel(now(), job)?;
        self.drain().await;
        Ok(())
    }

    /// Publishes any event on the customer's relays (a zap receipt, for instance).
    ///
    /// Returns once the first relay takes it (`OK`), or with [`RuntimeError::Client`] when
    /// every relay refused it or none answered within 10 s. Relay events that arrive
    /// meanwhile go to the customer as usual.
    pub async fn publish(&mut self, event: &Event) -> Result<(), RuntimeError> {
        self.publish_confirmed(event, &[])
            .await
            .map_err(RuntimeError::Client)
    }

    /// Pays with `wallet` from now on: [`next`](Self::next) hands it every
    /// [`Output::PayInvoice`] and [`Output::LookupPayment`] (after saving the customer's
    /// snapshot to the [`store`](Self::store), when set, so the intent to pay is on disk
    /// before any money moves) and reports its answers to the customer itself; the
    /// application sees [`Notification::Paid`](crate::customer::Notification::Paid) or
    /// [`Notification::PaymentFailed`](crate::customer::Notification::PaymentFailed) instead.
    /// A payment the wallet reports pending is looked up again every 5 s. Zaps
    /// ([`Output::SendZap`]) go to the application unless an LNURL client is also set
    /// (`set_lnurl`, feature `lnurl`).
    pub fn set_wallet(&mut self, wallet: Arc<dyn Wallet>) {
        self.wallet = Some(wallet);
        // What a restore asked to look up before the wallet was set.
        self.reroute_pending();
    }

    /// Saves the customer's snapshot to `store` whenever it changes (checked after every
    /// step of [`next`](Self::next)) and always before the [wallet](Self::set_wallet) is
    /// asked to pay. Load it yourself at start and give it to
    /// [`restore_with`](Self::restore_with).
    pub fn store(&mut self, store: Arc<dyn SnapshotStore<CustomerSnapshot>>) {
        self.store = Some(store);
    }

    /// Saves the snapshot when the customer changed (or `always`); a failed save is an
    /// error, and stops a payment.
    fn save(&mut self, always: bool) -> Result<(), RuntimeError> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        if always || self.customer.needs_persistence() {
            store.save(&self.customer.snapshot())?;
        }
        Ok(())
    }

    /// Hands the wallet what it is due: pays, looks up, and reports the outcomes.
    async fn run_wallet(&mut self) {
        let Some(wallet) = self.wallet.clone() else {
            return;
        };
        while let Some(job) = self.wallet_due.pop_front() {
            let (payment, hash, outcome) = match job {
                WalletJob::Pay {
                    bolt11,
                    payment_hash,
                    max_fee_msat,
                } => {
                    let payment = PaymentRef::Invoice(payment_hash);
                    // The intent to pay is stored first: after a crash it is looked up, never
                    // paid again.
                    if let Err(e) = self.save(true) {
                        let reason = format!("not paid: the snapshot could not be saved: {e}");
                        tracing::error!("{reason}");
                        let outcome = PaymentOutcome::failed(WalletFailure::NotSent, reason);
                        (payment, None, outcome)
                    } else {
                        let outcome = wallet.pay_invoice(&bolt11, max_fee_msat).await;
                        (payment, Some(payment_hash), outcome)
                    }
                }
                #[cfg(feature = "lnurl")]
                WalletJob::Zap {
                    provider,
                    zap_request,
                    max_fee_msat,
                } => {
                    let payment = PaymentRef::Zap(zap_request.id);
                    match self.zap_invoice(provider, &zap_request).await {
                        Ok((bolt11, hash)) => {
                            let outcome = wallet.pay_invoice(&bolt11, max_fee_msat).await;
                            (payment, Some(hash), outcome)
                        }
                        Err(reason) => {
                            tracing::warn!("zap not paid: {reason}");
                            let outcome = PaymentOutcome::failed(WalletFailure::NotSent, reason);
                            (payment, None, outcome)
                        }
                    }
                }
                WalletJob::Lookup {
                    payment,
                    hash: Some(hash),
                } => (payment, Some(hash), wallet.lookup_payment(hash).await),
                WalletJob::Lookup {
                    payment,
                    hash: None,
                } => {
                    let reason = "no invoice was recorded for this zap: it was never paid";
                    (
                        payment,
                        None,
                        PaymentOutcome::failed(WalletFailure::NotFound, reason),
                    )
                }
            };
            if let (PaymentOutcome::Pending, Some(hash)) = (&outcome, hash) {
                let at = tokio::time::Instant::now() + RECHECK_AFTER;
                self.recheck.push((at, payment, hash));
            }
            if let Err(e) = self
                .customer
                .handle_payment_outcome(now(), payment, outcome)
            {
                tracing::error!("the wallet's answer was refused: {e}");
            }
            self.drain().await;
        }
        if let Err(e) = self.save(false) {
            tracing::error!("cannot save the customer: {e}");
        }
    }

    /// Looks up again the payments whose time has come.
    fn due_rechecks(&mut self) {
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) =
            self.recheck.drain(..).partition(|(at, ..)| *at <= now);
        self.recheck = later;
        for (_, payment, hash) in due {
            self.wallet_due.push_back(WalletJob::Lookup {
                payment,
                hash: Some(hash),
            });
        }
    }

    /// The next thing for the application: a notification or a payment to make. Waits for
    /// relay events and the customer's timeouts; `None` once the relay pool has shut down.
    pub async fn next(&mut self) -> Option<Output> {
        loop {
            if self.pending.is_empty() {
                // What the customer said while `publish` fed it relay events.
                self.drain().await;
            }
            self.due_rechecks();
            self.run_wallet().await;
            if let Some(output) = self.pending.pop_front() {
                return Some(output);
            }
            let wake = self.customer.poll_timeout();
            let recheck = self.recheck.iter().map(|(at, ..)| *at).min();
            let sleep = tokio::time::sleep(wake.map(until).unwrap_or(Duration::from_secs(3600)));
            let recheck_sleep = tokio::time::sleep_until(
                recheck.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                () = recheck_sleep, if recheck.is_some() => {}
                note = self.notifications.recv() => match note {
                    Ok(RelayPoolNotification::Shutdown) | Err(broadcast::error::RecvError::Closed) => {
                        return None;
                    }
                    Ok(note) => self.take(note).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => self.lagged(n).await,
                },
                Some(relay) = self.reconnected.recv() => self.resubscribe(vec![relay]).await,
                () = sleep, if wake.is_some() => self.customer.handle_timeout(now()),
            }
            self.drain().await;
        }
    }

    /// Disconnects from the relays.
    pub async fn disconnect(self) {
        self.client.disconnect().await;
    }

    /// Feeds a relay event to the customer (and notes its date); notes the end of a relay's
    /// stored events.
    async fn take(&mut self, note: RelayPoolNotification) {
        match note {
            RelayPoolNotification::Event {
                relay_url,
                subscription_id,
                event,
            } => {
                self.handles.note(&self.seen, &relay_url).await;
                let now = now();
                self.seen
                    .event(&relay_url, subscription_id.as_str(), event.created_at, now);
                self.customer.handle_event(now, *event);
            }
            RelayPoolNotification::Message {
                relay_url,
                message: RelayMessage::EndOfStoredEvents(id),
            } => {
                self.handles.note(&self.seen, &relay_url).await;
                self.seen.end_of_stored(&relay_url, id.as_str());
            }
            _ => {}
        }
    }

    /// Relay notifications were missed: the relays still have them, ask for them again.
    async fn lagged(&mut self, missed: u64) {
        tracing::warn!("missed {missed} relay notifications: subscribing again");
        self.seen.lagged();
        let relays: Vec<RelayUrl> = self.client.relays().await.into_keys().collect();
        self.resubscribe(relays).await;
    }

    /// Sends every live subscription to `relays` again, each asking a relay only for what it
    /// may not have sent yet ([`resubscription_since`](super::resubscription_since)), so what
    /// was published while a relay was away arrives now.
    async fn resubscribe(&self, relays: Vec<RelayUrl>) {
        for (id, filter) in &self.live {
            self.subscribe_to(&relays, id, filter).await;
        }
    }

    /// Subscribes each of `relays` to `filter` under `id` (its `since` moved up to what that
    /// relay already sent).
    async fn subscribe_to(&self, relays: &[RelayUrl], id: &str, filter: &Filter) {
        for relay in relays {
            let sent = self.seen.request(relay, id, filter);
            let sub = SubscriptionId::new(id);
            let result = self
                .client
                .subscribe_with_id_to([relay.clone()], sub, sent, None)
                .await;
            if let Err(e) = result {
                tracing::warn!(%id, %relay, "cannot subscribe: {e}");
            }
        }
    }

    /// Sends `event` to `relays` (all of the client's when empty) and waits for the first
    /// relay to take it, feeding the relay events that arrive meanwhile to the customer.
    /// A relay that never answers delays nothing once another has said `OK`.
    async fn publish_confirmed(&mut self, event: &Event, relays: &[String]) -> Result<(), String> {
        let targets: Vec<RelayUrl> = if relays.is_empty() {
            self.client.relays().await.into_keys().collect()
        } else {
            relays
                .iter()
                .filter_map(|r| RelayUrl::parse(r).ok())
                .collect()
        };
        let sent = self
            .client
            .send_msg_to(targets.clone(), ClientMessage::event(event.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let mut refusals: Vec<String> = sent
            .failed
            .iter()
            .map(|(relay, why)| format!("{relay}: {why}"))
            .collect();
        let mut waiting: HashSet<RelayUrl> = targets
            .into_iter()
            .filter(|r| !sent.failed.contains_key(r))
            .collect();
        let deadline = tokio::time::Instant::now() + OK_TIMEOUT;
        while !waiting.is_empty() {
            let note = match tokio::time::timeout_at(deadline, self.notifications.recv()).await {
                Ok(note) => note,
                Err(_) => {
                    refusals.push(format!("no OK within {} s", OK_TIMEOUT.as_secs()));
                    break;
                }
            };
            match note {
                Ok(RelayPoolNotification::Message {
                    relay_url,
                    message:
                        RelayMessage::Ok {
                            event_id,
                            status,
                            message,
                        },
                }) if event_id == event.id && waiting.contains(&relay_url) => {
                    if status || message.starts_with("duplicate:") {
                        return Ok(());
                    }
                    refusals.push(format!("{relay_url}: {message}"));
                    waiting.remove(&relay_url);
                }
                Ok(RelayPoolNotification::Shutdown) | Err(broadcast::error::RecvError::Closed) => {
                    refusals.push("relay pool shut down".into());
                    break;
                }
                Ok(note) => self.take(note).await,
                Err(broadcast::error::RecvError::Lagged(n)) => self.lagged(n).await,
            }
        }
        Err(refusals.join("; "))
    }

    /// Carries out the customer's relay commands; returns the events no relay took, with why.
    async fn drain(&mut self) -> Vec<(EventId, String)> {
        let mut not_taken = Vec::new();
        while let Some(output) = self.customer.poll_output() {
            match output {
                Output::Relay(RelayCommand::Publish { event, relays }) => {
                    if let Err(reason) = self.publish_confirmed(&event, &relays).await {
                        tracing::warn!(id = %event.id, "no relay took the event: {reason}");
                        not_taken.push((event.id, reason));
                    }
                }
                Output::Relay(RelayCommand::Subscribe { id, filter }) => {
                    // A new filter: what was seen under the old one says nothing about it.
                    self.seen.forget(&id);
                    let relays: Vec<RelayUrl> = self.client.relays().await.into_keys().collect();
                    self.subscribe_to(&relays, &id, &filter).await;
                    self.live.insert(id, filter);
                }
                Output::Relay(RelayCommand::Unsubscribe(id)) => {
                    self.seen.forget(&id);
                    self.live.remove(&id);
                    self.client.unsubscribe(&SubscriptionId::new(id)).await;
                }
                other => self.route(other),
            }
        }
        not_taken
    }

    /// Hands a payment the wallet can make (or look up) to it; the rest to the application.
    fn route(&mut self, output: Output) {
        if self.wallet.is_none() {
            self.pending.push_back(output);
            return;
        }
        let zaps = self.pays_zaps();
        match output {
            Output::PayInvoice {
                bolt11,
                payment_hash,
                max_fee_msat,
                ..
            } => self.wallet_due.push_back(WalletJob::Pay {
                bolt11,
                payment_hash,
                max_fee_msat,
            }),
            Output::LookupPayment {
                payment: PaymentRef::Invoice(hash),
                ..
            } => self.wallet_due.push_back(WalletJob::Lookup {
                payment: PaymentRef::Invoice(hash),
                hash: Some(hash),
            }),
            Output::LookupPayment {
                payment: payment @ PaymentRef::Zap(_),
                bolt11,
                ..
            } if zaps => self.wallet_due.push_back(WalletJob::Lookup {
                payment,
                // No invoice recorded: none was ever paid through this customer.
                hash: bolt11
                    .as_deref()
                    .and_then(|b| Invoice::parse(b).ok())
                    .map(|invoice| invoice.payment_hash()),
            }),
            #[cfg(feature = "lnurl")]
            Output::SendZap {
                provider,
                zap_request,
                max_fee_msat,
                ..
            } if zaps => self.wallet_due.push_back(WalletJob::Zap {
                provider,
                zap_request,
                max_fee_msat,
            }),
            other => self.pending.push_back(other),
        }
    }

    /// Whether zaps are paid here: a wallet and an LNURL client are set.
    fn pays_zaps(&self) -> bool {
        #[cfg(feature = "lnurl")]
        {
            self.wallet.is_some() && self.lnurl.is_some()
        }
        #[cfg(not(feature = "lnurl"))]
        {
            false
        }
    }

    /// Routes again what waits for the application, now that the wallet can take more.
    fn reroute_pending(&mut self) {
        for output in std::mem::take(&mut self.pending) {
            self.route(output);
        }
    }
}
