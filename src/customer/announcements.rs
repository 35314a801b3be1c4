//! What providers announce they read (NIP-89 kind 31990): a customer that asks a provider for
//! a scheme (encryption, gift wraps) its announcement explicitly says it does not read fails
//! at once, with the reason, instead of waiting out its timeout. An announcement that says
//! nothing about a scheme means "try".

use std::collections::{HashMap, VecDeque};

use nostr::{Kind, PublicKey, Timestamp};

use super::Delivery;
use crate::nip89::HandlerInfo;

/// The most announcements a customer remembers (one per provider and `d` identifier); the
/// oldest learned is forgotten first. About 100 bytes each.
pub const MAX_ANNOUNCEMENTS: usize = 1_024;

/// What one announcement says, as far as sending requests goes.
#[derive(Debug, Clone)]
struct Announced {
    created_at: Timestamp,
    kinds: Vec<Kind>,
    encryption: Option<bool>,
    gift_wraps: Option<bool>,
}

/// The announcements learned, keyed by author and `d` identifier (NIP-89 announcements are
/// addressable: a newer one with the same `d` replaces the older).
#[derive(Debug, Default)]
pub(super) struct Announcements {
    entries: HashMap<(PublicKey, String), Announced>,
    /// Learning order, for forgetting the oldest when full.
    order: VecDeque<(PublicKey, String)>,
}

impl Announcements {
    /// Remembers `info` unless an announcement with its author and `d` at least as new is
    /// known; returns whether anything changed.
    pub(super) fn learn(&mut self, info: &HandlerInfo) -> bool {
        let key = (info.author, info.identifier.clone());
        if let Some(known) = self.entries.get(&key) {
            if known.created_at >= info.created_at {
                return false;
            }
        } else {
            if self.order.len() >= MAX_ANNOUNCEMENTS {
                if let Some(oldest) = self.order.pop_front() {
                    self.entries.remove(&oldest);
                }
            }
            self.order.push_back(key.clone());
        }
        let metadata = info.metadata.as_ref();
        self.entries.insert(
            key,
            Announced {
                created_at: info.created_at,
                kinds: info.kinds.clone(),
                encryption: metadata.and_then(|m| m.encryption_supported),
                gift_wraps: metadata.and_then(|m| m.accepts_gift_wraps),
            },
        );
        true
    }

    /// The newest announcement of `provider` that lists `kind`.
    fn newest(&self, provider: &PublicKey, kind: Kind) -> Option<&Announced> {
        self.entries
            .iter()
            .filter(|((author, _), a)| author == provider && a.kinds.contains(&kind))
            .map(|(_, a)| a)
            .max_by_key(|a| a.created_at)
    }

    /// Whether an announcement of `provider` for `kind` is known.
    pub(super) fn knows(&self, provider: &PublicKey, kind: Kind) -> bool {
        self.newest(provider, kind).is_some()
    }

    /// What `delivery` asks of its provider for a request of `kind` that the provider's newest
    /// announcement for that kind explicitly says it does not read; `None` when it reads it,
    /// says nothing, or is not known.
    pub(super) fn refused(&self, delivery: Delivery, kind: Kind) -> Option<&'static str> {
        let (provider, what, flag): (_, _, fn(&Announced) -> Option<bool>) = match delivery {
            Delivery::Encrypted(p, _) => (p, "encrypted requests", |a| a.encryption),
            Delivery::GiftWrap(p) => (p, "gift-wrapped requests", |a| a.gift_wraps),
            Delivery::Public | Delivery::To(_) => return None,
        };
        let announced = self.newest(&provider, kind)?;
        (flag(announced) == Some(false)).then_some(what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::Scheme;
    use crate::nip89::HandlerMetadata;
    use nostr::{Keys, SecretKey};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn provider_keys() -> Keys {
        Keys::new(SecretKey::from_slice(&[7; 32]).unwrap())
    }

    fn info(keys: &Keys, d: &str, at: u64, encryption: Option<bool>) -> HandlerInfo {
        let metadata = HandlerMetadata {
            encryption_supported: encryption,
            ..HandlerMetadata::default()
        };
        let event = HandlerInfo::builder(d)
            .kind(Kind::from(5050))
            .metadata(metadata)
            .sign(keys, Timestamp::from(at), &mut StdRng::seed_from_u64(at))
            .unwrap();
        HandlerInfo::from_event(&event).unwrap()
    }

    #[test]
    fn the_newest_announcement_decides_and_absent_means_try() {
        let keys = provider_keys();
        let p = keys.public_key();
        let kind = Kind::from(5050);
        let encrypted = Delivery::Encrypted(p, Scheme::Nip44);
        let mut known = Announcements::default();
        assert_eq!(known.refused(encrypted, kind), None);
        assert!(known.learn(&info(&keys, "a", 10, Some(false))));
        assert_eq!(known.refused(encrypted, kind), Some("encrypted requests"));
        assert_eq!(known.refused(Delivery::GiftWrap(p), kind), None);
        assert_eq!(known.refused(encrypted, Kind::from(5001)), None);
        // an older copy changes nothing; a newer one that says nothing means "try"
        assert!(!known.learn(&info(&keys, "a", 9, Some(true))));
        assert!(known.learn(&info(&keys, "a", 11, None)));
        assert_eq!(known.refused(encrypted, kind), None);
    }

    #[test]
    fn memory_is_bounded() {
        let keys = provider_keys();
        let mut known = Announcements::default();
        for i in 0..MAX_ANNOUNCEMENTS + 10 {
            known.learn(&info(&keys, &i.to_string(), 10, Some(false)));
        }
        assert_eq!(known.entries.len(), MAX_ANNOUNCEMENTS);
        assert_eq!(known.order.len(), MAX_ANNOUNCEMENTS);
    }
}
