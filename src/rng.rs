//! The state machines' CSPRNG, and where its seed comes from.
//!
//! A `Provider` or a `Customer` draws every random value it needs (NIP-44 nonces, NIP-04 IVs,
//! gift-wrap one-time keys and timestamp tweaks, BIP-340 signature aux data) from its own
//! [`DvmRng`], never from anywhere else. What seeds it is the configuration's [`SeedSource`]:
//!
//! - [`SeedSource::OperatingSystem`], the default of every config: 32 bytes of the operating
//!   system's entropy, drawn when the machine is built (`Provider::new`, `Customer::new`) and
//!   never stored in the config, so two machines built from one config (a fleet, a clone)
//!   never share a stream. A restored machine mixes fresh OS entropy into its saved state
//!   ([`DvmRng::restore`]): restoring an older snapshot, or one saved before the last events
//!   went out, never draws the same nonce or one-time key twice.
//! - [`SeedSource::Deterministic`], only on purpose (tests, simulations, fuzzing): the same
//!   seed gives the same stream, and a restored machine continues byte for byte where the
//!   saved one stopped. Anyone who knows the seed can predict every nonce and one-time key:
//!   never use it with real keys.
//!
//! The generator is the ChaCha20 keystream (RFC 8439, 20 rounds) under the 32-byte seed as
//! key, read sequentially: a standard construction for a CSPRNG.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use rand_core::{CryptoRng, OsRng, RngCore};
use sha2::{Digest, Sha256};

/// Where a state machine's CSPRNG seed comes from. See the [module docs](self).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub enum SeedSource {
    /// Fresh entropy from the operating system for every machine built, and mixed in again on
    /// every restore. The default, and the only choice for real keys.
    #[default]
    OperatingSystem,
    /// A fixed seed, for reproducible tests: the same seed gives the same nonces, one-time
    /// keys and signatures, and a restore continues byte for byte. Predictable by anyone who
    /// knows the seed.
    Deterministic([u8; 32]),
}

impl SeedSource {
    /// Whether this source is a fixed seed.
    pub fn is_deterministic(&self) -> bool {
        matches!(self, SeedSource::Deterministic(_))
    }
}

impl core::fmt::Debug for SeedSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SeedSource::OperatingSystem => f.write_str("OperatingSystem"),
            SeedSource::Deterministic(_) => f.write_str("Deterministic(..)"),
        }
    }
}

/// 32 bytes of the operating system's entropy.
///
/// # Panics
///
/// When the operating system has no entropy source to give (no `getrandom` and no
/// `/dev/urandom`): no machine can be built safely there.
fn os_entropy() -> [u8; 32] {
    let mut seed = [0u8; 32];
    if let Err(e) = OsRng.try_fill_bytes(&mut seed) {
        panic!("the operating system gave no randomness for the CSPRNG seed: {e}");
    }
    seed
}

/// A ChaCha20-based CSPRNG whose whole state is its seed and its position.
pub struct DvmRng {
    seed: [u8; 32],
    position: u64,
    cipher: ChaCha20,
}

impl DvmRng {
    /// A new RNG from `source`: the fixed seed at position 0, or a fresh seed from the
    /// operating system.
    pub fn from_source(source: &SeedSource) -> Self {
        match source {
            SeedSource::OperatingSystem => Self::from_seed(os_entropy()),
            SeedSource::Deterministic(seed) => Self::from_seed(*seed),
        }
    }

    /// The RNG of a restored machine: exactly the saved state under a deterministic source;
    /// otherwise a new seed, `sha256(tag || saved seed || saved position || OS entropy)`, so
    /// no value drawn before the save (or after it, by a run that crashed) is drawn again.
    pub fn restore(state: RngState, source: &SeedSource) -> Self {
        match source {
            SeedSource::Deterministic(_) => state.into_rng(),
            SeedSource::OperatingSystem => {
                let mut hasher = Sha256::new();
                hasher.update(b"nostr-dvm rng restore v1");
                hasher.update(state.seed);
                hasher.update(state.position.to_le_bytes());
                hasher.update(os_entropy());
                Self::from_seed(hasher.finalize().into())
            }
        }
    }

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
    fn os_sources_never_share_a_stream() {
        let source = SeedSource::default();
        let mut a = DvmRng::from_source(&source);
        let mut b = DvmRng::from_source(&source);
        assert_ne!(a.next_u64(), b.next_u64());
        assert!(!source.is_deterministic());
    }

    #[test]
    fn restore_continues_only_when_deterministic() {
        let fixed = SeedSource::Deterministic([5; 32]);
        let mut saved = DvmRng::from_source(&fixed);
        let _ = saved.next_u64();
        let state = saved.state();
        let next = saved.next_u64();
        assert_eq!(DvmRng::restore(state.clone(), &fixed).next_u64(), next);
        let mut os1 = DvmRng::restore(state.clone(), &SeedSource::OperatingSystem);
        let mut os2 = DvmRng::restore(state.clone(), &SeedSource::OperatingSystem);
        let (x, y) = (os1.next_u64(), os2.next_u64());
        assert_ne!(x, next, "a restore must not replay the saved stream");
        assert_ne!(x, y, "two restores of one snapshot must not share a stream");
        assert_eq!(os1.position(), 8);
    }

    #[test]
    fn debug_hides_the_seed() {
        let rng = DvmRng::from_seed([0xab; 32]);
        assert!(!format!("{rng:?} {:?}", rng.state()).contains("171"));
        let source = format!("{:?}", SeedSource::Deterministic([0xab; 32]));
        assert!(!source.contains("171"), "{source}");
    }
}
