//! NIP-59 unwrap on hostile gift wraps.
//!
//! The fuzzer chooses what goes inside each layer, and the layers around it are made properly
//! (encrypted to the receiver, signed), so every check is reached:
//! - `Wrap`: an arbitrary wrap event (kind, tags, content), signed by a one-time key;
//! - `Seal`: an arbitrary seal JSON string, properly encrypted inside a valid wrap;
//! - `Rumor`: an arbitrary rumor JSON string inside a valid seal (signed by `sender_is_author`
//!   the sender or someone else) inside a valid wrap.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nostr_dvm::nip44::{self, ConversationKey};
use nostr_dvm::nip59;
use nostr_dvm::nostr::{JsonUtil, Keys, Kind, Tag, Timestamp};
use nostr_dvm::testing::{keys_from_seed, sign};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[derive(Arbitrary, Debug)]
enum Input {
    Wrap {
        kind: u16,
        tags: Vec<Vec<String>>,
        content: String,
    },
    Seal {
        json: String,
    },
    Rumor {
        json: String,
        seal_tags: Vec<Vec<String>>,
        seal_kind: u16,
    },
}

fn tags(raw: Vec<Vec<String>>) -> Vec<Tag> {
    raw.into_iter()
        .take(8)
        .filter_map(|t| Tag::parse(t).ok())
        .collect()
}

fuzz_target!(|input: Input| {
    let mut rng = StdRng::seed_from_u64(3);
    let receiver = keys_from_seed(7);
    let sender = keys_from_seed(8);
    let one_time = keys_from_seed(9);
    let now = Timestamp::from(1_760_000_000);
    let p_tag = Tag::parse(["p".to_owned(), receiver.public_key().to_hex()]).unwrap();
    let wrap_around = |seal_json: &str, rng: &mut StdRng| {
        let key = ConversationKey::derive(one_time.secret_key(), &receiver.public_key()).unwrap();
        let content = nip44::encrypt(&key, seal_json, rng).unwrap_or_default();
        sign(
            &one_time,
            Kind::from(1059),
            vec![p_tag.clone()],
            &content,
            now,
            rng,
        )
    };
    let wrap = match input {
        Input::Wrap {
            kind,
            tags: t,
            content,
        } => sign(
            &one_time,
            Kind::from(kind),
            tags(t),
            &content,
            now,
            &mut rng,
        ),
        Input::Seal { json } => wrap_around(&json, &mut rng),
        Input::Rumor {
            json,
            seal_tags,
            seal_kind,
        } => {
            let author: &Keys = if seal_kind % 2 == 0 {
                &sender
            } else {
                &one_time
            };
            let key = ConversationKey::derive(author.secret_key(), &receiver.public_key()).unwrap();
            let content = nip44::encrypt(&key, &json, &mut rng).unwrap_or_default();
            let kind = if seal_kind % 3 == 0 { seal_kind } else { 13 };
            let seal = sign(
                author,
                Kind::from(kind),
                tags(seal_tags),
                &content,
                now,
                &mut rng,
            );
            wrap_around(&seal.as_json(), &mut rng)
        }
    };
    if let Ok(gift) = nip59::unwrap(&receiver, &wrap) {
        // What unwraps is consistent: the seal's author wrote the rumor, and its id checks.
        assert_eq!(gift.sender, gift.rumor.pubkey);
        let mut rumor = gift.rumor.clone();
        rumor.id = None;
        assert_eq!(rumor.id(), gift.rumor.id.unwrap());
    }
});
