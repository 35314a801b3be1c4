//! Conversation keys and per-message keys.

use core::fmt;

use hkdf::Hkdf;
use nostr::{PublicKey, SecretKey};
use sha2::Sha256;

use super::Error;

/// The salt of the HKDF-extract step that makes a conversation key.
const SALT: &[u8] = b"nip44-v2";

/// The long-term symmetric key between two parties: `HKDF-extract(salt="nip44-v2", IKM=shared_x)`.
///
/// It is the same from either side: `derive(a, B) == derive(b, A)`. Deriving it costs one
/// elliptic-curve multiplication, which dominates the cost of short messages; keep it, or use a
/// [`ConversationKeyCache`](super::ConversationKeyCache).
///
/// The key also holds the HMAC state keyed with it, so each message's HKDF-expand starts from a
/// precomputed state. Its `Debug` output never shows key material.
#[derive(Clone)]
pub struct ConversationKey {
    bytes: [u8; 32],
    hkdf: Hkdf<Sha256>,
}

impl ConversationKey {
    /// Derives the conversation key between `secret_key` and `public_key`.
    ///
    /// Fails with [`Error::InvalidPublicKey`] when `public_key` is not the x coordinate of a
    /// point on secp256k1 (points on the curve's twist included). A `nostr::SecretKey` is always
    /// in range, and secp256k1's group has prime order, so no other failure exists.
    pub fn derive(secret_key: &SecretKey, public_key: &PublicKey) -> Result<Self, Error> {
        let shared_x = crate::ecdh::shared_x(secret_key, public_key)?;
        let (prk, hkdf) = Hkdf::<Sha256>::extract(Some(SALT), &shared_x);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&prk);
        Ok(Self { bytes, hkdf })
    }

    /// Builds a conversation key from its 32 bytes (for instance one kept from an earlier
    /// [`derive`](Self::derive)).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        // A 32-byte PRK is always long enough for SHA-256's HKDF.
        let hkdf = match Hkdf::<Sha256>::from_prk(&bytes) {
            Ok(hkdf) => hkdf,
            Err(_) => unreachable!("a 32-byte PRK is the SHA-256 output length"),
        };
        Self { bytes, hkdf }
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The per-message keys for `nonce`: `HKDF-expand(PRK=conversation_key, info=nonce, L=76)`.
    pub fn message_keys(&self, nonce: &[u8; 32]) -> MessageKeys {
        let mut okm = [0u8; 76];
        if self.hkdf.expand(nonce, &mut okm).is_err() {
            unreachable!("76 bytes is far below HKDF-SHA256's 8160-byte limit");
        }
        let mut keys = MessageKeys {
            chacha_key: [0; 32],
            chacha_nonce: [0; 12],
            hmac_key: [0; 32],
        };
        keys.chacha_key.copy_from_slice(&okm[0..32]);
        keys.chacha_nonce.copy_from_slice(&okm[32..44]);
        keys.hmac_key.copy_from_slice(&okm[44..76]);
        keys
    }
}

impl PartialEq for ConversationKey {
    /// Compares the keys without branching on their bytes.
    fn eq(&self, other: &Self) -> bool {
        let diff = self
            .bytes
            .iter()
            .zip(other.bytes.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff == 0
    }
}

impl Eq for ConversationKey {}

impl fmt::Debug for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConversationKey(<redacted>)")
    }
}

/// The three keys NIP-44 v2 derives for one message from the conversation key and its nonce.
///
/// Exposed for test vectors and interoperability work; [`encrypt`](super::encrypt) and
/// [`decrypt`](super::decrypt) use them internally. `Debug` output is redacted.
#[derive(Clone)]
pub struct MessageKeys {
    chacha_key: [u8; 32],
    chacha_nonce: [u8; 12],
    hmac_key: [u8; 32],
}

impl MessageKeys {
    /// The ChaCha20 key (bytes 0..32 of the expansion).
    pub fn chacha_key(&self) -> &[u8; 32] {
        &self.chacha_key
    }

    /// The ChaCha20 nonce (bytes 32..44 of the expansion).
    pub fn chacha_nonce(&self) -> &[u8; 12] {
        &self.chacha_nonce
    }

    /// The HMAC-SHA256 key (bytes 44..76 of the expansion).
    pub fn hmac_key(&self) -> &[u8; 32] {
        &self.hmac_key
    }
}

impl fmt::Debug for MessageKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MessageKeys(<redacted>)")
    }
}
