//! What a re-subscription asks for: the newest event each relay sent on each subscription,
//! so that after a reconnection or a lag the runtimes ask a relay only for what they may
//! have missed ([`resubscription_since`]), not for everything since they started.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use nostr::{Filter, Kind, Timestamp};
use nostr_sdk::RelayUrl;

use crate::nip59;

/// How far before the newest event seen on a subscription a re-subscription reaches back
/// (seconds): it covers events dated a little earlier than others that arrived first (clock
/// skew between authors, relays that send stored events newest first).
pub const RESUBSCRIBE_MARGIN_SECS: u64 = 60;

/// The margin for a filter that asks for gift wraps (kinds 1059 and 21059): their
/// `created_at` is back-dated by up to [`nip59::MAX_TIMESTAMP_TWEAK`] (two days), so a wrap
/// published during an outage may be dated two days before the newest one seen.
pub const GIFT_WRAP_RESUBSCRIBE_MARGIN_SECS: u64 =
    nip59::MAX_TIMESTAMP_TWEAK + RESUBSCRIBE_MARGIN_SECS;

/// Whether `filter` asks for gift wraps.
fn asks_for_gift_wraps(filter: &Filter) -> bool {
    filter.kinds.as_ref().is_some_and(|kinds| {
        kinds.contains(&Kind::from(nip59::GIFT_WRAP_KIND))
            || kinds.contains(&Kind::from(nip59::EPHEMERAL_GIFT_WRAP_KIND))
    })
}

/// The `since` of a re-subscription to `filter` on a relay whose newest event on it was
/// dated `newest_seen`: `newest_seen` minus the margin ([`RESUBSCRIBE_MARGIN_SECS`], or
/// [`GIFT_WRAP_RESUBSCRIBE_MARGIN_SECS`] when the filter asks for gift wraps), never earlier
/// than the filter's own `since`.
///
/// The filter's own `since` stays when nothing was seen, and when the filter has no `since`
/// (`None`): such filters name the events they want (a job's answers, deletions of given
/// requests), so asking again costs little, and a `since` would miss an answer dated early
/// by its author's clock.
pub fn resubscription_since(filter: &Filter, newest_seen: Option<Timestamp>) -> Option<Timestamp> {
    let original = filter.since?;
    let Some(newest) = newest_seen else {
        return Some(original);
    };
    let margin = if asks_for_gift_wraps(filter) {
        GIFT_WRAP_RESUBSCRIBE_MARGIN_SECS
    } else {
        RESUBSCRIBE_MARGIN_SECS
    };
    let floor = Timestamp::from(newest.as_secs().saturating_sub(margin));
    Some(original.max(floor))
}

/// nostr-sdk's handles of the relays events come from, kept to read each one's count of
/// connections (for [`SeenTimes::connection`]) without asking the pool every time. It holds
/// the relays of the pool (configured ones and the few a request may add), no more.
#[derive(Debug)]
pub(super) struct RelayHandles {
    client: nostr_sdk::Client,
    relays: HashMap<RelayUrl, nostr_sdk::Relay>,
}

impl RelayHandles {
    pub(super) fn new(client: nostr_sdk::Client) -> Self {
        Self {
            client,
            relays: HashMap::new(),
        }
    }

    /// How many times `relay` connected so far; `None` when it is not in the pool.
    pub(super) async fn connections(&mut self, relay: &RelayUrl) -> Option<usize> {
        if let Some(handle) = self.relays.get(relay) {
            return Some(handle.stats().success());
        }
        let handle = self.client.relay(relay).await.ok()?;
        let count = handle.stats().success();
        self.relays.insert(relay.clone(), handle);
        Some(count)
    }

    /// Notes in `seen` that `relay` sends something now, on which connection.
    pub(super) async fn note(&mut self, seen: &SeenTimes, relay: &RelayUrl) {
        if let Some(count) = self.connections(relay).await {
            seen.connection(relay, count);
        }
    }
}

/// What one relay sent on one subscription.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// The newest `created_at` (never later than the clock when it arrived) with nothing
    /// missed before it: stored events count once their `EOSE` arrived.
    newest: Option<Timestamp>,
    /// The newest of the stored events arriving now, before their `EOSE`.
    batch: Option<Timestamp>,
    /// Whether stored events are arriving (a `REQ` or a reconnection since the last `EOSE`).
    stored: bool,
    /// The `newest` the last `REQ` was computed from.
    requested_from: Option<Timestamp>,
    /// After missed notifications: the most `newest` the next `REQ` may use (what was
    /// missed came after it).
    lag_cap: Option<Option<Timestamp>>,
}

/// The newest events seen, per relay and subscription, shared by the task that reads relay
/// events and the one that subscribes. Only subscriptions the runtime sent have entries, so
/// its size is bounded by relays × live subscriptions whatever the relays send.
///
/// Stored events (between a `REQ` and its `EOSE`) count only once the `EOSE` arrived: relays
/// often send them newest first, so a connection cut in the middle must not make the next
/// re-subscription skip the older half. A relay's (dis)connection starts a new stored batch.
/// Events dated in the future count as dated now, so a relay cannot push its `since` ahead;
/// each relay's events count only for that relay.
///
/// A relay's new connection is noticed by its count of connections (nostr-sdk counts one
/// before it reads anything on the new connection), which the loops pass with what the relay
/// sends ([`connection`](Self::connection)): so it is noticed before the first stored event
/// of the new connection counts.
#[derive(Debug, Default, Clone)]
pub(super) struct SeenTimes {
    subscriptions: Arc<Mutex<HashMap<RelayUrl, HashMap<String, Seen>>>>,
    /// Each relay's count of connections when it last sent something.
    connections: Arc<Mutex<HashMap<RelayUrl, usize>>>,
}

impl SeenTimes {
    fn lock(&self) -> MutexGuard<'_, HashMap<RelayUrl, HashMap<String, Seen>>> {
        // Nothing panics while holding it; if something did, the data is still consistent.
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `relay` sends something on its connection number `count`: when that is a new
    /// connection since it last sent something, what it sends next is stored events again
    /// ([`connection_changed`](Self::connection_changed)).
    pub(super) fn connection(&self, relay: &RelayUrl, count: usize) {
        let changed = {
            let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
            match connections.get_mut(relay) {
                Some(last) if *last == count => false,
                Some(last) => {
                    *last = count;
                    true
                }
                None => {
                    connections.insert(relay.clone(), count);
                    false
                }
            }
        };
        if changed {
            self.connection_changed(relay);
        }
    }

    /// A `REQ` for `filter` under `id` is about to go to `relay`: returns the filter to send
    /// (its `since` moved up by [`resubscription_since`]) and starts a stored batch.
    pub(super) fn request(&self, relay: &RelayUrl, id: &str, filter: &Filter) -> Filter {
        let mut all = self.lock();
        let seen = all
            .entry(relay.clone())
            .or_default()
            .entry(id.to_owned())
            .or_default();
        let newest = match seen.lag_cap.take() {
            Some(cap) => seen.newest.min(cap),
            None => seen.newest,
        };
        seen.requested_from = newest;
        seen.stored = true;
        seen.batch = None;
        let mut filter = filter.clone();
        filter.since = resubscription_since(&filter, newest);
        filter
    }

    /// The provider's or customer's filter under `id` changed (or was dropped): what was seen
    /// under the old one says nothing about the new one.
    pub(super) fn forget(&self, id: &str) {
        for subscriptions in self.lock().values_mut() {
            subscriptions.remove(id);
        }
    }

    /// An event dated `created_at` arrived from `relay` on `id` at `now`.
    pub(super) fn event(&self, relay: &RelayUrl, id: &str, created_at: Timestamp, now: Timestamp) {
        let mut all = self.lock();
        let Some(seen) = all.get_mut(relay).and_then(|s| s.get_mut(id)) else {
            return;
        };
        let at = created_at.min(now);
        let slot = if seen.stored {
            &mut seen.batch
        } else {
            &mut seen.newest
        };
        *slot = (*slot).max(Some(at));
    }

    /// `relay` sent `EOSE` on `id`: its stored events count.
    pub(super) fn end_of_stored(&self, relay: &RelayUrl, id: &str) {
        let mut all = self.lock();
        if let Some(seen) = all.get_mut(relay).and_then(|s| s.get_mut(id)) {
            if seen.stored {
                seen.newest = seen.newest.max(seen.batch.take());
                seen.stored = false;
            }
        }
    }

    /// `relay` (dis)connected: what it sends next is stored events again.
    pub(super) fn connection_changed(&self, relay: &RelayUrl) {
        if let Some(subscriptions) = self.lock().get_mut(relay) {
            for seen in subscriptions.values_mut() {
                seen.stored = true;
                seen.batch = None;
            }
        }
    }

    /// Relay notifications were missed: the next `REQ` of every subscription reaches back
    /// to before them (to the `since` of the stored batch that was arriving, if one was).
    pub(super) fn lagged(&self) {
        for subscriptions in self.lock().values_mut() {
            for seen in subscriptions.values_mut() {
                let before = if seen.stored {
                    seen.requested_from.min(seen.newest)
                } else {
                    seen.newest
                };
                seen.lag_cap = Some(match seen.lag_cap {
                    Some(cap) => cap.min(before),
                    None => before,
                });
                seen.batch = None;
            }
        }
    }

    /// How many relay × subscription entries are kept (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: u64) -> Timestamp {
        Timestamp::from(secs)
    }

    fn requests(since: u64) -> Filter {
        Filter::new().kind(Kind::from(5050)).since(ts(since))
    }

    fn inbox(since: u64) -> Filter {
        Filter::new()
            .kinds([
                Kind::from(nip59::GIFT_WRAP_KIND),
                Kind::from(nip59::EPHEMERAL_GIFT_WRAP_KIND),
                Kind::from(9735),
            ])
            .since(ts(since))
    }

    #[test]
    fn since_is_the_newest_seen_minus_the_margin() {
        let since = resubscription_since(&requests(1_000), Some(ts(1_000_000)));
        assert_eq!(since, Some(ts(1_000_000 - RESUBSCRIBE_MARGIN_SECS)));
    }

    #[test]
    fn since_keeps_the_original_when_nothing_was_seen_or_it_is_later() {
        assert_eq!(
            resubscription_since(&requests(1_000), None),
            Some(ts(1_000))
        );
        assert_eq!(
            resubscription_since(&requests(1_000), Some(ts(1_010))),
            Some(ts(1_000))
        );
        assert_eq!(
            resubscription_since(&requests(1_000), Some(ts(0))),
            Some(ts(1_000))
        );
    }

    #[test]
    fn gift_wrap_filters_reach_back_past_the_back_dating() {
        let now = 10 * nip59::MAX_TIMESTAMP_TWEAK;
        let since = resubscription_since(&inbox(0), Some(ts(now)));
        assert_eq!(
            since,
            Some(ts(now
                - nip59::MAX_TIMESTAMP_TWEAK
                - RESUBSCRIBE_MARGIN_SECS))
        );
        let ephemeral_only = Filter::new()
            .kind(Kind::from(nip59::EPHEMERAL_GIFT_WRAP_KIND))
            .since(ts(0));
        assert_eq!(
            resubscription_since(&ephemeral_only, Some(ts(now))),
            Some(ts(now - GIFT_WRAP_RESUBSCRIBE_MARGIN_SECS))
        );
    }

    #[test]
    fn filters_without_since_stay_without() {
        let answers = Filter::new().kind(Kind::from(6050));
        assert_eq!(resubscription_since(&answers, Some(ts(5_000))), None);
    }

    #[test]
    fn since_never_overflows() {
        assert_eq!(
            resubscription_since(&requests(0), Some(ts(u64::MAX))),
            Some(ts(u64::MAX - RESUBSCRIBE_MARGIN_SECS))
        );
        assert_eq!(resubscription_since(&inbox(0), Some(ts(5))), Some(ts(0)));
    }

    fn relay(n: u16) -> RelayUrl {
        RelayUrl::parse(&format!("ws://127.0.0.1:{n}")).unwrap()
    }

    #[test]
    fn stored_events_count_at_eose_and_live_ones_at_once() {
        let seen = SeenTimes::default();
        let (a, now) = (relay(1), ts(100_000));
        let first = seen.request(&a, "req", &requests(1_000));
        assert_eq!(first.since, Some(ts(1_000)));
        // Newest first, then the connection drops before EOSE: nothing counts.
        seen.event(&a, "req", ts(90_000), now);
        seen.connection_changed(&a);
        assert_eq!(
            seen.request(&a, "req", &requests(1_000)).since,
            Some(ts(1_000))
        );
        seen.event(&a, "req", ts(90_000), now);
        seen.end_of_stored(&a, "req");
        seen.event(&a, "req", ts(95_000), now);
        assert_eq!(
            seen.request(&a, "req", &requests(1_000)).since,
            Some(ts(95_000 - RESUBSCRIBE_MARGIN_SECS))
        );
    }

    #[test]
    fn an_event_on_a_new_connection_starts_a_stored_batch() {
        let seen = SeenTimes::default();
        let (a, now) = (relay(1), ts(100_000));
        seen.request(&a, "req", &requests(1_000));
        seen.connection(&a, 1);
        seen.end_of_stored(&a, "req");
        // Live on the first connection: counts at once.
        seen.connection(&a, 1);
        seen.event(&a, "req", ts(50_000), now);
        // The relay reconnected (nostr-sdk resubscribed on its own): its stored events,
        // newest first, count only at EOSE; the connection drops again before it.
        seen.connection(&a, 2);
        seen.event(&a, "req", ts(90_000), now);
        assert_eq!(
            seen.request(&a, "req", &requests(1_000)).since,
            Some(ts(50_000 - RESUBSCRIBE_MARGIN_SECS))
        );
        seen.connection(&a, 2);
        seen.event(&a, "req", ts(90_000), now);
        seen.end_of_stored(&a, "req");
        assert_eq!(
            seen.request(&a, "req", &requests(1_000)).since,
            Some(ts(90_000 - RESUBSCRIBE_MARGIN_SECS))
        );
    }

    #[test]
    fn each_relay_counts_for_itself_and_the_future_is_now() {
        let seen = SeenTimes::default();
        let (a, b, now) = (relay(1), relay(2), ts(100_000));
        seen.request(&a, "req", &requests(1_000));
        seen.request(&b, "req", &requests(1_000));
        seen.end_of_stored(&a, "req");
        seen.end_of_stored(&b, "req");
        seen.event(&a, "req", ts(u64::MAX), now);
        assert_eq!(
            seen.request(&a, "req", &requests(1_000)).since,
            Some(ts(100_000 - RESUBSCRIBE_MARGIN_SECS))
        );
        assert_eq!(
            seen.request(&b, "req", &requests(1_000)).since,
            Some(ts(1_000))
        );
        // Unknown relays and subscriptions make no entry.
        seen.event(&relay(3), "req", now, now);
        seen.event(&a, "other", now, now);
        assert_eq!(seen.len(), 2);
        seen.forget("req");
        assert_eq!(seen.len(), 0);
    }

    #[test]
    fn a_lag_reaches_back_to_before_it() {
        let seen = SeenTimes::default();
        let (a, now) = (relay(1), ts(100_000));
        seen.request(&a, "req", &requests(1_000));
        seen.end_of_stored(&a, "req");
        seen.event(&a, "req", ts(50_000), now);
        seen.lagged();
        // Events after the gap arrive before the re-subscription goes out.
        seen.event(&a, "req", ts(99_000), now);
        assert_eq!(
            seen.request(&a, "req", &requests(1_000)).since,
            Some(ts(50_000 - RESUBSCRIBE_MARGIN_SECS))
        );
        // A lag in the middle of stored events: back to that batch's since.
        seen.end_of_stored(&a, "req");
        seen.event(&a, "req", ts(99_500), now);
        seen.request(&a, "req", &requests(1_000));
        seen.event(&a, "req", ts(99_900), now);
        seen.lagged();
        assert_eq!(
            seen.request(&a, "req", &requests(1_000)).since,
            Some(ts(99_500 - RESUBSCRIBE_MARGIN_SECS))
        );
    }
}
