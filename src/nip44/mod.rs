//! NIP-44 v2: versioned encryption between two Nostr keys.
//!
//! ChaCha20 for the cipher, HKDF-SHA256 for the keys, HMAC-SHA256 over `nonce || ciphertext`
//! for authentication, and a power-of-two padding that hides most of the message length. This
//! module follows the current NIP text, including the **extended length prefix**: plaintexts of
//! 65536 bytes and more carry a 6-byte prefix (`0x0000` then a big-endian `u32`), so DVM results
//! such as long transcripts fit. Messages below 65536 bytes are byte-identical to every deployed
//! implementation.
//!
//! Most deployed readers (rust-nostr, nostr-tools, the reference Python DVM framework) refuse
//! the extended prefix, so it is sent only when asked for: [`encrypt`] refuses a plaintext over
//! [`STANDARD_MAX_PLAINTEXT_LEN`] bytes with [`Error::MessageTooLong`], and
//! [`encrypt_with_prefix`] with [`LengthPrefix::Extended`] writes the longer ones. Reading
//! accepts both.
//!
//! ```
//! use nostr_dvm::nip44::{self, ConversationKey};
//! use nostr_dvm::nostr::Keys;
//! use rand::SeedableRng;
//!
//! let alice = Keys::parse("5c0c523f52a5b6fad39ed2403092df8cebc36318b39383bca6c00808626fab3a")?;
//! let bob = Keys::parse("4b22aa260e4acb7021e32f38a6cdf4b673c6a277755bfce287e370c924dc936d")?;
//!
//! let key = ConversationKey::derive(alice.secret_key(), &bob.public_key())?;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//! let payload = nip44::encrypt(&key, "translate this", &mut rng)?;
//!
//! // Bob derives the same key from his side.
//! let key_b = ConversationKey::derive(bob.secret_key(), &alice.public_key())?;
//! assert_eq!(nip44::decrypt(&key_b, &payload)?, "translate this");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limits
//!
//! The spec allows plaintexts of up to 2^32 - 1 bytes and says implementations SHOULD enforce
//! their own maximum. [`decrypt`] refuses payloads that could hold more than
//! [`DEFAULT_MAX_PLAINTEXT_LEN`] bytes, by their length alone, before any base64 decoding or
//! allocation; [`decrypt_with_max_len`] sets another limit. [`encrypt`] writes at most
//! [`STANDARD_MAX_PLAINTEXT_LEN`] bytes, what every reader accepts; [`encrypt_with_prefix`]
//! with [`LengthPrefix::Extended`] writes the spec's full range.
//!
//! # Security notes
//!
//! - The MAC is checked in constant time (`hmac`'s `verify_slice`), before any decryption.
//! - Key material never appears in `Debug` output.
//! - NIP-44 has no forward secrecy and does not hide who talks to whom; see the NIP.

mod cache;
mod key;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use hkdf::hmac::{Hmac, KeyInit, Mac};
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;

pub use cache::ConversationKeyCache;
pub use key::{ConversationKey, MessageKeys};

/// The version byte of NIP-44 v2 payloads.
pub const VERSION: u8 = 2;
/// The smallest plaintext NIP-44 encrypts, in bytes.
pub const MIN_PLAINTEXT_LEN: usize = 1;
/// The largest plaintext the NIP-44 spec allows, in bytes (2^32 - 1).
pub const MAX_PLAINTEXT_LEN: usize = u32::MAX as usize;
/// Plaintexts of this many bytes and more use the 6-byte extended length prefix.
pub const EXTENDED_PREFIX_THRESHOLD: usize = 65_536;
/// The largest plaintext a 2-byte length prefix can carry, in bytes: the most every deployed
/// NIP-44 reader accepts, and the most [`encrypt`] writes.
pub const STANDARD_MAX_PLAINTEXT_LEN: usize = EXTENDED_PREFIX_THRESHOLD - 1;

/// Which length prefixes an encryption may write.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum LengthPrefix {
    /// Only the 2-byte prefix every reader knows: plaintexts of at most
    /// [`STANDARD_MAX_PLAINTEXT_LEN`] bytes. The default.
    #[default]
    Standard,
    /// The 6-byte extended prefix for plaintexts of [`EXTENDED_PREFIX_THRESHOLD`] bytes and
    /// more (up to [`MAX_PLAINTEXT_LEN`]): only for peers known to read it, as most refuse it.
    Extended,
}

impl LengthPrefix {
    /// The longest plaintext this choice encrypts, in bytes.
    pub fn max_plaintext_len(self) -> usize {
        match self {
            LengthPrefix::Standard => STANDARD_MAX_PLAINTEXT_LEN,
            LengthPrefix::Extended => MAX_PLAINTEXT_LEN,
        }
    }

    /// `Extended` when `allowed`, else `Standard`.
    pub fn extended_if(allowed: bool) -> Self {
        if allowed {
            LengthPrefix::Extended
        } else {
            LengthPrefix::Standard
        }
    }
}
/// The largest plaintext [`decrypt`] accepts by default: 16 MiB.
///
/// Far above what relays carry today (most cap events well below 1 MiB) while keeping the
/// memory a single hostile payload can make us use to a few times this figure.
pub const DEFAULT_MAX_PLAINTEXT_LEN: usize = 16 * 1024 * 1024;

/// The shortest valid payload, in base64 characters.
const MIN_PAYLOAD_CHARS: usize = 132;
/// The shortest valid decoded payload, in bytes: version + nonce + 34-byte padded text + MAC.
const MIN_DECODED_LEN: usize = 99;
/// Version byte + nonce.
const HEADER_LEN: usize = 1 + 32;
/// HMAC-SHA256 output.
const MAC_LEN: usize = 32;

/// What can go wrong in NIP-44 v2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The payload's version is not supported: `None` for the `#` marker the spec reserves
    /// for future, non-base64 encodings; `Some(v)` for a decoded version byte other than 2.
    #[error("unsupported encryption version{}", match .0 { Some(v) => format!(" {v}"), None => String::new() })]
    UnsupportedVersion(Option<u8>),
    /// The payload is not valid base64 (RFC 4648, with padding).
    #[error("invalid base64")]
    InvalidBase64,
    /// The payload, or what it decodes to, has a length no valid payload has.
    #[error("invalid payload length: {0}")]
    InvalidPayloadLength(usize),
    /// The payload could hold a plaintext larger than the configured maximum; it was refused
    /// before decoding.
    #[error("payload of {len} characters exceeds the limit of {max} characters")]
    PayloadTooLarge {
        /// The payload's length in base64 characters.
        len: usize,
        /// The largest length accepted under the configured plaintext limit.
        max: usize,
    },
    /// The MAC does not match: wrong key, or the payload was altered.
    #[error("invalid MAC")]
    InvalidMac,
    /// The length prefix or the zero padding is wrong.
    #[error("invalid padding")]
    InvalidPadding,
    /// The plaintext to encrypt is empty.
    #[error("message is empty")]
    MessageEmpty,
    /// The plaintext to encrypt is longer than the length prefix allows: 65,535 bytes without
    /// the extended prefix (the most deployed readers accept), 2^32 - 1 with it.
    #[error(
        "message of {len} bytes is too long: NIP-44 carries at most {max} bytes{}",
        if *.max == STANDARD_MAX_PLAINTEXT_LEN { " without the extended length prefix, which most readers refuse" } else { "" }
    )]
    MessageTooLong {
        /// The plaintext's length, in bytes.
        len: usize,
        /// The most the chosen [`LengthPrefix`] carries.
        max: usize,
    },
    /// The decrypted plaintext is not UTF-8.
    #[error("plaintext is not valid UTF-8")]
    InvalidUtf8,
    /// The public key is not the x coordinate of a point on secp256k1.
    #[error("invalid public key")]
    InvalidPublicKey,
}

impl From<crate::ecdh::EcdhError> for Error {
    fn from(err: crate::ecdh::EcdhError) -> Self {
        match err {
            crate::ecdh::EcdhError::InvalidPublicKey => Error::InvalidPublicKey,
        }
    }
}

/// The padded length of a plaintext of `unpadded_len` bytes (without the length prefix).
///
/// Up to 32 bytes pad to 32; above that, to the next multiple of a chunk that is 1/8 of the
/// next power of two (at least 32). `unpadded_len` must be at least 1; 0 gives 32.
pub fn calc_padded_len(unpadded_len: usize) -> usize {
    if unpadded_len <= 32 {
        return 32;
    }
    let len = unpadded_len as u64;
    let next_power = 1u64 << (64 - (len - 1).leading_zeros());
    let chunk = if next_power <= 256 {
        32
    } else {
        next_power / 8
    };
    (chunk * ((len - 1) / chunk + 1)) as usize
}

/// The length prefix for `len` bytes of plaintext: 2 bytes below 65536, else 6.
fn prefix_len(len: usize) -> usize {
    if len >= EXTENDED_PREFIX_THRESHOLD {
        6
    } else {
        2
    }
}

/// The longest payload, in base64 characters, that can hold a plaintext of `max_plaintext_len`.
pub fn max_payload_len(max_plaintext_len: usize) -> usize {
    let max = max_plaintext_len.clamp(MIN_PLAINTEXT_LEN, MAX_PLAINTEXT_LEN);
    let raw = HEADER_LEN + prefix_len(max) + calc_padded_len(max) + MAC_LEN;
    raw.div_ceil(3) * 4
}

/// Encrypts `plaintext` with a random nonce drawn from `rng`, with the standard 2-byte
/// length prefix: a plaintext over [`STANDARD_MAX_PLAINTEXT_LEN`] bytes is refused
/// ([`Error::MessageTooLong`]); see [`encrypt_with_prefix`].
///
/// The RNG must be cryptographically secure; a nonce must never repeat under one key.
pub fn encrypt(
    key: &ConversationKey,
    plaintext: &str,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<String, Error> {
    encrypt_with_prefix(key, plaintext, LengthPrefix::Standard, rng)
}

/// Encrypts `plaintext` with a random nonce drawn from `rng`, writing the length prefixes
/// `prefix` allows.
pub fn encrypt_with_prefix(
    key: &ConversationKey,
    plaintext: &str,
    prefix: LengthPrefix,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<String, Error> {
    check_len(plaintext.len(), prefix)?;
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    encrypt_with_nonce_and_prefix(key, plaintext, &nonce, prefix)
}

/// Encrypts `plaintext` with a caller-chosen nonce and the standard length prefix.
///
/// For test vectors and reproducible runs. Reusing a nonce under the same key makes both
/// messages readable to anyone: prefer [`encrypt`].
pub fn encrypt_with_nonce(
    key: &ConversationKey,
    plaintext: &str,
    nonce: &[u8; 32],
) -> Result<String, Error> {
    encrypt_with_nonce_and_prefix(key, plaintext, nonce, LengthPrefix::Standard)
}

/// Whether a plaintext of `len` bytes can be encrypted under `prefix`.
fn check_len(len: usize, prefix: LengthPrefix) -> Result<(), Error> {
    if len < MIN_PLAINTEXT_LEN {
        return Err(Error::MessageEmpty);
    }
    let max = prefix.max_plaintext_len();
    if len > max {
        return Err(Error::MessageTooLong { len, max });
    }
    Ok(())
}

/// Encrypts `plaintext` with a caller-chosen nonce, writing the length prefixes `prefix`
/// allows. For test vectors, as [`encrypt_with_nonce`].
pub fn encrypt_with_nonce_and_prefix(
    key: &ConversationKey,
    plaintext: &str,
    nonce: &[u8; 32],
    prefix: LengthPrefix,
) -> Result<String, Error> {
    let text = plaintext.as_bytes();
    let len = text.len();
    check_len(len, prefix)?;
    let keys = key.message_keys(nonce);
    let prefix = prefix_len(len);
    let padded = calc_padded_len(len);

    let mut raw = Vec::with_capacity(HEADER_LEN + prefix + padded + MAC_LEN);
    raw.push(VERSION);
    raw.extend_from_slice(nonce);
    if prefix == 6 {
        raw.extend_from_slice(&[0, 0]);
        raw.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        raw.extend_from_slice(&(len as u16).to_be_bytes());
    }
    raw.extend_from_slice(text);
    raw.resize(HEADER_LEN + prefix + padded, 0);

    let ciphertext = &mut raw[HEADER_LEN..];
    let mut cipher = ChaCha20::new(keys.chacha_key().into(), keys.chacha_nonce().into());
    cipher.apply_keystream(ciphertext);

    let mac = hmac_aad(keys.hmac_key(), nonce, ciphertext)
        .finalize()
        .into_bytes();
    raw.extend_from_slice(&mac);
    Ok(STANDARD.encode(&raw))
}

/// Decrypts a payload, refusing any that could hold more than [`DEFAULT_MAX_PLAINTEXT_LEN`].
pub fn decrypt(key: &ConversationKey, payload: &str) -> Result<String, Error> {
    decrypt_with_max_len(key, payload, DEFAULT_MAX_PLAINTEXT_LEN)
}

/// Decrypts a payload, refusing any that could hold more than `max_plaintext_len` bytes.
///
/// The limit is applied to the payload's length before it is decoded, so an attacker's
/// payload cannot make this function allocate more than about `3/4` of its own length.
pub fn decrypt_with_max_len(
    key: &ConversationKey,
    payload: &str,
    max_plaintext_len: usize,
) -> Result<String, Error> {
    let raw = decode_payload(payload, max_plaintext_len)?;
    let len = raw.len();
    let nonce: &[u8; 32] = raw[1..HEADER_LEN]
        .try_into()
        .map_err(|_| Error::InvalidPayloadLength(len))?;
    let (ciphertext, mac) = raw[HEADER_LEN..].split_at(len - HEADER_LEN - MAC_LEN);
    let keys = key.message_keys(nonce);
    hmac_aad(keys.hmac_key(), nonce, ciphertext)
        .verify_slice(mac)
        .map_err(|_| Error::InvalidMac)?;

    let mut padded = raw;
    padded.truncate(len - MAC_LEN);
    let body = &mut padded[HEADER_LEN..];
    let mut cipher = ChaCha20::new(keys.chacha_key().into(), keys.chacha_nonce().into());
    cipher.apply_keystream(body);
    let (start, text_len) = unpad(body)?;
    let text = &body[start..start + text_len];
    match core::str::from_utf8(text) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(Error::InvalidUtf8),
    }
}

/// Checks the payload's shape and decodes it, in the order the spec gives.
fn decode_payload(payload: &str, max_plaintext_len: usize) -> Result<Vec<u8>, Error> {
    let chars = payload.len();
    if payload.starts_with('#') {
        return Err(Error::UnsupportedVersion(None));
    }
    if chars < MIN_PAYLOAD_CHARS {
        return Err(Error::InvalidPayloadLength(chars));
    }
    let max = max_payload_len(max_plaintext_len);
    if chars > max {
        return Err(Error::PayloadTooLarge { len: chars, max });
    }
    let raw = STANDARD
        .decode(payload.as_bytes())
        .map_err(|_| Error::InvalidBase64)?;
    if raw.len() < MIN_DECODED_LEN {
        return Err(Error::InvalidPayloadLength(raw.len()));
    }
    if raw[0] != VERSION {
        return Err(Error::UnsupportedVersion(Some(raw[0])));
    }
    Ok(raw)
}

/// Reads the length prefix of a decrypted, padded body and checks the padding.
///
/// Returns where the plaintext starts and its length.
fn unpad(padded: &[u8]) -> Result<(usize, usize), Error> {
    let first = padded.get(0..2).ok_or(Error::InvalidPadding)?;
    let short = u16::from_be_bytes([first[0], first[1]]) as usize;
    let (start, text_len) = if short == 0 {
        let ext = padded.get(2..6).ok_or(Error::InvalidPadding)?;
        let long = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]) as usize;
        if long < EXTENDED_PREFIX_THRESHOLD {
            return Err(Error::InvalidPadding);
        }
        (6, long)
    } else {
        (2, short)
    };
    if padded.len() != start + calc_padded_len(text_len) {
        return Err(Error::InvalidPadding);
    }
    // The spec checks the slice length and the padded length; the padding is zeros by
    // construction of the sender, and not checking them is what every implementation does.
    Ok((start, text_len))
}

/// HMAC-SHA256 keyed with `key` over `aad || message`.
fn hmac_aad(key: &[u8; 32], aad: &[u8; 32], message: &[u8]) -> Hmac<Sha256> {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(aad);
    mac.update(message);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_len_follows_the_spec_table() {
        for (len, want) in [
            (1, 32),
            (32, 32),
            (33, 64),
            (64, 64),
            (65, 96),
            (256, 256),
            (257, 320),
            (65_535, 65_536),
            (65_536, 65_536),
            (65_537, 81_920),
        ] {
            assert_eq!(calc_padded_len(len), want, "len {len}");
        }
        assert_eq!(calc_padded_len(MAX_PLAINTEXT_LEN), 1usize << 32);
    }

    #[test]
    fn max_payload_len_bounds_every_plaintext_up_to_the_limit() {
        let key = ConversationKey::from_bytes([7; 32]);
        for len in [1usize, 31, 32, 33, 1000, 65_535, 65_536, 70_000] {
            let text = "x".repeat(len);
            let payload =
                encrypt_with_nonce_and_prefix(&key, &text, &[1; 32], LengthPrefix::Extended)
                    .unwrap();
            assert!(payload.len() <= max_payload_len(len), "len {len}");
            // exactly at the limit it decrypts; one byte less and it is refused unread
            assert_eq!(decrypt_with_max_len(&key, &payload, len).unwrap(), text);
            if calc_padded_len(len - 1) != calc_padded_len(len)
                || prefix_len(len - 1) != prefix_len(len)
            {
                assert!(matches!(
                    decrypt_with_max_len(&key, &payload, len - 1),
                    Err(Error::PayloadTooLarge { .. })
                ));
            }
        }
    }

    #[test]
    fn unpad_refuses_an_extended_prefix_for_a_short_length() {
        let mut body = vec![0u8; 6 + 32];
        body[5] = 5; // 0x0000 then u32 5: must have used the short prefix
        assert_eq!(unpad(&body), Err(Error::InvalidPadding));
        assert_eq!(unpad(&[0]), Err(Error::InvalidPadding));
        assert_eq!(unpad(&[0, 0, 1]), Err(Error::InvalidPadding));
    }
}
