//! What a state machine asks its host to do on relays: one type for the provider and the
//! customer, so one host function serves both.

use nostr::{Event, Filter};
use serde::{Deserialize, Serialize};

/// A relay operation for the host: publish an event, open or replace a subscription, or close
/// one. The provider's and the customer's `Output::Relay` carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RelayCommand {
    /// Publish this signed event on these relays.
    ///
    /// From the provider: its own relays, after at most
    /// [`ProviderConfig::max_request_relays`](crate::provider::ProviderConfig::max_request_relays)
    /// of the relays the request names (none by default). From the customer: its configured
    /// relays.
    Publish {
        /// The event.
        event: Event,
        /// Where to publish it.
        relays: Vec<String>,
    },
    /// Open, or replace, the subscription `id` with `filter` on every relay the host uses.
    Subscribe {
        /// The subscription id; a later `Subscribe` with the same id replaces it.
        id: String,
        /// What to subscribe to.
        filter: Filter,
    },
    /// Close the subscription `id`.
    Unsubscribe(String),
}
