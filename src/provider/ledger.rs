//! The replay ledger: a receipt or a payment hash pays for one job, once.

use std::collections::{BTreeMap, BTreeSet};

use nostr::EventId;
use serde::{Deserialize, Serialize};

/// Every zap receipt id and payment hash that has paid for a job, and which job it paid.
///
/// Part of the provider's snapshot, so a receipt replayed after a restart is still refused.
/// Entries for a job are dropped only when the job itself is pruned (its retention passed):
/// by then its request and payment-required feedback are gone too, and a receipt can only
/// pay for a job it is bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayLedger {
    receipts: BTreeSet<EventId>,
    payment_hashes: BTreeSet<[u8; 32]>,
    paid: BTreeMap<EventId, Vec<Entry>>,
}

/// One payment the ledger records for a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    receipt: Option<EventId>,
    payment_hash: [u8; 32],
}

impl ReplayLedger {
    /// Whether this receipt or this payment hash has paid for anything already.
    pub fn seen(&self, receipt: Option<&EventId>, payment_hash: &[u8; 32]) -> bool {
        receipt.is_some_and(|r| self.receipts.contains(r))
            || self.payment_hashes.contains(payment_hash)
    }

    /// Records a verified zap for `job`; `false` (and nothing recorded) when the receipt or
    /// its payment hash was used before.
    pub fn record_zap(&mut self, job: EventId, receipt: EventId, payment_hash: [u8; 32]) -> bool {
        if self.seen(Some(&receipt), &payment_hash) {
            return false;
        }
        self.receipts.insert(receipt);
        self.payment_hashes.insert(payment_hash);
        self.paid.entry(job).or_default().push(Entry {
            receipt: Some(receipt),
            payment_hash,
        });
        true
    }

    /// Records a wallet-proven payment; `false` when the payment hash was used before.
    pub fn record_wallet(&mut self, payment_hash: [u8; 32]) -> bool {
        !self.payment_hashes.contains(&payment_hash) && self.payment_hashes.insert(payment_hash)
    }

    /// Attaches a wallet payment hash recorded with [`record_wallet`](Self::record_wallet) to
    /// the job it paid.
    pub fn assign(&mut self, job: EventId, payment_hash: [u8; 32]) {
        let entries = self.paid.entry(job).or_default();
        if !entries.iter().any(|e| e.payment_hash == payment_hash) {
            entries.push(Entry {
                receipt: None,
                payment_hash,
            });
        }
    }

    /// Whether any payment was recorded for `job`.
    pub fn paid_job(&self, job: &EventId) -> bool {
        self.paid.get(job).is_some_and(|e| !e.is_empty())
    }

    /// How many payments the ledger holds.
    pub fn len(&self) -> usize {
        self.payment_hashes.len()
    }

    /// Whether the ledger is empty.
    pub fn is_empty(&self) -> bool {
        self.payment_hashes.is_empty()
    }

    /// Forgets the payments of a pruned job.
    pub fn forget(&mut self, job: &EventId) {
        if let Some(entries) = self.paid.remove(job) {
            for e in entries {
                if let Some(r) = e.receipt {
                    self.receipts.remove(&r);
                }
                self.payment_hashes.remove(&e.payment_hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_or_a_hash_pays_once() {
        let mut ledger = ReplayLedger::default();
        let job = EventId::all_zeros();
        let r1 = EventId::from_byte_array([1; 32]);
        let r2 = EventId::from_byte_array([2; 32]);
        assert!(ledger.record_zap(job, r1, [9; 32]));
        assert!(!ledger.record_zap(job, r1, [8; 32]), "same receipt");
        assert!(!ledger.record_zap(job, r2, [9; 32]), "same payment hash");
        assert!(!ledger.record_wallet([9; 32]));
        assert!(ledger.record_wallet([7; 32]));
        ledger.assign(job, [7; 32]);
        assert!(ledger.paid_job(&job));
        assert_eq!(ledger.len(), 2);
        ledger.forget(&job);
        assert!(ledger.is_empty());
        assert!(!ledger.paid_job(&job));
    }
}
