//! Integration tests for the legacy NIP-04 module.
//!
//! The `nostr` crate's own NIP-04 implementation (a dev-dependency) serves as an independent
//! oracle: with the same seeded RNG both must produce the very same payload, and each must read
//! the other's output.
#![cfg(feature = "nip04")]

use aes::cipher::block_padding::{NoPadding, Pkcs7};
use aes::cipher::{BlockModeEncrypt, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use nostr::{Keys, PublicKey, SecretKey};
use nostr_dvm::nip04::{self, Error, SharedKey, MAX_PAYLOAD_LEN};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

fn keys_from_seed(seed: u8) -> Keys {
    let mut bytes = [seed; 32];
    bytes[0] = 0x01;
    Keys::new(SecretKey::from_slice(&bytes).expect("valid secret key"))
}

fn random_keys(rng: &mut StdRng) -> Keys {
    loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        if let Ok(sk) = SecretKey::from_slice(&bytes) {
            return Keys::new(sk);
        }
    }
}

/// A random string mixing ASCII, multi-byte and astral characters.
fn random_text(rng: &mut StdRng, chars: usize) -> String {
    const POOL: &[char] = &[
        'a',
        'Z',
        '0',
        ' ',
        '\n',
        '?',
        '=',
        '/',
        '+',
        '"',
        '\0',
        'é',
        'ß',
        'ж',
        '中',
        '文',
        '😀',
        '🦀',
        '\u{7f}',
        '\u{10ffff}',
    ];
    (0..chars)
        .map(|_| POOL[rng.gen_range(0..POOL.len())])
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Encrypts raw bytes (not necessarily UTF-8) the NIP-04 way, straight through `aes` + `cbc`.
fn encrypt_raw_bytes(key: &SharedKey, bytes: &[u8], iv: &[u8; 16]) -> String {
    let ciphertext = cbc::Encryptor::<aes::Aes256>::new(&(*key.as_bytes()).into(), &(*iv).into())
        .encrypt_padded_vec::<Pkcs7>(bytes);
    format!("{}?iv={}", b64(&ciphertext), b64(iv))
}

// ----------------------------------------------------------------------------------------------
// Known answers

/// The vector from rust-nostr's NIP-04 unit test: two keys, a payload, its plaintext.
const RN_SENDER_SK: &str = "6b911fd37cdf5c81d4c0adb1ab7fa822ed253ab0ad9aa18d77257c88b29b718e";
const RN_RECEIVER_SK: &str = "7b911fd37cdf5c81d4c0adb1ab7fa822ed253ab0ad9aa18d77257c88b29b718e";
const RN_PAYLOAD: &str = "dJc+WbBgaFCD2/kfg1XCWJParplBDxnZIdJGZ6FCTOg=?iv=M6VxRPkMZu7aIdD+10xPuw==";
const RN_PLAINTEXT: &str = "Saturn, bringer of old age";

#[test]
fn known_answer_decrypts_from_both_sides() {
    let sender = Keys::new(SecretKey::from_hex(RN_SENDER_SK).unwrap());
    let receiver = Keys::new(SecretKey::from_hex(RN_RECEIVER_SK).unwrap());

    let by_receiver = nip04::decrypt(receiver.secret_key(), &sender.public_key(), RN_PAYLOAD);
    assert_eq!(by_receiver.as_deref(), Ok(RN_PLAINTEXT));
    let by_sender = nip04::decrypt(sender.secret_key(), &receiver.public_key(), RN_PAYLOAD);
    assert_eq!(by_sender.as_deref(), Ok(RN_PLAINTEXT));
}

#[test]
fn known_answer_is_reproduced_byte_for_byte_with_its_iv() {
    let sender = Keys::new(SecretKey::from_hex(RN_SENDER_SK).unwrap());
    let receiver = Keys::new(SecretKey::from_hex(RN_RECEIVER_SK).unwrap());
    let (_, encoded_iv) = RN_PAYLOAD.split_once("?iv=").unwrap();
    let iv: [u8; 16] = STANDARD.decode(encoded_iv).unwrap().try_into().unwrap();

    let payload = nip04::encrypt_with_iv(
        sender.secret_key(),
        &receiver.public_key(),
        RN_PLAINTEXT,
        &iv,
    )
    .unwrap();
    assert_eq!(payload, RN_PAYLOAD);

    // The shared-key path gives the same bytes from the other side.
    let key = nip04::shared_key(receiver.secret_key(), &sender.public_key()).unwrap();
    assert_eq!(
        nip04::encrypt_with_shared_key_and_iv(&key, RN_PLAINTEXT, &iv),
        RN_PAYLOAD
    );
}

/// A NIP-47 `pay_invoice` request encrypted by a Dart implementation (dartstr's NIP-04
/// example): real traffic from a third implementation.
#[test]
fn known_answer_from_a_dart_client() {
    let sk =
        SecretKey::from_hex("9bdc0737ecc9b7871b21537cc707c972389c829028f9fa8e6c95b331768ee4ac")
            .unwrap();
    let pk =
        PublicKey::from_hex("7a29579ddcb698db1b93f7078c5020dc932de36cba53fedd6a0746005db7fd7f")
            .unwrap();
    let payload = concat!(
        "zdiUBdrfA+HNM4qF67oKN2HcUv4kxnlRkpjHP5mqd9UrFuoSbwGAXQeTBUUrYO1svYBvhnpBK4s5XNVvXmvQ4yuji",
        "+v7KOwrDYjQzFveXLXXlyoFPakp5CD2BUdGkNn3pVzodWD84dgmfuuUDNYNfmm8EyjVyGBE1TmiBHawOI0MkhZ+uH",
        "f4VGhO6EIvhunLYQITe4YQvTRHiNlO4hoHh9kOjQLxYEY9AEkZ2EEPcfYpSkuYqUnvwUii7qzPJWU8o7PI86k4R3I",
        "ryEf7hnN1DvZgZxRiWrwJwXP7P9PTiaorzjsEZWrKsus+65vU2e1F6L0jOPX0f5+/lZkSwF7Qgq4YZc/OlyJSqMDr",
        "z0SoMw0NbugGYOU/DxO4pP75o0NPIeG6lyr4jA4VsXMyA2NiNfFQRlGbRuk/qF8nmG4we70=",
        "?iv=yIIcMRiYu41Qlztn0asP3g=="
    );
    let expected = concat!(
        r#"{"method":"pay_invoice","params":{"invoice":"lntbs210n1pn83jurpp5lgvkz8w6y6vws7urs97ew"#,
        "kz5j9dmlfcsqksrw0egjt34ml6yezgsdqqcqzzsxqyz5vqsp5yke8eagt7uynk30adlq707rtq496lvrn3nxxs80le",
        "vkfyfczd7uq9qyyssqmhx239fvsulum8nekent00v6x7nfgv9peuy6q4r0pakmc63cqkm8vjjrx4nk2e0z0nekzzqk",
        r#"hxsdt5jv2vfnwu0sn9cl09hgfedzmyspzje739"}}"#
    );
    let plaintext = nip04::decrypt(&sk, &pk, payload).unwrap();
    assert_eq!(plaintext, expected);
    let json: serde_json::Value = serde_json::from_str(&plaintext).unwrap();
    assert_eq!(json["method"], "pay_invoice");
}

// ----------------------------------------------------------------------------------------------
// Round trips

#[test]
fn round_trip_in_both_directions() {
    let alice = keys_from_seed(0xa1);
    let bob = keys_from_seed(0xb2);
    let mut rng = StdRng::seed_from_u64(1);

    let to_bob = nip04::encrypt(alice.secret_key(), &bob.public_key(), "hi bob", &mut rng).unwrap();
    assert_eq!(
        nip04::decrypt(bob.secret_key(), &alice.public_key(), &to_bob).unwrap(),
        "hi bob"
    );
    // The sender can read its own message: the key is symmetric.
    assert_eq!(
        nip04::decrypt(alice.secret_key(), &bob.public_key(), &to_bob).unwrap(),
        "hi bob"
    );

    let to_alice = nip04::encrypt(
        bob.secret_key(),
        &alice.public_key(),
        "hi alice ✓",
        &mut rng,
    )
    .unwrap();
    assert_eq!(
        nip04::decrypt(alice.secret_key(), &bob.public_key(), &to_alice).unwrap(),
        "hi alice ✓"
    );

    // A third party cannot.
    let eve = keys_from_seed(0xe3);
    assert!(nip04::decrypt(eve.secret_key(), &alice.public_key(), &to_bob).is_err());
}

#[test]
fn payload_has_the_nip04_shape() {
    let alice = keys_from_seed(1);
    let bob = keys_from_seed(2);
    let iv = [0x5a; 16];
    for (text, blocks) in [
        ("", 1),
        ("a", 1),
        ("0123456789abcde", 1),
        ("0123456789abcdef", 2),
    ] {
        let payload =
            nip04::encrypt_with_iv(alice.secret_key(), &bob.public_key(), text, &iv).unwrap();
        let (ct, encoded_iv) = payload.split_once("?iv=").unwrap();
        assert_eq!(encoded_iv, b64(&iv));
        assert_eq!(STANDARD.decode(ct).unwrap().len(), 16 * blocks, "{text:?}");
        assert_eq!(
            nip04::decrypt(bob.secret_key(), &alice.public_key(), &payload).unwrap(),
            text
        );
    }
}

#[test]
fn encrypt_draws_its_iv_from_the_rng() {
    let alice = keys_from_seed(1);
    let bob = keys_from_seed(2);
    let a = nip04::encrypt(
        alice.secret_key(),
        &bob.public_key(),
        "same",
        &mut StdRng::seed_from_u64(9),
    )
    .unwrap();
    let b = nip04::encrypt(
        alice.secret_key(),
        &bob.public_key(),
        "same",
        &mut StdRng::seed_from_u64(9),
    )
    .unwrap();
    let c = nip04::encrypt(
        alice.secret_key(),
        &bob.public_key(),
        "same",
        &mut StdRng::seed_from_u64(10),
    )
    .unwrap();
    assert_eq!(a, b, "same seed, same payload");
    assert_ne!(a, c, "another seed, another IV");

    let mut iv = [0u8; 16];
    StdRng::seed_from_u64(9).fill_bytes(&mut iv);
    assert!(a.ends_with(&format!("?iv={}", b64(&iv))));
}

#[test]
fn shared_key_is_symmetric_and_drives_the_same_cipher() {
    let alice = keys_from_seed(3);
    let bob = keys_from_seed(4);
    let ab = nip04::shared_key(alice.secret_key(), &bob.public_key()).unwrap();
    let ba = nip04::shared_key(bob.secret_key(), &alice.public_key()).unwrap();
    assert_eq!(ab, ba);
    assert_eq!(SharedKey::from_bytes(*ab.as_bytes()), ab);
    assert_ne!(
        ab,
        nip04::shared_key(alice.secret_key(), &keys_from_seed(5).public_key()).unwrap()
    );

    let payload = nip04::encrypt_with_shared_key(&ab, "cached", &mut StdRng::seed_from_u64(2));
    assert_eq!(
        nip04::decrypt_with_shared_key(&ba, &payload).unwrap(),
        "cached"
    );
    assert_eq!(
        nip04::decrypt(bob.secret_key(), &alice.public_key(), &payload).unwrap(),
        "cached"
    );
}

#[test]
fn shared_key_debug_is_redacted() {
    let key = SharedKey::from_bytes([0xab; 32]);
    let debug = format!("{key:?}");
    assert!(!debug.to_lowercase().contains("ab"), "{debug}");
    assert!(debug.contains("redacted"));
}

// ----------------------------------------------------------------------------------------------
// Differential tests against the `nostr` crate

#[test]
fn same_rng_gives_the_same_payload_as_nostr() {
    let mut rng = StdRng::seed_from_u64(0x04);
    let mut texts = vec![
        String::new(),
        "a".to_owned(),
        "exactly sixteen!".to_owned(),
        "ünïcödé 中文 😀🦀".to_owned(),
        "x".repeat(100 * 1024),
    ];
    for len in [1, 15, 16, 17, 31, 32, 33, 200, 5000] {
        texts.push(random_text(&mut rng, len));
    }
    texts.push(random_text(&mut rng, 60_000)); // over 100 KB of UTF-8

    for text in &texts {
        let sender = random_keys(&mut rng);
        let receiver = random_keys(&mut rng);
        let seed = rng.next_u64();

        let ours = nip04::encrypt(
            sender.secret_key(),
            &receiver.public_key(),
            text,
            &mut StdRng::seed_from_u64(seed),
        )
        .unwrap();
        let theirs = nostr::nips::nip04::encrypt_with_rng(
            &mut StdRng::seed_from_u64(seed),
            sender.secret_key(),
            &receiver.public_key(),
            text,
        )
        .unwrap();
        assert_eq!(
            ours,
            theirs,
            "payloads differ for a {}-byte text",
            text.len()
        );
    }
}

#[test]
fn reads_nostr_output_and_nostr_reads_ours() {
    let mut rng = StdRng::seed_from_u64(0x0404);
    for round in 0..64 {
        let sender = random_keys(&mut rng);
        let receiver = random_keys(&mut rng);
        let len = match round % 4 {
            0 => 0,
            1 => rng.gen_range(1..64),
            2 => rng.gen_range(64..2048),
            _ => rng.gen_range(2048..8192),
        };
        let text = random_text(&mut rng, len);

        // nostr -> us, with nostr's own (OS) randomness.
        let theirs =
            nostr::nips::nip04::encrypt(sender.secret_key(), &receiver.public_key(), &text)
                .unwrap();
        assert_eq!(
            nip04::decrypt(receiver.secret_key(), &sender.public_key(), &theirs).unwrap(),
            text
        );

        // us -> nostr.
        let ours =
            nip04::encrypt(sender.secret_key(), &receiver.public_key(), &text, &mut rng).unwrap();
        assert_eq!(
            nostr::nips::nip04::decrypt(receiver.secret_key(), &sender.public_key(), &ours)
                .unwrap(),
            text
        );
    }
}

#[test]
fn long_message_round_trips_with_nostr() {
    let alice = keys_from_seed(7);
    let bob = keys_from_seed(8);
    let mut rng = StdRng::seed_from_u64(100);
    let text = random_text(&mut rng, 60_000);
    assert!(text.len() > 100_000);

    let ours = nip04::encrypt(alice.secret_key(), &bob.public_key(), &text, &mut rng).unwrap();
    assert_eq!(
        nostr::nips::nip04::decrypt(bob.secret_key(), &alice.public_key(), &ours).unwrap(),
        text
    );
    let theirs = nostr::nips::nip04::encrypt(alice.secret_key(), &bob.public_key(), &text).unwrap();
    assert_eq!(
        nip04::decrypt(bob.secret_key(), &alice.public_key(), &theirs).unwrap(),
        text
    );
}

// ----------------------------------------------------------------------------------------------
// Errors

struct Fixture {
    alice: Keys,
    bob: Keys,
    key: SharedKey,
}

fn fixture() -> Fixture {
    let alice = keys_from_seed(0x0a);
    let bob = keys_from_seed(0x0b);
    let key = nip04::shared_key(alice.secret_key(), &bob.public_key()).unwrap();
    Fixture { alice, bob, key }
}

impl Fixture {
    fn decrypt(&self, payload: &str) -> Result<String, Error> {
        nip04::decrypt(self.bob.secret_key(), &self.alice.public_key(), payload)
    }

    fn encrypt(&self, text: &str, iv: &[u8; 16]) -> String {
        nip04::encrypt_with_iv(self.alice.secret_key(), &self.bob.public_key(), text, iv).unwrap()
    }
}

const VALID_IV_B64: &str = "AAAAAAAAAAAAAAAAAAAAAA==";

#[test]
fn missing_iv_separator() {
    let f = fixture();
    assert_eq!(f.decrypt(""), Err(Error::MissingIv));
    assert_eq!(f.decrypt("dGVzdA=="), Err(Error::MissingIv));
    assert_eq!(f.decrypt("dGVzdA==?IV=AAAA"), Err(Error::MissingIv));
    assert_eq!(f.decrypt("dGVzdA==iv=AAAA"), Err(Error::MissingIv));
    // A NIP-44 payload is not a NIP-04 one.
    assert_eq!(
        f.decrypt("AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        Err(Error::MissingIv)
    );
}

#[test]
fn invalid_base64_in_the_ciphertext() {
    let f = fixture();
    for ct in [
        "@@@@",
        "dGVzdA",
        "dGVzdA=",
        "dGV zdA==",
        "AAAAAAAAAAAAAAAAAAAAAA==\n",
        "-_-_",
    ] {
        assert_eq!(
            f.decrypt(&format!("{ct}?iv={VALID_IV_B64}")),
            Err(Error::InvalidBase64),
            "{ct:?}"
        );
    }
}

#[test]
fn invalid_base64_in_the_iv() {
    let f = fixture();
    let ct = b64(&[0u8; 16]);
    // Unpadded, bad alphabet, URL-safe alphabet, embedded space.
    for iv in [
        "AAAAAAAAAAAAAAAAAAAAAA",
        "@@@@@@@@@@@@@@@@@@@@@@==",
        "____________________AA==",
        "AAAAAAAAAAAA AAAAAAAAA==",
    ] {
        assert_eq!(
            f.decrypt(&format!("{ct}?iv={iv}")),
            Err(Error::InvalidBase64),
            "{iv:?}"
        );
    }
}

#[test]
fn iv_of_the_wrong_length() {
    let f = fixture();
    let ct = b64(&[0u8; 16]);
    for len in [0usize, 1, 12, 15, 17, 18, 32, 1000] {
        let payload = format!("{ct}?iv={}", b64(&vec![0u8; len]));
        assert_eq!(f.decrypt(&payload), Err(Error::InvalidIvLength), "{len}");
    }
    // An over-long IV part is refused on its length alone, before any decoding: this one is
    // not even base64.
    assert_eq!(
        f.decrypt(&format!("{ct}?iv={}", "!".repeat(25))),
        Err(Error::InvalidIvLength)
    );
    // A repeated separator leaves an IV part no 16-byte IV has.
    assert_eq!(
        f.decrypt(&format!("{ct}?iv={VALID_IV_B64}?iv={VALID_IV_B64}")),
        Err(Error::InvalidIvLength)
    );
}

#[test]
fn ciphertext_of_the_wrong_length() {
    let f = fixture();
    for len in [0usize, 1, 15, 17, 31, 33, 100] {
        let payload = format!("{}?iv={VALID_IV_B64}", b64(&vec![7u8; len]));
        assert_eq!(
            f.decrypt(&payload),
            Err(Error::InvalidCiphertextLength),
            "{len}"
        );
    }
}

#[test]
fn wrong_key_is_an_error() {
    let f = fixture();
    let eve = keys_from_seed(0x0e);
    let mut rng = StdRng::seed_from_u64(5);

    // A fixed case: the specific variant.
    let payload = f.encrypt("for bob only", &[3u8; 16]);
    assert_eq!(
        nip04::decrypt(eve.secret_key(), &f.alice.public_key(), &payload),
        Err(Error::InvalidPadding)
    );

    // Many cases: always an error (padding or, rarely, UTF-8), never the plaintext.
    for _ in 0..200 {
        let text = random_text(&mut rng, 20);
        let payload =
            nip04::encrypt(f.alice.secret_key(), &f.bob.public_key(), &text, &mut rng).unwrap();
        let err = nip04::decrypt(eve.secret_key(), &f.alice.public_key(), &payload).unwrap_err();
        assert!(
            matches!(err, Error::InvalidPadding | Error::InvalidUtf8),
            "{err:?}"
        );
    }
}

#[test]
fn tampered_ciphertext_is_an_error() {
    let f = fixture();
    let iv = [9u8; 16];
    // 20 bytes: two blocks, the second holding 4 bytes of text and 12 bytes of padding (0x0c).
    let payload = f.encrypt("twenty bytes of text", &iv);
    let (ct, encoded_iv) = payload.split_once("?iv=").unwrap();
    let ct = STANDARD.decode(ct).unwrap();
    assert_eq!(ct.len(), 32);

    // Turning the padding byte into 0x00 through the block before it: always invalid.
    let mut zeroed = ct.clone();
    zeroed[15] ^= 0x0c;
    assert_eq!(
        f.decrypt(&format!("{}?iv={encoded_iv}", b64(&zeroed))),
        Err(Error::InvalidPadding)
    );

    // Garbling the last block: a fixed case, invalid padding.
    let mut garbled = ct.clone();
    garbled[31] ^= 0x80;
    assert_eq!(
        f.decrypt(&format!("{}?iv={encoded_iv}", b64(&garbled))),
        Err(Error::InvalidPadding)
    );

    // Dropping the last block leaves text where the padding should be.
    assert_eq!(
        f.decrypt(&format!("{}?iv={encoded_iv}", b64(&ct[..16]))),
        Err(Error::InvalidPadding)
    );
}

#[test]
fn padding_is_checked_strictly() {
    // Encrypt whole blocks without adding padding, so the last block carries a hand-made one.
    let f = fixture();
    let raw = |block: &[u8; 16]| {
        let ct = cbc::Encryptor::<aes::Aes256>::new(&(*f.key.as_bytes()).into(), &[4u8; 16].into())
            .encrypt_padded_vec::<NoPadding>(block);
        format!("{}?iv={}", b64(&ct), b64(&[4u8; 16]))
    };
    // Well-formed padding: three bytes of 0x03.
    assert_eq!(
        f.decrypt(&raw(b"thirteen char\x03\x03\x03")).unwrap(),
        "thirteen char"
    );
    // The last byte says 3, but the bytes before it are not all 3.
    assert_eq!(
        f.decrypt(&raw(b"thirteen char\x05\x03\x03")),
        Err(Error::InvalidPadding)
    );
    assert_eq!(
        f.decrypt(&raw(b"thirteen char\x03\x00\x03")),
        Err(Error::InvalidPadding)
    );
    // Zero and more than a block are never valid padding lengths.
    assert_eq!(
        f.decrypt(&raw(b"fifteen chars!!\x00")),
        Err(Error::InvalidPadding)
    );
    assert_eq!(
        f.decrypt(&raw(b"fifteen chars!!\x11")),
        Err(Error::InvalidPadding)
    );
    // A whole block of padding is valid and leaves the empty string.
    assert_eq!(f.decrypt(&raw(&[16u8; 16])).unwrap(), "");
}

#[test]
fn without_a_mac_iv_bit_flips_go_unnoticed() {
    // This documents NIP-04's weakness rather than a feature: CBC is malleable, so whoever
    // flips a bit of the IV flips the same bit of the first plaintext block, with no error.
    let f = fixture();
    let iv = [0u8; 16];
    let payload = f.encrypt("pay 100 sats", &iv);
    let mut forged_iv = iv;
    forged_iv[4] ^= b'1' ^ b'9';
    let (ct, _) = payload.split_once("?iv=").unwrap();
    let forged = format!("{ct}?iv={}", b64(&forged_iv));
    assert_eq!(f.decrypt(&forged).unwrap(), "pay 900 sats");
}

#[test]
fn invalid_utf8_plaintext() {
    let f = fixture();
    for bytes in [
        &[0xff][..],
        &[0xc3, 0x28],
        &[0xed, 0xa0, 0x80], // a UTF-16 surrogate
        b"valid prefix \xf0\x9f\x98",
    ] {
        let payload = encrypt_raw_bytes(&f.key, bytes, &[1u8; 16]);
        assert_eq!(f.decrypt(&payload), Err(Error::InvalidUtf8), "{bytes:?}");
    }
    // The same path with valid UTF-8 succeeds, so the helper is a faithful NIP-04 encryptor.
    let payload = encrypt_raw_bytes(&f.key, "ok ✓".as_bytes(), &[1u8; 16]);
    assert_eq!(f.decrypt(&payload).unwrap(), "ok ✓");
}

#[test]
fn invalid_public_key() {
    let f = fixture();
    // 0xff..ff is above the field prime, so no point has it as its x coordinate.
    let not_a_point = PublicKey::from_byte_array([0xff; 32]);
    let mut rng = StdRng::seed_from_u64(0);
    assert_eq!(
        nip04::shared_key(f.alice.secret_key(), &not_a_point),
        Err(Error::InvalidPublicKey)
    );
    assert_eq!(
        nip04::encrypt(f.alice.secret_key(), &not_a_point, "x", &mut rng),
        Err(Error::InvalidPublicKey)
    );
    assert_eq!(
        nip04::encrypt_with_iv(f.alice.secret_key(), &not_a_point, "x", &[0; 16]),
        Err(Error::InvalidPublicKey)
    );
    let payload = f.encrypt("x", &[0; 16]);
    assert_eq!(
        nip04::decrypt(f.bob.secret_key(), &not_a_point, &payload),
        Err(Error::InvalidPublicKey)
    );
}

#[test]
fn oversize_payload_is_refused_before_decoding() {
    let f = fixture();
    // Not even a payload: any parsing would say `MissingIv`. The length check comes first.
    let junk = "!".repeat(MAX_PAYLOAD_LEN + 1);
    assert_eq!(
        f.decrypt(&junk),
        Err(Error::PayloadTooLarge {
            len: MAX_PAYLOAD_LEN + 1,
            max: MAX_PAYLOAD_LEN
        })
    );
    assert_eq!(
        nip04::decrypt_with_shared_key(&f.key, &junk),
        Err(Error::PayloadTooLarge {
            len: MAX_PAYLOAD_LEN + 1,
            max: MAX_PAYLOAD_LEN
        })
    );
    // At exactly the limit the payload is parsed (and found wanting).
    assert_eq!(f.decrypt(&junk[1..]), Err(Error::MissingIv));
}

#[test]
fn custom_limit_is_inclusive() {
    let f = fixture();
    let payload = f.encrypt(&"y".repeat(1000), &[2u8; 16]);
    let len = payload.len();
    let decrypt =
        |max| nip04::decrypt_with_max_len(f.bob.secret_key(), &f.alice.public_key(), &payload, max);
    assert_eq!(decrypt(len).unwrap(), "y".repeat(1000));
    assert_eq!(
        decrypt(len - 1),
        Err(Error::PayloadTooLarge { len, max: len - 1 })
    );
    assert_eq!(decrypt(0), Err(Error::PayloadTooLarge { len, max: 0 }));
    // An invalid public key is not even looked at for an oversize payload.
    assert_eq!(
        nip04::decrypt_with_max_len(
            f.bob.secret_key(),
            &PublicKey::from_byte_array([0xff; 32]),
            &payload,
            10
        ),
        Err(Error::PayloadTooLarge { len, max: 10 })
    );
}

#[test]
fn error_messages_are_readable() {
    assert_eq!(
        Error::MissingIv.to_string(),
        "payload has no \"?iv=\" separator"
    );
    assert_eq!(
        Error::PayloadTooLarge { len: 10, max: 5 }.to_string(),
        "payload of 10 bytes exceeds the limit of 5 bytes"
    );
    for err in [
        Error::InvalidPublicKey,
        Error::MissingIv,
        Error::InvalidBase64,
        Error::InvalidIvLength,
        Error::InvalidCiphertextLength,
        Error::InvalidPadding,
        Error::InvalidUtf8,
    ] {
        let msg = err.to_string();
        assert!(msg.starts_with(|c: char| c.is_ascii_lowercase()), "{msg}");
    }
    // It converts into the crate-wide error.
    let wide: nostr_dvm::Error = Error::MissingIv.into();
    assert!(matches!(wide, nostr_dvm::Error::Nip04(Error::MissingIv)));
}

// ----------------------------------------------------------------------------------------------
// Property tests: remote input never panics, and round trips hold.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decrypt_never_panics_on_arbitrary_strings(payload in any::<String>()) {
        let f = fixture();
        let _ = f.decrypt(&payload);
        let _ = nip04::decrypt_with_shared_key(&f.key, &payload);
    }

    #[test]
    fn decrypt_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let f = fixture();
        let payload = String::from_utf8_lossy(&bytes);
        let _ = f.decrypt(&payload);
        for max in [0, 1, 24, 28, 64] {
            let _ = nip04::decrypt_with_max_len(f.bob.secret_key(), &f.alice.public_key(), &payload, max);
        }
    }

    #[test]
    fn decrypt_never_panics_on_payload_shaped_strings(
        ct in "[A-Za-z0-9+/=]{0,96}",
        sep in prop_oneof![Just("?iv="), Just("?iv"), Just("?iv=?iv="), Just("")],
        iv in "[A-Za-z0-9+/=_-]{0,32}",
    ) {
        let f = fixture();
        let _ = f.decrypt(&format!("{ct}{sep}{iv}"));
    }

    #[test]
    fn decrypt_of_well_formed_random_ciphertexts_is_an_error_or_text(
        blocks in 1usize..8,
        seed in any::<u64>(),
    ) {
        // Right shape, random content: must be Ok or a padding / UTF-8 error, nothing else.
        let f = fixture();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ct = vec![0u8; blocks * 16];
        rng.fill_bytes(&mut ct);
        let mut iv = [0u8; 16];
        rng.fill_bytes(&mut iv);
        match f.decrypt(&format!("{}?iv={}", b64(&ct), b64(&iv))) {
            Ok(_) | Err(Error::InvalidPadding) | Err(Error::InvalidUtf8) => {}
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    #[test]
    fn round_trip_and_nostr_agree_on_arbitrary_text(text in any::<String>(), seed in any::<u64>()) {
        let f = fixture();
        let payload = nip04::encrypt(
            f.alice.secret_key(),
            &f.bob.public_key(),
            &text,
            &mut StdRng::seed_from_u64(seed),
        ).unwrap();
        prop_assert_eq!(f.decrypt(&payload).unwrap(), text.clone());
        prop_assert_eq!(
            nostr::nips::nip04::decrypt(f.bob.secret_key(), &f.alice.public_key(), &payload).unwrap(),
            text
        );
    }
}
