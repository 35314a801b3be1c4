//! Randomness is secure by default: machines built as the docs show never share a stream.
#![cfg(feature = "test-util")]

use nostr_dvm::customer::{Customer, CustomerConfig, Delivery, Output};
use nostr_dvm::encryption::Scheme;
use nostr_dvm::nip90::{JobInput, JobRequest};
use nostr_dvm::nostr::{Event, Kind, Timestamp};
use nostr_dvm::provider::{Output as ProviderOutput, Provider, ProviderConfig};
use nostr_dvm::relay::RelayCommand;
use nostr_dvm::rng::SeedSource;
use nostr_dvm::testing::keys_from_seed;

const T0: u64 = 1_760_000_000;

/// The events a customer publishes for one submission.
fn submit(customer: &mut Customer, delivery: Delivery) -> Event {
    let request = JobRequest::builder(Kind::from(5050)).input(JobInput::text("same text"));
    customer
        .submit(Timestamp::from(T0), request, delivery)
        .unwrap();
    let mut published = None;
    while let Some(out) = customer.poll_output() {
        if let Output::Relay(RelayCommand::Publish { event, .. }) = out {
            published = Some(event);
        }
    }
    published.unwrap()
}

/// The 24-byte nonce of a NIP-44 v2 payload (after the version byte).
fn nip44_nonce(payload: &str) -> Vec<u8> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .unwrap();
    raw[1..33].to_vec()
}

#[test]
fn two_default_customers_share_no_nonce_and_no_wrap_key() {
    let provider = keys_from_seed(2).public_key();
    let config = CustomerConfig::new(["wss://relay.example"]);
    assert_eq!(config.seed, SeedSource::OperatingSystem);
    // Two customers from clones of one config, with the same key: the worst case.
    let mut a = Customer::new(keys_from_seed(1), config.clone(), Timestamp::from(T0));
    let mut b = Customer::new(keys_from_seed(1), config, Timestamp::from(T0));

    let ea = submit(&mut a, Delivery::Encrypted(provider, Scheme::Nip44));
    let eb = submit(&mut b, Delivery::Encrypted(provider, Scheme::Nip44));
    assert_ne!(nip44_nonce(&ea.content), nip44_nonce(&eb.content));

    let wa = submit(&mut a, Delivery::GiftWrap(provider));
    let wb = submit(&mut b, Delivery::GiftWrap(provider));
    assert_ne!(wa.pubkey, wb.pubkey, "gift-wrap one-time keys must differ");
    assert_ne!(wa.sig, wb.sig);
}

#[test]
fn a_deterministic_customer_is_reproducible() {
    let provider = keys_from_seed(2).public_key();
    let mut config = CustomerConfig::new(["wss://relay.example"]);
    config.seed = SeedSource::Deterministic([9; 32]);
    let mut a = Customer::new(keys_from_seed(1), config.clone(), Timestamp::from(T0));
    let mut b = Customer::new(keys_from_seed(1), config, Timestamp::from(T0));
    let wa = submit(&mut a, Delivery::GiftWrap(provider));
    let wb = submit(&mut b, Delivery::GiftWrap(provider));
    assert_eq!(wa, wb);
}

/// The signatures of the first events two providers publish for the same announcement.
fn announcement(provider: &mut Provider) -> Event {
    provider.announce(Timestamp::from(T0)).unwrap();
    let mut event = None;
    while let Some(out) = provider.poll_output() {
        if let ProviderOutput::Relay(RelayCommand::Publish { event: e, .. }) = out {
            event = Some(e);
        }
    }
    event.unwrap()
}

#[test]
fn providers_from_one_config_and_their_restores_share_no_stream() {
    let keys = keys_from_seed(3);
    let config = ProviderConfig::new([Kind::from(5050)])
        .announcement(nostr_dvm::nip89::HandlerMetadata::default());
    let now = Timestamp::from(T0);
    let mut a = Provider::new(keys.clone(), config.clone(), now);
    let mut b = Provider::new(keys.clone(), config.clone(), now);
    let snapshot = a.snapshot();
    let sa = announcement(&mut a);
    let sb = announcement(&mut b);
    // Same key, same content, same time: only the signature's aux randomness differs.
    assert_eq!(sa.id, sb.id);
    assert_ne!(sa.sig, sb.sig);
    // A restore of the snapshot taken before `a` signed must not sign with the same nonce.
    let mut restored = Provider::restore(keys.clone(), config.clone(), snapshot.clone()).unwrap();
    assert_ne!(announcement(&mut restored).sig, sa.sig);
    let mut again = Provider::restore(keys, config, snapshot).unwrap();
    assert_ne!(announcement(&mut again).sig, sa.sig);
}

#[test]
fn a_deterministic_provider_restores_byte_for_byte() {
    let keys = keys_from_seed(3);
    let config = ProviderConfig::new([Kind::from(5050)])
        .announcement(nostr_dvm::nip89::HandlerMetadata::default())
        .deterministic_seed([4; 32]);
    let mut a = Provider::new(keys.clone(), config.clone(), Timestamp::from(T0));
    let snapshot = a.snapshot();
    let first = announcement(&mut a);
    let mut restored = Provider::restore(keys, config, snapshot).unwrap();
    assert_eq!(announcement(&mut restored), first);
}
