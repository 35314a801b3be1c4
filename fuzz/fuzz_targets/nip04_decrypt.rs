//! NIP-04 decrypt on hostile input.
//!
//! - `Raw`: any string as the payload (separator, base64, IV and length checks);
//! - `Encoded`: any ciphertext and IV bytes, base64-encoded, so AES-CBC runs and the PKCS#7 and
//!   UTF-8 checks see attacker-chosen plaintext blocks.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use nostr_dvm::nip04::{self, SharedKey};

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(String),
    Encoded { ciphertext: Vec<u8>, iv: Vec<u8> },
}

fuzz_target!(|input: Input| {
    let key = SharedKey::from_bytes([0x24; 32]);
    let engine = base64::engine::general_purpose::STANDARD;
    let payload = match input {
        Input::Raw(s) => s,
        Input::Encoded { ciphertext, iv } => {
            format!("{}?iv={}", engine.encode(ciphertext), engine.encode(iv))
        }
    };
    if let Ok(text) = nip04::decrypt_with_shared_key(&key, &payload) {
        let again = nip04::encrypt_with_shared_key_and_iv(&key, &text, &[1; 16]);
        assert_eq!(nip04::decrypt_with_shared_key(&key, &again).unwrap(), text);
    }
});
