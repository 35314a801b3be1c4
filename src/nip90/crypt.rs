//! Encrypted job events: who a payload is for, decrypting it in whichever scheme it uses, and
//! the JSON array of tags an encrypted request carries.

use nostr::{Keys, PublicKey};
use rand_core::{CryptoRng, RngCore};

use super::error::{clip, BuildError, ParseError};
use crate::encryption::Scheme;

/// How an event's private part is encrypted.
///
/// NIP-90 marks encrypted events with an `["encrypted"]` tag and names NIP-04, but real
/// traffic mixes NIP-04 and NIP-44 v2, and the unmerged nips PR #1259 adds
/// `["encrypted", "nip04" | "nip44"]`. The scheme is therefore read from the payload's shape
/// ([`crate::encryption::detect_scheme`]); what the tag declares is kept in `declared` but
/// never trusted over the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Encryption {
    /// The scheme the payload uses, detected from its shape.
    pub scheme: Scheme,
    /// The scheme the `encrypted` tag names, if it names a known one (`"nip04"`, `"nip44"`).
    pub declared: Option<Scheme>,
    /// Who the payload is encrypted to: the first `p` tag that is not the author (or the first
    /// `p` tag when all are the author). For a request, the provider; for a result or
    /// feedback, the customer.
    pub target: PublicKey,
    /// Whether the private part was decrypted and read. `false` when the parser was given no
    /// keys, or keys of someone who is neither the author nor a `p`-tagged party.
    pub decrypted: bool,
}

/// The first `p` tag that is not `author`, or the first `p` tag.
pub(crate) fn target_of(author: &PublicKey, p_tags: &[PublicKey]) -> Option<PublicKey> {
    p_tags
        .iter()
        .find(|p| *p != author)
        .or_else(|| p_tags.first())
        .copied()
}

/// The key the conversation is with, seen from `me`: the target when `me` wrote the event,
/// the author when `me` is one of its `p` tags, `None` when `me` is neither.
pub(crate) fn peer_for(
    me: &PublicKey,
    author: &PublicKey,
    target: &PublicKey,
    p_tags: &[PublicKey],
) -> Option<PublicKey> {
    if me == author {
        Some(*target)
    } else if p_tags.contains(me) {
        Some(*author)
    } else {
        None
    }
}

/// The scheme an `encrypted` tag declares.
pub(crate) fn declared_scheme(values: &[String]) -> Option<Scheme> {
    match values.first().map(String::as_str) {
        Some("nip44") => Some(Scheme::Nip44),
        Some("nip04") => Some(Scheme::Nip04),
        _ => None,
    }
}

/// The NIP-04 payload length (in bytes) that can hold `max_plaintext` bytes.
#[cfg(feature = "nip04")]
fn nip04_payload_len(max_plaintext: usize) -> usize {
    // PKCS#7 adds up to 16 bytes; base64 makes 4 characters of every 3 bytes; then "?iv=" and
    // the 24-character IV.
    max_plaintext
        .saturating_add(16)
        .div_ceil(3)
        .saturating_mul(4)
        .saturating_add(28)
}

/// Who reads an encrypted job event: the reader's keys, or a cache of the reader's
/// conversation keys (one ECDH per peer instead of one per event).
pub(crate) enum Reader<'a> {
    /// Derive the conversation key for each event.
    Keys(&'a Keys),
    /// Take NIP-44 conversation keys from the cache.
    Cache(&'a mut crate::nip44::ConversationKeyCache),
}

impl Reader<'_> {
    /// The reader's public key.
    pub(crate) fn public_key(&self) -> PublicKey {
        match self {
            Reader::Keys(keys) => keys.public_key(),
            Reader::Cache(cache) => cache.public_key(),
        }
    }

    /// Decrypts `payload` from `peer`, refusing plaintexts over `max_plaintext` bytes (by the
    /// payload's length, before decoding).
    pub(crate) fn decrypt(
        &mut self,
        scheme: Scheme,
        peer: &PublicKey,
        payload: &str,
        max_plaintext: usize,
    ) -> Result<String, ParseError> {
        match (scheme, self) {
            (Scheme::Nip44, Reader::Cache(cache)) => {
                let key = cache.get(peer).map_err(ParseError::Nip44)?;
                crate::nip44::decrypt_with_max_len(&key, payload, max_plaintext)
                    .map_err(ParseError::Nip44)
            }
            (_, Reader::Cache(cache)) => {
                decrypt(scheme, cache.keys(), peer, payload, max_plaintext)
            }
            (_, Reader::Keys(keys)) => decrypt(scheme, keys, peer, payload, max_plaintext),
        }
    }
}

/// Decrypts `payload` between `keys` and `peer`, refusing plaintexts over `max_plaintext`
/// bytes (by the payload's length, before decoding).
fn decrypt(
    scheme: Scheme,
    keys: &Keys,
    peer: &PublicKey,
    payload: &str,
    max_plaintext: usize,
) -> Result<String, ParseError> {
    match scheme {
        Scheme::Nip44 => {
            let key = crate::nip44::ConversationKey::derive(keys.secret_key(), peer)
                .map_err(ParseError::Nip44)?;
            crate::nip44::decrypt_with_max_len(&key, payload, max_plaintext)
                .map_err(ParseError::Nip44)
        }
        #[cfg(feature = "nip04")]
        Scheme::Nip04 => crate::nip04::decrypt_with_max_len(
            keys.secret_key(),
            peer,
            payload,
            nip04_payload_len(max_plaintext),
        )
        .map_err(ParseError::Nip04),
        #[cfg(not(feature = "nip04"))]
        Scheme::Nip04 => Err(ParseError::SchemeUnavailable(Scheme::Nip04)),
    }
}

/// Encrypts `plaintext` from `keys` to `peer`, with the nonce or IV drawn from `rng`. For
/// NIP-44, `known` is the conversation key when the caller has it (from a
/// [`ConversationKeyCache`](crate::nip44::ConversationKeyCache)); otherwise it is derived
/// (one ECDH). `prefix` bounds a NIP-44 plaintext; NIP-04 has no length prefix.
pub(crate) fn encrypt(
    scheme: Scheme,
    keys: &Keys,
    peer: &PublicKey,
    plaintext: &str,
    known: Option<&crate::nip44::ConversationKey>,
    prefix: crate::nip44::LengthPrefix,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<String, BuildError> {
    match scheme {
        Scheme::Nip44 => {
            let derived;
            let key = match known {
                Some(key) => key,
                None => {
                    derived = crate::nip44::ConversationKey::derive(keys.secret_key(), peer)
                        .map_err(BuildError::Nip44)?;
                    &derived
                }
            };
            crate::nip44::encrypt_with_prefix(key, plaintext, prefix, rng)
                .map_err(BuildError::Nip44)
        }
        #[cfg(feature = "nip04")]
        Scheme::Nip04 => {
            let _ = (known, prefix);
            crate::nip04::encrypt(keys.secret_key(), peer, plaintext, rng)
                .map_err(BuildError::Nip04)
        }
        #[cfg(not(feature = "nip04"))]
        Scheme::Nip04 => {
            let _ = (keys, peer, plaintext, known, prefix, rng);
            Err(BuildError::SchemeUnavailable(Scheme::Nip04))
        }
    }
}

/// Whether this build can produce `scheme`.
pub(crate) fn scheme_available(scheme: Scheme) -> bool {
    match scheme {
        Scheme::Nip44 => true,
        Scheme::Nip04 => cfg!(feature = "nip04"),
    }
}

/// Reads the JSON array of tags an encrypted request (or feedback) carries.
///
/// Lenient in what real software sends: an array of arrays (the NIP-90 shape), a single tag
/// (`["status", "success", "..."]`, as the registry's 5905 page shows), the registry's
/// `[..],[..]` without the outer brackets, and numbers or booleans as values (kept as their
/// JSON text). Empty inner arrays are skipped. Anything else is
/// [`ParseError::EncryptedContent`].
pub(crate) fn parse_private_tags(plaintext: &str) -> Result<Vec<Vec<String>>, ParseError> {
    let value: serde_json::Value = match serde_json::from_str(plaintext) {
        Ok(v) => v,
        Err(first) => {
            let trimmed = plaintext.trim_start();
            if !trimmed.starts_with('[') {
                return Err(ParseError::EncryptedContent {
                    reason: clip(&first.to_string()),
                });
            }
            let wrapped = format!("[{plaintext}]");
            serde_json::from_str(&wrapped).map_err(|_| ParseError::EncryptedContent {
                reason: clip(&first.to_string()),
            })?
        }
    };
    let serde_json::Value::Array(items) = value else {
        return Err(ParseError::EncryptedContent {
            reason: "not a JSON array".into(),
        });
    };
    if items.iter().all(|v| !v.is_array()) && !items.is_empty() {
        return Ok(vec![tag_values(&items)?]);
    }
    let mut tags = Vec::with_capacity(items.len());
    for item in items {
        let serde_json::Value::Array(values) = item else {
            return Err(ParseError::EncryptedContent {
                reason: "an element is not an array".into(),
            });
        };
        if values.is_empty() {
            continue;
        }
        tags.push(tag_values(&values)?);
    }
    Ok(tags)
}

fn tag_values(values: &[serde_json::Value]) -> Result<Vec<String>, ParseError> {
    values
        .iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            serde_json::Value::Bool(b) => Ok(b.to_string()),
            _ => Err(ParseError::EncryptedContent {
                reason: "a tag value is not a string".into(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_tag_shapes() {
        let tags = parse_private_tags(r#"[["i","x","text"],["param","n",3]]"#).unwrap();
        assert_eq!(tags[1], vec!["param", "n", "3"]);
        let one = parse_private_tags(r#"["status","success","scheduled"]"#).unwrap();
        assert_eq!(one, vec![vec!["status", "success", "scheduled"]]);
        let bare = parse_private_tags(r#"["i","x","text"],["param","a","b"]"#).unwrap();
        assert_eq!(bare.len(), 2);
        assert_eq!(parse_private_tags("[]").unwrap().len(), 0);
        assert_eq!(parse_private_tags("[[]]").unwrap().len(), 0);
        for bad in [
            "",
            "hello",
            "{}",
            r#"[["a",null]]"#,
            r#"[["a"],"b"]"#,
            "[[{}]]",
        ] {
            assert!(
                matches!(
                    parse_private_tags(bad),
                    Err(ParseError::EncryptedContent { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn targets_and_peers() {
        let a = Keys::parse("0000000000000000000000000000000000000000000000000000000000000001")
            .unwrap()
            .public_key();
        let b = Keys::parse("0000000000000000000000000000000000000000000000000000000000000002")
            .unwrap()
            .public_key();
        let c = Keys::parse("0000000000000000000000000000000000000000000000000000000000000003")
            .unwrap()
            .public_key();
        assert_eq!(target_of(&a, &[a, b]), Some(b));
        assert_eq!(target_of(&a, &[a]), Some(a));
        assert_eq!(target_of(&a, &[]), None);
        assert_eq!(peer_for(&a, &a, &b, &[b]), Some(b));
        assert_eq!(peer_for(&b, &a, &b, &[b]), Some(a));
        assert_eq!(peer_for(&c, &a, &b, &[b]), None);
    }
}
