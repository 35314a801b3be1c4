//! NIP-13: proof of work.
//!
//! The difficulty of an event is the number of leading zero bits of its id. A miner commits to
//! the difficulty it aimed for in the third value of the `nonce` tag,
//! `["nonce", "<nonce>", "<target>"]`, so that a spammer aiming low who gets lucky can still be
//! refused: NIP-13 says a reader requiring 40 bits "can safely reject" a note committing to
//! 30, even if its id has 40 bits.
//!
//! The rules [`check_pow`] applies, for a required difficulty `min`:
//!
//! 1. `min == 0` always passes (no proof of work asked for).
//! 2. The id must have at least `min` leading zero bits.
//! 3. If the first `nonce` tag commits to a target, that target must be at least `min`. A
//!    target that is not a number from 0 to 255 is [`PowError::MalformedNonce`].
//! 4. A missing commitment passes: NIP-13 only says a reader MAY refuse it. Use
//!    [`check_pow_committed`] to refuse it.
//!
//! The difficulty is computed from the id the event carries. Check that the id matches the
//! event first (`Event::verify`, or the crate's parsers, which do): otherwise anyone can claim
//! an id with many zero bits.

use nostr::{Event, EventId};

/// Leading zero bits of `id`, from 0 to 255.
///
/// The one id with 256 zero bits (all zeros, which nobody can mine) reports 255, the most a
/// `u8` holds.
///
/// ```
/// use nostr_dvm::nip13::difficulty;
/// use nostr_dvm::nostr::EventId;
/// let id = EventId::from_hex("000000000e9d97a1ab09fc381030b346cdd7a142ad57e6df0b46dc9bef6c7e2d")?;
/// assert_eq!(difficulty(&id), 36);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn difficulty(id: &EventId) -> u8 {
    let mut bits: u32 = 0;
    for byte in id.as_bytes() {
        bits += byte.leading_zeros();
        if *byte != 0 {
            break;
        }
    }
    u8::try_from(bits).unwrap_or(u8::MAX)
}

/// Why an event does not meet a proof-of-work requirement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PowError {
    /// The id has fewer leading zero bits than required.
    #[error("difficulty {difficulty} is below the required {required}")]
    Insufficient {
        /// The id's leading zero bits.
        difficulty: u8,
        /// The requirement.
        required: u8,
    },
    /// The `nonce` tag commits to a lower target than required: the id's extra bits are luck.
    #[error("committed target {committed} is below the required {required}")]
    CommittedTargetTooLow {
        /// The target in the `nonce` tag.
        committed: u8,
        /// The requirement.
        required: u8,
    },
    /// [`check_pow_committed`] only: the event commits to no target.
    #[error("no committed target difficulty in a nonce tag")]
    MissingCommitment,
    /// The `nonce` tag's target is not a number from 0 to 255.
    #[error("malformed nonce tag target")]
    MalformedNonce,
}

/// The target difficulty the first `nonce` tag commits to: `Ok(None)` without a `nonce` tag or
/// without a third value.
pub fn committed_target(event: &Event) -> Result<Option<u8>, PowError> {
    for tag in event.tags.iter() {
        let values = tag.as_slice();
        if values.first().map(String::as_str) != Some("nonce") {
            continue;
        }
        return match values.get(2) {
            None => Ok(None),
            Some(target) => {
                if target.is_empty() || !target.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PowError::MalformedNonce);
                }
                target
                    .parse::<u8>()
                    .map(Some)
                    .map_err(|_| PowError::MalformedNonce)
            }
        };
    }
    Ok(None)
}

/// Checks `event` against a required difficulty `min` (see the [module docs](self) for the
/// rules); returns the id's difficulty when it passes.
pub fn check_pow(event: &Event, min: u8) -> Result<u8, PowError> {
    check(event, min, false)
}

/// Like [`check_pow`], but an event without a committed target fails with
/// [`PowError::MissingCommitment`] (when `min > 0`).
pub fn check_pow_committed(event: &Event, min: u8) -> Result<u8, PowError> {
    check(event, min, true)
}

/// Whether `event` passes [`check_pow`] for `min`.
pub fn meets_pow(event: &Event, min: u8) -> bool {
    check_pow(event, min).is_ok()
}

fn check(event: &Event, min: u8, require_commitment: bool) -> Result<u8, PowError> {
    let actual = difficulty(&event.id);
    if min == 0 {
        return Ok(actual);
    }
    if actual < min {
        return Err(PowError::Insufficient {
            difficulty: actual,
            required: min,
        });
    }
    match committed_target(event)? {
        Some(committed) if committed < min => Err(PowError::CommittedTargetTooLow {
            committed,
            required: min,
        }),
        Some(_) => Ok(actual),
        None if require_commitment => Err(PowError::MissingCommitment),
        None => Ok(actual),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(hex: &str) -> EventId {
        EventId::from_hex(hex).unwrap()
    }

    #[test]
    fn counts_leading_zero_bits() {
        assert_eq!(
            difficulty(&id(
                "000000000e9d97a1ab09fc381030b346cdd7a142ad57e6df0b46dc9bef6c7e2d"
            )),
            36
        );
        assert_eq!(
            difficulty(&id(
                "002f000000000000000000000000000000000000000000000000000000000000"
            )),
            10
        );
        assert_eq!(
            difficulty(&id(
                "8000000000000000000000000000000000000000000000000000000000000000"
            )),
            0
        );
        assert_eq!(
            difficulty(&id(
                "0000000000000000000000000000000000000000000000000000000000000001"
            )),
            255
        );
        assert_eq!(difficulty(&EventId::all_zeros()), 255);
    }
}
