//! NIP-44 v2 decrypt on hostile input.
//!
//! Three shapes, so the fuzzer reaches every check and not only the first:
//! - `Raw`: any string as the payload (length, `#`, base64, version checks);
//! - `Decoded`: any bytes, base64-encoded (version, length and MAC checks);
//! - `Authenticated`: any padded body, encrypted and MACed with the right keys, so the MAC
//!   passes and the length prefix, padding and UTF-8 checks see attacker-chosen bytes.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use hkdf::hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use nostr_dvm::nip44::{self, ConversationKey};
use sha2::Sha256;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(String),
    Decoded(Vec<u8>),
    Authenticated { nonce: [u8; 32], body: Vec<u8> },
}

fuzz_target!(|input: Input| {
    let key = ConversationKey::from_bytes([0x42; 32]);
    let engine = base64::engine::general_purpose::STANDARD;
    let payload = match input {
        Input::Raw(s) => s,
        Input::Decoded(bytes) => engine.encode(bytes),
        Input::Authenticated { nonce, mut body } => {
            let keys = key.message_keys(&nonce);
            let mut cipher =
                chacha20::ChaCha20::new(keys.chacha_key().into(), keys.chacha_nonce().into());
            cipher.apply_keystream(&mut body);
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(keys.hmac_key()).unwrap();
            mac.update(&nonce);
            mac.update(&body);
            let mut raw = vec![nip44::VERSION];
            raw.extend_from_slice(&nonce);
            raw.extend_from_slice(&body);
            raw.extend_from_slice(&mac.finalize().into_bytes());
            engine.encode(raw)
        }
    };
    if let Ok(text) = nip44::decrypt(&key, &payload) {
        // Whatever decrypts must re-encrypt to a payload that decrypts to the same text.
        // (the extended prefix, as what was read may be longer than 65,535 bytes)
        let again = nip44::encrypt_with_nonce_and_prefix(
            &key,
            &text,
            &[7; 32],
            nip44::LengthPrefix::Extended,
        )
        .unwrap();
        assert_eq!(nip44::decrypt(&key, &again).unwrap(), text);
    }
});
