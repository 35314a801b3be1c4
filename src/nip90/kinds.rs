//! Job kinds as data: the NIP-90 ranges, the kinds the DVM registry documents, the kinds other
//! applications use inside the NIP-90 ranges, and a [`KindRegistry`] for any other
//! request/result/feedback triple.
//!
//! NIP-90 gives a request kind `5000..=5999` the result kind `request + 1000` and the feedback
//! kind `7000`. The "microstandards" replacing NIP-90 reuse the same flow with other kinds, so
//! nothing in this crate hard-codes the arithmetic: parsers and builders ask a
//! [`KindRegistry`], and [`KindRegistry::nip90`] is only the default.
//!
//! The tables below were written from the DVM registry at data-vending-machines.org (commit
//! `d102c484`, 2025-05-15) and from events seen in the wild.

use core::fmt;

use nostr::Kind;

use super::error::ParseError;

/// Request kinds NIP-90 reserves.
pub const JOB_REQUEST_KINDS: core::ops::RangeInclusive<u16> = 5000..=5999;
/// Result kinds NIP-90 reserves.
pub const JOB_RESULT_KINDS: core::ops::RangeInclusive<u16> = 6000..=6999;
/// The NIP-90 feedback kind.
pub const JOB_FEEDBACK_KIND: u16 = 7000;
/// What NIP-90 adds to a request kind to get its result kind.
pub const RESULT_KIND_OFFSET: u16 = 1000;

/// Whether `kind` is in the NIP-90 request range `5000..=5999`.
pub fn is_job_request_kind(kind: impl Into<Kind>) -> bool {
    JOB_REQUEST_KINDS.contains(&kind.into().as_u16())
}

/// Whether `kind` is in the NIP-90 result range `6000..=6999`.
pub fn is_job_result_kind(kind: impl Into<Kind>) -> bool {
    JOB_RESULT_KINDS.contains(&kind.into().as_u16())
}

/// Whether `kind` is the NIP-90 feedback kind `7000`.
pub fn is_job_feedback_kind(kind: impl Into<Kind>) -> bool {
    kind.into().as_u16() == JOB_FEEDBACK_KIND
}

/// The NIP-90 result kind of a request kind (`request + 1000`), or `None` when `request` is not
/// in `5000..=5999`. For other triples use a [`KindRegistry`].
///
/// ```
/// use nostr_dvm::nip90::result_kind_for;
/// use nostr_dvm::nostr::Kind;
/// assert_eq!(result_kind_for(Kind::from(5050)), Some(Kind::from(6050)));
/// assert_eq!(result_kind_for(Kind::from(1)), None);
/// ```
pub fn result_kind_for(request: impl Into<Kind>) -> Option<Kind> {
    let request = request.into();
    if !is_job_request_kind(request) {
        return None;
    }
    request
        .as_u16()
        .checked_add(RESULT_KIND_OFFSET)
        .map(Kind::from)
}

/// The NIP-90 request kind a result kind answers (`result - 1000`), or `None` when `result` is
/// not in `6000..=6999`.
pub fn request_kind_for(result: impl Into<Kind>) -> Option<Kind> {
    let result = result.into();
    if !is_job_result_kind(result) {
        return None;
    }
    result
        .as_u16()
        .checked_sub(RESULT_KIND_OFFSET)
        .map(Kind::from)
}

/// What a parser expects an event to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KindRole {
    /// A job request.
    Request,
    /// A job result.
    Result,
    /// Job feedback.
    Feedback,
}

impl KindRole {
    /// `"request"`, `"result"` or `"feedback"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            KindRole::Request => "request",
            KindRole::Result => "result",
            KindRole::Feedback => "feedback",
        }
    }
}

impl fmt::Display for KindRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three kinds of one job type: the request, the result that answers it, and the feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindTriple {
    /// The request kind.
    pub request: Kind,
    /// The result kind.
    pub result: Kind,
    /// The feedback kind.
    pub feedback: Kind,
}

impl KindTriple {
    /// A triple of any three kinds.
    pub fn new(
        request: impl Into<Kind>,
        result: impl Into<Kind>,
        feedback: impl Into<Kind>,
    ) -> Self {
        Self {
            request: request.into(),
            result: result.into(),
            feedback: feedback.into(),
        }
    }

    /// The NIP-90 triple of a request kind in `5000..=5999`: `(k, k + 1000, 7000)`.
    pub fn nip90(request: impl Into<Kind>) -> Option<Self> {
        let request = request.into();
        result_kind_for(request).map(|result| Self {
            request,
            result,
            feedback: Kind::from(JOB_FEEDBACK_KIND),
        })
    }
}

/// A request kind the DVM registry documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// The request kind.
    pub request: u16,
    /// The result kind (always `request + 1000` in the registry).
    pub result: u16,
    /// A short name.
    pub name: &'static str,
    /// What the `i` tags carry.
    pub inputs: &'static str,
    /// The `param` names the registry lists (the registry spells some two ways; both are
    /// listed).
    pub params: &'static [&'static str],
    /// What the result's `content` holds.
    pub output: &'static str,
    /// Where the kind comes from and anything surprising about it; empty when nothing is.
    pub notes: &'static str,
}

/// The request kinds the DVM registry documents, plus 5600, which the registry lacks but real
/// traffic uses. Sorted by request kind.
pub static KNOWN_KINDS: &[KindInfo] = &[
    KindInfo {
        request: 5000,
        result: 6000,
        name: "Text extraction",
        inputs: "url (audio or other media); the marker MAY be a MIME type",
        params: &["range", "alignment"],
        output: "text/plain, text/vtt or text/markdown",
        notes: "",
    },
    KindInfo {
        request: 5001,
        result: 6001,
        name: "Summarization",
        inputs: "one or more event, job or text inputs, already text",
        params: &["length"],
        output: "text/plain or text/markdown",
        notes: "",
    },
    KindInfo {
        request: 5002,
        result: 6002,
        name: "Translation",
        inputs: "event or other text inputs",
        params: &["language"],
        output: "text/plain",
        notes: "the NIP-90 text's example spells the parameter `lang`",
    },
    KindInfo {
        request: 5050,
        result: 6050,
        name: "Text generation",
        inputs: "the prompt (the registry's example uses the non-NIP-90 input type `prompt`)",
        params: &[
            "model",
            "max_tokens",
            "temperature",
            "top_k",
            "top-k",
            "top_p",
            "top-p",
            "frequency_penalty",
        ],
        output: "text/plain or text/markdown",
        notes: "",
    },
    KindInfo {
        request: 5100,
        result: 6100,
        name: "Image generation",
        inputs: "text prompt; optionally a second url input (image to transform)",
        params: &["model", "lora", "ratio", "negative_prompt", "size"],
        output: "link(s) to the generated image(s)",
        notes: "",
    },
    KindInfo {
        request: 5200,
        result: 6200,
        name: "Video conversion",
        inputs: "url (media file or social-media link)",
        params: &["range"],
        output: "link to the converted file; the format comes from the `output` tag",
        notes: "",
    },
    KindInfo {
        request: 5201,
        result: 6201,
        name: "Video translation",
        inputs: "url, event or job",
        params: &["language", "subtitle", "range"],
        output: "link to the translated video",
        notes: "",
    },
    KindInfo {
        request: 5202,
        result: 6202,
        name: "Image-to-video",
        inputs: "url (image)",
        params: &[],
        output: "link to the generated video",
        notes: "",
    },
    KindInfo {
        request: 5250,
        result: 6250,
        name: "Text-to-speech",
        inputs: "text, event or job",
        params: &["language"],
        output: "link to the generated audio",
        notes: "",
    },
    KindInfo {
        request: 5300,
        result: 6300,
        name: "Nostr content discovery",
        inputs: "optional (for example text); the DVM decides how to read it",
        params: &["p"],
        output: "JSON-stringified list of `e`/`a` tags",
        notes: "the registry's example content lacks the outer brackets; real results send a \
                proper array",
    },
    KindInfo {
        request: 5301,
        result: 6301,
        name: "Nostr people discovery",
        inputs: "optional (text)",
        params: &["p"],
        output: "JSON-stringified list of `p` tags",
        notes: "",
    },
    KindInfo {
        request: 5302,
        result: 6302,
        name: "Nostr content search",
        inputs: "text (search terms)",
        params: &["users", "since", "until", "max_results"],
        output: "JSON-stringified list of `e`/`a` tags",
        notes: "",
    },
    KindInfo {
        request: 5303,
        result: 6303,
        name: "Nostr people search",
        inputs: "text",
        params: &["max_results"],
        output: "JSON-stringified list of `p` tags",
        notes: "",
    },
    KindInfo {
        request: 5400,
        result: 6400,
        name: "Nostr event count",
        inputs: "zero or more tag values (text); content may hold a JSON filter list",
        params: &["relay", "group"],
        output: "a stringified number, or a JSON object of counts when grouped",
        notes: "partial results MAY come as kind 7000",
    },
    KindInfo {
        request: 5500,
        result: 6500,
        name: "Malware scanning",
        inputs: "url (file to scan)",
        params: &[],
        output: "`CLEAN`, or plain-text findings",
        notes: "",
    },
    KindInfo {
        request: 5600,
        result: 6600,
        name: "CI/CD workflow run",
        inputs: "none; a repository `a` tag and params",
        params: &[
            "git_address",
            "git_ref",
            "workflow_filepath",
            "workflow_timeout",
        ],
        output: "the run's outcome",
        notes: "not in the registry; seen in the wild (a CI runner DVM for NIP-34 repositories)",
    },
    KindInfo {
        request: 5900,
        result: 6900,
        name: "Event timestamping (NIP-03)",
        inputs: "event (id to stamp)",
        params: &[],
        output: "id of the resulting kind 1040 event",
        notes: "also used in the wild for CI pipeline requests (params git_address, git_ref, \
                pipeline_filepath)",
    },
    KindInfo {
        request: 5901,
        result: 6901,
        name: "OP_RETURN creation",
        inputs: "text (at most 80 bytes as UTF-8)",
        params: &[],
        output: "bitcoin txid",
        notes: "",
    },
    KindInfo {
        request: 5905,
        result: 6905,
        name: "Event publish schedule",
        inputs: "text = stringified signed event JSON (may repeat)",
        params: &["relays"],
        output: "id of the published event",
        notes: "requests are normally encrypted; feedback is sent when the event is scheduled",
    },
    KindInfo {
        request: 5970,
        result: 6970,
        name: "Event PoW delegation",
        inputs: "text = stringified unsigned event JSON",
        params: &["pow"],
        output: "stringified event JSON with nonce and mined id",
        notes: "",
    },
];

/// What the registry says about `kind`, looked up by request or result kind.
pub fn kind_info(kind: impl Into<Kind>) -> Option<&'static KindInfo> {
    let k = kind.into().as_u16();
    KNOWN_KINDS
        .iter()
        .find(|info| info.request == k || info.result == k)
}

/// A kind (or a run of kinds) inside the NIP-90 ranges that another application also uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collision {
    /// The first kind of the run.
    pub first: u16,
    /// The last kind of the run (equal to `first` for a single kind).
    pub last: u16,
    /// Who uses it, and for what.
    pub used_by: &'static str,
    /// `true` when no DVM use of the kind is known: [`KindRegistry::nip90`] refuses such
    /// events with [`ParseError::ForeignKind`] unless the kind is registered. `false` when
    /// DVMs use it too, so the kind alone decides nothing and the event's shape must.
    pub foreign: bool,
}

/// The kinds inside `5000..=7000` known to be used for something other than (or besides) a
/// NIP-90 message. Sorted by kind.
pub static COLLISIONS: &[Collision] = &[
    Collision {
        first: 5128,
        last: 5128,
        used_by: "NIP-5A nsite manifest snapshots",
        foreign: true,
    },
    Collision {
        first: 5391,
        last: 5394,
        used_by: "a web game's file chunks (binary, HTML, CSS, JavaScript)",
        foreign: true,
    },
    Collision {
        first: 5900,
        last: 5900,
        used_by: "CI pipeline requests in the wild (the registry says NIP-03 timestamping)",
        foreign: false,
    },
    Collision {
        first: 5969,
        last: 5969,
        used_by: "nothing itself, but its NIP-90 result kind 6969 is a zap poll",
        foreign: false,
    },
    Collision {
        first: 6006,
        last: 6007,
        used_by: "another application's follow / unfollow actions",
        foreign: true,
    },
    Collision {
        first: 6275,
        last: 6277,
        used_by: "another application's oracle events",
        foreign: true,
    },
    Collision {
        first: 6969,
        last: 6969,
        used_by: "zap polls (Amethyst)",
        foreign: true,
    },
];

/// The collision entry that covers `kind`, if any.
pub fn collision(kind: impl Into<Kind>) -> Option<&'static Collision> {
    let k = kind.into().as_u16();
    COLLISIONS.iter().find(|c| c.first <= k && k <= c.last)
}

/// Which kinds a parser reads as requests, results and feedback, and which result and feedback
/// kinds answer a request.
///
/// [`KindRegistry::nip90`] (the [`Default`]) reads the NIP-90 ranges, minus the kinds that
/// [`COLLISIONS`] marks foreign. [`KindRegistry::register`] adds any triple; a registered
/// triple wins over the NIP-90 arithmetic and over the collision table, so a DVM that really
/// uses kind 6969 for results can say so.
///
/// ```
/// use nostr_dvm::nip90::{KindRegistry, KindTriple};
/// use nostr_dvm::nostr::Kind;
///
/// let mut registry = KindRegistry::nip90();
/// registry.register(KindTriple::new(Kind::from(25000), Kind::from(25001), Kind::from(25002)));
/// assert_eq!(registry.result_kind_for(Kind::from(25000)), Some(Kind::from(25001)));
/// assert_eq!(registry.result_kind_for(Kind::from(5050)), Some(Kind::from(6050)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindRegistry {
    triples: Vec<KindTriple>,
    nip90: bool,
}

impl Default for KindRegistry {
    fn default() -> Self {
        Self::nip90()
    }
}

impl KindRegistry {
    /// The NIP-90 ranges (`5000..=5999` / `+1000` / `7000`), without foreign kinds. Allocates
    /// nothing.
    pub const fn nip90() -> Self {
        Self {
            triples: Vec::new(),
            nip90: true,
        }
    }

    /// A registry that knows only the triples registered into it, not the NIP-90 ranges.
    pub const fn empty() -> Self {
        Self {
            triples: Vec::new(),
            nip90: false,
        }
    }

    /// Adds a triple. When two registered triples share a kind in the same role, the first
    /// registered wins.
    pub fn register(&mut self, triple: KindTriple) -> &mut Self {
        if !self.triples.contains(&triple) {
            self.triples.push(triple);
        }
        self
    }

    /// [`register`](Self::register), by value.
    pub fn with(mut self, triple: KindTriple) -> Self {
        self.register(triple);
        self
    }

    /// The registered triples (without the NIP-90 ranges).
    pub fn triples(&self) -> &[KindTriple] {
        &self.triples
    }

    /// Whether the NIP-90 ranges are part of this registry.
    pub fn includes_nip90(&self) -> bool {
        self.nip90
    }

    /// The triple whose request kind is `kind`.
    pub fn for_request(&self, kind: impl Into<Kind>) -> Option<KindTriple> {
        let kind = kind.into();
        if let Some(t) = self.triples.iter().find(|t| t.request == kind) {
            return Some(*t);
        }
        if !self.nip90 || collision(kind).is_some_and(|c| c.foreign) {
            return None;
        }
        KindTriple::nip90(kind)
    }

    /// The triple whose result kind is `kind`.
    pub fn for_result(&self, kind: impl Into<Kind>) -> Option<KindTriple> {
        let kind = kind.into();
        if let Some(t) = self.triples.iter().find(|t| t.result == kind) {
            return Some(*t);
        }
        if !self.nip90 || collision(kind).is_some_and(|c| c.foreign) {
            return None;
        }
        request_kind_for(kind).and_then(KindTriple::nip90)
    }

    /// Whether `kind` is a feedback kind here.
    pub fn is_feedback(&self, kind: impl Into<Kind>) -> bool {
        let kind = kind.into();
        self.triples.iter().any(|t| t.feedback == kind)
            || (self.nip90 && is_job_feedback_kind(kind))
    }

    /// Whether `kind` is a request kind here.
    pub fn is_request(&self, kind: impl Into<Kind>) -> bool {
        self.for_request(kind).is_some()
    }

    /// Whether `kind` is a result kind here.
    pub fn is_result(&self, kind: impl Into<Kind>) -> bool {
        self.for_result(kind).is_some()
    }

    /// The result kind that answers the request kind `request`.
    pub fn result_kind_for(&self, request: impl Into<Kind>) -> Option<Kind> {
        self.for_request(request).map(|t| t.result)
    }

    /// The feedback kind for jobs of the request kind `request`.
    pub fn feedback_kind_for(&self, request: impl Into<Kind>) -> Option<Kind> {
        self.for_request(request).map(|t| t.feedback)
    }

    /// The error for a kind that is not `expected` here.
    pub(crate) fn refuse(&self, kind: Kind, expected: KindRole) -> ParseError {
        if self.nip90 {
            if let Some(c) = collision(kind).filter(|c| c.foreign) {
                return ParseError::ForeignKind {
                    kind,
                    used_by: c.used_by,
                };
            }
        }
        ParseError::KindOutOfRange { kind, expected }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_consistent() {
        for pair in KNOWN_KINDS.windows(2) {
            assert!(pair[0].request < pair[1].request);
        }
        for info in KNOWN_KINDS {
            assert_eq!(info.result, info.request + RESULT_KIND_OFFSET);
            assert!(JOB_REQUEST_KINDS.contains(&info.request));
        }
        for pair in COLLISIONS.windows(2) {
            assert!(pair[0].last < pair[1].first);
        }
        for c in COLLISIONS {
            assert!(c.first <= c.last);
        }
    }

    #[test]
    fn nip90_arithmetic_and_edges() {
        assert_eq!(result_kind_for(Kind::from(5000)), Some(Kind::from(6000)));
        assert_eq!(result_kind_for(Kind::from(5999)), Some(Kind::from(6999)));
        assert_eq!(result_kind_for(Kind::from(4999)), None);
        assert_eq!(result_kind_for(Kind::from(6000)), None);
        assert_eq!(request_kind_for(Kind::from(6999)), Some(Kind::from(5999)));
        assert_eq!(request_kind_for(Kind::from(7000)), None);
        assert!(is_job_feedback_kind(Kind::from(7000)));
        assert!(!is_job_feedback_kind(Kind::from(7001)));
    }

    #[test]
    fn foreign_kinds_are_refused_unless_registered() {
        let reg = KindRegistry::nip90();
        assert!(reg.for_result(Kind::from(6969)).is_none());
        assert!(reg.for_request(Kind::from(5392)).is_none());
        assert!(matches!(
            reg.refuse(Kind::from(6969), KindRole::Result),
            ParseError::ForeignKind { .. }
        ));
        // 5969 itself is a request kind; its result kind is not.
        assert!(reg.for_request(Kind::from(5969)).is_some());
        let reg = reg.with(KindTriple::nip90(Kind::from(5969)).unwrap());
        assert_eq!(
            reg.for_result(Kind::from(6969)).map(|t| t.request),
            Some(Kind::from(5969))
        );
    }

    #[test]
    fn custom_only_registry() {
        let t = KindTriple::new(Kind::from(25000), Kind::from(25001), Kind::from(25002));
        let reg = KindRegistry::empty().with(t);
        assert!(reg.is_request(Kind::from(25000)));
        assert!(reg.is_result(Kind::from(25001)));
        assert!(reg.is_feedback(Kind::from(25002)));
        assert!(!reg.is_request(Kind::from(5000)));
        assert!(!reg.is_feedback(Kind::from(7000)));
        assert_eq!(
            reg.refuse(Kind::from(6969), KindRole::Result),
            ParseError::KindOutOfRange {
                kind: Kind::from(6969),
                expected: KindRole::Result
            }
        );
    }

    #[test]
    fn info_lookup() {
        assert_eq!(
            kind_info(Kind::from(5050)).map(|i| i.name),
            Some("Text generation")
        );
        assert_eq!(kind_info(Kind::from(6050)).map(|i| i.request), Some(5050));
        assert!(kind_info(Kind::from(5999)).is_none());
        assert!(collision(Kind::from(5393)).is_some_and(|c| c.foreign));
        assert!(collision(Kind::from(5900)).is_some_and(|c| !c.foreign));
    }
}
