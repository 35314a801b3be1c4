//! The ECDH step NIP-04 and NIP-44 share.

use nostr::{PublicKey, SecretKey};
use secp256k1::{ecdh, Parity};

/// Why an ECDH could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EcdhError {
    /// The x-only public key is not the x coordinate of a point on secp256k1.
    InvalidPublicKey,
}

/// The unhashed 32-byte x coordinate of `secret_key * lift_x(public_key)`, where the x-only
/// public key is lifted to the point with an even y (BIP-340), as NIP-04 and NIP-44 both say.
pub(crate) fn shared_x(
    secret_key: &SecretKey,
    public_key: &PublicKey,
) -> Result<[u8; 32], EcdhError> {
    let xonly = public_key
        .xonly()
        .map_err(|_| EcdhError::InvalidPublicKey)?;
    let point = xonly.public_key(Parity::Even);
    let shared = ecdh::shared_secret_point(&point, secret_key);
    let mut x = [0u8; 32];
    x.copy_from_slice(&shared[..32]);
    Ok(x)
}
