//! Job requests (`kind:5000-5999`, or any registered request kind).

use nostr::{Event, EventId, JsonUtil, Keys, Kind, PublicKey, Tag, Timestamp};
use rand_core::{CryptoRng, RngCore};

use super::crypt::{self, Encryption};
use super::error::{BuildError, ParseError};
use super::kinds::{KindRegistry, KindRole, KindTriple};
use super::limits;
use super::tags::{make_tag, non_empty, public_key_value, Bid, JobInput, Param};
use crate::encryption::{detect_scheme, Scheme};

/// A parsed job request.
///
/// Read with [`JobRequest::from_event`] (checks the id and signature) or
/// [`JobRequest::from_verified_event`] (for events the caller already verified); build with
/// [`JobRequest::builder`].
///
/// For an encrypted request, [`encrypted`](Self::encrypted) tells the scheme and the provider
/// it is encrypted to. When it was decrypted, its private `i` and `param` tags (and any other
/// tags inside) are merged into the fields below as if they were public; when it was not,
/// `inputs` and `params` hold only what was public (usually nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    /// The request's event id, which is also the job's id.
    pub id: EventId,
    /// The customer.
    pub author: PublicKey,
    /// When the request was made.
    pub created_at: Timestamp,
    /// The request kind.
    pub kind: Kind,
    /// The request kind with the result and feedback kinds that answer it, from the
    /// [`KindRegistry`] the request was parsed with. Replies built from this request use them.
    pub kinds: KindTriple,
    /// The `i` tags, in order.
    pub inputs: Vec<JobInput>,
    /// The `param` tags, in order.
    pub params: Vec<Param>,
    /// The `output` tag: the MIME type the customer expects.
    pub output: Option<String>,
    /// The `bid` tag.
    pub bid: Option<Bid>,
    /// The relays the customer wants replies on, from every `relays` tag, in order.
    pub relays: Vec<String>,
    /// The `p` tags: the providers the customer addresses (others may still answer).
    pub providers: Vec<PublicKey>,
    /// The NIP-40 `expiration` tag: the job is void from that second on.
    pub expiration: Option<Timestamp>,
    /// How the private part is encrypted, for an encrypted request.
    pub encrypted: Option<Encryption>,
    /// The plain-text content (some kinds put a filter or a prompt there). Empty for an
    /// encrypted request, whose content is the ciphertext (still in [`event`](Self::event)).
    pub content: String,
    /// Every tag this parser does not read (`t`, `alt`, `client`, `a`, ...), and repeats of
    /// single-valued tags (`output`, `bid`, `expiration`) after the first, in order.
    pub unknown_tags: Vec<Tag>,
    /// The event as received; a result's `request` tag carries its JSON. For a request that
    /// arrived as a gift-wrapped rumor ([`from_rumor`](Self::from_rumor)) its signature is
    /// all zeros and [`unsigned`](Self::unsigned) is `true`.
    pub event: Event,
    /// Whether the request is an unsigned rumor from a NIP-59 gift wrap: its authorship was
    /// proven by the seal, and replies go back gift-wrapped.
    pub unsigned: bool,
}

/// Collects the tags of a request, public and private alike.
struct Fields {
    inputs: Vec<JobInput>,
    params: Vec<Param>,
    output: Option<String>,
    bid: Option<Bid>,
    relays: Vec<String>,
    providers: Vec<PublicKey>,
    expiration: Option<Timestamp>,
    unknown_tags: Vec<Tag>,
}

fn too_many(tag: &'static str, len: usize, max: usize) -> Result<(), ParseError> {
    if len >= max {
        return Err(ParseError::TooMany {
            tag,
            count: len + 1,
            max,
        });
    }
    Ok(())
}

impl Fields {
    fn new() -> Self {
        Self {
            inputs: Vec::new(),
            params: Vec::new(),
            output: None,
            bid: None,
            relays: Vec::new(),
            providers: Vec::new(),
            expiration: None,
            unknown_tags: Vec::new(),
        }
    }

    /// Reads one tag. Returns `Ok(false)` when the tag is not one a request field takes, so
    /// the caller keeps it.
    fn take(&mut self, name: &str, values: &[String]) -> Result<bool, ParseError> {
        match name {
            "i" => {
                too_many("i", self.inputs.len(), limits::MAX_INPUTS)?;
                self.inputs.push(JobInput::from_values(values)?);
            }
            "param" => {
                too_many("param", self.params.len(), limits::MAX_PARAMS)?;
                self.params.push(Param::from_values(values)?);
            }
            "output" if self.output.is_none() => self.output = non_empty(values.first()),
            "bid" if self.bid.is_none() => self.bid = Some(Bid::from_values(values)?),
            "relays" => {
                for relay in values.iter().filter(|r| !r.is_empty()) {
                    too_many("relays", self.relays.len(), limits::MAX_RELAYS)?;
                    self.relays.push(relay.clone());
                }
            }
            "p" => {
                too_many("p", self.providers.len(), limits::MAX_PROVIDERS)?;
                self.providers.push(public_key_value("p", values.first())?);
            }
            "expiration" if self.expiration.is_none() => {
                self.expiration = Some(crate::nip40::parse_value(values.first()).map_err(|e| {
                    ParseError::InvalidNumber {
                        tag: "expiration",
                        value: e.value().to_owned(),
                    }
                })?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl JobRequest {
    super::job_event_parsers!(
        "request",
        "Parses a job request, after checking its id and signature.\n\n"
        "`keys` are the reader's own keys, used only to decrypt an encrypted request: the "
        "provider's (the request is encrypted to it) or the customer's (reading back its "
        "own request). With `None`, or with keys that are neither party's, an encrypted "
        "request still parses, with [`Encryption::decrypted`] `false` and its private "
        "tags unread.\n\n"
        "Kinds follow [`KindRegistry::nip90`]; for other triples use "
        "[`from_event_with`](Self::from_event_with)."
    );

    fn parse(
        event: &Event,
        reader: Option<crypt::Reader<'_>>,
        registry: &KindRegistry,
        verify: bool,
    ) -> Result<Self, ParseError> {
        let kinds = registry
            .for_request(event.kind)
            .ok_or_else(|| registry.refuse(event.kind, KindRole::Request))?;
        if verify {
            super::verify(event)?;
        }

        let mut fields = Fields::new();
        let mut encrypted_tag: Option<Option<Scheme>> = None;
        for tag in event.tags.iter() {
            let Some((name, values)) = tag.as_slice().split_first() else {
                continue;
            };
            if name == "encrypted" {
                if encrypted_tag.is_none() {
                    encrypted_tag = Some(crypt::declared_scheme(values));
                }
                continue;
            }
            if !fields.take(name, values)? {
                fields.unknown_tags.push(tag.clone());
            }
        }

        let mut encrypted = None;
        let content = match encrypted_tag {
            None => event.content.clone(),
            Some(declared) => {
                let scheme = detect_scheme(&event.content).ok_or(ParseError::UnknownCiphertext)?;
                let target = crypt::target_of(&event.pubkey, &fields.providers)
                    .ok_or(ParseError::MissingTag { tag: "p" })?;
                let mut decrypted = false;
                if let Some(mut reader) = reader {
                    let me = reader.public_key();
                    if let Some(peer) =
                        crypt::peer_for(&me, &event.pubkey, &target, &fields.providers)
                    {
                        let plain = reader.decrypt(
                            scheme,
                            &peer,
                            &event.content,
                            limits::MAX_PRIVATE_TAGS_LEN,
                        )?;
                        for values in crypt::parse_private_tags(&plain)? {
                            let Some((name, rest)) = values.split_first() else {
                                continue;
                            };
                            if name == "encrypted" {
                                continue;
                            }
                            if !fields.take(name, rest)? {
                                if let Ok(tag) = Tag::parse(values) {
                                    fields.unknown_tags.push(tag);
                                }
                            }
                        }
                        decrypted = true;
                    }
                }
                encrypted = Some(Encryption {
                    scheme,
                    declared,
                    target,
                    decrypted,
                });
                String::new()
            }
        };

        fields.inputs.shrink_to_fit();
        fields.params.shrink_to_fit();
        fields.relays.shrink_to_fit();
        fields.providers.shrink_to_fit();
        fields.unknown_tags.shrink_to_fit();
        Ok(Self {
            id: event.id,
            author: event.pubkey,
            created_at: event.created_at,
            kind: event.kind,
            kinds,
            inputs: fields.inputs,
            params: fields.params,
            output: fields.output,
            bid: fields.bid,
            relays: fields.relays,
            providers: fields.providers,
            expiration: fields.expiration,
            encrypted,
            content,
            unknown_tags: fields.unknown_tags,
            event: event.clone(),
            unsigned: false,
        })
    }

    /// Parses a job request that arrived as the rumor of a NIP-59 gift wrap (already opened
    /// and checked by [`crate::nip59::unwrap`], which proves its author and its id).
    ///
    /// The rumor has no signature; [`event`](Self::event) carries it with an all-zero one and
    /// [`unsigned`](Self::unsigned) is set, so a result's `request` tag holds the rumor's
    /// JSON without a signature.
    pub fn from_rumor(
        rumor: &nostr::UnsignedEvent,
        keys: Option<&Keys>,
        registry: &KindRegistry,
    ) -> Result<Self, ParseError> {
        let event = super::rumor_event(rumor);
        let mut request = Self::parse(&event, keys.map(crypt::Reader::Keys), registry, false)?;
        request.unsigned = true;
        Ok(request)
    }

    /// The JSON a result's `request` tag carries: the request event, or for a gift-wrapped
    /// request the rumor without a signature.
    pub fn request_json(&self) -> String {
        if self.unsigned {
            nostr::UnsignedEvent::from(self.event.clone()).as_json()
        } else {
            self.event.as_json()
        }
    }

    /// Starts a request of `kind`.
    ///
    /// The kind is not checked, so any registered triple can be built; a NIP-90 request kind
    /// is in `5000..=5999`.
    pub fn builder(kind: impl Into<Kind>) -> JobRequestBuilder {
        JobRequestBuilder::new(kind.into())
    }

    /// The customer: the request's author.
    pub fn customer(&self) -> PublicKey {
        self.author
    }

    /// The first value of the first `param` named `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .and_then(Param::value)
    }

    /// Every `param` named `name`, in order.
    pub fn params_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Param> + 'a {
        self.params.iter().filter(move |p| p.name == name)
    }

    /// Whether the request names `provider` in a `p` tag.
    pub fn addresses(&self, provider: &PublicKey) -> bool {
        self.providers.contains(provider)
    }

    /// Whether the request has expired at `now` (NIP-40: from its `expiration` second on).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expiration.is_some_and(|exp| now >= exp)
    }

    /// The kind a result to this request has.
    pub fn result_kind(&self) -> Kind {
        self.kinds.result
    }

    /// The kind feedback on this request has.
    pub fn feedback_kind(&self) -> Kind {
        self.kinds.feedback
    }

    /// The scheme replies must use: the request's own, or `None` for a plain request.
    pub fn scheme(&self) -> Option<Scheme> {
        self.encrypted.map(|e| e.scheme)
    }
}

/// Builds a signed job request. Start with [`JobRequest::builder`].
///
/// With [`encrypt`](Self::encrypt), the `i` and `param` tags go into the content as a JSON
/// array of tags, encrypted to the single provider, and an `["encrypted", "<scheme>"]` tag is
/// added; `output`, `bid`, `relays`, `p` and `expiration` stay public (providers read the bid
/// and relays before deciding, relays enforce the expiration).
///
/// ```
/// use nostr_dvm::nip90::{JobInput, JobRequest};
/// use nostr_dvm::nostr::{Keys, Kind, Timestamp};
/// use rand::SeedableRng;
///
/// let keys = Keys::parse("0000000000000000000000000000000000000000000000000000000000000001")?;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
/// let event = JobRequest::builder(Kind::from(5050))
///     .input(JobInput::text("What is a data vending machine?"))
///     .param("model", "LLaMA-2")
///     .output("text/plain")
///     .bid(10_000)
///     .sign(&keys, Timestamp::from(1_700_000_000), &mut rng)?;
/// let request = JobRequest::from_event(&event, None)?;
/// assert_eq!(request.param("model"), Some("LLaMA-2"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct JobRequestBuilder {
    kind: Kind,
    inputs: Vec<JobInput>,
    params: Vec<Param>,
    output: Option<String>,
    bid: Option<Bid>,
    relays: Vec<String>,
    providers: Vec<PublicKey>,
    expiration: Option<Timestamp>,
    scheme: Option<Scheme>,
    content: Option<String>,
    tags: Vec<Tag>,
    conversation_key: Option<crate::nip44::ConversationKey>,
    length_prefix: crate::nip44::LengthPrefix,
}

impl JobRequestBuilder {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            inputs: Vec::new(),
            params: Vec::new(),
            output: None,
            bid: None,
            relays: Vec::new(),
            providers: Vec::new(),
            expiration: None,
            scheme: None,
            content: None,
            tags: Vec::new(),
            conversation_key: None,
            length_prefix: crate::nip44::LengthPrefix::Standard,
        }
    }

    /// Adds an input.
    pub fn input(mut self, input: JobInput) -> Self {
        self.inputs.push(input);
        self
    }

    /// Adds a parameter with one value.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push(Param::new(name, value));
        self
    }

    /// Adds a parameter with any number of values.
    pub fn param_values<I, S>(mut self, name: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.params.push(Param::with_values(name, values));
        self
    }

    /// Sets the expected output MIME type.
    pub fn output(mut self, mime: impl Into<String>) -> Self {
        self.output = Some(mime.into());
        self
    }

    /// Sets the bid, in millisats.
    pub fn bid(mut self, amount_msat: u64) -> Self {
        self.bid = Some(Bid::new(amount_msat));
        self
    }

    /// Sets the bid with its optional second value, both in millisats.
    pub fn bid_with_max(mut self, amount_msat: u64, max_msat: u64) -> Self {
        self.bid = Some(Bid {
            amount_msat,
            max_msat: Some(max_msat),
        });
        self
    }

    /// Adds relays replies should go to (written as one `relays` tag).
    pub fn relays<I, S>(mut self, relays: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.relays.extend(relays.into_iter().map(Into::into));
        self
    }

    /// Addresses a provider (`p` tag). An encrypted request needs exactly one.
    pub fn provider(mut self, provider: PublicKey) -> Self {
        self.providers.push(provider);
        self
    }

    /// Sets the NIP-40 expiration.
    pub fn expiration(mut self, at: Timestamp) -> Self {
        self.expiration = Some(at);
        self
    }

    /// Encrypts the inputs and parameters to the provider with `scheme`.
    pub fn encrypt(mut self, scheme: Scheme) -> Self {
        self.scheme = Some(scheme);
        self
    }

    /// The NIP-44 conversation key with the provider, when the caller has it (from a
    /// [`ConversationKeyCache`](crate::nip44::ConversationKeyCache)): a NIP-44 request then
    /// costs no ECDH. It must be the key between the signer and the one provider.
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

    /// Sets a plain-text content (not allowed together with [`encrypt`](Self::encrypt)).
    pub fn content(mut self, content: impl Into<String>) -> Self {
        self.content = Some(content.into());
        self
    }

    /// Adds any other public tag (`t`, `alt`, `client`, ...), written after the others.
    pub fn tag(mut self, tag: Tag) -> Self {
        self.tags.push(tag);
        self
    }

    /// Signs the request with `keys` at `now`, drawing the signature's auxiliary randomness
    /// (and the encryption's nonce or IV) from `rng`.
    pub fn sign(
        self,
        keys: &Keys,
        now: Timestamp,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Event, BuildError> {
        let private: Vec<Tag> = self
            .inputs
            .iter()
            .map(JobInput::to_tag)
            .chain(self.params.iter().map(Param::to_tag))
            .collect();
        let mut tags: Vec<Tag> = Vec::new();
        let content = match self.scheme {
            None => {
                tags.extend(private);
                self.content.unwrap_or_default()
            }
            Some(scheme) => {
                if self.content.is_some() {
                    return Err(BuildError::ContentWithEncryption);
                }
                let [provider] = self.providers.as_slice() else {
                    return Err(BuildError::EncryptionTarget {
                        providers: self.providers.len(),
                    });
                };
                if !crypt::scheme_available(scheme) {
                    return Err(BuildError::SchemeUnavailable(scheme));
                }
                let json = super::tags_json(&private)?;
                crypt::encrypt(
                    scheme,
                    keys,
                    provider,
                    &json,
                    self.conversation_key.as_ref(),
                    self.length_prefix,
                    rng,
                )?
            }
        };
        if let Some(output) = self.output {
            tags.push(make_tag("output", [output]));
        }
        if let Some(bid) = self.bid {
            tags.push(bid.to_tag());
        }
        if !self.relays.is_empty() {
            tags.push(make_tag("relays", self.relays));
        }
        for provider in &self.providers {
            tags.push(make_tag("p", [provider.to_hex()]));
        }
        if let Some(at) = self.expiration {
            tags.push(crate::nip40::tag(at));
        }
        if let Some(scheme) = self.scheme {
            tags.push(make_tag("encrypted", [scheme.as_str()]));
        }
        tags.extend(self.tags);
        super::sign_event(keys, now, self.kind, tags, content, rng)
    }
}
