//! A seedable, serializable CSPRNG for the state machines.
//!
//! The sans-IO core never reaches for the operating system's randomness: a `Provider` or a
//! `Customer` draws NIP-44 nonces, gift-wrap keys, timestamp tweaks and signature aux data from
//! a [`DvmRng`] seeded by the host. The same seed gives byte-identical output, and the RNG's
//! position is part of a snapshot, so a restored machine continues exactly where the saved one
//! stopped.
//!
//! It is the ChaCha20 keystream (RFC 8439, 20 rounds) under the 32-byte seed as key, read
//! sequentially: a standard construction for a CSPRNG. In production seed it from the
//! operating system (for example `rand::rngs::OsRng`) once at start; in tests, from a constant.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use rand_core::{CryptoRng, RngCore};

/// A ChaCha20-based CSPRNG whose whole state is its seed and its position.
pub struct DvmRng {
    seed: [u8; 32],
    position: u64,
    cipher: ChaCha20,
}

impl DvmRng {
    /// An RNG seeded with `seed`, at position 0.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::at(seed, 0)
    }

    /// An RNG seeded with `seed`, positioned `position` bytes into its stream.
    pub fn at(seed: [u8; 32], position: u64) -> Self {
        let mut cipher = ChaCha20::new(&seed.into(), &[0u8; 12].into());
        cipher.seek(position);
        Self {
            seed,
            position,
            cipher,
        }
    }

    /// A test RNG seeded from a number (never use in production: the seed is guessable).
    pub fn seed_from_u64(n: u64) -> Self {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&n.to_le_bytes());
        Self::from_seed(seed)
    }

    /// How many bytes have been drawn since the seed.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The seed and position, enough to recreate this RNG with [`DvmRng::at`].
    pub fn state(&self) -> RngState {
        RngState {
            seed: self.seed,
            position: self.position,
        }
    }
}

impl Clone for DvmRng {
    fn clone(&self) -> Self {
        Self::at(self.seed, self.position)
    }
}

impl core::fmt::Debug for DvmRng {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DvmRng")
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl RngCore for DvmRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
        self.cipher.apply_keystream(dest);
        self.position = self.position.wrapping_add(dest.len() as u64);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for DvmRng {}

/// The serializable state of a [`DvmRng`]: its seed and how far it has been read.
///
/// It holds the seed: keep snapshots that contain it as secret as the keys themselves.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RngState {
    /// The 32-byte seed.
    pub seed: [u8; 32],
    /// Bytes drawn so far.
    pub position: u64,
}

impl RngState {
    /// The RNG this state describes.
    pub fn into_rng(self) -> DvmRng {
        DvmRng::at(self.seed, self.position)
    }
}

impl core::fmt::Debug for RngState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RngState")
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_restore_continues_exactly() {
        let mut a = DvmRng::seed_from_u64(7);
        let mut b = DvmRng::seed_from_u64(7);
        let mut x = [0u8; 100];
        let mut y = [0u8; 100];
        a.fill_bytes(&mut x);
        b.fill_bytes(&mut y);
        assert_eq!(x, y);
        let _ = a.next_u32();
        let mut restored = a.state().into_rng();
        assert_eq!(restored.position(), 104);
        assert_eq!(a.next_u64(), restored.next_u64());
        let mut c = DvmRng::seed_from_u64(8);
        assert_ne!(c.next_u64(), DvmRng::seed_from_u64(7).next_u64());
    }

    #[test]
    fn seeking_matches_reading_through() {
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let mut through = DvmRng::from_seed(key);
        let mut all = [0u8; 200];
        through.fill_bytes(&mut all);
        for start in [0usize, 1, 63, 64, 65, 130] {
            let mut seeked = DvmRng::at(key, start as u64);
            let mut part = [0u8; 7];
            seeked.fill_bytes(&mut part);
            assert_eq!(part, all[start..start + 7], "start {start}");
        }
    }

    #[test]
    fn debug_hides_the_seed() {
        let rng = DvmRng::from_seed([0xab; 32]);
        assert!(!format!("{rng:?} {:?}", rng.state()).contains("171"));
    }
}
