//! NIP-40: the `expiration` tag.
//!
//! `["expiration", "<unix seconds>"]` says from when an event SHOULD be considered expired.
//! A DVM honours it on job requests: a request past its expiration is not worth working on.
//!
//! Reading is strict: the value must be a plain decimal number of seconds (`[0-9]+`, fitting
//! in a `u64`), and anything else (`"1600000000.5"`, `"+5"`, `""`, a missing value) is an
//! [`Error`]. When an event has several `expiration` tags, the first one counts.
//!
//! ```
//! use nostr_dvm::nip40;
//! use nostr_dvm::nostr::{EventBuilder, Keys, Timestamp};
//!
//! let keys = Keys::parse("0000000000000000000000000000000000000000000000000000000000000001")?;
//! let event = EventBuilder::text_note("soon gone")
//!     .tag(nip40::tag(Timestamp::from(1_600_000_000)))
//!     .sign_with_keys(&keys)?;
//! assert_eq!(nip40::expiration(&event)?, Some(Timestamp::from(1_600_000_000)));
//! assert!(nip40::is_expired(&event, Timestamp::from(1_600_000_000)));
//! assert!(!nip40::is_expired(&event, Timestamp::from(1_599_999_999)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use nostr::{Event, Tag, TagKind, Timestamp};

/// The tag's name.
pub const TAG: &str = "expiration";

/// The longest value quoted back in an [`Error`], in bytes.
const MAX_QUOTED_LEN: usize = 64;

/// An `expiration` tag whose value is not a plain number of seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed expiration tag: {value:?} is not a number of seconds")]
pub struct Error {
    value: String,
}

impl Error {
    /// The value found (cut to 64 bytes, at a character boundary). Empty when the tag had no
    /// value.
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Reads the value of an `expiration` tag.
pub(crate) fn parse_value(value: Option<&String>) -> Result<Timestamp, Error> {
    let value = value.map(String::as_str).unwrap_or_default();
    let is_number = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u64>() {
        Ok(secs) if is_number => Ok(Timestamp::from_secs(secs)),
        _ => {
            let mut end = value.len().min(MAX_QUOTED_LEN);
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            Err(Error {
                value: value.get(..end).unwrap_or_default().to_owned(),
            })
        }
    }
}

/// The event's expiration: `Ok(None)` without an `expiration` tag, an [`Error`] when the first
/// one is malformed.
pub fn expiration(event: &Event) -> Result<Option<Timestamp>, Error> {
    expiration_in(event.tags.iter())
}

/// The expiration in a list of tags (a rumor's, say): as [`expiration`].
pub fn expiration_in<'a>(
    tags: impl IntoIterator<Item = &'a Tag>,
) -> Result<Option<Timestamp>, Error> {
    for tag in tags {
        if let Some((name, values)) = tag.as_slice().split_first() {
            if name == TAG {
                return parse_value(values.first()).map(Some);
            }
        }
    }
    Ok(None)
}

/// Whether `event` has expired at `now`: true from the expiration second on (`now >=
/// expiration`), false without an `expiration` tag.
///
/// An event whose `expiration` tag is malformed counts as expired: it asked to expire and its
/// time cannot be read, so the safe reading (do no work for it, show nothing) is to treat it
/// as gone. Use [`expiration`] to tell the two cases apart.
pub fn is_expired(event: &Event, now: Timestamp) -> bool {
    match expiration(event) {
        Ok(Some(at)) => now >= at,
        Ok(None) => false,
        Err(_) => true,
    }
}

/// The tag `["expiration", "<seconds>"]`.
pub fn tag(at: Timestamp) -> Tag {
    Tag::custom(TagKind::Custom(TAG.into()), [at.as_secs().to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[test]
    fn strict_values() {
        assert_eq!(
            parse_value(Some(&s("1600000000"))),
            Ok(Timestamp::from_secs(1_600_000_000))
        );
        assert_eq!(parse_value(Some(&s("0"))), Ok(Timestamp::from_secs(0)));
        for bad in ["", "+1", "-1", "1.5", " 1", "1e9", "99999999999999999999"] {
            let err = parse_value(Some(&s(bad))).unwrap_err();
            assert_eq!(err.value(), bad);
        }
        assert_eq!(parse_value(None).unwrap_err().value(), "");
        let long = "9".repeat(30) + &"é".repeat(100);
        assert!(parse_value(Some(&long)).unwrap_err().value().len() <= MAX_QUOTED_LEN);
    }

    #[test]
    fn tag_shape() {
        assert_eq!(
            tag(Timestamp::from_secs(42)).as_slice(),
            &[s("expiration"), s("42")]
        );
    }
}
