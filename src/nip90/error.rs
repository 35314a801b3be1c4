//! Why a job event was refused, and why one could not be built.

use nostr::Kind;

use super::kinds::KindRole;
use crate::encryption::Scheme;

/// The longest piece of remote text an error carries; longer values are cut (at a character
/// boundary) and end with `…`, so a hostile 1 MiB tag cannot make an error 1 MiB large.
pub const MAX_ERROR_VALUE_LEN: usize = 64;

/// Cuts a remote value down to [`MAX_ERROR_VALUE_LEN`] bytes for an error message.
pub(crate) fn clip(value: &str) -> String {
    if value.len() <= MAX_ERROR_VALUE_LEN {
        return value.to_owned();
    }
    let mut end = MAX_ERROR_VALUE_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 3);
    out.push_str(value.get(..end).unwrap_or_default());
    out.push('…');
    out
}

/// Why an event was refused as a job request, result or feedback.
///
/// Every variant that is about a tag names it. Remote values quoted in an error are cut to
/// [`MAX_ERROR_VALUE_LEN`] bytes. Unknown tags are never an error: they are kept in the parsed
/// value's `unknown_tags`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The event id is not the hash of the event's content (NIP-01).
    #[error("invalid event id: it does not match the event's content")]
    InvalidId,
    /// The signature does not verify against the id and the author's key.
    #[error("invalid signature")]
    InvalidSignature,
    /// The kind is not one this parser reads: a job request kind for [`JobRequest`], a result
    /// kind for [`JobResult`], a feedback kind for [`JobFeedback`] (by the
    /// [`KindRegistry`] in use).
    ///
    /// [`JobRequest`]: super::JobRequest
    /// [`JobResult`]: super::JobResult
    /// [`JobFeedback`]: super::JobFeedback
    /// [`KindRegistry`]: super::KindRegistry
    #[error("kind {kind} is not a job {expected} kind")]
    KindOutOfRange {
        /// The event's kind.
        kind: Kind,
        /// What the parser expected.
        expected: KindRole,
    },
    /// The kind is inside the NIP-90 ranges but is known to be used by another application
    /// for events that are not DVM messages (the `foreign` entries of [`super::kinds::COLLISIONS`]). Register a
    /// [`KindTriple`](super::KindTriple) to read it as a job kind anyway.
    #[error("kind {kind} is used by {used_by}, not by DVMs")]
    ForeignKind {
        /// The event's kind.
        kind: Kind,
        /// Who uses it and for what.
        used_by: &'static str,
    },
    /// A tag this event type requires is absent.
    #[error("missing `{tag}` tag")]
    MissingTag {
        /// The tag's name.
        tag: &'static str,
    },
    /// A known tag does not have the shape its NIP gives it (for instance an `i` tag without
    /// data, or a `param` tag without a name).
    #[error("malformed `{tag}` tag: {reason}")]
    MalformedTag {
        /// The tag's name.
        tag: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A millisat amount (`amount`, `bid`) is not a plain decimal number that fits in a `u64`:
    /// for instance `"100_000"`, `"1e3"`, `"-5"`, `"+5"` or `""`.
    #[error("`{tag}` tag: {value:?} is not an amount in millisats")]
    InvalidAmount {
        /// The tag's name.
        tag: &'static str,
        /// The value found (cut to [`MAX_ERROR_VALUE_LEN`] bytes).
        value: String,
    },
    /// A number other than an amount (such as an `expiration` timestamp) is malformed.
    #[error("`{tag}` tag: {value:?} is not a valid number")]
    InvalidNumber {
        /// The tag's name.
        tag: &'static str,
        /// The value found (cut to [`MAX_ERROR_VALUE_LEN`] bytes).
        value: String,
    },
    /// A tag that must hold an event id (64 lowercase or uppercase hex digits) holds something
    /// else.
    #[error("`{tag}` tag: {value:?} is not an event id")]
    InvalidEventId {
        /// The tag's name.
        tag: &'static str,
        /// The value found (cut to [`MAX_ERROR_VALUE_LEN`] bytes).
        value: String,
    },
    /// A tag that must hold a public key (64 hex digits) holds something else.
    #[error("`{tag}` tag: {value:?} is not a public key")]
    InvalidPublicKey {
        /// The tag's name.
        tag: &'static str,
        /// The value found (cut to [`MAX_ERROR_VALUE_LEN`] bytes).
        value: String,
    },
    /// The event is marked `encrypted` but its content is neither a NIP-04 payload nor a
    /// NIP-44 v2 payload.
    #[error("marked encrypted, but the content is neither a NIP-04 nor a NIP-44 v2 payload")]
    UnknownCiphertext,
    /// The content is encrypted with a scheme this build cannot decrypt (NIP-04 without the
    /// `nip04` feature).
    #[error("the content uses {0}, which this build does not support")]
    SchemeUnavailable(Scheme),
    /// The NIP-44 payload could not be decrypted (wrong key, altered or malformed payload, or
    /// over the size limit).
    #[error("cannot decrypt the NIP-44 content: {0}")]
    Nip44(#[source] crate::nip44::Error),
    /// The NIP-04 payload could not be decrypted (wrong key, altered or malformed payload, or
    /// over the size limit).
    #[cfg(feature = "nip04")]
    #[error("cannot decrypt the NIP-04 content: {0}")]
    Nip04(#[source] crate::nip04::Error),
    /// The decrypted content of an encrypted request is not the JSON array of tags NIP-90
    /// puts there.
    #[error("the decrypted content is not a JSON array of tags: {reason}")]
    EncryptedContent {
        /// What the JSON parser said (cut to [`MAX_ERROR_VALUE_LEN`] bytes).
        reason: String,
    },
    /// A limit against hostile input was exceeded (see [`super::limits`]).
    #[error("too many `{tag}` tags: {count} (at most {max})")]
    TooMany {
        /// The tag's name.
        tag: &'static str,
        /// How many the event has (counting stops a little past the limit).
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a job event could not be built.
///
/// These are local errors: the caller asked for something impossible (an encrypted request
/// with no provider) or the build lacks a feature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Encryption needs exactly one provider (`p` tag) to encrypt to.
    #[error("an encrypted request needs exactly one provider, it has {providers}")]
    EncryptionTarget {
        /// How many providers the request names.
        providers: usize,
    },
    /// An encrypted request carries its private tags in `content`: it cannot also have a
    /// plain-text content.
    #[error("an encrypted request cannot also have a plain-text content")]
    ContentWithEncryption,
    /// The scheme asked for (or the one the request used, for a reply) cannot be produced by
    /// this build: NIP-04 without the `nip04` feature.
    #[error("the scheme {0} is not available in this build (enable the `nip04` feature)")]
    SchemeUnavailable(Scheme),
    /// NIP-44 encryption failed (for instance an empty plaintext, which NIP-44 cannot carry).
    #[error("NIP-44 encryption failed: {0}")]
    Nip44(#[source] crate::nip44::Error),
    /// NIP-04 encryption failed (the peer's key is not on the curve).
    #[cfg(feature = "nip04")]
    #[error("NIP-04 encryption failed: {0}")]
    Nip04(#[source] crate::nip04::Error),
    /// The private tags could not be serialised to JSON.
    #[error("cannot serialise the private tags: {0}")]
    Json(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(#[source] nostr::event::Error),
    /// [`FeedbackStatus::Encrypted`](super::FeedbackStatus::Encrypted) only describes feedback
    /// that could not be read; it cannot be sent.
    #[error("the `encrypted` placeholder is not a status that can be sent")]
    PlaceholderStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_at_a_char_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        let cut = clip(&long);
        assert!(cut.len() <= MAX_ERROR_VALUE_LEN + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
