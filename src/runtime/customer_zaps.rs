//! How a [`CustomerRuntime`](super::CustomerRuntime) with a wallet and an [`LnurlClient`]
//! zaps (feature `lnurl`): the provider's LNURL-pay service, found from its profile.
//!
//! NIP-57 Appendix A: the recipient's lightning address is the `lud16` (or its LNURL the
//! `lud06`) of its kind-0 profile. The profile must be signed by the provider (checked here,
//! whatever the relay says), and the service must take zaps (`allowsNostr` and a
//! `nostrPubkey`): otherwise the zap is refused with a reason, never paid some other way.

use std::time::Duration;

use nostr::{Event, Filter, Kind, PublicKey};
use nostr_sdk::Client;
use serde_json::Value;

use super::lnurl::{LnurlClient, LnurlPay};
use crate::nip57::decode_lnurl;

/// How long the relays may take to hand over a provider's profile.
const PROFILE_TIMEOUT: Duration = Duration::from_secs(5);

/// The LNURL-pay service of `provider`, from its newest kind-0 profile on the relays.
pub(crate) async fn pay_service(
    client: &Client,
    lnurl: &LnurlClient,
    provider: PublicKey,
) -> Result<LnurlPay, String> {
    let filter = Filter::new().kind(Kind::Metadata).author(provider).limit(5);
    let profiles = client
        .fetch_events(filter, PROFILE_TIMEOUT)
        .await
        .map_err(|e| format!("cannot fetch the profile of {provider}: {e}"))?;
    let profile = profiles
        .into_iter()
        .filter(|event| event.pubkey == provider && event.kind == Kind::Metadata)
        .filter(|event| event.verify().is_ok())
        .max_by_key(|event| event.created_at)
        .ok_or_else(|| format!("provider {provider} has no profile (kind 0) on the relays"))?;
    let pay = resolve_profile(lnurl, &profile).await?;
    if !pay.allows_nostr || pay.nostr_pubkey.is_none() {
        return Err(format!(
            "the lightning address of provider {provider} does not take zaps (no allowsNostr \
             and nostrPubkey)"
        ));
    }
    Ok(pay)
}

/// The LNURL-pay service a profile names: `lud16` first, then `lud06`.
async fn resolve_profile(lnurl: &LnurlClient, profile: &Event) -> Result<LnurlPay, String> {
    let fields: Value = serde_json::from_str(&profile.content)
        .map_err(|e| format!("the provider's profile is not JSON: {e}"))?;
    let text = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    if let Some(address) = text("lud16") {
        return lnurl
            .resolve_address(address)
            .await
            .map_err(|e| format!("lightning address {address}: {e}"));
    }
    if let Some(bech32) = text("lud06") {
        let url = decode_lnurl(bech32)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| format!("lud06 {bech32} is not an LNURL"))?;
        return lnurl
            .resolve(&url)
            .await
            .map_err(|e| format!("LNURL {url}: {e}"));
    }
    Err("the provider's profile has no lightning address (lud16) or LNURL (lud06)".into())
}
