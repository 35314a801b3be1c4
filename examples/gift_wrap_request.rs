//! Encrypt and gift-wrap a NIP-90 job request, then read it back as the provider would.
//!
//! Run with `cargo run --example gift_wrap_request`. No network, no clock: keys, time and
//! randomness are fixed, so every run prints the same bytes.

use nostr_dvm::encryption::{detect_scheme, Scheme};
use nostr_dvm::nip44::{self, ConversationKey};
use nostr_dvm::nip59;
use nostr_dvm::nostr::{Keys, Kind, Tag, Timestamp, UnsignedEvent};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = StdRng::seed_from_u64(2026);
    let now = Timestamp::from(1_763_800_000);
    let customer = Keys::generate_with_rng(&mut rng);
    let provider = Keys::generate_with_rng(&mut rng);
    println!("customer {}", customer.public_key());
    println!("provider {}", provider.public_key());

    // 1. A kind 5001 (summarisation) job request whose input and params are private: NIP-90
    //    moves the `i` and `param` tags into the content, encrypted to the provider.
    let private_tags = serde_json::json!([
        [
            "i",
            "Sats are the unit of account of the Lightning network. DVMs sell work for sats.",
            "text"
        ],
        ["param", "length", "1 sentence"],
    ]);
    let key = ConversationKey::derive(customer.secret_key(), &provider.public_key())?;
    let content = nip44::encrypt(&key, &private_tags.to_string(), &mut rng)?;
    let rumor = UnsignedEvent::new(
        customer.public_key(),
        now,
        Kind::from(5001),
        [
            Tag::parse(["p".to_owned(), provider.public_key().to_hex()])?,
            Tag::parse(["encrypted"])?,
        ],
        content,
    );
    println!(
        "request content scheme: {:?}",
        detect_scheme(&rumor.content)
    );

    // 2. Gift-wrap it: the relay sees a kind 1059 from a one-time key, tagged to the provider.
    let wrap = nip59::gift_wrap(&customer, &provider.public_key(), rumor, now, &mut rng)?;
    println!(
        "gift wrap: kind {} from one-time key {}, created_at {} (now {})",
        wrap.kind.as_u16(),
        wrap.pubkey,
        wrap.created_at.as_secs(),
        now.as_secs()
    );

    // 3. The provider unwraps: wrap and seal signatures, seal author == rumor author, rumor id.
    let gift = nip59::unwrap(&provider, &wrap)?;
    assert_eq!(gift.sender, customer.public_key());
    let request = gift.rumor;
    println!(
        "unwrapped kind {} request from {}",
        request.kind.as_u16(),
        gift.sender
    );

    // 4. ...and decrypts the private tags with the scheme the request used, to reply in kind.
    let scheme = detect_scheme(&request.content).ok_or("unknown scheme")?;
    assert_eq!(scheme, Scheme::Nip44);
    let key = ConversationKey::derive(provider.secret_key(), &gift.sender)?;
    let tags: serde_json::Value = serde_json::from_str(&nip44::decrypt(&key, &request.content)?)?;
    println!("private tags ({scheme}): {tags}");
    assert_eq!(tags, private_tags);
    println!("ok: the provider read exactly what the customer sent");
    Ok(())
}
