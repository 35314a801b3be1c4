//! The provider runtime's events on their way to the relays: which relay has taken which
//! event, and when to send one again. Pure bookkeeping with the time passed in, driven by the
//! relay worker; every operation is O(log n) in the events waiting, but
//! [`waiting_for`](Outbox::waiting_for), which runs once per reconnection.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use nostr::{Event, EventId};
use nostr_sdk::RelayUrl;
use tokio::time::Instant;

/// The first wait before a failed event is sent again; it doubles after each try up to
/// [`RETRY_MAX_DELAY`].
pub(super) const RETRY_FIRST_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between two tries.
pub(super) const RETRY_MAX_DELAY: Duration = Duration::from_secs(30);
/// How long a relay has to answer an `EVENT` with `OK` before the event is sent to it again.
pub(super) const OK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an event no relay has taken is retried before it is given up.
pub(super) const PUBLISH_RETRY_WINDOW: Duration = Duration::from_secs(3600);
/// How many times an event some relay already took is sent to the relays that have not.
pub(super) const TRIES_ONCE_TAKEN: u32 = 5;
/// The most events waiting for relays at once; beyond it the oldest is given up.
pub(super) const MAX_WAITING: usize = 10_000;

/// Whether a relay's refusal is final (`OK false` with a NIP-01 prefix that retrying cannot
/// change), so the event is not sent to it again.
pub(super) fn refusal_is_final(message: &str) -> bool {
    ["blocked:", "invalid:", "pow:", "restricted:", "error:"]
        .iter()
        .any(|prefix| message.starts_with(prefix))
}

/// An event some of its relays have not acknowledged yet.
struct Entry {
    event: Event,
    /// The relays that have not taken it.
    relays: HashSet<RelayUrl>,
    /// When to send it to them again (its key in `timers`).
    at: Instant,
    delay: Duration,
    tries: u32,
    /// Whether some relay took it.
    taken: bool,
    since: Instant,
}

/// The events waiting for relays, in publish order.
#[derive(Default)]
pub(super) struct Outbox {
    entries: BTreeMap<u64, Entry>,
    ids: HashMap<EventId, u64>,
    timers: BTreeSet<(Instant, u64)>,
    next_seq: u64,
    untaken: usize,
    /// Events that stopped being "on no relay yet" (taken, or dropped) since the last
    /// [`take_settled`](Self::take_settled).
    settled: Vec<EventId>,
}

impl Outbox {
    /// Adds an event for `relays`; returns its sequence number, to [`send`](Self::send) it.
    /// An event already waiting gets the new relays added instead. When full, the oldest
    /// event is given up first.
    pub(super) fn add(&mut self, event: Event, relays: HashSet<RelayUrl>, now: Instant) -> u64 {
        if let Some(&seq) = self.ids.get(&event.id) {
            if let Some(entry) = self.entries.get_mut(&seq) {
                entry.relays.extend(relays);
                return seq;
            }
        }
        if self.entries.len() >= MAX_WAITING {
            if let Some(&oldest) = self.entries.keys().next() {
                if let Some(entry) = self.remove(oldest) {
                    let id = entry.event.id;
                    if entry.taken {
                        tracing::debug!(%id, "too many events waiting for relays: dropped");
                    } else {
                        tracing::error!(%id, "too many events waiting for relays: given up");
                    }
                }
            }
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        self.ids.insert(event.id, seq);
        self.timers.insert((now, seq));
        self.untaken += 1;
        self.entries.insert(
            seq,
            Entry {
                event,
                relays,
                at: now,
                delay: RETRY_FIRST_DELAY,
                tries: 0,
                taken: false,
                since: now,
            },
        );
        seq
    }

    /// The event `seq` and the relays to send it to now (all that have not taken it, or only
    /// `only` if it has not), counting a try; `None` when there is nothing to send.
    pub(super) fn send(
        &mut self,
        seq: u64,
        only: Option<&RelayUrl>,
    ) -> Option<(Event, Vec<RelayUrl>)> {
        let entry = self.entries.get_mut(&seq)?;
        let targets: Vec<RelayUrl> = match only {
            Some(relay) if entry.relays.contains(relay) => vec![relay.clone()],
            Some(_) => return None,
            None => entry.relays.iter().cloned().collect(),
        };
        entry.tries += 1;
        Some((entry.event.clone(), targets))
    }

    /// After a [`send`](Self::send): when to send `seq` again. `handed` says whether every
    /// relay took the message into its queue (then the relays have [`OK_TIMEOUT`] to answer).
    pub(super) fn sent(&mut self, seq: u64, handed: bool, now: Instant) {
        let Some(entry) = self.entries.get_mut(&seq) else {
            return;
        };
        let at = if handed {
            now + OK_TIMEOUT.max(entry.delay)
        } else {
            now + entry.delay
        };
        entry.delay = (entry.delay * 2).min(RETRY_MAX_DELAY);
        Self::reschedule(&mut self.timers, seq, entry, at);
    }

    /// A relay's answer to an event: taken (`OK true`, or `duplicate:`), refused for good, or
    /// refused for now (sent again after the current delay).
    pub(super) fn ok(
        &mut self,
        relay: &RelayUrl,
        id: &EventId,
        status: bool,
        message: &str,
        now: Instant,
    ) {
        let Some(&seq) = self.ids.get(id) else {
            return;
        };
        let Some(entry) = self.entries.get_mut(&seq) else {
            return;
        };
        if !entry.relays.contains(relay) {
            return;
        }
        if status || message.starts_with("duplicate:") {
            entry.relays.remove(relay);
            if entry.tries > 1 {
                tracing::info!(%id, %relay, tries = entry.tries, "published after retrying");
            }
            if !entry.taken {
                entry.taken = true;
                self.untaken -= 1;
                self.settled.push(*id);
            }
        } else if refusal_is_final(message) {
            tracing::warn!(%id, %relay, "relay refused the event: {message}");
            entry.relays.remove(relay);
        } else {
            tracing::debug!(%id, %relay, "relay did not take the event yet: {message}");
            let at = entry.at.min(now + entry.delay);
            Self::reschedule(&mut self.timers, seq, entry, at);
        }
        if self.entries.get(&seq).is_some_and(|e| e.relays.is_empty()) {
            self.remove(seq);
        }
    }

    /// The events due to be sent again at `now`, in publish order; those whose tries are
    /// spent are dropped (logged) instead.
    pub(super) fn due(&mut self, now: Instant) -> Vec<u64> {
        let mut due = Vec::new();
        while let Some(&(at, seq)) = self.timers.first() {
            if at > now {
                break;
            }
            let Some(entry) = self.entries.get(&seq) else {
                self.timers.remove(&(at, seq));
                continue;
            };
            let spent = if entry.taken {
                entry.tries >= TRIES_ONCE_TAKEN
            } else {
                now.duration_since(entry.since) >= PUBLISH_RETRY_WINDOW
            };
            if spent {
                let id = entry.event.id;
                let relays: Vec<&RelayUrl> = entry.relays.iter().collect();
                if entry.taken {
                    tracing::warn!(%id, ?relays, "these relays never took the event");
                } else {
                    tracing::error!(%id, ?relays, "no relay took the event: given up");
                }
                self.remove(seq);
            } else {
                // Not sent again until `sent` says when.
                self.timers.remove(&(at, seq));
                due.push(seq);
            }
        }
        due.sort_unstable();
        due
    }

    /// The events `relay` has not taken, in publish order.
    pub(super) fn waiting_for(&self, relay: &RelayUrl) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|(_, e)| e.relays.contains(relay))
            .map(|(seq, _)| *seq)
            .collect()
    }

    /// When the next event is due.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// How many events no relay has taken yet.
    pub(super) fn untaken(&self) -> usize {
        self.untaken
    }

    /// The events that stopped being on no relay (taken, or dropped) since the last call.
    pub(super) fn take_settled(&mut self) -> Vec<EventId> {
        std::mem::take(&mut self.settled)
    }

    fn reschedule(timers: &mut BTreeSet<(Instant, u64)>, seq: u64, entry: &mut Entry, at: Instant) {
        timers.remove(&(entry.at, seq));
        entry.at = at;
        timers.insert((at, seq));
    }

    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.entries.remove(&seq)?;
        self.timers.remove(&(entry.at, seq));
        if self.ids.get(&entry.event.id) == Some(&seq) {
            self.ids.remove(&entry.event.id);
        }
        if !entry.taken {
            self.untaken -= 1;
            self.settled.push(entry.event.id);
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use nostr::secp256k1::schnorr::Signature;
    use nostr::{Keys, Kind, Tags, Timestamp};

    use super::*;

    /// A distinct event; the outbox never checks signatures, so it carries a made-up one.
    fn event(n: u32) -> Event {
        let author = Keys::parse(&"01".repeat(32)).unwrap().public_key();
        let content = format!("result {n}");
        let (created_at, kind, tags) = (Timestamp::from(1), Kind::from(6050), Tags::new());
        let id = EventId::new(&author, &created_at, &kind, &tags, &content);
        let sig = Signature::from_slice(&[7; 64]).unwrap();
        Event::new(id, author, created_at, kind, tags, content, sig)
    }

    fn relay(n: u8) -> RelayUrl {
        RelayUrl::parse(&format!("wss://relay{n}.example")).unwrap()
    }

    fn relays(ns: &[u8]) -> HashSet<RelayUrl> {
        ns.iter().map(|n| relay(*n)).collect()
    }

    #[test]
    fn an_event_stays_until_every_relay_took_it_and_is_settled_at_the_first() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        let e = event(1);
        let seq = outbox.add(e.clone(), relays(&[1, 2]), t0);
        let (sent, mut targets) = outbox.send(seq, None).unwrap();
        targets.sort_by_key(|r| r.to_string());
        assert_eq!((sent.id, targets), (e.id, vec![relay(1), relay(2)]));
        outbox.sent(seq, true, t0);
        assert_eq!(outbox.untaken(), 1);

        outbox.ok(&relay(1), &e.id, true, "", t0);
        assert_eq!(outbox.untaken(), 0);
        assert_eq!(outbox.take_settled(), [e.id]);
        assert_eq!(outbox.waiting_for(&relay(2)), [seq]);
        // A relay that already has it says so: taken too.
        outbox.ok(&relay(2), &e.id, false, "duplicate: have it", t0);
        assert!(outbox.waiting_for(&relay(2)).is_empty());
        assert_eq!(outbox.next_wake(), None, "nothing left to send");
        assert!(outbox.take_settled().is_empty());
    }

    #[test]
    fn unanswered_events_come_back_in_publish_order_with_growing_delays() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        let a = outbox.add(event(1), relays(&[1]), t0);
        let b = outbox.add(event(2), relays(&[1]), t0);
        // b fails to be handed (relay down): due after the first delay; a was handed and
        // waits for its OK.
        outbox.send(b, None).unwrap();
        outbox.sent(b, false, t0);
        outbox.send(a, None).unwrap();
        outbox.sent(a, true, t0);
        assert_eq!(outbox.next_wake(), Some(t0 + RETRY_FIRST_DELAY));
        assert_eq!(outbox.due(t0 + RETRY_FIRST_DELAY), [b]);
        assert!(
            outbox.due(t0 + RETRY_FIRST_DELAY).is_empty(),
            "taken off until sent"
        );
        outbox.send(b, None).unwrap();
        outbox.sent(b, false, t0 + RETRY_FIRST_DELAY);
        assert_eq!(
            outbox.next_wake(),
            Some(t0 + 3 * RETRY_FIRST_DELAY),
            "doubled"
        );
        // Both due later: in publish order.
        assert_eq!(outbox.due(t0 + OK_TIMEOUT), [a, b]);
    }

    #[test]
    fn final_refusals_drop_an_event_and_temporary_ones_bring_it_back() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        let e = event(1);
        let seq = outbox.add(e.clone(), relays(&[1, 2]), t0);
        outbox.send(seq, None).unwrap();
        outbox.sent(seq, true, t0);
        outbox.ok(&relay(1), &e.id, false, "rate-limited: slow down", t0);
        assert_eq!(outbox.next_wake(), Some(t0 + 2 * RETRY_FIRST_DELAY));
        outbox.ok(&relay(1), &e.id, false, "blocked: not welcome", t0);
        outbox.ok(&relay(2), &e.id, false, "invalid: bad", t0);
        assert_eq!(outbox.next_wake(), None);
        assert_eq!(outbox.untaken(), 0);
        assert_eq!(outbox.take_settled(), [e.id], "dropped: no longer waiting");
    }

    #[test]
    fn tries_are_bounded_once_taken_and_by_time_otherwise() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        let taken = event(1);
        let a = outbox.add(taken.clone(), relays(&[1, 2]), t0);
        outbox.ok(&relay(1), &taken.id, true, "", t0);
        let never = outbox.add(event(2), relays(&[1]), t0);
        let mut now = t0;
        let mut sends_a = 0;
        while now < t0 + PUBLISH_RETRY_WINDOW + RETRY_MAX_DELAY * 2 {
            for seq in outbox.due(now) {
                if seq == a {
                    sends_a += 1;
                }
                outbox.send(seq, None).unwrap();
                outbox.sent(seq, true, now);
            }
            now += Duration::from_secs(1);
        }
        assert_eq!(sends_a, TRIES_ONCE_TAKEN);
        assert!(outbox.waiting_for(&relay(1)).is_empty(), "{never} given up");
        assert_eq!(outbox.untaken(), 0);
    }

    #[test]
    fn a_full_outbox_gives_up_its_oldest_event() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        let first = event(0);
        let first_seq = outbox.add(first.clone(), relays(&[1]), t0);
        for n in 1..MAX_WAITING as u32 {
            outbox.add(event(n), relays(&[1]), t0);
        }
        // The same event again is the same entry, with the new relays.
        assert_eq!(outbox.add(first.clone(), relays(&[2]), t0), first_seq);
        assert_eq!(outbox.waiting_for(&relay(2)), [first_seq]);
        assert!(outbox.take_settled().is_empty());
        outbox.add(event(MAX_WAITING as u32), relays(&[1]), t0);
        assert_eq!(outbox.take_settled(), [first.id]);
        assert!(outbox.send(first_seq, None).is_none());
        assert_eq!(outbox.untaken(), MAX_WAITING);
    }

    #[test]
    fn refusal_prefixes() {
        for message in [
            "blocked: x",
            "invalid: x",
            "pow: x",
            "restricted: x",
            "error: x",
        ] {
            assert!(refusal_is_final(message), "{message}");
        }
        for message in ["rate-limited: x", "auth-required: x", "", "duplicate: x"] {
            assert!(!refusal_is_final(message), "{message}");
        }
    }
}
