//! Interop above 20 KiB over a real relay (`LocalRelay` on 127.0.0.1), with rust-nostr as the
//! other side: a plain nostr-sdk client gift-wraps 30 KiB of text to the `provider` example's
//! summariser and opens the gift-wrapped result with rust-nostr's own NIP-59 code, which
//! refuses NIP-44's extended length prefix ("message too long"). Before results to gift-wrapped
//! requests stopped repeating the request, this failed from about 20 KiB of input.
#![cfg(all(feature = "runtime", feature = "test-util"))]

mod support;

#[allow(unused_imports, clippy::duplicate_mod)]
#[path = "../examples/support/mod.rs"]
mod example;

use nostr_dvm::nostr::nips::nip59::UnwrappedGift;
use nostr_dvm::nostr::{EventBuilder, Filter, Keys, Kind, Tag};
use nostr_dvm::runtime::nostr_sdk::Client;
use support::{relay, wait_for, Running, WAIT};

/// About `len` bytes of English sentences, for the summariser to rank.
fn long_text(len: usize) -> String {
    let mut text = String::with_capacity(len + example::TEXT.len());
    let mut n = 0;
    while text.len() < len {
        n += 1;
        text.push_str(&format!("Part {n}. {} ", example::TEXT));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_nostr_client_opens_the_gift_wrapped_summary_of_30_kib() {
    let (relay, url) = relay().await;
    let provider_keys = Keys::generate();
    let config = example::summarise_config(std::slice::from_ref(&url), 0);
    let runtime =
        example::summarise_runtime(provider_keys.clone(), config, example::Clock::start());
    let provider = Running::start(runtime);

    let customer = Keys::generate();
    let client = Client::new(customer.clone());
    client.add_relay(&url).await.unwrap();
    client.connect().await;
    client.wait_for_connection(WAIT).await;
    let mut notifications = client.notifications();
    client
        .subscribe(
            Filter::new()
                .kind(Kind::GiftWrap)
                .pubkey(customer.public_key()),
            None,
        )
        .await
        .unwrap();

    let text = long_text(30 * 1024);
    assert!(text.len() >= 30 * 1024);
    let rumor = EventBuilder::new(Kind::from(example::SUMMARISE), "")
        .tags([
            Tag::parse(["i", &text, "text"]).unwrap(),
            Tag::parse(["param", "length", "1"]).unwrap(),
            Tag::public_key(provider_keys.public_key()),
        ])
        .build(customer.public_key());
    let mut rumor_for_id = rumor.clone();
    let job = rumor_for_id.id();
    let wrap = EventBuilder::gift_wrap(&customer, &provider_keys.public_key(), rumor, [])
        .await
        .unwrap();
    // Publish until the provider runtime's inbox subscription is up (it starts on its own task).
    let mut opened = None;
    for _ in 0..3 {
        client.send_event(&wrap).await.unwrap();
        let found = tokio::time::timeout(WAIT / 3, async {
            loop {
                let event = wait_for(&mut notifications, |e| Some(e.clone())).await;
                // rust-nostr's own NIP-59: every wrap the provider sends must open.
                let gift = UnwrappedGift::from_gift_wrap(&customer, &event)
                    .await
                    .expect("rust-nostr opens every gift wrap the provider sends");
                assert_eq!(gift.sender, provider_keys.public_key());
                if gift.rumor.kind == Kind::from(example::SUMMARISE + 1000) {
                    return gift.rumor;
                }
            }
        })
        .await;
        if let Ok(rumor) = found {
            opened = Some(rumor);
            break;
        }
    }
    let result = opened.expect("the gift-wrapped result arrives");
    assert!(result.tags.event_ids().any(|id| *id == job));
    assert!(!result.content.is_empty() && result.content.len() < 2_000);
    assert!(text.contains(result.content.trim()));
    assert!(
        !result
            .tags
            .iter()
            .any(|t| t.as_slice()[0] == "request" || t.as_slice()[0] == "i"),
        "the result refers to the request, it does not repeat it"
    );

    client.disconnect().await;
    provider.stop().await;
    relay.shutdown();
}
