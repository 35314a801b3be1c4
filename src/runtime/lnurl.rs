//! LNURL-pay (LUD-06) and lightning addresses (LUD-16), feature `lnurl`: how a customer gets
//! an invoice from a `name@domain` address (for a payment or a NIP-57 zap), and how a provider
//! learns the zapper key and LNURL that its zap receipts must match.
//!
//! Every answer is checked before it is used: the invoice's amount is the one asked for and
//! its description hash commits to the service's metadata (LUD-06) or, for a zap, to the zap
//! request (NIP-57 Appendix B). Lightning addresses resolve over HTTPS only (LUD-16); plain
//! `http://`, for a test server on 127.0.0.1, needs [`LnurlClient::allow_insecure_http`].
//! A service that cannot take zaps is an error ([`LnurlError::NoNostr`]), never a silent
//! fallback to payments nobody can verify.

use std::time::Duration;

use crate::bolt11::{Invoice, InvoiceDescription};
use nostr::{Event, JsonUtil, PublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::nip57::{encode_lnurl, ZapRequest};
use crate::provider::ProviderConfig;

/// How long one LNURL call may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// What can go wrong with LNURL-pay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LnurlError {
    /// Not a `name@domain` lightning address.
    #[error("not a lightning address: {0}")]
    InvalidAddress(String),
    /// A URL that is not `https://` (LUD-16), or not `http(s)://` at all, without
    /// [`LnurlClient::allow_insecure_http`].
    #[error("refused URL {0}: LNURL needs https")]
    InsecureUrl(String),
    /// The service could not be reached, or answered with an HTTP error.
    #[error("LNURL service: {0}")]
    Http(String),
    /// The service answered `{"status": "ERROR", "reason": ...}`.
    #[error("the LNURL service refused: {0}")]
    Refused(String),
    /// The answer is not what LUD-06 says it is.
    #[error("invalid LNURL-pay answer: {0}")]
    InvalidResponse(String),
    /// The amount is outside what the service takes.
    #[error("{amount_msat} msat is outside the service's range ({min_msat}..={max_msat} msat)")]
    AmountOutOfRange {
        /// The amount asked for.
        amount_msat: u64,
        /// The service's `minSendable`.
        min_msat: u64,
        /// The service's `maxSendable`.
        max_msat: u64,
    },
    /// The invoice the service returned does not match what was asked (amount, description
    /// hash): it is not paid.
    #[error("the service's invoice does not match: {0}")]
    InvoiceMismatch(String),
    /// The service does not take NIP-57 zaps (no `allowsNostr`, or no valid `nostrPubkey`).
    #[error("the LNURL service does not take nostr zaps (allowsNostr/nostrPubkey)")]
    NoNostr,
    /// The zap request is not a valid NIP-57 zap request.
    #[error("invalid zap request: {0}")]
    InvalidZapRequest(String),
}

/// An LNURL-pay service, as its first answer (LUD-06) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LnurlPay {
    /// Where invoices are asked for.
    pub callback: String,
    /// The least it takes, in millisats.
    pub min_sendable_msat: u64,
    /// The most it takes, in millisats.
    pub max_sendable_msat: u64,
    /// The metadata JSON string, as sent: a plain invoice's description hash commits to it.
    pub metadata: String,
    /// Whether it takes NIP-57 zaps.
    pub allows_nostr: bool,
    /// The key that signs its zap receipts, when it takes zaps.
    pub nostr_pubkey: Option<PublicKey>,
    /// The bech32 `lnurl1...` of the URL it was read from (a zap request's `lnurl` tag).
    pub lnurl: String,
}

/// An HTTP client for LNURL-pay (rustls, no OpenSSL). Cheap to clone.
#[derive(Debug, Clone)]
pub struct LnurlClient {
    http: reqwest::Client,
    allow_http: bool,
}

impl LnurlClient {
    /// A client that speaks HTTPS only.
    pub fn new() -> Result<Self, LnurlError> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LnurlError::Http(e.to_string()))?;
        Ok(Self {
            http,
            allow_http: false,
        })
    }

    /// Also accepts plain `http://` (and resolves lightning addresses over it): for a test
    /// server on 127.0.0.1, never for money on a network you do not control, where anyone on
    /// the path could swap the invoice or the zapper key.
    pub fn allow_insecure_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// The LUD-16 URL of `address` (`name@domain`): `https://domain/.well-known/lnurlp/name`
    /// (`http://` once [`allow_insecure_http`](Self::allow_insecure_http)).
    pub fn address_url(&self, address: &str) -> Result<String, LnurlError> {
        let invalid = || LnurlError::InvalidAddress(address.to_owned());
        let (name, domain) = address.trim().split_once('@').ok_or_else(invalid)?;
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.+".contains(c));
        let domain_ok = !domain.is_empty()
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
        if !name_ok || !domain_ok {
            return Err(invalid());
        }
        let scheme = if self.allow_http { "http" } else { "https" };
        Ok(format!("{scheme}://{domain}/.well-known/lnurlp/{name}"))
    }

    /// Reads the LNURL-pay service of a lightning address.
    pub async fn resolve_address(&self, address: &str) -> Result<LnurlPay, LnurlError> {
        let url = self.address_url(address)?;
        self.resolve(&url).await
    }

    /// Reads the LNURL-pay service at `url` (LUD-06's first request).
    pub async fn resolve(&self, url: &str) -> Result<LnurlPay, LnurlError> {
        self.check_url(url)?;
        let answer = self.get(url, &[]).await?;
        let tag = answer.get("tag").and_then(Value::as_str);
        if tag != Some("payRequest") {
            return Err(LnurlError::InvalidResponse(format!(
                "tag {tag:?}, not payRequest"
            )));
        }
        let text = |key: &str| {
            answer
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| LnurlError::InvalidResponse(format!("no {key}")))
        };
        let number = |key: &str| {
            answer
                .get(key)
                .and_then(Value::as_u64)
                .ok_or_else(|| LnurlError::InvalidResponse(format!("no {key}")))
        };
        let callback = text("callback")?;
        self.check_url(&callback)?;
        let allows_nostr = answer.get("allowsNostr").and_then(Value::as_bool) == Some(true);
        let nostr_pubkey = answer
            .get("nostrPubkey")
            .and_then(Value::as_str)
            .and_then(|k| PublicKey::from_hex(k).ok());
        Ok(LnurlPay {
            callback,
            min_sendable_msat: number("minSendable")?,
            max_sendable_msat: number("maxSendable")?,
            metadata: text("metadata")?,
            allows_nostr,
            nostr_pubkey,
            lnurl: encode_lnurl(url).map_err(|e| LnurlError::InvalidResponse(e.to_string()))?,
        })
    }

    /// An invoice for `amount_msat` from `pay` (LUD-06's second request), checked: its amount
    /// is `amount_msat` and its description hash is the SHA-256 of the service's metadata.
    pub async fn invoice(&self, pay: &LnurlPay, amount_msat: u64) -> Result<String, LnurlError> {
        in_range(pay, amount_msat)?;
        let amount = amount_msat.to_string();
        let answer = self.get(&pay.callback, &[("amount", &amount)]).await?;
        let bolt11 = invoice_of(&answer)?;
        check_invoice(
            &bolt11,
            amount_msat,
            Sha256::digest(pay.metadata.as_bytes()).into(),
        )?;
        Ok(bolt11)
    }

    /// An invoice that zaps `pay` (NIP-57 Appendix B): the signed `zap_request` goes to the
    /// callback with its amount and `pay`'s `lnurl`; the invoice must be for that amount and
    /// its description hash the SHA-256 of the zap request's JSON, as sent. Fails with
    /// [`LnurlError::NoNostr`] when the service does not take zaps.
    pub async fn zap_invoice(
        &self,
        pay: &LnurlPay,
        zap_request: &Event,
    ) -> Result<String, LnurlError> {
        if !pay.allows_nostr || pay.nostr_pubkey.is_none() {
            return Err(LnurlError::NoNostr);
        }
        let parsed = ZapRequest::from_event(zap_request)
            .map_err(|e| LnurlError::InvalidZapRequest(e.to_string()))?;
        let amount_msat = parsed.amount_msat.ok_or_else(|| {
            LnurlError::InvalidZapRequest("no amount tag: the callback needs one".into())
        })?;
        in_range(pay, amount_msat)?;
        let json = zap_request.as_json();
        let amount = amount_msat.to_string();
        let answer = self
            .get(
                &pay.callback,
                &[("amount", &amount), ("nostr", &json), ("lnurl", &pay.lnurl)],
            )
            .await?;
        let bolt11 = invoice_of(&answer)?;
        check_invoice(&bolt11, amount_msat, Sha256::digest(json.as_bytes()).into())?;
        Ok(bolt11)
    }

    fn check_url(&self, url: &str) -> Result<(), LnurlError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|_| LnurlError::InsecureUrl(url.to_owned()))?;
        match parsed.scheme() {
            "https" => Ok(()),
            "http" if self.allow_http => Ok(()),
            _ => Err(LnurlError::InsecureUrl(url.to_owned())),
        }
    }

    async fn get(&self, url: &str, query: &[(&str, &str)]) -> Result<Value, LnurlError> {
        let response = self
            .http
            .get(url)
            .query(query)
            .send()
            .await
            .map_err(|e| LnurlError::Http(e.to_string()))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| LnurlError::Http(e.to_string()))?;
        let answer: Option<Value> = serde_json::from_str(&body).ok();
        if let Some(reason) = answer.as_ref().and_then(refusal) {
            return Err(LnurlError::Refused(reason));
        }
        if !status.is_success() {
            return Err(LnurlError::Http(format!("{url} answered {status}")));
        }
        answer.ok_or_else(|| LnurlError::InvalidResponse("not JSON".into()))
    }
}

impl ProviderConfig {
    /// Trusts the zaps of the LNURL-pay service `pay` (from
    /// [`LnurlClient::resolve_address`] on the provider's lightning address): its
    /// `nostrPubkey` becomes the only trusted zapper and its LNURL the one zap requests must
    /// name. [`LnurlError::NoNostr`] when the service does not take zaps.
    pub fn zaps_via(mut self, pay: &LnurlPay) -> Result<Self, LnurlError> {
        let zapper = match (pay.allows_nostr, pay.nostr_pubkey) {
            (true, Some(key)) => key,
            _ => return Err(LnurlError::NoNostr),
        };
        self.zappers = vec![zapper];
        self.lnurl = Some(pay.lnurl.clone());
        Ok(self)
    }
}

/// The `reason` of a LUD-06 error answer.
fn refusal(answer: &Value) -> Option<String> {
    let status = answer.get("status").and_then(Value::as_str)?;
    status.eq_ignore_ascii_case("error").then(|| {
        answer
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given")
            .to_owned()
    })
}

fn in_range(pay: &LnurlPay, amount_msat: u64) -> Result<(), LnurlError> {
    if amount_msat < pay.min_sendable_msat || amount_msat > pay.max_sendable_msat {
        return Err(LnurlError::AmountOutOfRange {
            amount_msat,
            min_msat: pay.min_sendable_msat,
            max_msat: pay.max_sendable_msat,
        });
    }
    Ok(())
}

/// The `pr` of a callback's answer.
fn invoice_of(answer: &Value) -> Result<String, LnurlError> {
    answer
        .get("pr")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| LnurlError::InvalidResponse("no pr (invoice)".into()))
}

/// `bolt11` is for exactly `amount_msat` and commits to `description_hash`.
fn check_invoice(
    bolt11: &str,
    amount_msat: u64,
    description_hash: [u8; 32],
) -> Result<(), LnurlError> {
    let invoice = Invoice::parse(bolt11).map_err(|e| LnurlError::InvoiceMismatch(e.to_string()))?;
    if invoice.amount_msat() != Some(amount_msat) {
        return Err(LnurlError::InvoiceMismatch(format!(
            "amount {:?} msat, not {amount_msat}",
            invoice.amount_msat()
        )));
    }
    match invoice.description() {
        InvoiceDescription::Hash(hash) if hash == description_hash => Ok(()),
        _ => Err(LnurlError::InvoiceMismatch(
            "its description hash does not commit to what was asked".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lightning_addresses_resolve_over_https_unless_told() {
        let client = LnurlClient::new().unwrap();
        assert_eq!(
            client.address_url("alice@pay.example").unwrap(),
            "https://pay.example/.well-known/lnurlp/alice"
        );
        for bad in [
            "alice",
            "@pay.example",
            "alice@",
            "Al ice@pay.example",
            "a@b/c",
        ] {
            assert!(client.address_url(bad).is_err(), "{bad}");
        }
        let insecure = client.clone().allow_insecure_http();
        assert_eq!(
            insecure.address_url("bob@127.0.0.1:5000").unwrap(),
            "http://127.0.0.1:5000/.well-known/lnurlp/bob"
        );
        assert!(client.check_url("http://pay.example/cb").is_err());
        assert!(insecure.check_url("http://pay.example/cb").is_ok());
        assert!(client.check_url("ftp://pay.example/cb").is_err());
    }

    #[test]
    fn error_answers_are_refusals() {
        let answer = serde_json::json!({"status": "ERROR", "reason": "amount too small"});
        assert_eq!(refusal(&answer).as_deref(), Some("amount too small"));
        assert_eq!(refusal(&serde_json::json!({"pr": "lnbc1"})), None);
    }

    #[test]
    fn a_service_without_zaps_is_an_error_not_a_fallback() {
        let pay = LnurlPay {
            callback: "https://pay.example/cb".into(),
            min_sendable_msat: 1_000,
            max_sendable_msat: 1_000_000,
            metadata: "[]".into(),
            allows_nostr: false,
            nostr_pubkey: None,
            lnurl: encode_lnurl("https://pay.example/.well-known/lnurlp/a").unwrap(),
        };
        let config = ProviderConfig::new([nostr::Kind::from(5050)]);
        assert_eq!(config.zaps_via(&pay).unwrap_err(), LnurlError::NoNostr);
        assert!(matches!(
            in_range(&pay, 999),
            Err(LnurlError::AmountOutOfRange { .. })
        ));
    }
}
