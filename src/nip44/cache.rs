//! A bounded cache of conversation keys for one local secret key.

use std::collections::HashMap;

use nostr::{Keys, PublicKey, SecretKey};

use super::{ConversationKey, Error};

/// Conversation keys between one local secret key and the peers it talks to, bounded in size.
///
/// A provider hears from the same customers again and again, and for short messages the ECDH
/// behind [`ConversationKey::derive`] costs far more than the encryption itself. The cache keeps
/// at most `capacity` keys in two generations: lookups hit the young generation first; when it
/// fills, it becomes the old one and the previous old generation is dropped. A key used in the
/// last `capacity / 2` distinct lookups is always kept, every operation is O(1), and memory
/// never exceeds the bound however many peers write to us.
///
/// Failed derivations (public keys not on the curve) are not cached.
pub struct ConversationKeyCache {
    keys: Keys,
    generation_cap: usize,
    young: HashMap<PublicKey, ConversationKey>,
    old: HashMap<PublicKey, ConversationKey>,
    hits: u64,
    misses: u64,
}

impl ConversationKeyCache {
    /// The capacity [`with_default_capacity`](Self::with_default_capacity) uses.
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// A cache for `secret_key` holding at most `capacity` keys (at least 2).
    pub fn new(secret_key: SecretKey, capacity: usize) -> Self {
        let generation_cap = (capacity / 2).max(1);
        Self {
            keys: Keys::new(secret_key),
            generation_cap,
            young: HashMap::with_capacity(generation_cap.min(1024)),
            old: HashMap::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// A cache for `secret_key` with [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY).
    pub fn with_default_capacity(secret_key: SecretKey) -> Self {
        Self::new(secret_key, Self::DEFAULT_CAPACITY)
    }

    /// The conversation key with `peer`, derived on a miss.
    pub fn get(&mut self, peer: &PublicKey) -> Result<ConversationKey, Error> {
        if let Some(key) = self.young.get(peer) {
            self.hits += 1;
            return Ok(key.clone());
        }
        let key = match self.old.remove(peer) {
            Some(key) => {
                self.hits += 1;
                key
            }
            None => {
                self.misses += 1;
                ConversationKey::derive(self.keys.secret_key(), peer)?
            }
        };
        if self.young.len() >= self.generation_cap {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(*peer, key.clone());
        Ok(key)
    }

    /// The public key of the cache's secret key: the local side of every conversation.
    pub fn public_key(&self) -> PublicKey {
        self.keys.public_key()
    }

    /// The local keys, for the schemes the cache does not serve (NIP-04).
    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// How many keys the cache holds now.
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// Whether the cache holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys the cache ever holds.
    pub fn capacity(&self) -> usize {
        self.generation_cap * 2
    }

    /// Lookups answered without an ECDH, and lookups that needed one, since creation.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Drops every cached key.
    pub fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }
}

impl core::fmt::Debug for ConversationKeyCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ConversationKeyCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::Keys;

    fn keys(n: u8) -> Keys {
        let mut bytes = [0u8; 32];
        bytes[31] = n;
        bytes[0] = 1;
        Keys::new(SecretKey::from_slice(&bytes).unwrap())
    }

    #[test]
    fn hits_match_fresh_derivation_and_size_stays_bounded() {
        let me = keys(0);
        let mut cache = ConversationKeyCache::new(me.secret_key().clone(), 8);
        for round in 0..3 {
            for n in 1..=40u8 {
                let peer = keys(n).public_key();
                let got = cache.get(&peer).unwrap();
                let fresh = ConversationKey::derive(me.secret_key(), &peer).unwrap();
                assert_eq!(got, fresh, "round {round} peer {n}");
                assert!(cache.len() <= cache.capacity());
            }
        }
        assert_eq!(cache.capacity(), 8);
        // 40 distinct peers cycling through 8 slots: every lookup missed
        assert_eq!(cache.stats(), (0, 120));
    }

    #[test]
    fn a_recent_peer_is_a_hit() {
        let me = keys(0);
        let mut cache = ConversationKeyCache::new(me.secret_key().clone(), 4);
        let a = keys(1).public_key();
        cache.get(&a).unwrap();
        cache.get(&keys(2).public_key()).unwrap();
        cache.get(&a).unwrap();
        assert_eq!(cache.stats(), (1, 2));
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn an_invalid_peer_is_an_error_and_not_cached() {
        let me = keys(0);
        let mut cache = ConversationKeyCache::new(me.secret_key().clone(), 4);
        let bad = PublicKey::from_slice(&[0xff; 32]).unwrap();
        assert_eq!(cache.get(&bad).unwrap_err(), Error::InvalidPublicKey);
        assert!(cache.is_empty());
    }
}
