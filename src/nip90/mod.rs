//! NIP-90: typed job requests, results and feedback.
//!
//! [`JobRequest`], [`JobResult`] and [`JobFeedback`] each parse from an [`Event`] and build to a
//! signed one. Results and feedback are built from a parsed request, so they tag it right,
//! take its result and feedback kinds, and answer in the encryption scheme it used.
//!
//! ```
//! use nostr_dvm::encryption::Scheme;
//! use nostr_dvm::nip90::{FeedbackStatus, JobFeedback, JobInput, JobRequest, JobResult};
//! use nostr_dvm::nostr::{Keys, Kind, Timestamp};
//! use rand::SeedableRng;
//!
//! let customer = Keys::parse("0000000000000000000000000000000000000000000000000000000000000001")?;
//! let provider = Keys::parse("0000000000000000000000000000000000000000000000000000000000000002")?;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(90);
//! let now = Timestamp::from(1_700_000_000);
//!
//! // The customer asks, privately, with NIP-44.
//! let event = JobRequest::builder(Kind::from(5001))
//!     .input(JobInput::text("A long text to summarise."))
//!     .param("length", "1 paragraph")
//!     .provider(provider.public_key())
//!     .encrypt(Scheme::Nip44)
//!     .sign(&customer, now, &mut rng)?;
//!
//! // The provider reads it with its keys...
//! let request = JobRequest::from_event(&event, Some(&provider))?;
//! assert_eq!(request.inputs[0].data, "A long text to summarise.");
//! assert_eq!(request.scheme(), Some(Scheme::Nip44));
//!
//! // ...asks to be paid, then delivers, both encrypted to the customer with NIP-44.
//! let quote = JobFeedback::builder(&request, FeedbackStatus::PaymentRequired)
//!     .amount(21_000, None)
//!     .sign(&provider, now, &mut rng)?;
//! let result = JobResult::builder(&request, "A summary.").sign(&provider, now, &mut rng)?;
//!
//! // The customer reads both with its own keys.
//! let quote = JobFeedback::from_event(&quote, Some(&customer))?;
//! assert_eq!(quote.status, FeedbackStatus::PaymentRequired);
//! assert_eq!(quote.amount.map(|a| a.msat), Some(21_000));
//! let result = JobResult::from_event(&result, Some(&customer))?;
//! assert_eq!(result.content, "A summary.");
//! assert!(result.answers(&request));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Parsing
//!
//! - `from_event` checks the event's id and signature first and refuses a bad one
//!   ([`ParseError::InvalidId`], [`ParseError::InvalidSignature`]); `from_verified_event` skips
//!   that check, for events the caller already verified. The kind is checked before anything
//!   else, as it costs nothing.
//! - Kinds come from a [`KindRegistry`]: `from_event` uses [`KindRegistry::nip90`] (the NIP-90
//!   ranges, minus the kinds other applications are known to use there, see
//!   [`kinds::COLLISIONS`]); `from_event_with` takes any registry.
//! - Required: nothing for a request (NIP-90: "all tags are optional"); the `e` tag for a
//!   result; `e` and `status` for feedback (`status` may be inside the ciphertext). A `p` tag
//!   is required only to know who an encrypted event is encrypted to.
//! - Known tags are read strictly: a malformed `i`, `param`, `bid`, `amount`, `expiration`,
//!   `e` or `p` refuses the event with a [`ParseError`] naming the tag. Amounts are plain
//!   decimal millisats: `"100_000"`, which real providers send, is
//!   [`ParseError::InvalidAmount`].
//! - Unknown tags are never an error: they are kept, in order, in `unknown_tags`.
//!
//! # Encryption
//!
//! NIP-90 moves a request's `i` and `param` tags into its content as a JSON array of tags,
//! encrypted to the provider named in the `p` tag, and marks the event `["encrypted"]`. It names
//! NIP-04, but real traffic mixes NIP-04 and NIP-44 v2, so the scheme is detected from the
//! payload ([`crate::encryption::detect_scheme`]); `["encrypted", "nip04" | "nip44"]` (the
//! unmerged nips PR #1259) is accepted and recorded in [`Encryption::declared`], never trusted
//! over the payload. Results and feedback to an encrypted request are encrypted to the customer
//! in the same scheme, do not echo the inputs, and carry `["encrypted", "<scheme>"]`.
//!
//! A parser given keys decrypts when those keys are a party to the event (its author, or one
//! of its `p` tags); otherwise, or without keys, the event still parses with
//! [`Encryption::decrypted`] `false`.
//!
//! # Limits
//!
//! Against hostile input, see [`limits`]: how many inputs, params, relays and `p` tags an
//! event may carry, and how large a decrypted payload may be. Nothing here panics on remote
//! input.

mod crypt;
mod error;
mod feedback;
pub mod kinds;
mod request;
mod result;
mod tags;

use nostr::{Event, EventId, Keys, Kind, PublicKey, Tag, Timestamp, UnsignedEvent};
use rand_core::{CryptoRng, RngCore};

pub use crypt::Encryption;
pub use error::{BuildError, ParseError, MAX_ERROR_VALUE_LEN};
pub use feedback::{FeedbackStatus, JobFeedback, JobFeedbackBuilder};
pub use kinds::{
    is_job_feedback_kind, is_job_request_kind, is_job_result_kind, request_kind_for,
    result_kind_for, KindRegistry, KindRole, KindTriple,
};
pub use request::{JobRequest, JobRequestBuilder};
pub use result::{JobResult, JobResultBuilder};
pub use tags::{parse_msat, Amount, Bid, InputType, JobInput, Param};

use crate::encryption::Scheme;
use tags::{event_id_value, make_tag, non_empty, public_key_value};

/// Limits against hostile input. An event over one of them is refused with
/// [`ParseError::TooMany`] or a decryption error; none is reached by any real event seen.
pub mod limits {
    /// Most `i` tags a request (or a result's echo) may carry.
    pub const MAX_INPUTS: usize = 256;
    /// Most `param` tags a request may carry.
    pub const MAX_PARAMS: usize = 256;
    /// Most relays a request's `relays` tags may list, together.
    pub const MAX_RELAYS: usize = 256;
    /// Most `p` tags an event may carry.
    pub const MAX_PROVIDERS: usize = 256;
    /// Largest decrypted private-tag array of an encrypted request, in bytes: 1 MiB.
    pub const MAX_PRIVATE_TAGS_LEN: usize = 1024 * 1024;
    /// Largest decrypted content of an encrypted result or feedback, in bytes: the NIP-44
    /// default of 16 MiB (results such as transcripts can be long).
    pub const MAX_ENCRYPTED_CONTENT_LEN: usize = crate::nip44::DEFAULT_MAX_PLAINTEXT_LEN;
}

/// The four public parsers of a job event type (`from_event`, `from_verified_event` and
/// their `_with` registry variants), all over its private
/// `parse(event, keys, registry, verify)`. `$role` names the kinds ("request", "result",
/// "feedback"); the `$doc` lines, joined, are the `from_event` doc.
macro_rules! job_event_parsers {
    ($role:literal, $($doc:literal)+) => {
        #[doc = concat!($($doc),+)]
        pub fn from_event(event: &Event, keys: Option<&Keys>) -> Result<Self, ParseError> {
            Self::parse(event, keys.map(crypt::Reader::Keys), &KindRegistry::nip90(), true)
        }

        /// Like [`from_event`](Self::from_event), without checking the id and signature: for
        /// events the caller has already verified (for instance with
        /// [`nip01::verify`](crate::nip01::verify)).
        pub fn from_verified_event(
            event: &Event,
            keys: Option<&Keys>,
        ) -> Result<Self, ParseError> {
            Self::parse(event, keys.map(crypt::Reader::Keys), &KindRegistry::nip90(), false)
        }

        #[doc = concat!("Like [`from_event`](Self::from_event), with the ", $role, " kinds of `registry`.")]
        pub fn from_event_with(
            event: &Event,
            keys: Option<&Keys>,
            registry: &KindRegistry,
        ) -> Result<Self, ParseError> {
            Self::parse(event, keys.map(crypt::Reader::Keys), registry, true)
        }

        #[doc = concat!("Like [`from_verified_event`](Self::from_verified_event), with the ", $role, " kinds of `registry`.")]
        pub fn from_verified_event_with(
            event: &Event,
            keys: Option<&Keys>,
            registry: &KindRegistry,
        ) -> Result<Self, ParseError> {
            Self::parse(event, keys.map(crypt::Reader::Keys), registry, false)
        }

        #[doc = concat!("Like [`from_verified_event_with`](Self::from_verified_event_with), reading an encrypted ", $role, " as `cache`'s owner with NIP-44 conversation keys from `cache`: one ECDH per peer instead of one per event. The cache's secret key plays the part of `keys`.")]
        pub fn from_verified_event_cached(
            event: &Event,
            cache: &mut crate::nip44::ConversationKeyCache,
            registry: &KindRegistry,
        ) -> Result<Self, ParseError> {
            Self::parse(event, Some(crypt::Reader::Cache(cache)), registry, false)
        }
    };
}
use job_event_parsers;

/// Checks the event's id, then its signature.
fn verify(event: &Event) -> Result<(), ParseError> {
    if !crate::nip01::verify_id(event) {
        return Err(ParseError::InvalidId);
    }
    if !event.verify_signature() {
        return Err(ParseError::InvalidSignature);
    }
    Ok(())
}

/// `["e", <id>, <relay>?]`.
fn e_tag(id: EventId, relay: Option<String>) -> Tag {
    match relay {
        Some(relay) => make_tag("e", [id.to_hex(), relay]),
        None => make_tag("e", [id.to_hex()]),
    }
}

/// The JSON array of `tags`.
fn tags_json(tags: &[Tag]) -> Result<String, BuildError> {
    let arrays: Vec<&[String]> = tags.iter().map(Tag::as_slice).collect();
    serde_json::to_string(&arrays).map_err(|e| BuildError::Json(e.to_string()))
}

/// Signs an event made of these parts.
fn sign_event(
    keys: &Keys,
    now: Timestamp,
    kind: Kind,
    tags: Vec<Tag>,
    content: String,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Event, BuildError> {
    UnsignedEvent::new(keys.public_key(), now, kind, tags, content)
        .sign_with_ctx(nostr::SECP256K1, rng, keys)
        .map_err(BuildError::Sign)
}

/// The tags results and feedback share: `e`, `p`, `amount`, `encrypted`.
struct ReplyTags {
    request: Option<(EventId, Option<String>)>,
    p_tags: Vec<PublicKey>,
    amount: Option<Amount>,
    encrypted: Option<Option<Scheme>>,
    unknown_tags: Vec<Tag>,
}

impl ReplyTags {
    fn new() -> Self {
        Self {
            request: None,
            p_tags: Vec::new(),
            amount: None,
            encrypted: None,
            unknown_tags: Vec::new(),
        }
    }

    /// Reads one tag; `Ok(false)` when it is not one of these (or a repeat of a single one).
    fn take(&mut self, name: &str, values: &[String]) -> Result<bool, ParseError> {
        match name {
            "e" if self.request.is_none() => {
                let id = event_id_value("e", values.first())?;
                self.request = Some((id, non_empty(values.get(1))));
            }
            "p" => {
                if self.p_tags.len() >= limits::MAX_PROVIDERS {
                    return Err(ParseError::TooMany {
                        tag: "p",
                        count: self.p_tags.len() + 1,
                        max: limits::MAX_PROVIDERS,
                    });
                }
                self.p_tags.push(public_key_value("p", values.first())?);
            }
            "amount" if self.amount.is_none() => self.amount = Some(Amount::from_values(values)?),
            "encrypted" if self.encrypted.is_none() => {
                self.encrypted = Some(crypt::declared_scheme(values));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// An unsigned rumor (from a NIP-59 gift wrap, whose seal proved its author) as an [`Event`]
/// with an all-zero signature, so the event parsers can read it. Its id is recomputed when it
/// carries none.
pub fn rumor_event(rumor: &nostr::UnsignedEvent) -> Event {
    let mut rumor = rumor.clone();
    let id = rumor.id();
    Event::new(
        id,
        rumor.pubkey,
        rumor.created_at,
        rumor.kind,
        rumor.tags.to_vec(),
        rumor.content,
        zero_signature(),
    )
}

fn zero_signature() -> nostr::secp256k1::schnorr::Signature {
    match nostr::secp256k1::schnorr::Signature::from_slice(&[0u8; 64]) {
        Ok(sig) => sig,
        Err(_) => unreachable!("any 64 bytes form a schnorr::Signature value"),
    }
}
