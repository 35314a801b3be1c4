//! Job results (`kind:6000-6999`, or any registered result kind).

use nostr::{Event, EventId, JsonUtil, Keys, Kind, PublicKey, Tag, Timestamp};
use rand_core::{CryptoRng, RngCore};

use super::crypt::{self, Encryption};
use super::error::{BuildError, ParseError};
use super::kinds::{KindRegistry, KindRole, KindTriple};
use super::request::JobRequest;
use super::tags::{make_tag, Amount, JobInput};
use super::{limits, ReplyTags};
use crate::encryption::detect_scheme;

/// A parsed job result.
///
/// Only the `e` tag (the request's id) is required: real providers leave out `request`
/// (always, for encrypted results), `p` and `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    /// The result's event id.
    pub id: EventId,
    /// The provider who published it.
    pub author: PublicKey,
    /// When it was published.
    pub created_at: Timestamp,
    /// The result kind.
    pub kind: Kind,
    /// The triple this result kind belongs to, from the [`KindRegistry`] it was parsed with.
    pub kinds: KindTriple,
    /// The request it answers (the first `e` tag).
    pub request_id: EventId,
    /// The relay hint of the `e` tag.
    pub request_relay: Option<String>,
    /// The customer (the first `p` tag that is not the author).
    pub customer: Option<PublicKey>,
    /// The `request` tag's value as sent. NIP-90 puts the request event's JSON there, but real
    /// providers also send a bare id or a Python dict, so it is not parsed eagerly: see
    /// [`request_event`](Self::request_event).
    pub request_json: Option<String>,
    /// The `i` tags echoed from the request.
    pub inputs: Vec<JobInput>,
    /// The `amount` tag: what the provider asks to be paid.
    pub amount: Option<Amount>,
    /// The output. For an encrypted result, the decrypted output, or empty when it was not
    /// decrypted (the ciphertext is still in [`event`](Self::event)).
    pub content: String,
    /// How the output is encrypted, for an encrypted result.
    pub encrypted: Option<Encryption>,
    /// Every tag this parser does not read (`alt`, `status`, `t`, ...), and repeats of
    /// single-valued tags after the first.
    pub unknown_tags: Vec<Tag>,
    /// The event as received.
    pub event: Event,
}

impl JobResult {
    super::job_event_parsers!(
        "result",
        "Parses a job result, after checking its id and signature.\n\n"
        "`keys` are the reader's own keys, used only to decrypt an encrypted result: the "
        "customer's (the result is encrypted to it) or the provider's (reading back its "
        "own). With `None`, or keys of neither party, an encrypted result parses with "
        "[`Encryption::decrypted`] `false` and an empty `content`."
    );

    fn parse(
        event: &Event,
        reader: Option<crypt::Reader<'_>>,
        registry: &KindRegistry,
        verify: bool,
    ) -> Result<Self, ParseError> {
        let kinds = registry
            .for_result(event.kind)
            .ok_or_else(|| registry.refuse(event.kind, KindRole::Result))?;
        if verify {
            super::verify(event)?;
        }

        let mut reply = ReplyTags::new();
        let mut inputs = Vec::new();
        let mut request_json = None;
        for tag in event.tags.iter() {
            let Some((name, values)) = tag.as_slice().split_first() else {
                continue;
            };
            let taken = match name.as_str() {
                "i" => {
                    if inputs.len() >= limits::MAX_INPUTS {
                        return Err(ParseError::TooMany {
                            tag: "i",
                            count: inputs.len() + 1,
                            max: limits::MAX_INPUTS,
                        });
                    }
                    inputs.push(JobInput::from_values(values)?);
                    true
                }
                "request" if request_json.is_none() => {
                    request_json = Some(values.first().cloned().unwrap_or_default());
                    true
                }
                _ => reply.take(name, values)?,
            };
            if !taken {
                reply.unknown_tags.push(tag.clone());
            }
        }
        let (request_id, request_relay) =
            reply.request.ok_or(ParseError::MissingTag { tag: "e" })?;
        let customer = crypt::target_of(&event.pubkey, &reply.p_tags);

        let mut encrypted = None;
        let content = match reply.encrypted {
            None => event.content.clone(),
            Some(declared) => {
                let scheme = detect_scheme(&event.content).ok_or(ParseError::UnknownCiphertext)?;
                let target = customer.ok_or(ParseError::MissingTag { tag: "p" })?;
                let mut content = String::new();
                let mut decrypted = false;
                if let Some(mut reader) = reader {
                    let me = reader.public_key();
                    if let Some(peer) = crypt::peer_for(&me, &event.pubkey, &target, &reply.p_tags)
                    {
                        content = reader.decrypt(
                            scheme,
                            &peer,
                            &event.content,
                            limits::MAX_ENCRYPTED_CONTENT_LEN,
                        )?;
                        decrypted = true;
                    }
                }
                encrypted = Some(Encryption {
                    scheme,
                    declared,
                    target,
                    decrypted,
                });
                content
            }
        };

        Ok(Self {
            id: event.id,
            author: event.pubkey,
            created_at: event.created_at,
            kind: event.kind,
            kinds,
            request_id,
            request_relay,
            customer,
            request_json,
            inputs,
            amount: reply.amount,
            content,
            encrypted,
            unknown_tags: reply.unknown_tags,
            event: event.clone(),
        })
    }

    /// Starts a result answering `request`, with `content` as the output.
    ///
    /// The result takes the request's result kind, tags it (`request`, `e`, `p`, and the
    /// inputs unless the request was encrypted) and, when the request was encrypted, encrypts
    /// `content` to the customer in the request's own scheme.
    ///
    /// A gift-wrapped request ([`JobRequest::unsigned`]) is answered inside a gift wrap that
    /// only its customer opens, who has the request: the result refers to it by its `e` tag
    /// alone, without the `request` tag and the `i` tags, so the wrap stays within what every
    /// NIP-44 reader accepts (repeating 20 KiB of input would overflow it).
    pub fn builder<'a>(
        request: &'a JobRequest,
        content: impl Into<String>,
    ) -> JobResultBuilder<'a> {
        JobResultBuilder {
            request,
            content: content.into(),
            amount: None,
            relay_hint: None,
            kind: None,
            tags: Vec::new(),
            conversation_key: None,
            length_prefix: crate::nip44::LengthPrefix::Standard,
        }
    }

    /// The provider: the result's author.
    pub fn provider(&self) -> PublicKey {
        self.author
    }

    /// The request event carried in the `request` tag: `Ok(None)` without one,
    /// [`ParseError::MalformedTag`] when its value is not an event's JSON.
    ///
    /// The event is parsed, not verified: pass it to [`JobRequest::from_event`] to check it.
    pub fn request_event(&self) -> Result<Option<Event>, ParseError> {
        match &self.request_json {
            None => Ok(None),
            Some(json) => Event::from_json(json)
                .map(Some)
                .map_err(|_| ParseError::MalformedTag {
                    tag: "request",
                    reason: "not the JSON of an event",
                }),
        }
    }

    /// Whether this result answers `request`: it names the request's id, has the request's
    /// result kind, and (when it names a customer) names the request's author.
    pub fn answers(&self, request: &JobRequest) -> bool {
        self.request_id == request.id
            && self.kind == request.kinds.result
            && self.customer.is_none_or(|c| c == request.author)
    }
}

/// Builds a signed job result. Start with [`JobResult::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct JobResultBuilder<'a> {
    request: &'a JobRequest,
    content: String,
    amount: Option<Amount>,
    relay_hint: Option<String>,
    kind: Option<Kind>,
    tags: Vec<Tag>,
    conversation_key: Option<crate::nip44::ConversationKey>,
    length_prefix: crate::nip44::LengthPrefix,
}

impl JobResultBuilder<'_> {
    /// The NIP-44 conversation key with the customer, when the caller has it (from a
    /// [`ConversationKeyCache`](crate::nip44::ConversationKeyCache)): an encrypted result then
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

    /// Asks to be paid `msat` millisats, with an optional BOLT11 invoice (`None`,
    /// `Some(invoice)` or the invoice `String` itself).
    pub fn amount(mut self, msat: u64, bolt11: impl Into<Option<String>>) -> Self {
        self.amount = Some(Amount::new(msat, bolt11.into()));
        self
    }

    /// Sets the `e` tag's relay hint (by default the first relay the request lists).
    pub fn relay_hint(mut self, relay: impl Into<String>) -> Self {
        self.relay_hint = Some(relay.into());
        self
    }

    /// Overrides the result kind (by default the request's [`JobRequest::result_kind`]).
    pub fn kind(mut self, kind: impl Into<Kind>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Adds any other tag (`alt`, `t`, ...), written after the others.
    pub fn tag(mut self, tag: Tag) -> Self {
        self.tags.push(tag);
        self
    }

    /// Signs the result with the provider's `keys` at `now`, drawing the signature's auxiliary
    /// randomness (and the encryption's nonce or IV) from `rng`.
    ///
    /// An encrypted request's result must have a non-empty content under NIP-44, which cannot
    /// encrypt an empty message ([`BuildError::Nip44`]).
    pub fn sign(
        self,
        keys: &Keys,
        now: Timestamp,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Event, BuildError> {
        let request = self.request;
        // Inside a gift wrap the customer has the request: refer to it, never repeat it.
        let repeat_request = !request.unsigned;
        let mut tags = Vec::with_capacity(4 + self.tags.len());
        if repeat_request {
            tags.push(make_tag("request", [request.request_json()]));
        }
        tags.push(super::e_tag(
            request.id,
            self.relay_hint.or_else(|| request.relays.first().cloned()),
        ));
        tags.push(make_tag("p", [request.author.to_hex()]));
        let content = match request.encrypted {
            None => {
                if repeat_request {
                    tags.extend(request.inputs.iter().map(JobInput::to_tag));
                }
                self.content
            }
            Some(enc) => {
                if !crypt::scheme_available(enc.scheme) {
                    return Err(BuildError::SchemeUnavailable(enc.scheme));
                }
                crypt::encrypt(
                    enc.scheme,
                    keys,
                    &request.author,
                    &self.content,
                    self.conversation_key.as_ref(),
                    self.length_prefix,
                    rng,
                )?
            }
        };
        if let Some(amount) = &self.amount {
            tags.push(amount.to_tag());
        }
        if let Some(enc) = request.encrypted {
            tags.push(make_tag("encrypted", [enc.scheme.as_str()]));
        }
        tags.extend(self.tags);
        let kind = self.kind.unwrap_or(request.kinds.result);
        super::sign_event(keys, now, kind, tags, content, rng)
    }
}
