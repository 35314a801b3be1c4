//! The replay ledger: a receipt or a payment hash pays for one job, once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nostr::{EventId, Timestamp};
use serde::{Deserialize, Serialize};

/// Every zap receipt id and payment hash that has paid for something, until it could no
/// longer be accepted again, and which job each paid.
///
/// Its memory does not depend on the job table: a spent entry stays when its job is dropped
/// (early, to make room, or after its retention), and goes only at the expiry it was recorded
/// with, which the provider sets past the moment its job's request turns stale (so the job
/// cannot be made again) and past the longest invoice expiry (see
/// [`ProviderConfig::spent_retention_secs`](super::ProviderConfig::spent_retention_secs)).
/// When it holds [`Admission::max_ledger_entries`](super::Admission::max_ledger_entries)
/// entries, the provider refuses new paid work rather than forget one. Part of the provider's
/// snapshot, so a receipt replayed after a restart is still refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SavedLedger", into = "SavedLedger")]
pub struct ReplayLedger {
    receipts: HashMap<EventId, Timestamp>,
    payment_hashes: HashMap<[u8; 32], Timestamp>,
    /// Every spent entry by expiry, for O(log n) expiry.
    by_expiry: BTreeSet<(Timestamp, SpentKey)>,
    /// The payments of the jobs still in the table.
    paid: BTreeMap<EventId, Vec<Entry>>,
}

/// One key of the replay ledger: a zap receipt id or a payment hash that has paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SpentKey {
    /// A zap receipt's event id.
    Receipt(EventId),
    /// A Lightning payment hash.
    PaymentHash([u8; 32]),
}

/// One payment the ledger records for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    receipt: Option<EventId>,
    payment_hash: [u8; 32],
}

/// The ledger as it is saved: the spent entries with their expiry, and the jobs' payments.
#[derive(Serialize, Deserialize)]
struct SavedLedger {
    spent: Vec<(SpentKey, Timestamp)>,
    paid: Vec<(EventId, Vec<Entry>)>,
}

impl From<SavedLedger> for ReplayLedger {
    fn from(saved: SavedLedger) -> Self {
        ReplayLedger::from_parts(saved.spent, saved.paid)
    }
}

impl From<ReplayLedger> for SavedLedger {
    fn from(ledger: ReplayLedger) -> Self {
        SavedLedger {
            spent: ledger.by_expiry.iter().map(|(t, k)| (*k, *t)).collect(),
            paid: ledger.paid.into_iter().collect(),
        }
    }
}

impl ReplayLedger {
    /// Whether this receipt or this payment hash has paid for anything already.
    pub fn seen(&self, receipt: Option<&EventId>, payment_hash: &[u8; 32]) -> bool {
        receipt.is_some_and(|r| self.receipts.contains_key(r))
            || self.payment_hashes.contains_key(payment_hash)
    }

    /// Whether this zap receipt has paid for anything already.
    pub fn receipt_spent(&self, receipt: &EventId) -> bool {
        self.receipts.contains_key(receipt)
    }

    fn insert(&mut self, key: SpentKey, expires: Timestamp) {
        let previous = match key {
            SpentKey::Receipt(id) => self.receipts.insert(id, expires),
            SpentKey::PaymentHash(hash) => self.payment_hashes.insert(hash, expires),
        };
        if let Some(t) = previous {
            self.by_expiry.remove(&(t, key));
        }
        self.by_expiry.insert((expires, key));
    }

    /// Records a verified zap for `job`, spent until `expires`; `false` (and nothing
    /// recorded) when the receipt or its payment hash was used before.
    pub fn record_zap(
        &mut self,
        job: EventId,
        receipt: EventId,
        payment_hash: [u8; 32],
        expires: Timestamp,
    ) -> bool {
        if self.seen(Some(&receipt), &payment_hash) {
            return false;
        }
        self.insert(SpentKey::Receipt(receipt), expires);
        self.insert(SpentKey::PaymentHash(payment_hash), expires);
        self.paid.entry(job).or_default().push(Entry {
            receipt: Some(receipt),
            payment_hash,
        });
        true
    }

    /// Records a wallet-proven payment of `job`'s invoice, spent until `expires`; `false`
    /// (and nothing recorded) when the payment hash was used before.
    pub fn record_wallet(
        &mut self,
        job: EventId,
        payment_hash: [u8; 32],
        expires: Timestamp,
    ) -> bool {
        if self.seen(None, &payment_hash) {
            return false;
        }
        self.insert(SpentKey::PaymentHash(payment_hash), expires);
        self.paid.entry(job).or_default().push(Entry {
            receipt: None,
            payment_hash,
        });
        true
    }

    /// Spends `key` until `expires` unless it is spent already (a key of another process of
    /// the fleet, adopted); whether it was added.
    pub(super) fn adopt_key(&mut self, key: SpentKey, expires: Timestamp) -> bool {
        let spent = match key {
            SpentKey::Receipt(id) => self.receipts.contains_key(&id),
            SpentKey::PaymentHash(hash) => self.payment_hashes.contains_key(&hash),
        };
        if spent {
            return false;
        }
        self.insert(key, expires);
        true
    }

    /// Records `entry` as a payment of `job` (adopted from another process of the fleet),
    /// its keys spent until `expires` when they were not; the keys it added.
    pub(super) fn adopt_payment(
        &mut self,
        job: EventId,
        entry: Entry,
        expires: Timestamp,
    ) -> Vec<SpentKey> {
        let entries = self.paid.entry(job).or_default();
        if !entries.contains(&entry) {
            entries.push(entry);
        }
        Self::keys_of(entry.receipt, entry.payment_hash)
            .into_iter()
            .filter(|key| self.adopt_key(*key, expires))
            .collect()
    }

    /// Whether any payment was recorded for `job` (while the job is in the table).
    pub fn paid_job(&self, job: &EventId) -> bool {
        self.paid.get(job).is_some_and(|e| !e.is_empty())
    }

    /// How many spent payments the ledger holds (one payment hash each, with its receipt
    /// when a zap paid).
    pub fn len(&self) -> usize {
        self.payment_hashes.len()
    }

    /// Whether the ledger is empty.
    pub fn is_empty(&self) -> bool {
        self.by_expiry.is_empty()
    }

    /// The job was dropped from the table: forget which payments were its own, but keep them
    /// spent until their expiry.
    pub fn release_job(&mut self, job: &EventId) {
        self.paid.remove(job);
    }

    /// When the next spent entry expires.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.by_expiry.first().map(|(t, _)| *t)
    }

    /// Drops the spent entries whose expiry is at or before `now`; returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        self.expire_keys(now).len()
    }

    /// Drops the spent entries whose expiry is at or before `now`; returns their keys.
    pub(super) fn expire_keys(&mut self, now: Timestamp) -> Vec<SpentKey> {
        let mut dropped = Vec::new();
        while let Some(&(t, key)) = self.by_expiry.first() {
            if t > now {
                break;
            }
            self.by_expiry.remove(&(t, key));
            match key {
                SpentKey::Receipt(id) => self.receipts.remove(&id),
                SpentKey::PaymentHash(hash) => self.payment_hashes.remove(&hash),
            };
            dropped.push(key);
        }
        dropped
    }

    /// Until when `key` stays spent, if it is.
    pub fn spent_until(&self, key: &SpentKey) -> Option<Timestamp> {
        match key {
            SpentKey::Receipt(id) => self.receipts.get(id).copied(),
            SpentKey::PaymentHash(hash) => self.payment_hashes.get(hash).copied(),
        }
    }

    /// The payments recorded for `job` while it is in the table.
    pub(super) fn payments_of(&self, job: &EventId) -> Vec<Entry> {
        self.paid.get(job).cloned().unwrap_or_default()
    }

    /// Every job's recorded payments.
    pub(super) fn paid_entries(&self) -> impl Iterator<Item = (EventId, Vec<Entry>)> + '_ {
        self.paid
            .iter()
            .map(|(job, entries)| (*job, entries.clone()))
    }

    /// Every spent key with its expiry.
    pub(super) fn spent_entries(&self) -> impl Iterator<Item = (SpentKey, Timestamp)> + '_ {
        self.by_expiry.iter().map(|(t, key)| (*key, *t))
    }

    /// A ledger of these spent keys and these jobs' payments.
    pub(super) fn from_parts(
        spent: impl IntoIterator<Item = (SpentKey, Timestamp)>,
        paid: impl IntoIterator<Item = (EventId, Vec<Entry>)>,
    ) -> Self {
        let mut ledger = ReplayLedger::default();
        for (key, expires) in spent {
            ledger.insert(key, expires);
        }
        ledger.paid = paid.into_iter().collect();
        ledger
    }

    /// The spent keys of a payment recorded for `job`: its receipt (for a zap) and its
    /// payment hash.
    pub(super) fn keys_of(receipt: Option<EventId>, payment_hash: [u8; 32]) -> Vec<SpentKey> {
        receipt
            .map(SpentKey::Receipt)
            .into_iter()
            .chain([SpentKey::PaymentHash(payment_hash)])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_or_a_hash_pays_once_until_it_expires() {
        let mut ledger = ReplayLedger::default();
        let job = EventId::all_zeros();
        let r1 = EventId::from_byte_array([1; 32]);
        let r2 = EventId::from_byte_array([2; 32]);
        let t = Timestamp::from(100);
        assert!(ledger.record_zap(job, r1, [9; 32], t));
        assert!(!ledger.record_zap(job, r1, [8; 32], t), "same receipt");
        assert!(!ledger.record_zap(job, r2, [9; 32], t), "same payment hash");
        assert!(!ledger.record_wallet(job, [9; 32], t));
        assert!(ledger.record_wallet(job, [7; 32], Timestamp::from(200)));
        assert!(ledger.paid_job(&job));
        assert_eq!(ledger.len(), 2);
        // The job leaves the table: its payments stay spent.
        ledger.release_job(&job);
        assert!(!ledger.paid_job(&job));
        assert!(!ledger.record_zap(job, r1, [1; 32], t), "still spent");
        assert_eq!(ledger.next_expiry(), Some(t));
        assert_eq!(ledger.expire(Timestamp::from(99)), 0);
        assert_eq!(ledger.expire(t), 2);
        assert!(ledger.seen(None, &[7; 32]));
        assert_eq!(ledger.expire(Timestamp::from(200)), 1);
        assert!(ledger.is_empty());
    }

    #[test]
    fn the_ledger_round_trips_through_serde() {
        let mut ledger = ReplayLedger::default();
        let job = EventId::from_byte_array([3; 32]);
        ledger.record_zap(
            job,
            EventId::from_byte_array([4; 32]),
            [5; 32],
            Timestamp::from(7),
        );
        ledger.record_wallet(job, [6; 32], Timestamp::from(8));
        let json = serde_json::to_string(&ledger).unwrap();
        let back: ReplayLedger = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ledger);
    }
}
