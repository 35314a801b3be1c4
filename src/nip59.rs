//! NIP-59 gift wraps: rumor, seal and wrap, made and opened without async, clock or OS
//! randomness.
//!
//! A gift wrap hides an event inside two envelopes:
//!
//! 1. The **rumor** is the event itself, left **unsigned**: its `id` is set but it has no `sig`,
//!    so if it ever leaks nobody can prove who wrote it.
//! 2. The **seal** (kind 13) holds the rumor's JSON, NIP-44 encrypted from the author to the
//!    receiver, and is signed by the author's real key. Its tags are empty, so a leaked seal
//!    shows who signed it and nothing else.
//! 3. The **wrap** (kind 1059, or 21059 for the ephemeral variant relays do not store) holds the
//!    seal's JSON, NIP-44 encrypted to the receiver from a fresh **one-time key**, which also
//!    signs the wrap. Its `p` tag routes it to the receiver; the author stays hidden.
//!
//! # What [`unwrap`] checks
//!
//! Each check that fails has its own [`Error`] variant, in this order:
//!
//! | check | why | error |
//! |---|---|---|
//! | the wrap is kind 1059 or 21059 | anything else is not a gift wrap | [`Error::NotAGiftWrap`] |
//! | the wrap's id and signature are valid | a relay or a forwarder may have altered it | [`Error::InvalidWrap`] |
//! | the wrap's content decrypts with the receiver's key and the wrap's author | NIP-44 authenticates the ciphertext: a wrap for another key fails here | [`Error::WrapDecryption`] |
//! | if the wrap has `p` tags, one names the receiver | the public routing must not contradict the encryption (see below) | [`Error::RecipientMismatch`] |
//! | the plaintext is an event's JSON | | [`Error::InvalidSealJson`] |
//! | that event is kind 13 | a wrap must hold a seal | [`Error::NotASeal`] |
//! | the seal's id and signature are valid | the seal signature is what proves the sender | [`Error::InvalidSeal`] |
//! | the seal has no tags | NIP-59: "Tags MUST always be empty in a kind:13" | [`Error::SealHasTags`] |
//! | the seal's content decrypts with the receiver's key and the seal's author | | [`Error::SealDecryption`] |
//! | the plaintext is an unsigned event's JSON | | [`Error::InvalidRumorJson`] |
//! | the rumor carries no `sig` (`"sig": null` counts as none) | NIP-59: "The inner event MUST always be unsigned" | [`Error::RumorSigned`] |
//! | the rumor's author is the seal's signer | otherwise anyone could seal a rumor that claims to be from anyone else (NIP-17 MUST) | [`Error::SenderMismatch`] |
//! | the rumor's id, if present, is the hash of its fields | the id is how the rumor is referenced (a DVM job id, a reply's `e` tag) | [`Error::RumorIdMismatch`] |
//!
//! A rumor that carries no id is accepted and its id is computed, so
//! [`UnwrappedGift::rumor`] always has `id: Some(..)`, and that id is always right.
//!
//! ## Choices on the spec's looser points
//!
//! - **A signed rumor is refused**, not silently stripped: NIP-59 says the inner event MUST be
//!   unsigned, and a sender that signs it has given up the deniability the scheme exists for.
//!   Failing loudly tells the integrator which client misbehaves.
//! - **The `p` tag is optional** (NIP-59 says tags SHOULD route the wrap): a wrap without one is
//!   accepted, since decrypting it with the receiver's key already proves it was made for the
//!   receiver. But a wrap that decrypts for the receiver while its `p` tags all name *other*
//!   keys is refused with [`Error::RecipientMismatch`]: relays serve and delete gift wraps by
//!   their `p` tag (NIP-59 deletion, NIP-62 vanish requests), so the receiver could neither
//!   fetch such a wrap through an AUTH-guarded relay nor delete it. The check runs after
//!   decryption, so a wrap meant for someone else fails as [`Error::WrapDecryption`] whatever
//!   its tags say.
//! - **Seal tags**: NIP-59 says they MUST be empty, but NIP-17 also says an `expiration` tag
//!   SHOULD be copied onto the seal for disappearing messages. [`unwrap`] follows NIP-59 and
//!   refuses any seal tag; [`UnwrapOptions::allow_seal_expiration`] accepts seals whose only
//!   tags are `expiration` tags, for peers that follow NIP-17 there. Gift wraps made here
//!   always have seals with no tags.
//! - **Expiration is not checked** here: this module has no clock. Read the wrap's tags (and,
//!   with the option above, the seal's) against your own `now`.
//! - **Size**: both layers are decrypted with the NIP-44 limit
//!   ([`crate::nip44::DEFAULT_MAX_PLAINTEXT_LEN`] unless [`UnwrapOptions::max_plaintext_len`]
//!   sets another), checked on the payload's length before any decoding.
//!
//! # Timestamps
//!
//! The rumor keeps its own `created_at`: that is the message's real time. The seal and the wrap
//! each get `now` minus an independent random amount of 0 to 2 days
//! ([`MAX_TIMESTAMP_TWEAK`] seconds), drawn from the caller's RNG, so relays cannot group the
//! layers by time and none is dated in the future (some relays refuse future events).
//!
//! # Randomness
//!
//! Every random value (the two timestamp tweaks, the one-time key, the two NIP-44 nonces and the
//! BIP-340 auxiliary randomness of both signatures) comes from the RNG the caller passes, so a
//! seeded RNG gives byte-identical output. In production pass a CSPRNG such as `OsRng`: the
//! one-time key and the nonces must be unpredictable.
//!
//! # Example
//!
//! ```
//! use nostr_dvm::nip59::{self, UnwrappedGift};
//! use nostr_dvm::nostr::{Keys, Kind, Timestamp, UnsignedEvent};
//! use rand::SeedableRng;
//!
//! let alice = Keys::parse("5c0c523f52a5b6fad39ed2403092df8cebc36318b39383bca6c00808626fab3a")?;
//! let bob = Keys::parse("4b22aa260e4acb7021e32f38a6cdf4b673c6a277755bfce287e370c924dc936d")?;
//! let now = Timestamp::from_secs(1_700_000_000);
//!
//! // Alice asks Bob's DVM for a translation, privately.
//! let rumor = UnsignedEvent::new(alice.public_key(), now, Kind::Custom(5002), [], "hola");
//! let mut rng = rand::rngs::StdRng::seed_from_u64(59);
//! let wrap = nip59::gift_wrap(&alice, &bob.public_key(), rumor, now, &mut rng)?;
//!
//! // Relays see a kind 1059 event from a one-time key, addressed to Bob, dated in the past.
//! assert_eq!(wrap.kind, Kind::GiftWrap);
//! assert_ne!(wrap.pubkey, alice.public_key());
//! assert!(wrap.created_at <= now);
//!
//! // Bob opens it and learns who sent it.
//! let UnwrappedGift { sender, rumor, .. } = nip59::unwrap(&bob, &wrap)?;
//! assert_eq!(sender, alice.public_key());
//! assert_eq!(rumor.content, "hola");
//! assert_eq!(rumor.created_at, now);
//! assert!(rumor.id.is_some());
//!
//! // Nobody else can.
//! let carol = Keys::parse("8f40e50a84a7462e2b8d24c28898ef1f23359fff50d8c509e6fb7ce06e142f9c")?;
//! assert!(nip59::unwrap(&carol, &wrap).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use nostr::secp256k1::Message;
use nostr::{
    Event, EventId, JsonUtil, Keys, Kind, PublicKey, SecretKey, Tag, Tags, Timestamp, UnsignedEvent,
};
use rand_core::{CryptoRng, RngCore};
use serde::Deserialize;

use crate::nip44::{self, ConversationKey};

/// The kind of a seal.
pub const SEAL_KIND: u16 = 13;
/// The kind of a gift wrap that relays store.
pub const GIFT_WRAP_KIND: u16 = 1059;
/// The kind of an ephemeral gift wrap, which relays forward but do not store.
pub const EPHEMERAL_GIFT_WRAP_KIND: u16 = 21059;
/// The largest amount, in seconds, by which seal and wrap timestamps are moved into the past:
/// two days.
pub const MAX_TIMESTAMP_TWEAK: u64 = 2 * 24 * 60 * 60;

/// Which event a check found at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventFault {
    /// The `id` is not the hash of the event's fields.
    Id,
    /// The `sig` is not a valid BIP-340 signature of the `id` by the `pubkey`.
    Signature,
}

impl core::fmt::Display for EventFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EventFault::Id => f.write_str("id does not match its content"),
            EventFault::Signature => f.write_str("signature is invalid"),
        }
    }
}

/// What can go wrong making or opening a gift wrap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- opening ---
    /// The event is not a gift wrap: its kind is neither 1059 nor 21059.
    #[error("not a gift wrap: kind {0}")]
    NotAGiftWrap(Kind),
    /// The gift wrap's id or signature is invalid.
    #[error("invalid gift wrap: {0}")]
    InvalidWrap(EventFault),
    /// The gift wrap decrypts for the receiver, but it has `p` tags and none of them names the
    /// receiver.
    #[error("gift wrap is addressed to another key")]
    RecipientMismatch,
    /// The gift wrap's content could not be decrypted (wrong receiver, altered, or not NIP-44 v2).
    #[error("cannot decrypt the gift wrap: {0}")]
    WrapDecryption(nip44::Error),
    /// The gift wrap's plaintext is not an event's JSON.
    #[error("gift wrap does not hold valid event json: {0}")]
    InvalidSealJson(String),
    /// The event inside the gift wrap is not a seal (kind 13).
    #[error("gift wrap holds kind {0}, not a seal")]
    NotASeal(Kind),
    /// The seal's id or signature is invalid.
    #[error("invalid seal: {0}")]
    InvalidSeal(EventFault),
    /// The seal has tags; NIP-59 requires none.
    #[error("seal has tags")]
    SealHasTags,
    /// The seal's content could not be decrypted.
    #[error("cannot decrypt the seal: {0}")]
    SealDecryption(nip44::Error),
    /// The seal's plaintext is not an unsigned event's JSON.
    #[error("seal does not hold valid rumor json: {0}")]
    InvalidRumorJson(String),
    /// The rumor carries a `sig`; NIP-59 requires it to be unsigned.
    #[error("rumor is signed")]
    RumorSigned,
    /// The rumor claims an author other than the key that signed the seal: an impersonation
    /// attempt.
    #[error("seal signed by {seal} holds a rumor claiming to be from {rumor}")]
    SenderMismatch {
        /// Who signed the seal: the real sender.
        seal: PublicKey,
        /// Whom the rumor names as its author.
        rumor: PublicKey,
    },
    /// The rumor's id is not the hash of its fields (when opening, or when wrapping a rumor whose
    /// caller-set id is wrong).
    #[error("rumor id {carried} does not match its content (expected {computed})")]
    RumorIdMismatch {
        /// The id the rumor carries.
        carried: EventId,
        /// The id its fields hash to.
        computed: EventId,
    },

    // --- making ---
    /// The rumor to wrap names an author other than the sender, so the receiver would refuse it
    /// with [`Error::SenderMismatch`].
    #[error("rumor author {rumor} is not the sender {sender}")]
    RumorAuthorMismatch {
        /// The rumor's `pubkey`.
        rumor: PublicKey,
        /// The sender's public key.
        sender: PublicKey,
    },
    /// NIP-44 encryption failed (for instance the receiver's key is not a valid point).
    #[error("encryption failed: {0}")]
    Encryption(nip44::Error),
    /// The RNG produced 32 bytes that are not a valid secret key for the one-time key (all
    /// zeros, or not below the curve order). A working RNG does this with probability about
    /// 2^-128; this variant exists so a broken one fails instead of hanging.
    #[error("the rng produced an invalid one-time key")]
    InvalidRandomKey,
}

/// A gift wrap opened and checked by [`unwrap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnwrappedGift {
    /// The author, proven by the seal's signature; the rumor's `pubkey` is the same key.
    pub sender: PublicKey,
    /// The rumor, with its `id` set and checked.
    pub rumor: UnsignedEvent,
    /// The seal, as signed by the sender. Keep it if you need to show a third party that the
    /// sender sealed something to you (it does not reveal the rumor without your key).
    pub seal: Event,
}

/// Which kind of gift wrap to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WrapKind {
    /// Kind 1059: stored by relays, for asynchronous delivery (NIP-17 direct messages).
    #[default]
    Regular,
    /// Kind 21059: ephemeral, relays forward it to connected clients and do not store it.
    Ephemeral,
}

impl WrapKind {
    /// The event kind of this wrap.
    pub fn kind(self) -> Kind {
        match self {
            WrapKind::Regular => Kind::from(GIFT_WRAP_KIND),
            WrapKind::Ephemeral => Kind::from(EPHEMERAL_GIFT_WRAP_KIND),
        }
    }
}

/// How [`gift_wrap_with`] makes a wrap. The default is what [`gift_wrap`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct WrapOptions {
    /// The wrap's kind. Default: [`WrapKind::Regular`].
    pub kind: WrapKind,
    /// The NIP-44 length prefixes both layers may write. Default:
    /// [`LengthPrefix::Standard`](nip44::LengthPrefix::Standard), so a rumor too long for
    /// every reader (about 48 KiB: the wrap's plaintext is the seal's JSON, which holds the
    /// rumor base64-encoded and encrypted) is refused with [`Error::Encryption`] naming the
    /// limit instead of sent to a peer that cannot open it.
    pub length_prefix: nip44::LengthPrefix,
}

impl WrapOptions {
    /// The defaults: a regular wrap, standard length prefixes.
    pub const fn new() -> Self {
        Self {
            kind: WrapKind::Regular,
            length_prefix: nip44::LengthPrefix::Standard,
        }
    }

    /// Sets [`WrapOptions::kind`].
    pub const fn kind(mut self, kind: WrapKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets [`WrapOptions::length_prefix`].
    pub const fn length_prefix(mut self, prefix: nip44::LengthPrefix) -> Self {
        self.length_prefix = prefix;
        self
    }
}

/// How strict [`unwrap_with`] and [`open_seal_with`] are. The default is what [`unwrap`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct UnwrapOptions {
    /// Accept seals whose only tags are NIP-40 `expiration` tags, as NIP-17 suggests for
    /// disappearing messages. Off by default: NIP-59 requires seals to have no tags.
    pub allow_seal_expiration: bool,
    /// The largest plaintext, in bytes, either layer may decrypt to. Defaults to
    /// [`crate::nip44::DEFAULT_MAX_PLAINTEXT_LEN`].
    pub max_plaintext_len: usize,
    /// The caller checked the wrap's signature already (a relay client that checks every
    /// event it delivers): the wrap's id is still checked (one hash), its signature is not
    /// checked again. The seal's id and signature are always checked. Off by default.
    pub wrap_signature_checked: bool,
}

impl Default for UnwrapOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl UnwrapOptions {
    /// The strict defaults: no seal tags at all, the NIP-44 default size limit.
    pub const fn new() -> Self {
        Self {
            allow_seal_expiration: false,
            max_plaintext_len: nip44::DEFAULT_MAX_PLAINTEXT_LEN,
            wrap_signature_checked: false,
        }
    }

    /// Sets [`UnwrapOptions::wrap_signature_checked`].
    pub const fn wrap_signature_checked(mut self, checked: bool) -> Self {
        self.wrap_signature_checked = checked;
        self
    }

    /// Sets [`UnwrapOptions::allow_seal_expiration`].
    pub const fn allow_seal_expiration(mut self, allow: bool) -> Self {
        self.allow_seal_expiration = allow;
        self
    }

    /// Sets [`UnwrapOptions::max_plaintext_len`].
    pub const fn max_plaintext_len(mut self, max: usize) -> Self {
        self.max_plaintext_len = max;
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Making
// ---------------------------------------------------------------------------------------------

/// Seals `rumor` from `sender` to `receiver` and wraps the seal in a kind 1059 gift wrap.
///
/// The rumor must be authored by `sender` ([`Error::RumorAuthorMismatch`]); its id is computed
/// if unset, and refused if set but wrong ([`Error::RumorIdMismatch`]). The rumor keeps its
/// `created_at`; the seal and the wrap are dated `now` minus independent random amounts of up to
/// [`MAX_TIMESTAMP_TWEAK`]. The wrap is signed by a one-time key drawn from `rng` and has a
/// single `["p", receiver]` tag.
///
/// To send the same rumor to several people (and a copy to yourself), call this once per
/// receiver with the same rumor: each gets its own seal and wrap, and the rumor id is the same.
pub fn gift_wrap(
    sender: &Keys,
    receiver: &PublicKey,
    rumor: UnsignedEvent,
    now: Timestamp,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Event, Error> {
    gift_wrap_with_tags(sender, receiver, rumor, WrapKind::Regular, [], now, rng)
}

/// Like [`gift_wrap`], but makes an ephemeral kind 21059 wrap.
pub fn gift_wrap_ephemeral(
    sender: &Keys,
    receiver: &PublicKey,
    rumor: UnsignedEvent,
    now: Timestamp,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Event, Error> {
    gift_wrap_with_tags(sender, receiver, rumor, WrapKind::Ephemeral, [], now, rng)
}

/// Like [`gift_wrap`], with a choice of wrap kind and extra tags on the wrap, after its `p` tag:
/// a relay hint, a NIP-40 `expiration`, a NIP-13 `nonce`, ...
///
/// The extra tags go on the wrap only; the seal always has no tags. Mind that the wrap's tags
/// are public.
pub fn gift_wrap_with_tags<I>(
    sender: &Keys,
    receiver: &PublicKey,
    rumor: UnsignedEvent,
    kind: WrapKind,
    extra_tags: I,
    now: Timestamp,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Event, Error>
where
    I: IntoIterator<Item = Tag>,
{
    let options = WrapOptions::new().kind(kind);
    gift_wrap_with(sender, receiver, rumor, options, extra_tags, now, rng)
}

/// Like [`gift_wrap_with_tags`], with every choice in [`WrapOptions`] (the wrap kind, the
/// NIP-44 length prefixes).
pub fn gift_wrap_with<I>(
    sender: &Keys,
    receiver: &PublicKey,
    rumor: UnsignedEvent,
    options: WrapOptions,
    extra_tags: I,
    now: Timestamp,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Event, Error>
where
    I: IntoIterator<Item = Tag>,
{
    let seal = seal_with_prefix(sender, receiver, rumor, options.length_prefix, now, rng)?;
    let one_time = one_time_keys(rng)?;
    let key =
        ConversationKey::derive(one_time.secret_key(), receiver).map_err(Error::Encryption)?;
    let content = nip44::encrypt_with_prefix(&key, &seal.as_json(), options.length_prefix, rng)
        .map_err(Error::Encryption)?;
    let mut tags = vec![Tag::public_key(*receiver)];
    tags.extend(extra_tags);
    let created_at = tweaked(now, rng);
    Ok(sign(
        &one_time,
        created_at,
        options.kind.kind(),
        Tags::from_list(tags),
        content,
        rng,
    ))
}

/// Seals `rumor` from `sender` to `receiver`: the kind 13 event, signed by `sender`, with no tags,
/// whose content is the rumor's JSON encrypted to `receiver`.
///
/// The same checks on the rumor as [`gift_wrap`]. The seal is dated `now` minus a random amount
/// of up to [`MAX_TIMESTAMP_TWEAK`]. A seal must be wrapped before it is published: on its own it
/// shows who is talking.
pub fn seal(
    sender: &Keys,
    receiver: &PublicKey,
    rumor: UnsignedEvent,
    now: Timestamp,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Event, Error> {
    seal_with_prefix(
        sender,
        receiver,
        rumor,
        nip44::LengthPrefix::Standard,
        now,
        rng,
    )
}

/// Like [`seal`], writing the NIP-44 length prefixes `prefix` allows.
pub fn seal_with_prefix(
    sender: &Keys,
    receiver: &PublicKey,
    mut rumor: UnsignedEvent,
    prefix: nip44::LengthPrefix,
    now: Timestamp,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Event, Error> {
    let sender_pk = sender.public_key();
    if rumor.pubkey != sender_pk {
        return Err(Error::RumorAuthorMismatch {
            rumor: rumor.pubkey,
            sender: sender_pk,
        });
    }
    let computed = rumor_id(&rumor);
    match rumor.id {
        Some(carried) if carried != computed => {
            return Err(Error::RumorIdMismatch { carried, computed });
        }
        _ => rumor.id = Some(computed),
    }
    let created_at = tweaked(now, rng);
    let key = ConversationKey::derive(sender.secret_key(), receiver).map_err(Error::Encryption)?;
    let content = nip44::encrypt_with_prefix(&key, &rumor.as_json(), prefix, rng)
        .map_err(Error::Encryption)?;
    Ok(sign(
        sender,
        created_at,
        Kind::Seal,
        Tags::new(),
        content,
        rng,
    ))
}

/// A fresh key from 32 bytes of `rng`.
///
/// One draw, no retry loop: a working RNG gives an invalid scalar (zero, or not below the curve
/// order) with probability about 2^-128, while a broken one that always does would make a retry
/// loop spin forever.
fn one_time_keys(rng: &mut (impl RngCore + CryptoRng)) -> Result<Keys, Error> {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    let secret = SecretKey::from_slice(&bytes).map_err(|_| Error::InvalidRandomKey);
    bytes.fill(0);
    Ok(Keys::new(secret?))
}

/// `now` minus a uniformly random number of seconds in `[0, MAX_TIMESTAMP_TWEAK]`, never below 0.
fn tweaked(now: Timestamp, rng: &mut (impl RngCore + CryptoRng)) -> Timestamp {
    // Multiply-shift maps a u64 onto the range without a rejection loop (so a degenerate test
    // RNG cannot hang it); its bias is below 2^-46, far under anything observable.
    let span = u128::from(MAX_TIMESTAMP_TWEAK) + 1;
    let tweak = ((u128::from(rng.next_u64()) * span) >> 64) as u64;
    Timestamp::from_secs(now.as_secs().saturating_sub(tweak))
}

/// Builds and signs an event. Infallible: the id is computed here, so it cannot mismatch.
fn sign(
    keys: &Keys,
    created_at: Timestamp,
    kind: Kind,
    tags: Tags,
    content: String,
    rng: &mut (impl RngCore + CryptoRng),
) -> Event {
    let pubkey = keys.public_key();
    let id = EventId::new(&pubkey, &created_at, &kind, &tags, &content);
    let message = Message::from_digest(id.to_bytes());
    let sig = keys.sign_schnorr_with_ctx(nostr::SECP256K1, &message, rng);
    Event::new(id, pubkey, created_at, kind, tags, content, sig)
}

fn rumor_id(rumor: &UnsignedEvent) -> EventId {
    EventId::new(
        &rumor.pubkey,
        &rumor.created_at,
        &rumor.kind,
        &rumor.tags,
        &rumor.content,
    )
}

// ---------------------------------------------------------------------------------------------
// Opening
// ---------------------------------------------------------------------------------------------

/// Opens a gift wrap (kind 1059 or 21059) addressed to `receiver` and checks every layer; see the
/// [module docs](self) for the list of checks.
///
/// Never panics, whatever the event holds.
pub fn unwrap(receiver: &Keys, wrap: &Event) -> Result<UnwrappedGift, Error> {
    unwrap_with(receiver, wrap, &UnwrapOptions::new())
}

/// [`unwrap`] with options.
pub fn unwrap_with(
    receiver: &Keys,
    wrap: &Event,
    options: &UnwrapOptions,
) -> Result<UnwrappedGift, Error> {
    let kind = wrap.kind.as_u16();
    if kind != GIFT_WRAP_KIND && kind != EPHEMERAL_GIFT_WRAP_KIND {
        return Err(Error::NotAGiftWrap(wrap.kind));
    }
    if !crate::nip01::verify_id(wrap) {
        return Err(Error::InvalidWrap(EventFault::Id));
    }
    if !options.wrap_signature_checked && !wrap.verify_signature_with_ctx(nostr::SECP256K1) {
        return Err(Error::InvalidWrap(EventFault::Signature));
    }
    let key = ConversationKey::derive(receiver.secret_key(), &wrap.pubkey)
        .map_err(Error::WrapDecryption)?;
    let json = nip44::decrypt_with_max_len(&key, &wrap.content, options.max_plaintext_len)
        .map_err(Error::WrapDecryption)?;
    if !addressed_to(&wrap.tags, &receiver.public_key()) {
        return Err(Error::RecipientMismatch);
    }
    let seal = Event::from_json(json).map_err(|e| Error::InvalidSealJson(e.to_string()))?;
    open_seal_with(receiver, &seal, options)
}

/// True if the tags have no `p` tag, or a `p` tag naming `receiver`.
fn addressed_to(tags: &Tags, receiver: &PublicKey) -> bool {
    let mut has_p = false;
    for tag in tags.iter() {
        let fields = tag.as_slice();
        if fields.first().map(String::as_str) != Some("p") {
            continue;
        }
        has_p = true;
        let names_receiver = fields
            .get(1)
            .and_then(|hex| PublicKey::from_hex(hex).ok())
            .is_some_and(|pk| pk == *receiver);
        if names_receiver {
            return true;
        }
    }
    !has_p
}

/// Opens a seal (kind 13) addressed to `receiver`: checks its id, signature and empty tags,
/// decrypts the rumor and checks it as [`unwrap`] does.
///
/// For seals obtained some other way than from a gift wrap; [`unwrap`] calls this.
pub fn open_seal(receiver: &Keys, seal: &Event) -> Result<UnwrappedGift, Error> {
    open_seal_with(receiver, seal, &UnwrapOptions::new())
}

/// [`open_seal`] with options.
pub fn open_seal_with(
    receiver: &Keys,
    seal: &Event,
    options: &UnwrapOptions,
) -> Result<UnwrappedGift, Error> {
    if seal.kind.as_u16() != SEAL_KIND {
        return Err(Error::NotASeal(seal.kind));
    }
    if !crate::nip01::verify_id(seal) {
        return Err(Error::InvalidSeal(EventFault::Id));
    }
    if !seal.verify_signature_with_ctx(nostr::SECP256K1) {
        return Err(Error::InvalidSeal(EventFault::Signature));
    }
    let tags_ok = seal.tags.is_empty()
        || (options.allow_seal_expiration
            && seal
                .tags
                .iter()
                .all(|tag| tag.as_slice().first().map(String::as_str) == Some("expiration")));
    if !tags_ok {
        return Err(Error::SealHasTags);
    }
    let key = ConversationKey::derive(receiver.secret_key(), &seal.pubkey)
        .map_err(Error::SealDecryption)?;
    let json = nip44::decrypt_with_max_len(&key, &seal.content, options.max_plaintext_len)
        .map_err(Error::SealDecryption)?;
    let raw: RawRumor =
        serde_json::from_str(&json).map_err(|e| Error::InvalidRumorJson(e.to_string()))?;
    if raw.sig.is_some() {
        return Err(Error::RumorSigned);
    }
    if raw.pubkey != seal.pubkey {
        return Err(Error::SenderMismatch {
            seal: seal.pubkey,
            rumor: raw.pubkey,
        });
    }
    let mut rumor = UnsignedEvent {
        id: raw.id,
        pubkey: raw.pubkey,
        created_at: raw.created_at,
        kind: raw.kind,
        tags: raw.tags,
        content: raw.content,
    };
    let computed = rumor_id(&rumor);
    if let Some(carried) = rumor.id {
        if carried != computed {
            return Err(Error::RumorIdMismatch { carried, computed });
        }
    }
    rumor.id = Some(computed);
    Ok(UnwrappedGift {
        sender: seal.pubkey,
        rumor,
        seal: seal.clone(),
    })
}

/// An unsigned event as it arrives, with room to notice a `sig` that should not be there.
#[derive(Deserialize)]
struct RawRumor {
    id: Option<EventId>,
    pubkey: PublicKey,
    created_at: Timestamp,
    kind: Kind,
    tags: Tags,
    content: String,
    /// Any non-null `sig` value, whatever its shape.
    #[serde(default)]
    sig: Option<serde::de::IgnoredAny>,
}
