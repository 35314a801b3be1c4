//! # nostr-dvm
//!
//! The SDK for Nostr Data Vending Machines ([NIP-90]): typed, transport-agnostic modules for
//! the cryptography and events a DVM speaks, and a sans-IO [`provider::Provider`] state
//! machine that a host application drives.
//!
//! ## The host loop
//!
//! The provider never touches the network, the disk or the clock. The host feeds it inputs
//! and does what it asks, until it asks for nothing:
//!
//! ```
//! use nostr_dvm::provider::{Output, PaymentPolicy, Provider, ProviderConfig, RelayCommand};
//! use nostr_dvm::task::{FixedPrice, TaskOutput};
//! use nostr_dvm::nostr::{Keys, Kind, Timestamp};
//!
//! let keys = Keys::parse("0000000000000000000000000000000000000000000000000000000000000003")?;
//! let config = ProviderConfig::new([Kind::from(5050)])
//!     .pricing(FixedPrice(21_000))
//!     .payment(PaymentPolicy::PayFirst);
//! let now = Timestamp::from(1_700_000_000);
//! let mut provider = Provider::new(keys, config, now);
//!
//! // for every input: provider.handle_event(now, event) (from relays),
//! // handle_task_result, handle_invoice, handle_payment, handle_timeout ... then:
//! while let Some(output) = provider.poll_output() {
//!     match output {
//!         Output::Relay(RelayCommand::Publish { event, relays }) => { /* send `event` to `relays` */ }
//!         Output::Relay(RelayCommand::Subscribe { id, filter }) => { /* REQ `id` with `filter` */ }
//!         Output::Relay(RelayCommand::Unsubscribe(id)) => { /* CLOSE `id` */ }
//!         Output::RunTask(request) => {
//!             // run your Task, then:
//!             provider.handle_task_result(now, request.job, Ok(TaskOutput::new("...")))?;
//!         }
//!         Output::CancelTask(job) => { /* abort the task of `job` */ }
//!         Output::ClaimJob(record) => { /* a fleet only: claim it in the shared store, then handle_claim */ }
//!         Output::RequestInvoice { job, amount_msat, .. } => { /* wallet, then handle_invoice */ }
//!         Output::Refund(refund) => { /* a late or extra payment: give it back */ }
//!         Output::Notify(event) => { /* log it */ }
//!     }
//! }
//! // sleep until provider.poll_timeout(), then provider.handle_timeout(now)
//! if provider.needs_persistence() {
//!     let _snapshot = provider.snapshot(); // serde: store it, Provider::restore after a restart
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Modules
//!
//! - [`provider`]: the provider state machine: jobs, payments (pay-first, pay-after-result,
//!   partial-then-pay), the replay ledger, timers, admission limits, persistence.
//! - [`task`]: the [`task::Task`] trait a provider implements, and the sync
//!   [`task::Pricing`] hook.
//! - [`nip90`]: typed `JobRequest`, `JobResult`, `JobFeedback` (parse and build, plain or
//!   encrypted with NIP-04 or NIP-44), and a registry of job kinds kept as data.
//! - [`nip57`]: zap requests and [`nip57::verify_zap_receipt`], which checks every rule a
//!   receipt must pass before it counts as payment.
//! - [`nip44`]: NIP-44 v2 encryption, including the 6-byte extended length prefix for
//!   plaintexts of 65536 bytes and more (read always, written only when asked for: most
//!   readers refuse it), a constant-time MAC check, a configurable decrypt
//!   limit, and a bounded [`nip44::ConversationKeyCache`].
//! - `nip04` (feature `nip04`, on by default): legacy NIP-04 AES-256-CBC, which NIP-90 still
//!   names for encrypted job parameters and which real clients still send.
//! - [`nip59`]: rumor / seal / gift wrap, with the checks other libraries skip (the seal's
//!   author must be the rumor's author, seal tags must be empty, the rumor id is recomputed).
//! - [`encryption`]: tells which scheme a ciphertext uses, so a reply can use the same one.
//! - [`nip89`]: handler announcements (kind 31990) and recommendations (kind 31989).
//! - `runtime` (feature `runtime`): a tokio + nostr-sdk driver, `ProviderRuntime` (tasks on
//!   tokio, a Lightning backend, a snapshot store) and `CustomerRuntime`; the one place with
//!   a clock and a network.
//! - [`nip01`] event id and signature checks; [`nip40`] expiration and [`nip13`]
//!   proof-of-work helpers; [`job`] the job states;
//!   [`rng`] the state machines' CSPRNG and its [`rng::SeedSource`].
//!
//! ## Guarantees
//!
//! - **No internal clock, no network, no disk.** Every function that needs the time takes it
//!   as a parameter, and every free function that needs randomness takes a caller-supplied
//!   [`rand_core`] RNG.
//! - **Secure randomness by default.** The `Provider` and the `Customer` draw nonces, IVs,
//!   one-time gift-wrap keys and signature aux data from their own CSPRNG, seeded from the
//!   operating system when they are built (and re-mixed with fresh entropy on restore); two
//!   machines never share a stream. Only a config built with a deterministic seed
//!   ([`rng::SeedSource::Deterministic`]) replays byte for byte, for tests and simulations.
//! - **Remote input never panics.** Anything that could come from a relay is refused with a
//!   typed error naming what was wrong, and never poisons the state machine.
//! - **A forged, replayed or underpaid zap never starts work** under pay-first.
//! - `#![forbid(unsafe_code)]`.
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `nip04` | yes | the legacy NIP-04 module (`aes` + `cbc`) |
//! | `test-util` | no | `testing`: a Lightning node signing real BOLT11 invoices and a zapper signing real receipts, for tests, fuzzing and benches |
//! | `runtime` | no | `runtime`: a tokio + nostr-sdk driver that runs a `Provider` with `Task`s over real relays (and a `Customer` helper); the only place with a clock and a network |
//! | `lnbits`, `nwc` | no | real money for the runtime: LNbits's HTTP API, or any Nostr Wallet Connect (NIP-47) wallet |
//! | `lnurl` | no | lightning addresses and LNURL-pay for the runtime (HTTPS through rustls) |
//! | `sqlite` | with `runtime` | `SqliteStore`: a provider's records in one SQLite file |
//! | `postgres` | no | `PostgresStore`: a fleet of provider processes on one PostgreSQL database (TLS to remote hosts) |
//!
//! [NIP-90]: https://github.com/nostr-protocol/nips/blob/master/90.md
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod bolt11;
pub mod customer;
mod ecdh;
pub mod encryption;
mod error;
pub mod job;
pub mod nip01;
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
pub mod relay;
pub mod rng;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod task;
#[cfg(feature = "test-util")]
pub mod testing;

pub use error::Error;

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Re-export of the `nostr` crate whose primitives (`Event`, `Keys`, `PublicKey`, `Timestamp`,
/// ...) this crate's API speaks.
pub use nostr;
/// Re-export of the RNG traits (`rand_core` 0.6) that every randomised function takes.
pub use rand_core;
