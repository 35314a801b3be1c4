//! # nostr-dvm
//!
//! The SDK for Nostr Data Vending Machines ([NIP-90]): typed, transport-agnostic modules for
//! the cryptography and events a DVM speaks, under a sans-IO design that a host application
//! drives.
//!
//! What is here so far: the wire, crypto and payment layer, pure functions over
//! `nostr::Event` (the `Provider` and `Customer` state machines are being built on top):
//!
//! - [`nip44`]: NIP-44 v2 encryption, including the 6-byte extended length prefix for
//!   plaintexts of 65536 bytes and more, a constant-time MAC check, a configurable decrypt
//!   limit, and a bounded [`nip44::ConversationKeyCache`].
//! - `nip04` (feature `nip04`, on by default): legacy NIP-04 AES-256-CBC, which NIP-90 still
//!   names for encrypted job parameters and which real clients still send.
//! - [`nip59`]: rumor / seal / gift wrap, with the checks other libraries skip (the seal's
//!   author must be the rumor's author, seal tags must be empty, the rumor id is recomputed).
//! - [`encryption`]: tells which scheme a ciphertext uses, so a reply can use the same one.
//! - [`nip90`]: typed `JobRequest`, `JobResult`, `JobFeedback` (parse and build, plain or
//!   encrypted with NIP-04 or NIP-44), and a registry of job kinds kept as data.
//! - [`nip57`]: zap requests and [`nip57::verify_zap_receipt`], which checks every rule a
//!   receipt must pass before it counts as payment.
//! - [`nip89`]: handler announcements (kind 31990) and recommendations (kind 31989).
//! - [`nip40`] expiration and [`nip13`] proof-of-work helpers.
//! - [`task`]: the `Task` trait a provider implements, and the `Pricing` hook.
//! - [`rng`]: a seedable, serializable CSPRNG for reproducible state machines.
//!
//! ## Guarantees
//!
//! - **No internal clock, no network, no disk.** Every function that needs the time takes it
//!   as a parameter, and every function that needs randomness takes a caller-supplied
//!   [`rand_core`] RNG, so tests are reproducible byte for byte.
//! - **Remote input never panics.** Anything that could come from a relay is refused with a
//!   typed error naming what was wrong.
//! - `#![forbid(unsafe_code)]`.
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `nip04` | yes | the legacy NIP-04 module (`aes` + `cbc`) |
//! | `test-util` | no | `testing`: a Lightning node signing real BOLT11 invoices and a zapper signing real receipts, for tests, fuzzing and benches |
//!
//! [NIP-90]: https://github.com/nostr-protocol/nips/blob/master/90.md
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod ecdh;
pub mod encryption;
mod error;
pub mod job;
#[cfg(feature = "nip04")]
pub mod nip04;
pub mod nip13;
pub mod nip40;
pub mod nip44;
pub mod nip57;
pub mod nip59;
pub mod nip89;
pub mod nip90;
pub mod provider;
pub mod rng;
pub mod task;
#[cfg(feature = "test-util")]
pub mod testing;

pub use error::Error;

/// Re-export of the `nostr` crate whose primitives (`Event`, `Keys`, `PublicKey`, `Timestamp`,
/// ...) this crate's API speaks.
pub use nostr;
/// Re-export of the RNG traits (`rand_core` 0.6) that every randomised function takes.
pub use rand_core;
