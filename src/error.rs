//! The crate-wide error type.

/// Any error this crate returns, for callers that want one type.
///
/// Each module also has its own precise error enum; this one wraps them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A NIP-44 encryption or decryption failed.
    #[error(transparent)]
    Nip44(#[from] crate::nip44::Error),
    /// A NIP-04 encryption or decryption failed.
    #[cfg(feature = "nip04")]
    #[error(transparent)]
    Nip04(#[from] crate::nip04::Error),
    /// A NIP-59 gift wrap could not be made or opened.
    #[error(transparent)]
    Nip59(#[from] crate::nip59::Error),
    /// A NIP-90 event could not be parsed.
    #[error(transparent)]
    Parse(#[from] crate::nip90::ParseError),
    /// A NIP-90 event could not be built.
    #[error(transparent)]
    Build(#[from] crate::nip90::BuildError),
    /// A NIP-89 announcement could not be parsed.
    #[error(transparent)]
    Nip89Parse(#[from] crate::nip89::ParseError),
    /// A NIP-89 announcement could not be built.
    #[error(transparent)]
    Nip89Build(#[from] crate::nip89::BuildError),
    /// A zap request or receipt was refused.
    #[error(transparent)]
    Zap(#[from] crate::nip57::ZapError),
}
