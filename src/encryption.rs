//! Which encryption scheme a ciphertext uses.
//!
//! NIP-90 still says encrypted job parameters use NIP-04, while newer clients send NIP-44 v2;
//! real traffic mixes both. A provider must read either and reply in the scheme the request
//! used, so the scheme is detected from the payload itself:
//!
//! - a NIP-04 payload is `base64(ciphertext) + "?iv=" + base64(iv)`;
//! - a NIP-44 payload is base64 whose first decoded byte is the version, `2` for v2.
//!
//! Detection only looks at the shape of the string; it never decrypts, and it never panics.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// An encryption scheme a Nostr payload can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Legacy NIP-04: AES-256-CBC, `ciphertext?iv=iv`.
    Nip04,
    /// NIP-44 version 2: ChaCha20 + HMAC-SHA256 with padding.
    Nip44,
}

impl Scheme {
    /// The scheme's name as used in tags such as `["encrypted", "nip44"]`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::Nip04 => "nip04",
            Scheme::Nip44 => "nip44",
        }
    }
}

impl core::fmt::Display for Scheme {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tells the scheme of an encrypted payload, or `None` when it is neither NIP-04 nor NIP-44 v2.
///
/// `?iv=` means NIP-04. Otherwise the payload is taken as NIP-44 when its first base64 quantum
/// decodes to a first byte of `2` (only the first four characters are decoded, so this costs
/// the same for a 1 MiB payload as for a short one). A NIP-44 payload whose version is unknown
/// (including the `#` prefix reserved for future encodings) is not NIP-44 v2 and gives `None`.
///
/// ```
/// use nostr_dvm::encryption::{detect_scheme, Scheme};
/// assert_eq!(detect_scheme("dGVzdA==?iv=AAAAAAAAAAAAAAAAAAAAAA=="), Some(Scheme::Nip04));
/// assert_eq!(detect_scheme("AgAAAAAAAAAA"), Some(Scheme::Nip44));
/// assert_eq!(detect_scheme("hello"), None);
/// ```
pub fn detect_scheme(payload: &str) -> Option<Scheme> {
    if let Some((ciphertext, iv)) = payload.split_once("?iv=") {
        if !ciphertext.is_empty() && !iv.is_empty() {
            return Some(Scheme::Nip04);
        }
        return None;
    }
    let head = payload.as_bytes().get(..4)?;
    let mut first = [0u8; 3];
    match STANDARD.decode_slice_unchecked(head, &mut first) {
        Ok(n) if n >= 1 && first[0] == crate::nip44::VERSION => Some(Scheme::Nip44),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_scheme_and_refuses_others() {
        assert_eq!(detect_scheme("abc?iv=def"), Some(Scheme::Nip04));
        assert_eq!(detect_scheme("?iv=def"), None);
        assert_eq!(detect_scheme("abc?iv="), None);
        // version byte 2
        assert_eq!(detect_scheme("AgAA"), Some(Scheme::Nip44));
        // version byte 1 and 0
        assert_eq!(detect_scheme("AQAA"), None);
        assert_eq!(detect_scheme("AAAA"), None);
        // future-version marker
        assert_eq!(detect_scheme("#AgAA"), None);
        assert_eq!(detect_scheme(""), None);
        assert_eq!(detect_scheme("Ag"), None);
        // multi-byte UTF-8 must not panic
        assert_eq!(detect_scheme("ééé"), None);
        assert_eq!(Scheme::Nip44.to_string(), "nip44");
        assert_eq!(Scheme::Nip04.as_str(), "nip04");
    }
}
