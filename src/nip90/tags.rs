//! The pieces of a job event's tags: inputs, parameters, bids, amounts, and the strict number
//! parsing they share.

use core::fmt;

use nostr::{EventId, PublicKey, Tag, TagKind};

use super::error::{clip, ParseError};

/// Builds a tag from its name and values, exactly as given.
pub(crate) fn make_tag<I, S>(name: &'static str, values: I) -> Tag
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Tag::custom(TagKind::Custom(name.into()), values)
}

/// `Some(value)` unless it is empty: NIP-90 writes `""` for an absent optional value.
pub(crate) fn non_empty(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.is_empty()).cloned()
}

/// Parses a millisat amount: one or more ASCII digits, fitting in a `u64`. Nothing else, not
/// even a sign, a `_` separator, spaces or an exponent.
pub fn parse_msat(value: &str) -> Option<u64> {
    parse_u64_digits(value)
}

/// Strict decimal `u64`: `[0-9]+` only (`str::parse` would also take a leading `+`).
pub(crate) fn parse_u64_digits(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

pub(crate) fn amount_value(tag: &'static str, value: Option<&String>) -> Result<u64, ParseError> {
    let value = value.map(String::as_str).unwrap_or_default();
    parse_msat(value).ok_or_else(|| ParseError::InvalidAmount {
        tag,
        value: clip(value),
    })
}

pub(crate) fn event_id_value(
    tag: &'static str,
    value: Option<&String>,
) -> Result<EventId, ParseError> {
    let value = value.map(String::as_str).unwrap_or_default();
    if value.len() != 64 {
        return Err(ParseError::InvalidEventId {
            tag,
            value: clip(value),
        });
    }
    EventId::from_hex(value).map_err(|_| ParseError::InvalidEventId {
        tag,
        value: clip(value),
    })
}

pub(crate) fn public_key_value(
    tag: &'static str,
    value: Option<&String>,
) -> Result<PublicKey, ParseError> {
    let value = value.map(String::as_str).unwrap_or_default();
    if value.len() != 64 {
        return Err(ParseError::InvalidPublicKey {
            tag,
            value: clip(value),
        });
    }
    PublicKey::from_hex(value).map_err(|_| ParseError::InvalidPublicKey {
        tag,
        value: clip(value),
    })
}

/// How the data of an `i` tag is to be read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InputType {
    /// The data is the input itself.
    Text,
    /// The data is a URL to fetch.
    Url,
    /// The data is the id of a Nostr event.
    Event,
    /// The data is the id of an earlier job request: its result is the input (job chaining).
    Job,
    /// Any other type, kept as sent (for instance `prompt`, which the registry's 5050 example
    /// uses). An `i` tag without a type gives `Other("")`, and [`JobInput::to_tag`] writes it
    /// back without one.
    Other(String),
}

impl InputType {
    /// Reads a type: `text`, `url`, `event` and `job` exactly (NIP-90 spells them in lower
    /// case); anything else is kept in [`InputType::Other`].
    pub fn parse(value: &str) -> Self {
        match value {
            "text" => InputType::Text,
            "url" => InputType::Url,
            "event" => InputType::Event,
            "job" => InputType::Job,
            other => InputType::Other(other.to_owned()),
        }
    }

    /// The type as written in the tag.
    pub fn as_str(&self) -> &str {
        match self {
            InputType::Text => "text",
            InputType::Url => "url",
            InputType::Event => "event",
            InputType::Job => "job",
            InputType::Other(s) => s,
        }
    }
}

impl fmt::Display for InputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `i` tag: `["i", <data>, <input-type>, <relay>, <marker>]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobInput {
    /// The argument: the text, URL or event id.
    pub data: String,
    /// How to read `data`.
    pub input_type: InputType,
    /// Where the event or job was published (empty in the tag means `None`).
    pub relay: Option<String>,
    /// How the input is to be used in the job (empty in the tag means `None`).
    pub marker: Option<String>,
}

impl JobInput {
    /// An input of any type.
    pub fn new(data: impl Into<String>, input_type: InputType) -> Self {
        Self {
            data: data.into(),
            input_type,
            relay: None,
            marker: None,
        }
    }

    /// A `text` input.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(text, InputType::Text)
    }

    /// A `url` input.
    pub fn url(url: impl Into<String>) -> Self {
        Self::new(url, InputType::Url)
    }

    /// An `event` input, with the relay it was published to.
    pub fn event(id: EventId, relay: Option<String>) -> Self {
        Self {
            relay,
            ..Self::new(id.to_hex(), InputType::Event)
        }
    }

    /// A `job` input: the result of the job request `id`, with the relay it was published to.
    pub fn job(id: EventId, relay: Option<String>) -> Self {
        Self {
            relay,
            ..Self::new(id.to_hex(), InputType::Job)
        }
    }

    /// This input with a relay hint.
    pub fn with_relay(mut self, relay: impl Into<String>) -> Self {
        self.relay = Some(relay.into());
        self
    }

    /// This input with a marker.
    pub fn with_marker(mut self, marker: impl Into<String>) -> Self {
        self.marker = Some(marker.into());
        self
    }

    /// The event id of an `event` or `job` input, when `data` is one (64 hex digits).
    pub fn event_id(&self) -> Option<EventId> {
        match self.input_type {
            InputType::Event | InputType::Job if self.data.len() == 64 => {
                EventId::from_hex(&self.data).ok()
            }
            _ => None,
        }
    }

    /// The `i` tag, with trailing empty values left out.
    pub fn to_tag(&self) -> Tag {
        let mut values = vec![self.data.clone(), self.input_type.as_str().to_owned()];
        match (&self.relay, &self.marker) {
            (relay, Some(marker)) => {
                values.push(relay.clone().unwrap_or_default());
                values.push(marker.clone());
            }
            (Some(relay), None) => values.push(relay.clone()),
            (None, None) => {}
        }
        while values.len() > 1 && values.last().is_some_and(|v| v.is_empty()) {
            values.pop();
        }
        make_tag("i", values)
    }

    /// Reads the values of an `i` tag (after the name).
    pub(crate) fn from_values(values: &[String]) -> Result<Self, ParseError> {
        let data = values.first().ok_or(ParseError::MalformedTag {
            tag: "i",
            reason: "no data",
        })?;
        Ok(Self {
            data: data.clone(),
            input_type: InputType::parse(values.get(1).map(String::as_str).unwrap_or_default()),
            relay: non_empty(values.get(2)),
            marker: non_empty(values.get(3)),
        })
    }
}

/// One `param` tag: `["param", <name>, <value>...]`.
///
/// NIP-90 shows one value, but some kinds give several (`["param", "range", "10", "20"]`,
/// `["param", "relays", "wss://a", "wss://b"]`), so all are kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Param {
    /// The parameter's name.
    pub name: String,
    /// Its values, in order (possibly none).
    pub values: Vec<String>,
}

impl Param {
    /// A parameter with one value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            values: vec![value.into()],
        }
    }

    /// A parameter with any number of values.
    pub fn with_values<I, S>(name: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            name: name.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// The first value, if any.
    pub fn value(&self) -> Option<&str> {
        self.values.first().map(String::as_str)
    }

    /// The `param` tag.
    pub fn to_tag(&self) -> Tag {
        make_tag(
            "param",
            core::iter::once(self.name.clone()).chain(self.values.iter().cloned()),
        )
    }

    pub(crate) fn from_values(values: &[String]) -> Result<Self, ParseError> {
        let (name, rest) = values.split_first().ok_or(ParseError::MalformedTag {
            tag: "param",
            reason: "no name",
        })?;
        Ok(Self {
            name: name.clone(),
            values: rest.to_vec(),
        })
    }
}

/// The `bid` tag: the most the customer will pay, in millisats.
///
/// `["bid", <msat>]`, and in older drafts a second value, the maximum price, which some
/// clients still send: `["bid", <msat>, <max-msat>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bid {
    /// The bid, in millisats.
    pub amount_msat: u64,
    /// The optional second value, in millisats.
    pub max_msat: Option<u64>,
}

impl Bid {
    /// A bid of `amount_msat` millisats.
    pub fn new(amount_msat: u64) -> Self {
        Self {
            amount_msat,
            max_msat: None,
        }
    }

    /// The `bid` tag.
    pub fn to_tag(&self) -> Tag {
        let mut values = vec![self.amount_msat.to_string()];
        if let Some(max) = self.max_msat {
            values.push(max.to_string());
        }
        make_tag("bid", values)
    }

    pub(crate) fn from_values(values: &[String]) -> Result<Self, ParseError> {
        let amount_msat = amount_value("bid", values.first())?;
        let max_msat = match values.get(1).filter(|v| !v.is_empty()) {
            Some(v) => Some(amount_value("bid", Some(v))?),
            None => None,
        };
        Ok(Self {
            amount_msat,
            max_msat,
        })
    }
}

/// The `amount` tag of a result or feedback: what the provider asks to be paid.
///
/// `["amount", <msat>, <bolt11>?]`. The second value is meant to be a BOLT11 invoice; it is
/// kept as sent and not checked here (real providers put Lightning addresses there too).
/// Verifying an invoice and its payment is the job of [`crate::nip57`] and the host's wallet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Amount {
    /// The amount, in millisats.
    pub msat: u64,
    /// The invoice, as sent (empty in the tag means `None`).
    pub bolt11: Option<String>,
}

impl Amount {
    /// An amount with an optional invoice.
    pub fn new(msat: u64, bolt11: Option<String>) -> Self {
        Self { msat, bolt11 }
    }

    /// The `amount` tag.
    pub fn to_tag(&self) -> Tag {
        let mut values = vec![self.msat.to_string()];
        if let Some(bolt11) = &self.bolt11 {
            values.push(bolt11.clone());
        }
        make_tag("amount", values)
    }

    pub(crate) fn from_values(values: &[String]) -> Result<Self, ParseError> {
        Ok(Self {
            msat: amount_value("amount", values.first())?,
            bolt11: non_empty(values.get(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn msat_parsing_is_strict() {
        assert_eq!(parse_msat("0"), Some(0));
        assert_eq!(parse_msat("0021"), Some(21));
        assert_eq!(parse_msat("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "+5",
            "-5",
            "100_000",
            "1e3",
            " 5",
            "5 ",
            "18446744073709551616",
            "١٢",
        ] {
            assert_eq!(parse_msat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn input_round_trip() {
        let cases = [
            JobInput::text("hello"),
            JobInput::url("https://x").with_marker("audio/mp3"),
            JobInput::event(EventId::all_zeros(), Some("wss://r".into())),
            JobInput::job(EventId::all_zeros(), None).with_marker("background"),
            JobInput::new("x", InputType::Other("prompt".into())),
        ];
        for input in cases {
            let tag = input.to_tag();
            let (name, values) = tag.as_slice().split_first().unwrap();
            assert_eq!(name, "i");
            assert_eq!(JobInput::from_values(values).unwrap(), input);
        }
        let bare = JobInput::from_values(&strings(&["alex@example.com"])).unwrap();
        assert_eq!(bare.input_type, InputType::Other(String::new()));
        assert_eq!(
            bare.to_tag().as_slice(),
            &strings(&["i", "alex@example.com"])
        );
        assert!(JobInput::from_values(&[]).is_err());
    }

    #[test]
    fn bid_and_amount() {
        assert_eq!(
            Bid::from_values(&strings(&["10", "20"])).unwrap(),
            Bid {
                amount_msat: 10,
                max_msat: Some(20)
            }
        );
        assert_eq!(
            Bid::from_values(&strings(&["10", ""])).unwrap(),
            Bid::new(10)
        );
        assert!(matches!(
            Amount::from_values(&strings(&["100_000", "x@y"])),
            Err(ParseError::InvalidAmount { tag: "amount", .. })
        ));
        let a = Amount::from_values(&strings(&["1000", ""])).unwrap();
        assert_eq!(a, Amount::new(1000, None));
    }
}
