//! NIP-59 gift wraps (being written).

/// NIP-59 errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
