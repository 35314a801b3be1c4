//! Job feedback (`kind:7000`, or any registered feedback kind).

use core::fmt;

use nostr::{Event, EventId, Keys, Kind, PublicKey, Tag, Timestamp};
use rand_core::{CryptoRng, RngCore};

use super::crypt::{self, Encryption};
use super::error::{BuildError, ParseError};
use super::kinds::{KindRegistry, KindRole};
use super::request::JobRequest;
use super::tags::{make_tag, non_empty, Amount};
use super::{limits, ReplyTags};
use crate::encryption::detect_scheme;

/// The `status` of a feedback event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum FeedbackStatus {
    /// `payment-required`: the provider wants to be paid before going on.
    PaymentRequired,
    /// `processing`: the provider is working on the job.
    Processing,
    /// `error`: the provider could not do the job.
    Error,
    /// `success`: the provider did the job.
    Success,
    /// `partial`: the provider did part of the job; the content may hold a sample.
    Partial,
    /// Any other status, kept as sent (real providers send others, such as `cancelled` or
    /// `scheduled`).
    Unknown(String),
    /// The status is inside encrypted content that was not decrypted (no keys, or not ours):
    /// real providers answering an encrypted request keep their status private.
    Encrypted,
}

impl FeedbackStatus {
    /// Reads a status: the five NIP-90 values exactly; anything else is kept in
    /// [`FeedbackStatus::Unknown`].
    pub fn parse(value: &str) -> Self {
        match value {
            "payment-required" => FeedbackStatus::PaymentRequired,
            "processing" => FeedbackStatus::Processing,
            "error" => FeedbackStatus::Error,
            "success" => FeedbackStatus::Success,
            "partial" => FeedbackStatus::Partial,
            other => FeedbackStatus::Unknown(other.to_owned()),
        }
    }

    /// The status as written in the tag.
    pub fn as_str(&self) -> &str {
        match self {
            FeedbackStatus::PaymentRequired => "payment-required",
            FeedbackStatus::Processing => "processing",
            FeedbackStatus::Error => "error",
            FeedbackStatus::Success => "success",
            FeedbackStatus::Partial => "partial",
            FeedbackStatus::Unknown(s) => s,
            FeedbackStatus::Encrypted => "encrypted",
        }
    }
}

impl fmt::Display for FeedbackStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed feedback event.
///
/// # Encrypted feedback
///
/// When the request was encrypted, real providers put the status inside the ciphertext, not in
/// a public tag: their content is the encrypted JSON array of the tags they would otherwise
/// publish, for instance `[["status","processing"],["amount","1000","lnbc..."],["content",
/// "sample"]]`, and only `e`, `p` and `encrypted` stay public. Decrypted, such a payload is
/// read like public tags, its `content` tag becoming [`content`](Self::content). A single tag
/// (`["status","success","..."]`) is read the same way. A decrypted payload with no `status`
/// tag is taken as the plain content, with the status from the public tags.
///
/// Without the keys to decrypt it, such feedback still parses, with `status`
/// [`FeedbackStatus::Encrypted`] (it is in the ciphertext) and [`Encryption::decrypted`]
/// `false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFeedback {
    /// The feedback's event id.
    pub id: EventId,
    /// The provider who published it.
    pub author: PublicKey,
    /// When it was published.
    pub created_at: Timestamp,
    /// The feedback kind.
    pub kind: Kind,
    /// The request it is about (the first `e` tag).
    pub request_id: EventId,
    /// The relay hint of the `e` tag.
    pub request_relay: Option<String>,
    /// The customer (the first `p` tag that is not the author).
    pub customer: Option<PublicKey>,
    /// The status; [`FeedbackStatus::Encrypted`] only for encrypted feedback that was not
    /// decrypted.
    pub status: FeedbackStatus,
    /// The status tag's human-readable extra information (empty means `None`).
    pub extra_info: Option<String>,
    /// The `amount` tag: what the provider asks to be paid.
    pub amount: Option<Amount>,
    /// The content: empty, or a sample of the results (for `partial`). Empty for encrypted
    /// feedback that was not decrypted.
    pub content: String,
    /// How the feedback is encrypted, for encrypted feedback.
    pub encrypted: Option<Encryption>,
    /// Every tag this parser does not read, and repeats of single-valued tags after the
    /// first.
    pub unknown_tags: Vec<Tag>,
    /// The event as received.
    pub event: Event,
}

/// Feedback tags: the reply tags plus `status`.
struct Fields {
    reply: ReplyTags,
    status: Option<(FeedbackStatus, Option<String>)>,
    content_tag: Option<String>,
}

impl Fields {
    fn take(&mut self, name: &str, values: &[String], private: bool) -> Result<bool, ParseError> {
        match name {
            "status" if self.status.is_none() => {
                let status = values.first().ok_or(ParseError::MalformedTag {
                    tag: "status",
                    reason: "no status",
                })?;
                self.status = Some((FeedbackStatus::parse(status), non_empty(values.get(1))));
                Ok(true)
            }
            "content" if private && self.content_tag.is_none() => {
                self.content_tag = Some(values.first().cloned().unwrap_or_default());
                Ok(true)
            }
            _ => self.reply.take(name, values),
        }
    }
}

impl JobFeedback {
    super::job_event_parsers!(
        "feedback",
        "Parses a feedback event, after checking its id and signature.\n\n"
        "`keys` are the reader's own keys, used only to decrypt encrypted feedback (see "
        "the [type docs](Self))."
    );

    fn parse(
        event: &Event,
        reader: Option<crypt::Reader<'_>>,
        registry: &KindRegistry,
        verify: bool,
    ) -> Result<Self, ParseError> {
        if !registry.is_feedback(event.kind) {
            return Err(registry.refuse(event.kind, KindRole::Feedback));
        }
        if verify {
            super::verify(event)?;
        }

        let mut fields = Fields {
            reply: ReplyTags::new(),
            status: None,
            content_tag: None,
        };
        for tag in event.tags.iter() {
            let Some((name, values)) = tag.as_slice().split_first() else {
                continue;
            };
            if !fields.take(name, values, false)? {
                fields.reply.unknown_tags.push(tag.clone());
            }
        }
        let (request_id, request_relay) = fields
            .reply
            .request
            .clone()
            .ok_or(ParseError::MissingTag { tag: "e" })?;
        let p_tags = fields.reply.p_tags.clone();
        let customer = crypt::target_of(&event.pubkey, &p_tags);

        let mut encrypted = None;
        let mut content = String::new();
        match fields.reply.encrypted {
            None => content = event.content.clone(),
            Some(declared) => {
                let scheme = detect_scheme(&event.content).ok_or(ParseError::UnknownCiphertext)?;
                let target = customer.ok_or(ParseError::MissingTag { tag: "p" })?;
                let mut decrypted = false;
                if let Some(mut reader) = reader {
                    let me = reader.public_key();
                    if let Some(peer) = crypt::peer_for(&me, &event.pubkey, &target, &p_tags) {
                        let plain = reader.decrypt(
                            scheme,
                            &peer,
                            &event.content,
                            limits::MAX_ENCRYPTED_CONTENT_LEN,
                        )?;
                        content = read_private(&mut fields, plain)?;
                        decrypted = true;
                    }
                }
                encrypted = Some(Encryption {
                    scheme,
                    declared,
                    target,
                    decrypted,
                });
            }
        }

        let readable = encrypted.is_none_or(|e| e.decrypted);
        let (status, extra_info) = match fields.status {
            Some((status, extra)) => (status, extra),
            None if readable => return Err(ParseError::MissingTag { tag: "status" }),
            None => (FeedbackStatus::Encrypted, None),
        };

        Ok(Self {
            id: event.id,
            author: event.pubkey,
            created_at: event.created_at,
            kind: event.kind,
            request_id,
            request_relay,
            customer,
            status,
            extra_info,
            amount: fields.reply.amount,
            content,
            encrypted,
            unknown_tags: fields.reply.unknown_tags,
            event: event.clone(),
        })
    }

    /// Starts feedback on `request` with `status`.
    ///
    /// The feedback takes the request's feedback kind and tags it (`e`, `p`). When the request
    /// was encrypted, the status, amount and content go into the content, encrypted to the
    /// customer in the request's scheme, as real providers do (see the [type docs](Self)).
    pub fn builder(request: &JobRequest, status: FeedbackStatus) -> JobFeedbackBuilder<'_> {
        JobFeedbackBuilder {
            request,
            status,
            extra_info: None,
            amount: None,
            content: String::new(),
            relay_hint: None,
            kind: None,
            tags: Vec::new(),
            conversation_key: None,
            length_prefix: crate::nip44::LengthPrefix::Standard,
        }
    }

    /// The provider: the feedback's author.
    pub fn provider(&self) -> PublicKey {
        self.author
    }

    /// Whether this feedback is about `request`: it names the request's id, has the
    /// request's feedback kind, and (when it names a customer) names the request's author.
    pub fn answers(&self, request: &JobRequest) -> bool {
        self.request_id == request.id
            && self.kind == request.kinds.feedback
            && self.customer.is_none_or(|c| c == request.author)
    }
}

/// Reads a decrypted feedback payload into `fields`; returns the content.
fn read_private(fields: &mut Fields, plain: String) -> Result<String, ParseError> {
    let tags = match crypt::parse_private_tags(&plain) {
        Ok(tags)
            if tags
                .iter()
                .any(|t| t.first().is_some_and(|n| n == "status")) =>
        {
            tags
        }
        _ => return Ok(plain),
    };
    for values in tags {
        let Some((name, rest)) = values.split_first() else {
            continue;
        };
        if name == "encrypted" {
            continue;
        }
        if !fields.take(name, rest, true)? {
            if let Ok(tag) = Tag::parse(values) {
                fields.reply.unknown_tags.push(tag);
            }
        }
    }
    Ok(fields.content_tag.take().unwrap_or_default())
}

/// Builds a signed feedback event. Start with [`JobFeedback::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct JobFeedbackBuilder<'a> {
    request: &'a JobRequest,
    status: FeedbackStatus,
    extra_info: Option<String>,
    amount: Option<Amount>,
    content: String,
    relay_hint: Option<String>,
    kind: Option<Kind>,
    tags: Vec<Tag>,
    conversation_key: Option<crate::nip44::ConversationKey>,
    length_prefix: crate::nip44::LengthPrefix,
}

impl JobFeedbackBuilder<'_> {
    /// The NIP-44 conversation key with the customer, when the caller has it (from a
    /// [`ConversationKeyCache`](crate::nip44::ConversationKeyCache)): an encrypted reply then
    /// costs no ECDH. It must be the key between the signer and the request's author.
    pub fn conversation_key(mut self, key: crate::nip44::ConversationKey) -> Self {
        self.conversation_key = Some(key);
        self
    }

    /// The NIP-44 length prefixes the encrypted content may use: by default only the standard
    /// one, so content over [`STANDARD_MAX_PLAINTEXT_LEN`](crate::nip44::STANDARD_MAX_PLAINTEXT_LEN)
    /// bytes fails to build ([`BuildError::Nip44`]) instead of reaching a peer that cannot
    /// read it. [`LengthPrefix::Extended`](crate::nip44::LengthPrefix::Extended) only for a
    /// peer known to read the extended prefix.
    pub fn nip44_length_prefix(mut self, prefix: crate::nip44::LengthPrefix) -> Self {
        self.length_prefix = prefix;
        self
    }

    /// Adds human-readable information to the status tag.
    pub fn extra_info(mut self, info: impl Into<String>) -> Self {
        self.extra_info = Some(info.into());
        self
    }

    /// Asks to be paid `msat` millisats, with an optional BOLT11 invoice (`None`,
    /// `Some(invoice)` or the invoice `String` itself).
    pub fn amount(mut self, msat: u64, bolt11: impl Into<Option<String>>) -> Self {
        self.amount = Some(Amount::new(msat, bolt11.into()));
        self
    }

    /// Sets the content: a sample of the partial results, for instance.
    pub fn content(mut self, content: impl Into<String>) -> Self {
        self.content = content.into();
        self
    }

    /// Sets the `e` tag's relay hint (by default the first relay the request lists).
    pub fn relay_hint(mut self, relay: impl Into<String>) -> Self {
        self.relay_hint = Some(relay.into());
        self
    }

    /// Overrides the feedback kind (by default the request's [`JobRequest::feedback_kind`]).
    pub fn kind(mut self, kind: impl Into<Kind>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Adds any other public tag (`alt`, ...), written after the others.
    pub fn tag(mut self, tag: Tag) -> Self {
        self.tags.push(tag);
        self
    }

    /// Signs the feedback with the provider's `keys` at `now`, drawing the signature's
    /// auxiliary randomness (and the encryption's nonce or IV) from `rng`.
    pub fn sign(
        self,
        keys: &Keys,
        now: Timestamp,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Event, BuildError> {
        if self.status == FeedbackStatus::Encrypted {
            return Err(BuildError::PlaceholderStatus);
        }
        let request = self.request;
        let mut status = vec![self.status.as_str().to_owned()];
        if let Some(extra) = self.extra_info {
            status.push(extra);
        }
        let mut private = vec![make_tag("status", status)];
        if let Some(amount) = &self.amount {
            private.push(amount.to_tag());
        }
        let public = [
            super::e_tag(
                request.id,
                self.relay_hint.or_else(|| request.relays.first().cloned()),
            ),
            make_tag("p", [request.author.to_hex()]),
        ];
        let (mut tags, content) = match request.encrypted {
            None => {
                private.extend(public);
                (private, self.content)
            }
            Some(enc) => {
                if !crypt::scheme_available(enc.scheme) {
                    return Err(BuildError::SchemeUnavailable(enc.scheme));
                }
                if !self.content.is_empty() {
                    private.push(make_tag("content", [self.content]));
                }
                let json = super::tags_json(&private)?;
                let ciphertext = crypt::encrypt(
                    enc.scheme,
                    keys,
                    &request.author,
                    &json,
                    self.conversation_key.as_ref(),
                    self.length_prefix,
                    rng,
                )?;
                let mut tags = public.to_vec();
                tags.push(make_tag("encrypted", [enc.scheme.as_str()]));
                (tags, ciphertext)
            }
        };
        tags.extend(self.tags);
        let kind = self.kind.unwrap_or(request.kinds.feedback);
        super::sign_event(keys, now, kind, tags, content, rng)
    }
}
