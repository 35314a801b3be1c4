//! Legacy NIP-04 encryption: AES-256-CBC over an unhashed ECDH secret.
//!
//! [NIP-04] was Nostr's first scheme for encrypted payloads. Both parties compute the same
//! 32-byte key, the x coordinate of `secret_key * lift_x(public_key)` (the x-only public key
//! taken with an even y, and the coordinate used as is, without a hash). The UTF-8 plaintext is
//! padded with PKCS#7, encrypted with AES-256 in CBC mode under a fresh 16-byte IV, and sent as
//!
//! ```text
//! base64(ciphertext) + "?iv=" + base64(iv)
//! ```
//!
//! with standard, padded base64 (RFC 4648).
//!
//! # Legacy and unauthenticated
//!
//! NIP-04 is deprecated in favour of [NIP-44](crate::nip44), and for good reasons:
//!
//! - **No MAC.** Nothing detects a changed payload. CBC is malleable: flipping a bit of the IV
//!   flips the same bit of the first plaintext block, and the result still decrypts without
//!   error. Only the signature of the event that carries the payload protects it.
//! - **Padding oracle.** Because there is no MAC, a party that tells a sender *why* a payload
//!   failed (bad padding against bad UTF-8, or any difference in timing or reply) can be used to
//!   decrypt other payloads block by block. Never echo the error kind back to a remote party.
//! - **It leaks the length** of the plaintext, to within 16 bytes.
//! - **The key is never hashed or rotated**: one key per pair of users, forever.
//!
//! # Why it is still here
//!
//! [NIP-90] still names NIP-04 for encrypted job requests, and real clients still send it. A
//! provider has to read such a request and must answer in the scheme the request used
//! ([`crate::encryption::detect_scheme`] tells which), or the customer cannot read the result.
//! New code that chooses a scheme should choose NIP-44.
//!
//! # Limits
//!
//! [`decrypt`] refuses payloads longer than [`MAX_PAYLOAD_LEN`] before decoding anything, so a
//! hostile payload bounds the memory it can make us allocate; [`decrypt_with_max_len`] takes
//! another limit. Malformed input never panics: every failure is an [`Error`].
//!
//! # Example
//!
//! ```
//! use nostr_dvm::nip04;
//! use nostr_dvm::nostr::{Keys, SecretKey};
//! use rand::rngs::StdRng;
//! use rand::SeedableRng;
//!
//! let alice = Keys::new(SecretKey::from_slice(&[0x11; 32]).unwrap());
//! let bob = Keys::new(SecretKey::from_slice(&[0x22; 32]).unwrap());
//! let mut rng = StdRng::seed_from_u64(7);
//!
//! // Alice encrypts to Bob...
//! let payload = nip04::encrypt(alice.secret_key(), &bob.public_key(), "translate: bonjour", &mut rng)?;
//! assert!(payload.contains("?iv="));
//!
//! // ...and Bob decrypts with his secret key and Alice's public key.
//! let plaintext = nip04::decrypt(bob.secret_key(), &alice.public_key(), &payload)?;
//! assert_eq!(plaintext, "translate: bonjour");
//!
//! // A payload that is not NIP-04 is a typed error, not a panic.
//! assert_eq!(
//!     nip04::decrypt(bob.secret_key(), &alice.public_key(), "not a payload"),
//!     Err(nip04::Error::MissingIv)
//! );
//! # Ok::<(), nip04::Error>(())
//! ```
//!
//! [NIP-04]: https://github.com/nostr-protocol/nips/blob/master/04.md
//! [NIP-90]: https://github.com/nostr-protocol/nips/blob/master/90.md

use core::fmt;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use aes::Aes256;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use nostr::{PublicKey, SecretKey};
use rand_core::{CryptoRng, RngCore};

type Aes256CbcEnc = cbc::Encryptor<Aes256>;
type Aes256CbcDec = cbc::Decryptor<Aes256>;

/// The separator between the ciphertext and the IV in a payload.
pub const IV_SEPARATOR: &str = "?iv=";

/// The length of the IV, in bytes.
pub const IV_LEN: usize = 16;

/// The AES block size, in bytes: every ciphertext is a non-zero multiple of it.
const BLOCK_LEN: usize = 16;

/// The length of a 16-byte IV in standard padded base64.
const ENCODED_IV_LEN: usize = 24;

/// The longest payload [`decrypt`] accepts, in bytes of the payload string: 16 MiB.
///
/// A payload of this size holds about 12 MiB of plaintext, far more than relays carry today
/// (most cap whole events well below 1 MiB), while bounding what one hostile payload can make
/// us allocate to a small multiple of its own size. Use [`decrypt_with_max_len`] for a tighter
/// (or looser) limit. [`encrypt`] does not enforce it.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;

/// What can go wrong in NIP-04.
///
/// Tell these apart in logs, not in replies to a remote party: see the padding-oracle note in
/// the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The public key is not the x coordinate of a point on secp256k1, so no shared key exists.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// The payload has no `?iv=` separator.
    #[error("payload has no \"?iv=\" separator")]
    MissingIv,
    /// The ciphertext or the IV is not standard, padded base64 (RFC 4648).
    #[error("invalid base64 in the payload")]
    InvalidBase64,
    /// The IV does not decode to exactly 16 bytes.
    #[error("invalid iv length: expected 16 bytes")]
    InvalidIvLength,
    /// The ciphertext decodes to zero bytes or to a length that is not a multiple of 16.
    #[error("invalid ciphertext length: expected a non-zero multiple of 16 bytes")]
    InvalidCiphertextLength,
    /// The PKCS#7 padding is wrong after decryption: the key is wrong or the payload was
    /// altered.
    #[error("invalid padding: wrong key or altered payload")]
    InvalidPadding,
    /// The decrypted plaintext is not UTF-8 (a wrong key or an altered payload can also end
    /// here, when the padding happens to look right).
    #[error("plaintext is not valid utf-8")]
    InvalidUtf8,
    /// The payload is longer than the limit; it was refused before being decoded.
    #[error("payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// The payload's length, in bytes.
        len: usize,
        /// The limit it exceeded.
        max: usize,
    },
}

/// The NIP-04 shared key between two parties: the unhashed x coordinate of their ECDH point.
///
/// It is the same from either side: `shared_key(a, B) == shared_key(b, A)`. Computing it costs
/// one elliptic-curve multiplication; keep it to encrypt and decrypt many messages with one
/// peer through [`encrypt_with_shared_key`] and [`decrypt_with_shared_key`]. Its `Debug` output
/// never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedKey([u8; 32]);

impl SharedKey {
    /// Builds a shared key from its 32 bytes (for instance one kept from an earlier
    /// [`shared_key`]).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key's 32 bytes, which are the AES-256 key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedKey(<redacted>)")
    }
}

/// Computes the NIP-04 shared key between `secret_key` and `public_key`.
///
/// Fails with [`Error::InvalidPublicKey`] when `public_key` is not the x coordinate of a point
/// on secp256k1.
pub fn shared_key(secret_key: &SecretKey, public_key: &PublicKey) -> Result<SharedKey, Error> {
    crate::ecdh::shared_x(secret_key, public_key)
        .map(SharedKey)
        .map_err(|_| Error::InvalidPublicKey)
}

/// Encrypts `plaintext` from `secret_key` to `public_key`, with an IV drawn from `rng`.
///
/// The RNG must be cryptographically secure: an IV must not be predictable or repeat.
pub fn encrypt(
    secret_key: &SecretKey,
    public_key: &PublicKey,
    plaintext: &str,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<String, Error> {
    let key = shared_key(secret_key, public_key)?;
    Ok(encrypt_with_shared_key(&key, plaintext, rng))
}

/// Encrypts `plaintext` from `secret_key` to `public_key` with a caller-chosen IV.
///
/// For test vectors and reproducible runs. Reusing an IV under the same pair of keys shows
/// which messages start with the same blocks: prefer [`encrypt`].
pub fn encrypt_with_iv(
    secret_key: &SecretKey,
    public_key: &PublicKey,
    plaintext: &str,
    iv: &[u8; 16],
) -> Result<String, Error> {
    let key = shared_key(secret_key, public_key)?;
    Ok(encrypt_with_shared_key_and_iv(&key, plaintext, iv))
}

/// Encrypts `plaintext` under an already computed [`SharedKey`], with an IV drawn from `rng`.
pub fn encrypt_with_shared_key(
    key: &SharedKey,
    plaintext: &str,
    rng: &mut (impl RngCore + CryptoRng),
) -> String {
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    encrypt_with_shared_key_and_iv(key, plaintext, &iv)
}

/// Encrypts `plaintext` under an already computed [`SharedKey`] with a caller-chosen IV.
///
/// For test vectors and reproducible runs: prefer [`encrypt_with_shared_key`].
pub fn encrypt_with_shared_key_and_iv(key: &SharedKey, plaintext: &str, iv: &[u8; 16]) -> String {
    let ciphertext = Aes256CbcEnc::new(&key.0.into(), &(*iv).into())
        .encrypt_padded_vec::<Pkcs7>(plaintext.as_bytes());
    let mut payload = String::with_capacity(
        ciphertext.len().div_ceil(3) * 4 + IV_SEPARATOR.len() + ENCODED_IV_LEN,
    );
    STANDARD.encode_string(&ciphertext, &mut payload);
    payload.push_str(IV_SEPARATOR);
    STANDARD.encode_string(iv, &mut payload);
    payload
}

/// Decrypts a payload that `public_key` sent to `secret_key` (or that `secret_key` sent to
/// `public_key`: the key is the same), refusing payloads longer than [`MAX_PAYLOAD_LEN`].
pub fn decrypt(
    secret_key: &SecretKey,
    public_key: &PublicKey,
    payload: &str,
) -> Result<String, Error> {
    decrypt_with_max_len(secret_key, public_key, payload, MAX_PAYLOAD_LEN)
}

/// Like [`decrypt`], refusing payloads longer than `max_len` bytes instead of
/// [`MAX_PAYLOAD_LEN`].
///
/// The payload is parsed before the shared key is computed, so malformed input is refused
/// without an elliptic-curve multiplication.
pub fn decrypt_with_max_len(
    secret_key: &SecretKey,
    public_key: &PublicKey,
    payload: &str,
    max_len: usize,
) -> Result<String, Error> {
    let (ciphertext, iv) = parse_payload(payload, max_len)?;
    let key = shared_key(secret_key, public_key)?;
    decrypt_parsed(&key, &ciphertext, &iv)
}

/// Decrypts a payload under an already computed [`SharedKey`], refusing payloads longer than
/// [`MAX_PAYLOAD_LEN`].
///
/// For another limit, check `payload.len()` before calling: the limit is nothing more.
pub fn decrypt_with_shared_key(key: &SharedKey, payload: &str) -> Result<String, Error> {
    let (ciphertext, iv) = parse_payload(payload, MAX_PAYLOAD_LEN)?;
    decrypt_parsed(key, &ciphertext, &iv)
}

/// Splits and decodes a payload into its ciphertext and IV, checking every length.
fn parse_payload(payload: &str, max_len: usize) -> Result<(Vec<u8>, [u8; IV_LEN]), Error> {
    let len = payload.len();
    if len > max_len {
        return Err(Error::PayloadTooLarge { len, max: max_len });
    }
    let (encoded_ciphertext, encoded_iv) =
        payload.split_once(IV_SEPARATOR).ok_or(Error::MissingIv)?;

    // Valid padded base64 longer than 24 characters decodes to at least 19 bytes, so a longer
    // IV part cannot be a 16-byte IV: refuse it without decoding.
    if encoded_iv.len() > ENCODED_IV_LEN {
        return Err(Error::InvalidIvLength);
    }
    let iv_bytes = STANDARD
        .decode(encoded_iv)
        .map_err(|_| Error::InvalidBase64)?;
    let iv: [u8; IV_LEN] = iv_bytes
        .as_slice()
        .try_into()
        .map_err(|_| Error::InvalidIvLength)?;

    let ciphertext = STANDARD
        .decode(encoded_ciphertext)
        .map_err(|_| Error::InvalidBase64)?;
    if ciphertext.is_empty() || ciphertext.len() % BLOCK_LEN != 0 {
        return Err(Error::InvalidCiphertextLength);
    }
    Ok((ciphertext, iv))
}

/// Decrypts, unpads and checks the UTF-8 of a parsed payload.
fn decrypt_parsed(key: &SharedKey, ciphertext: &[u8], iv: &[u8; IV_LEN]) -> Result<String, Error> {
    let plaintext = Aes256CbcDec::new(&key.0.into(), &(*iv).into())
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .map_err(|_| Error::InvalidPadding)?;
    String::from_utf8(plaintext).map_err(|_| Error::InvalidUtf8)
}
