//! NIP-89: handler information (kind 31990), recommendations (kind 31989), and provider
//! discovery.
//!
//! A DVM announces the job kinds it serves with a kind 31990 event: one `k` tag per request
//! kind, and a kind-0-style JSON object in `content` saying who it is. Customers find
//! providers by querying `{"kinds": [31990], "#k": ["5050"]}` and reading the answers with
//! [`providers_for_kind`].
//!
//! # Metadata keys
//!
//! NIP-89 standardises no DVM-specific key, so [`HandlerMetadata`] reads them leniently:
//!
//! | field | JSON keys read | written as |
//! |---|---|---|
//! | `name`, `display_name`, `about`, `picture`, `image`, `banner`, `website`, `nip05`, `lud16` | the same | the same |
//! | `nip90_params` | `nip90Params` (nostrdvm: `{"<name>": {"required": bool, "values": [..]}}`) | `nip90Params` |
//! | `encryption_supported` | `supportsEncryption` (nostrdvm), `encryptionSupported` (the DVM registry) | both |
//! | `accepts_gift_wraps` | `acceptsGiftWraps` (this crate's choice), `giftWrap`, `supportsGiftWraps` | `acceptsGiftWraps` |
//! | `relays` | `relays` (array of URLs, or one URL) | `relays` |
//! | `amount` | `amount` (a string such as `"free"`, or a number, kept as its text) | `amount` |
//! | `personalized`, `accepts_nut_zaps` | `personalized`, `acceptsNutZaps` | the same |
//!
//! Booleans may also come as `"true"`/`"false"` (any case) or `0`/`1`. A known key whose value
//! has an unusable type is not lost: it stays in [`HandlerMetadata::extra`], with every
//! unknown key.
//!
//! # Malformed content
//!
//! A 31990 whose content is not a JSON object still parses: its tags are read as usual,
//! [`HandlerInfo::metadata`] is `None` and [`HandlerInfo::metadata_error`] says why (the
//! registry's own examples are not valid JSON). Empty content is not an error: NIP-89 says to
//! use the author's kind 0 then.

use std::collections::BTreeMap;

use nostr::{Event, EventId, Keys, Kind, PublicKey, Tag, TagKind, Timestamp, UnsignedEvent};
use rand_core::{CryptoRng, RngCore};
use serde_json::{Map, Value};

/// Kind 31990: handler information.
pub const HANDLER_INFO_KIND: u16 = 31990;
/// Kind 31989: a recommendation of handlers for a kind.
pub const RECOMMENDATION_KIND: u16 = 31989;
/// The tags [`HandlerInfo`] reads as [`HandlerLink`]s (platform names).
pub const PLATFORMS: &[&str] = &["web", "ios", "android"];

/// Why a NIP-89 event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The event id is not the hash of the event's content.
    #[error("invalid event id")]
    InvalidId,
    /// The signature does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// The event is not of the expected kind.
    #[error("kind {kind} is not kind {expected}")]
    WrongKind {
        /// The event's kind.
        kind: Kind,
        /// The kind expected.
        expected: u16,
    },
    /// A required tag is absent (the `d` tag of a recommendation).
    #[error("missing `{tag}` tag")]
    MissingTag {
        /// The tag's name.
        tag: &'static str,
    },
    /// A recommendation's `d` tag is not an event kind.
    #[error("`d` tag: {value:?} is not an event kind")]
    InvalidKind {
        /// The value found (cut to 64 bytes).
        value: String,
    },
}

/// Why a NIP-89 event could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The metadata could not be serialised.
    #[error("cannot serialise the metadata: {0}")]
    Json(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(#[source] nostr::event::Error),
}

fn tag(name: &str, values: impl IntoIterator<Item = String>) -> Tag {
    Tag::custom(TagKind::Custom(name.to_owned().into()), values)
}

fn clip(value: &str) -> String {
    let mut end = value.len().min(64);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.get(..end).unwrap_or_default().to_owned()
}

fn non_empty(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.is_empty()).cloned()
}

fn check(event: &Event, expected: u16, verify: bool) -> Result<(), ParseError> {
    if event.kind.as_u16() != expected {
        return Err(ParseError::WrongKind {
            kind: event.kind,
            expected,
        });
    }
    if verify {
        if !crate::nip01::verify_id(event) {
            return Err(ParseError::InvalidId);
        }
        if !event.verify_signature() {
            return Err(ParseError::InvalidSignature);
        }
    }
    Ok(())
}

fn parse_kind(value: &str) -> Option<Kind> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u16>().ok().map(Kind::from)
}

fn sign(
    keys: &Keys,
    now: Timestamp,
    kind: u16,
    tags: Vec<Tag>,
    content: String,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Event, BuildError> {
    UnsignedEvent::new(keys.public_key(), now, Kind::from(kind), tags, content)
        .sign_with_ctx(nostr::SECP256K1, rng, keys)
        .map_err(BuildError::Sign)
}

/// A parameter a DVM says it accepts, from `nip90Params`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamSpec {
    /// Whether the parameter is required, when said.
    pub required: Option<bool>,
    /// The values it accepts (numbers kept as their text); empty means any.
    pub values: Vec<String>,
    /// Any other key of the parameter's object.
    pub extra: Map<String, Value>,
}

/// The kind-0-style metadata in a 31990's content, with the DVM extras real announcements use
/// (see the [module docs](self) for the keys read).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HandlerMetadata {
    /// `name`.
    pub name: Option<String>,
    /// `display_name`.
    pub display_name: Option<String>,
    /// `about`.
    pub about: Option<String>,
    /// `picture`.
    pub picture: Option<String>,
    /// `image` (the DVM registry's examples use it instead of `picture`).
    pub image: Option<String>,
    /// `banner`.
    pub banner: Option<String>,
    /// `website`.
    pub website: Option<String>,
    /// `nip05`.
    pub nip05: Option<String>,
    /// `lud16`.
    pub lud16: Option<String>,
    /// `nip90Params`: the parameters the DVM accepts, by name.
    pub nip90_params: BTreeMap<String, ParamSpec>,
    /// `supportsEncryption` / `encryptionSupported`: whether the DVM reads encrypted requests.
    pub encryption_supported: Option<bool>,
    /// `acceptsGiftWraps` (also read: `giftWrap`, `supportsGiftWraps`): whether the DVM reads
    /// NIP-59 gift-wrapped requests.
    pub accepts_gift_wraps: Option<bool>,
    /// `relays`: the relays the DVM listens on.
    pub relays: Vec<String>,
    /// `amount`: a pricing hint as the DVM wrote it (`"free"`, `"1000"`, ...).
    pub amount: Option<String>,
    /// `personalized`: whether results depend on who asks.
    pub personalized: Option<bool>,
    /// `acceptsNutZaps`: whether the DVM takes Cashu nutzaps.
    pub accepts_nut_zaps: Option<bool>,
    /// Every other key, and known keys whose value had an unusable type.
    pub extra: Map<String, Value>,
}

fn lenient_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        Value::Number(n) if n.as_u64() == Some(1) => Some(true),
        Value::Number(n) if n.as_u64() == Some(0) => Some(false),
        _ => None,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn param_specs(value: &Value) -> Option<BTreeMap<String, ParamSpec>> {
    let Value::Object(params) = value else {
        return None;
    };
    let mut specs = BTreeMap::new();
    for (name, spec) in params {
        let Value::Object(spec) = spec else {
            return None;
        };
        let mut out = ParamSpec::default();
        for (key, v) in spec {
            match key.as_str() {
                "required" if lenient_bool(v).is_some() => out.required = lenient_bool(v),
                "values" => match v {
                    Value::Array(items) => {
                        for item in items {
                            match scalar_text(item) {
                                Some(text) => out.values.push(text),
                                None => return None,
                            }
                        }
                    }
                    _ => return None,
                },
                _ => {
                    out.extra.insert(key.clone(), v.clone());
                }
            }
        }
        specs.insert(name.clone(), out);
    }
    Some(specs)
}

impl HandlerMetadata {
    /// Reads metadata from a JSON object, leniently.
    pub fn from_json_object(object: Map<String, Value>) -> Self {
        let mut meta = HandlerMetadata::default();
        for (key, value) in object {
            let used = match key.as_str() {
                "name" => set_string(&mut meta.name, &value),
                "display_name" => set_string(&mut meta.display_name, &value),
                "about" => set_string(&mut meta.about, &value),
                "picture" => set_string(&mut meta.picture, &value),
                "image" => set_string(&mut meta.image, &value),
                "banner" => set_string(&mut meta.banner, &value),
                "website" => set_string(&mut meta.website, &value),
                "nip05" => set_string(&mut meta.nip05, &value),
                "lud16" => set_string(&mut meta.lud16, &value),
                "nip90Params" => match param_specs(&value) {
                    Some(specs) => {
                        meta.nip90_params = specs;
                        true
                    }
                    None => false,
                },
                "supportsEncryption" | "encryptionSupported" => {
                    set_bool(&mut meta.encryption_supported, &value)
                }
                "acceptsGiftWraps" | "giftWrap" | "supportsGiftWraps" => {
                    set_bool(&mut meta.accepts_gift_wraps, &value)
                }
                "personalized" => set_bool(&mut meta.personalized, &value),
                "acceptsNutZaps" => set_bool(&mut meta.accepts_nut_zaps, &value),
                "relays" => match &value {
                    Value::String(s) => {
                        meta.relays = vec![s.clone()];
                        true
                    }
                    Value::Array(items) if items.iter().all(Value::is_string) => {
                        meta.relays = items
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect();
                        true
                    }
                    _ => false,
                },
                "amount" => match scalar_text(&value) {
                    Some(text) if meta.amount.is_none() => {
                        meta.amount = Some(text);
                        true
                    }
                    _ => false,
                },
                _ => false,
            };
            if !used {
                meta.extra.insert(key, value);
            }
        }
        meta
    }

    /// The metadata as a JSON object: every extra key, then the known ones (which win over an
    /// extra key of the same name). `None` fields are left out; encryption support is written
    /// under both of its keys.
    pub fn to_json_object(&self) -> Map<String, Value> {
        let mut out = self.extra.clone();
        let strings = [
            ("name", &self.name),
            ("display_name", &self.display_name),
            ("about", &self.about),
            ("picture", &self.picture),
            ("image", &self.image),
            ("banner", &self.banner),
            ("website", &self.website),
            ("nip05", &self.nip05),
            ("lud16", &self.lud16),
            ("amount", &self.amount),
        ];
        for (key, value) in strings {
            if let Some(v) = value {
                out.insert(key.to_owned(), Value::String(v.clone()));
            }
        }
        let bools = [
            ("supportsEncryption", self.encryption_supported),
            ("encryptionSupported", self.encryption_supported),
            ("acceptsGiftWraps", self.accepts_gift_wraps),
            ("personalized", self.personalized),
            ("acceptsNutZaps", self.accepts_nut_zaps),
        ];
        for (key, value) in bools {
            if let Some(v) = value {
                out.insert(key.to_owned(), Value::Bool(v));
            }
        }
        if !self.relays.is_empty() {
            out.insert(
                "relays".to_owned(),
                Value::Array(self.relays.iter().cloned().map(Value::String).collect()),
            );
        }
        if !self.nip90_params.is_empty() {
            let mut params = Map::new();
            for (name, spec) in &self.nip90_params {
                let mut obj = spec.extra.clone();
                if let Some(required) = spec.required {
                    obj.insert("required".to_owned(), Value::Bool(required));
                }
                obj.insert(
                    "values".to_owned(),
                    Value::Array(spec.values.iter().cloned().map(Value::String).collect()),
                );
                params.insert(name.clone(), Value::Object(obj));
            }
            out.insert("nip90Params".to_owned(), Value::Object(params));
        }
        out
    }
}

fn set_string(field: &mut Option<String>, value: &Value) -> bool {
    match value {
        Value::String(s) => {
            *field = Some(s.clone());
            true
        }
        _ => false,
    }
}

fn set_bool(field: &mut Option<bool>, value: &Value) -> bool {
    match lenient_bool(value) {
        Some(b) if field.is_none() => {
            *field = Some(b);
            true
        }
        // A second alias with the same value is consumed; a conflicting one is kept in extra.
        Some(b) => *field == Some(b),
        None => false,
    }
}

/// A platform handler tag of a 31990: `["web", "https://.../<bech32>", "nevent"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HandlerLink {
    /// The platform (one of [`PLATFORMS`]).
    pub platform: String,
    /// The URL template; `<bech32>` is to be replaced by a NIP-19 entity.
    pub url: String,
    /// The NIP-19 entity type it handles (`nevent`, `naddr`, ...); `None` for a generic
    /// handler.
    pub entity: Option<String>,
}

/// A parsed kind 31990 handler information event.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerInfo {
    /// The event id.
    pub id: EventId,
    /// The handler (for a DVM, the provider's key).
    pub author: PublicKey,
    /// When it was published.
    pub created_at: Timestamp,
    /// The `d` tag (empty when absent, as NIP-01 reads addressable events without one).
    pub identifier: String,
    /// The `k` tags: the kinds handled, in order. `k` values that are not kinds are kept in
    /// `unknown_tags`.
    pub kinds: Vec<Kind>,
    /// The content's metadata; `None` when the content is empty or not a JSON object.
    pub metadata: Option<HandlerMetadata>,
    /// Why the content could not be read as metadata, when it is not empty and not a JSON
    /// object.
    pub metadata_error: Option<String>,
    /// The platform handler tags (`web`, `ios`, `android`).
    pub links: Vec<HandlerLink>,
    /// Every other tag (`t`, `alt`, `r`, `zap`, `latest`, ...), in order.
    pub unknown_tags: Vec<Tag>,
    /// The event as received.
    pub event: Event,
}

impl HandlerInfo {
    /// Parses a 31990 event, after checking its id and signature.
    pub fn from_event(event: &Event) -> Result<Self, ParseError> {
        Self::parse(event, true)
    }

    /// Like [`from_event`](Self::from_event), without checking the id and signature.
    pub fn from_verified_event(event: &Event) -> Result<Self, ParseError> {
        Self::parse(event, false)
    }

    fn parse(event: &Event, verify: bool) -> Result<Self, ParseError> {
        check(event, HANDLER_INFO_KIND, verify)?;
        let mut identifier = None;
        let mut kinds = Vec::new();
        let mut links = Vec::new();
        let mut unknown_tags = Vec::new();
        for t in event.tags.iter() {
            let Some((name, values)) = t.as_slice().split_first() else {
                continue;
            };
            match name.as_str() {
                "d" if identifier.is_none() => {
                    identifier = Some(values.first().cloned().unwrap_or_default());
                }
                "k" => match values.first().and_then(|v| parse_kind(v)) {
                    Some(kind) => kinds.push(kind),
                    None => unknown_tags.push(t.clone()),
                },
                platform if PLATFORMS.contains(&platform) && !values.is_empty() => {
                    links.push(HandlerLink {
                        platform: platform.to_owned(),
                        url: values.first().cloned().unwrap_or_default(),
                        entity: non_empty(values.get(1)),
                    });
                }
                _ => unknown_tags.push(t.clone()),
            }
        }
        let (metadata, metadata_error) = if event.content.trim().is_empty() {
            (None, None)
        } else {
            match serde_json::from_str::<Value>(&event.content) {
                Ok(Value::Object(object)) => {
                    (Some(HandlerMetadata::from_json_object(object)), None)
                }
                Ok(_) => (None, Some("content is not a JSON object".to_owned())),
                Err(e) => (None, Some(clip(&e.to_string()))),
            }
        };
        Ok(Self {
            id: event.id,
            author: event.pubkey,
            created_at: event.created_at,
            identifier: identifier.unwrap_or_default(),
            kinds,
            metadata,
            metadata_error,
            links,
            unknown_tags,
            event: event.clone(),
        })
    }

    /// Starts a 31990 with the `d` tag `identifier`.
    pub fn builder(identifier: impl Into<String>) -> HandlerInfoBuilder {
        HandlerInfoBuilder {
            identifier: identifier.into(),
            kinds: Vec::new(),
            metadata: None,
            links: Vec::new(),
            tags: Vec::new(),
        }
    }

    /// Whether a `k` tag names `kind`.
    pub fn supports(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }

    /// The event's address: `31990:<pubkey hex>:<d>`.
    pub fn coordinate(&self) -> String {
        format!(
            "{HANDLER_INFO_KIND}:{}:{}",
            self.author.to_hex(),
            self.identifier
        )
    }
}

/// Builds a signed 31990. Start with [`HandlerInfo::builder`].
///
/// ```
/// use nostr_dvm::nip89::{HandlerInfo, HandlerMetadata};
/// use nostr_dvm::nostr::{Keys, Kind, Timestamp};
/// use rand::SeedableRng;
///
/// let keys = Keys::parse("0000000000000000000000000000000000000000000000000000000000000002")?;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(89);
/// let metadata = HandlerMetadata {
///     name: Some("Summariser".into()),
///     encryption_supported: Some(true),
///     ..Default::default()
/// };
/// let event = HandlerInfo::builder("summariser-1")
///     .kind(Kind::from(5001))
///     .metadata(metadata.clone())
///     .sign(&keys, Timestamp::from(1_700_000_000), &mut rng)?;
/// let info = HandlerInfo::from_event(&event)?;
/// assert!(info.supports(Kind::from(5001)));
/// assert_eq!(info.metadata, Some(metadata));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct HandlerInfoBuilder {
    identifier: String,
    kinds: Vec<Kind>,
    metadata: Option<HandlerMetadata>,
    links: Vec<HandlerLink>,
    tags: Vec<Tag>,
}

impl HandlerInfoBuilder {
    /// Adds a handled kind (`k` tag).
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kinds.push(kind);
        self
    }

    /// Adds handled kinds.
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = Kind>) -> Self {
        self.kinds.extend(kinds);
        self
    }

    /// Sets the content's metadata (without it the content is empty).
    pub fn metadata(mut self, metadata: HandlerMetadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Adds a platform handler tag.
    pub fn link(mut self, link: HandlerLink) -> Self {
        self.links.push(link);
        self
    }

    /// Adds any other tag, written after the others.
    pub fn tag(mut self, tag: Tag) -> Self {
        self.tags.push(tag);
        self
    }

    /// Signs the event with `keys` at `now`, drawing the signature's auxiliary randomness from
    /// `rng`.
    pub fn sign(
        self,
        keys: &Keys,
        now: Timestamp,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Event, BuildError> {
        let mut tags = vec![tag("d", [self.identifier])];
        for kind in &self.kinds {
            tags.push(tag("k", [kind.as_u16().to_string()]));
        }
        for link in self.links {
            let mut values = vec![link.url];
            values.extend(link.entity);
            tags.push(tag(&link.platform, values));
        }
        tags.extend(self.tags);
        let content = match &self.metadata {
            Some(meta) => serde_json::to_string(&Value::Object(meta.to_json_object()))
                .map_err(|e| BuildError::Json(e.to_string()))?,
            None => String::new(),
        };
        sign(keys, now, HANDLER_INFO_KIND, tags, content, rng)
    }
}

/// An `a` tag of a recommendation, pointing at a 31990.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HandlerRef {
    /// The handler's author.
    pub pubkey: PublicKey,
    /// The handler's `d` tag.
    pub identifier: String,
    /// Where to find it.
    pub relay: Option<String>,
    /// The platform the recommendation applies to (`web`, `ios`, ...).
    pub platform: Option<String>,
}

impl HandlerRef {
    /// The address: `31990:<pubkey hex>:<d>`.
    pub fn coordinate(&self) -> String {
        format!(
            "{HANDLER_INFO_KIND}:{}:{}",
            self.pubkey.to_hex(),
            self.identifier
        )
    }

    /// Whether `info` is the handler this points at.
    pub fn points_at(&self, info: &HandlerInfo) -> bool {
        info.author == self.pubkey && info.identifier == self.identifier
    }

    fn parse(values: &[String]) -> Option<Self> {
        let coordinate = values.first()?;
        let mut parts = coordinate.splitn(3, ':');
        let kind = parts.next()?;
        let pubkey = parts.next()?;
        let identifier = parts.next()?;
        if parse_kind(kind)?.as_u16() != HANDLER_INFO_KIND || pubkey.len() != 64 {
            return None;
        }
        Some(Self {
            pubkey: PublicKey::from_hex(pubkey).ok()?,
            identifier: identifier.to_owned(),
            relay: non_empty(values.get(1)),
            platform: non_empty(values.get(2)),
        })
    }
}

/// A parsed kind 31989 recommendation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    /// The event id.
    pub id: EventId,
    /// Who recommends.
    pub author: PublicKey,
    /// When.
    pub created_at: Timestamp,
    /// The kind handled (the `d` tag).
    pub recommended_kind: Kind,
    /// The handlers recommended (`a` tags pointing at a 31990).
    pub handlers: Vec<HandlerRef>,
    /// Every other tag, including `a` tags that do not point at a 31990.
    pub unknown_tags: Vec<Tag>,
    /// The event as received.
    pub event: Event,
}

impl Recommendation {
    /// Parses a 31989 event, after checking its id and signature.
    pub fn from_event(event: &Event) -> Result<Self, ParseError> {
        Self::parse(event, true)
    }

    /// Like [`from_event`](Self::from_event), without checking the id and signature.
    pub fn from_verified_event(event: &Event) -> Result<Self, ParseError> {
        Self::parse(event, false)
    }

    fn parse(event: &Event, verify: bool) -> Result<Self, ParseError> {
        check(event, RECOMMENDATION_KIND, verify)?;
        let mut d = None;
        let mut handlers = Vec::new();
        let mut unknown_tags = Vec::new();
        for t in event.tags.iter() {
            let Some((name, values)) = t.as_slice().split_first() else {
                continue;
            };
            match name.as_str() {
                "d" if d.is_none() => d = Some(values.first().cloned().unwrap_or_default()),
                "a" => match HandlerRef::parse(values) {
                    Some(handler) => handlers.push(handler),
                    None => unknown_tags.push(t.clone()),
                },
                _ => unknown_tags.push(t.clone()),
            }
        }
        let d = d.ok_or(ParseError::MissingTag { tag: "d" })?;
        let recommended_kind =
            parse_kind(&d).ok_or_else(|| ParseError::InvalidKind { value: clip(&d) })?;
        Ok(Self {
            id: event.id,
            author: event.pubkey,
            created_at: event.created_at,
            recommended_kind,
            handlers,
            unknown_tags,
            event: event.clone(),
        })
    }

    /// Builds and signs a 31989 recommending `handlers` for `kind`.
    pub fn sign(
        kind: Kind,
        handlers: &[HandlerRef],
        keys: &Keys,
        now: Timestamp,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Event, BuildError> {
        let mut tags = vec![tag("d", [kind.as_u16().to_string()])];
        for h in handlers {
            let mut values = vec![h.coordinate()];
            match (&h.relay, &h.platform) {
                (relay, Some(platform)) => {
                    values.push(relay.clone().unwrap_or_default());
                    values.push(platform.clone());
                }
                (Some(relay), None) => values.push(relay.clone()),
                (None, None) => {}
            }
            tags.push(tag("a", values));
        }
        sign(keys, now, RECOMMENDATION_KIND, tags, String::new(), rng)
    }
}

/// The latest 31990 of each (author, `d`) among `events`: the newest by `created_at`, and on a
/// tie the one with the lowest id (NIP-01's rule for replaceable events).
///
/// Each event's id and signature are checked; events that are not valid 31990s are skipped.
/// The result is sorted by author, then `d`.
pub fn latest_handlers<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<HandlerInfo> {
    let mut latest: BTreeMap<(PublicKey, String), HandlerInfo> = BTreeMap::new();
    for event in events {
        if event.kind.as_u16() != HANDLER_INFO_KIND {
            continue;
        }
        let Ok(info) = HandlerInfo::from_event(event) else {
            continue;
        };
        let key = (info.author, info.identifier.clone());
        let newer = match latest.get(&key) {
            None => true,
            Some(old) => {
                info.created_at > old.created_at
                    || (info.created_at == old.created_at && info.id < old.id)
            }
        };
        if newer {
            latest.insert(key, info);
        }
    }
    latest.into_values().collect()
}

/// The providers that serve `kind`: the [`latest_handlers`] among `events` whose `k` tags name
/// it. Deduplication comes first, so a newer announcement that dropped the kind hides an older
/// one that had it. Each [`HandlerInfo`] carries the provider's key (`author`) and its
/// metadata.
pub fn providers_for_kind<'a>(
    kind: Kind,
    events: impl IntoIterator<Item = &'a Event>,
) -> Vec<HandlerInfo> {
    latest_handlers(events)
        .into_iter()
        .filter(|info| info.supports(kind))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_metadata() {
        let json = r#"{"name":"D","supportsEncryption":"TRUE","encryptionSupported":true,
            "acceptsGiftWraps":1,"relays":"wss://r","amount":1000,"personalized":"maybe",
            "nip90Params":{"model":{"required":false,"values":["a",2]}},"x":[1]}"#;
        let Value::Object(obj) = serde_json::from_str::<Value>(json).unwrap() else {
            panic!()
        };
        let meta = HandlerMetadata::from_json_object(obj);
        assert_eq!(meta.name.as_deref(), Some("D"));
        assert_eq!(meta.encryption_supported, Some(true));
        assert_eq!(meta.accepts_gift_wraps, Some(true));
        assert_eq!(meta.relays, vec!["wss://r"]);
        assert_eq!(meta.amount.as_deref(), Some("1000"));
        assert_eq!(meta.personalized, None);
        assert_eq!(meta.extra.get("personalized"), Some(&Value::from("maybe")));
        assert_eq!(meta.nip90_params["model"].values, vec!["a", "2"]);
        assert_eq!(meta.nip90_params["model"].required, Some(false));
        assert!(meta.extra.contains_key("x"));
        let again = HandlerMetadata::from_json_object(meta.to_json_object());
        assert_eq!(again, meta);
    }

    #[test]
    fn handler_refs() {
        let pk = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
        let ok = HandlerRef::parse(&[format!("31990:{pk}:a:b"), "wss://r".into()]).unwrap();
        assert_eq!(ok.identifier, "a:b");
        assert_eq!(ok.relay.as_deref(), Some("wss://r"));
        assert_eq!(ok.platform, None);
        assert!(HandlerRef::parse(&[format!("30023:{pk}:x")]).is_none());
        assert!(HandlerRef::parse(&["31990:zz:x".into()]).is_none());
        assert!(HandlerRef::parse(&[format!("31990:{pk}")]).is_none());
        assert!(HandlerRef::parse(&[]).is_none());
    }
}
