//! NIP-59 gift wraps: the published examples, real-world fixtures, round trips, the `nostr`
//! crate's implementation as an independent oracle in both directions, one hand-built
//! malicious wrap per verification rule, and property tests that nothing panics.

use std::collections::BTreeMap;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use nostr_dvm::nip44::{self, ConversationKey};
use nostr_dvm::nip59::{
    self, Error, EventFault, UnwrapOptions, UnwrappedGift, WrapKind, MAX_TIMESTAMP_TWEAK,
};
use nostr_dvm::nostr::nips::nip59::UnwrappedGift as NostrUnwrappedGift;
use nostr_dvm::nostr::{
    Event, EventBuilder, EventId, JsonUtil, Keys, Kind, PublicKey, Tag, Timestamp, UnsignedEvent,
    SECP256K1,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const ALICE: &str = "5c0c523f52a5b6fad39ed2403092df8cebc36318b39383bca6c00808626fab3a";
const BOB: &str = "4b22aa260e4acb7021e32f38a6cdf4b673c6a277755bfce287e370c924dc936d";
const CAROL: &str = "8f40e50a84a7462e2b8d24c28898ef1f23359fff50d8c509e6fb7ce06e142f9c";
const MALLORY: &str = "0000000000000000000000000000000000000000000000000000000000000007";

const NOW: u64 = 1_700_000_000;

fn keys(hex: &str) -> Keys {
    Keys::parse(hex).unwrap()
}

fn alice() -> Keys {
    keys(ALICE)
}

fn bob() -> Keys {
    keys(BOB)
}

fn carol() -> Keys {
    keys(CAROL)
}

fn mallory() -> Keys {
    keys(MALLORY)
}

fn now() -> Timestamp {
    Timestamp::from_secs(NOW)
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A kind 14 chat message from `author` to Bob, without an id.
fn rumor_from(author: &Keys, content: &str) -> UnsignedEvent {
    UnsignedEvent::new(
        author.public_key(),
        Timestamp::from_secs(NOW - 100),
        Kind::from(14u16),
        [Tag::public_key(bob().public_key())],
        content,
    )
}

/// A signed event with arbitrary fields (deterministic signature).
fn signed(keys: &Keys, kind: u16, tags: Vec<Tag>, content: &str, rng: &mut StdRng) -> Event {
    UnsignedEvent::new(
        keys.public_key(),
        Timestamp::from_secs(NOW - 1000),
        Kind::from(kind),
        tags,
        content,
    )
    .sign_with_ctx(SECP256K1, rng, keys)
    .unwrap()
}

/// NIP-44 v2 encryption from `from` to `to` with this crate's implementation.
fn encrypt(from: &Keys, to: &PublicKey, plaintext: &str, rng: &mut StdRng) -> String {
    let key = ConversationKey::derive(from.secret_key(), to).unwrap();
    nip44::encrypt(&key, plaintext, rng).unwrap()
}

/// A seal built by hand: `author` encrypts `rumor_json` to `to`, any kind and tags.
fn seal_raw(
    author: &Keys,
    to: &PublicKey,
    rumor_json: &str,
    kind: u16,
    tags: Vec<Tag>,
    rng: &mut StdRng,
) -> Event {
    let content = encrypt(author, to, rumor_json, rng);
    signed(author, kind, tags, &content, rng)
}

/// A wrap built by hand: a one-time key encrypts `inner_json` to `to`, any kind and tags.
fn wrap_raw(
    inner_json: &str,
    to: &PublicKey,
    kind: u16,
    tags: Vec<Tag>,
    rng: &mut StdRng,
) -> Event {
    let one_time = Keys::generate_with_rng(rng);
    let content = encrypt(&one_time, to, inner_json, rng);
    signed(&one_time, kind, tags, &content, rng)
}

/// The usual layering, by hand, to Bob, with control over the rumor JSON and the seal.
fn layered_to_bob(
    rumor_json: &str,
    seal_author: &Keys,
    seal_kind: u16,
    seal_tags: Vec<Tag>,
) -> Event {
    let mut rng = rng(1);
    let bob_pk = bob().public_key();
    let seal = seal_raw(
        seal_author,
        &bob_pk,
        rumor_json,
        seal_kind,
        seal_tags,
        &mut rng,
    );
    wrap_raw(
        &seal.as_json(),
        &bob_pk,
        1059,
        vec![Tag::public_key(bob_pk)],
        &mut rng,
    )
}

/// Alice's rumor JSON with its id set.
fn good_rumor_json() -> String {
    let mut rumor = rumor_from(&alice(), "hello bob");
    rumor.ensure_id();
    rumor.as_json()
}

/// The seal inside a wrap, decrypted without any checks.
fn peek_seal(receiver: &Keys, wrap: &Event) -> Event {
    let key = ConversationKey::derive(receiver.secret_key(), &wrap.pubkey).unwrap();
    Event::from_json(nip44::decrypt(&key, &wrap.content).unwrap()).unwrap()
}

/// Drives one of the `nostr` crate's futures. With a `Keys` signer they never wait on anything,
/// so a no-op waker suffices and no async runtime is needed.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("future did not complete");
}

fn p_tags(event: &Event) -> Vec<Vec<String>> {
    event
        .tags
        .iter()
        .filter(|t| t.as_slice().first().map(String::as_str) == Some("p"))
        .map(|t| t.as_slice().to_vec())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The published examples (NIP-59 and NIP-17 texts)
// ---------------------------------------------------------------------------------------------

// The example in NIP-59 ("An Example"), with its test keys. (The NIP text has a trailing comma
// after "tags", which is not JSON; it is removed here.)
const NIP59_AUTHOR: &str = "0beebd062ec8735f4243466049d7747ef5d6594ee838de147f8aab842b15e273";
const NIP59_RECIPIENT: &str = "e108399bd8424357a710b606ae0c13166d853d327e47a6e5e038197346bdbf45";
const NIP59_EPHEMERAL: &str = "4f02eac59266002db5801adc5270700ca69d5b8f761d8732fab2fbf233c90cbd";

const NIP59_SEAL: &str = r#"{"content":"AqBCdwoS7/tPK+QGkPCadJTn8FxGkd24iApo3BR9/M0uw6n4RFAFSPAKKMgkzVMoRyR3ZS/aqATDFvoZJOkE9cPG/TAzmyZvr/WUIS8kLmuI1dCA+itFF6+ULZqbkWS0YcVU0j6UDvMBvVlGTzHz+UHzWYJLUq2LnlynJtFap5k8560+tBGtxi9Gx2NIycKgbOUv0gEqhfVzAwvg1IhTltfSwOeZXvDvd40rozONRxwq8hjKy+4DbfrO0iRtlT7G/eVEO9aJJnqagomFSkqCscttf/o6VeT2+A9JhcSxLmjcKFG3FEK3Try/WkarJa1jM3lMRQqVOZrzHAaLFW/5sXano6DqqC5ERD6CcVVsrny0tYN4iHHB8BHJ9zvjff0NjLGG/v5Wsy31+BwZA8cUlfAZ0f5EYRo9/vKSd8TV0wRb9DQ=","kind":13,"created_at":1703015180,"pubkey":"611df01bfcf85c26ae65453b772d8f1dfd25c264621c0277e1fc1518686faef9","tags":[],"id":"28a87d7c074d94a58e9e89bb3e9e4e813e2189f285d797b1c56069d36f59eaa7","sig":"02fc3facf6621196c32912b1ef53bac8f8bfe9db51c0e7102c073103586b0d29c3f39bdaa1e62856c20e90b6c7cc5dc34ca8bb6a528872cf6e65e6284519ad73"}"#;

const NIP59_WRAP: &str = r#"{"content":"AhC3Qj/QsKJFWuf6xroiYip+2yK95qPwJjVvFujhzSguJWb/6TlPpBW0CGFwfufCs2Zyb0JeuLmZhNlnqecAAalC4ZCugB+I9ViA5pxLyFfQjs1lcE6KdX3euCHBLAnE9GL/+IzdV9vZnfJH6atVjvBkNPNzxU+OLCHO/DAPmzmMVx0SR63frRTCz6Cuth40D+VzluKu1/Fg2Q1LSst65DE7o2efTtZ4Z9j15rQAOZfE9jwMCQZt27rBBK3yVwqVEriFpg2mHXc1DDwHhDADO8eiyOTWF1ghDds/DxhMcjkIi/o+FS3gG1dG7gJHu3KkGK5UXpmgyFKt+421m5o++RMD/BylS3iazS1S93IzTLeGfMCk+7IKxuSCO06k1+DaasJJe8RE4/rmismUvwrHu/HDutZWkvOAhd4z4khZo7bJLtiCzZCZ74lZcjOB4CYtuAX2ZGpc4I1iOKkvwTuQy9BWYpkzGg3ZoSWRD6ty7U+KN+fTTmIS4CelhBTT15QVqD02JxfLF7nA6sg3UlYgtiGw61oH68lSbx16P3vwSeQQpEB5JbhofW7t9TLZIbIW/ODnI4hpwj8didtk7IMBI3Ra3uUP7ya6vptkd9TwQkd/7cOFaSJmU+BIsLpOXbirJACMn+URoDXhuEtiO6xirNtrPN8jYqpwvMUm5lMMVzGT3kMMVNBqgbj8Ln8VmqouK0DR+gRyNb8fHT0BFPwsHxDskFk5yhe5c/2VUUoKCGe0kfCcX/EsHbJLUUtlHXmTqaOJpmQnW1tZ/siPwKRl6oEsIJWTUYxPQmrM2fUpYZCuAo/29lTLHiHMlTbarFOd6J/ybIbICy2gRRH/LFSryty3Cnf6aae+A9uizFBUdCwTwffc3vCBae802+R92OL78bbqHKPbSZOXNC+6ybqziezwG+OPWHx1Qk39RYaF0aFsM4uZWrFic97WwVrH5i+/Nsf/OtwWiuH0gV/SqvN1hnkxCTF/+XNn/laWKmS3e7wFzBsG8+qwqwmO9aVbDVMhOmeUXRMkxcj4QreQkHxLkCx97euZpC7xhvYnCHarHTDeD6nVK+xzbPNtzeGzNpYoiMqxZ9bBJwMaHnEoI944Vxoodf51cMIIwpTmmRvAzI1QgrfnOLOUS7uUjQ/IZ1Qa3lY08Nqm9MAGxZ2Ou6R0/Z5z30ha/Q71q6meAs3uHQcpSuRaQeV29IASmye2A2Nif+lmbhV7w8hjFYoaLCRsdchiVyNjOEM4VmxUhX4VEvw6KoCAZ/XvO2eBF/SyNU3Of4SO","kind":1059,"created_at":1703021488,"pubkey":"18b1a75918f1f2c90c23da616bce317d36e348bcf5f7ba55e75949319210c87c","id":"5c005f3ccf01950aa8d131203248544fb1e41a0d698e846bd419cec3890903ac","sig":"35fabdae4634eb630880a1896a886e40fd6ea8a60958e30b89b33a93e6235df750097b04f9e13053764251b8bc5dd7e8e0794a3426a90b6bcc7e5ff660f54259","tags":[["p","166bf3765ebd1fc55decfe395beff2ea3b2a4e0a8946e7eb578512b555737c99"]]}"#;

fn assert_nip59_example_rumor(rumor: &UnsignedEvent) {
    assert_eq!(rumor.content, "Are you going to the party tonight?");
    assert_eq!(rumor.kind, Kind::TextNote);
    assert_eq!(
        rumor.pubkey.to_hex(),
        "611df01bfcf85c26ae65453b772d8f1dfd25c264621c0277e1fc1518686faef9"
    );
    assert_eq!(
        rumor.id.unwrap().to_hex(),
        "9dd003c6d3b73b74a85a9ab099469ce251653a7af76f523671ab828acd2a0ef9"
    );
    assert_eq!(rumor.created_at.as_secs(), 1691518405);
    assert!(rumor.tags.is_empty());
}

#[test]
fn nip59_example_wrap_unwraps_with_the_published_key() {
    let wrap = Event::from_json(NIP59_WRAP).unwrap();
    // The published keys are consistent with the published events.
    assert_eq!(wrap.pubkey, keys(NIP59_EPHEMERAL).public_key());
    let recipient = keys(NIP59_RECIPIENT);
    assert_eq!(
        p_tags(&wrap),
        vec![vec!["p".to_owned(), recipient.public_key().to_hex()]]
    );

    let got = nip59::unwrap(&recipient, &wrap).unwrap();
    assert_eq!(got.sender, keys(NIP59_AUTHOR).public_key());
    assert_eq!(got.seal.id, Event::from_json(NIP59_SEAL).unwrap().id);
    assert_nip59_example_rumor(&got.rumor);

    // Nobody else can open it, the author included (it was encrypted to the recipient).
    assert_eq!(
        nip59::unwrap(&keys(NIP59_AUTHOR), &wrap),
        Err(Error::WrapDecryption(nip44::Error::InvalidMac))
    );
}

#[test]
fn nip59_example_seal_opens_with_the_published_key() {
    let seal = Event::from_json(NIP59_SEAL).unwrap();
    let got = nip59::open_seal(&keys(NIP59_RECIPIENT), &seal).unwrap();
    assert_eq!(got.sender, keys(NIP59_AUTHOR).public_key());
    assert_nip59_example_rumor(&got.rumor);
    // Only the recipient (or the author, who shares the conversation key) can open it.
    assert!(matches!(
        nip59::open_seal(&bob(), &seal),
        Err(Error::SealDecryption(nip44::Error::InvalidMac))
    ));
}

// NIP-17 "Examples": "Hola, que tal?" from the sender to the receiver, wrapped once for the
// receiver and once for the sender's own copy. Keys as the NIP gives them (bech32).
const NIP17_SENDER_NSEC: &str = "nsec1w8udu59ydjvedgs3yv5qccshcj8k05fh3l60k9x57asjrqdpa00qkmr89m";
const NIP17_RECEIVER_NSEC: &str = "nsec12ywtkplvyq5t6twdqwwygavp5lm4fhuang89c943nf2z92eez43szvn4dt";

const NIP17_TO_RECEIVER: &str = r#"{"id":"2886780f7349afc1344047524540ee716f7bdc1b64191699855662330bf235d8","pubkey":"8f8a7ec43b77d25799281207e1a47f7a654755055788f7482653f9c9661c6d51","created_at":1703128320,"kind":1059,"tags":[["p","918e2da906df4ccd12c8ac672d8335add131a4cf9d27ce42b3bb3625755f0788"]],"content":"AsqzdlMsG304G8h08bE67dhAR1gFTzTckUUyuvndZ8LrGCvwI4pgC3d6hyAK0Wo9gtkLqSr2rT2RyHlE5wRqbCOlQ8WvJEKwqwIJwT5PO3l2RxvGCHDbd1b1o40ZgIVwwLCfOWJ86I5upXe8K5AgpxYTOM1BD+SbgI5jOMA8tgpRoitJedVSvBZsmwAxXM7o7sbOON4MXHzOqOZpALpS2zgBDXSAaYAsTdEM4qqFeik+zTk3+L6NYuftGidqVluicwSGS2viYWr5OiJ1zrj1ERhYSGLpQnPKrqDaDi7R1KrHGFGyLgkJveY/45y0rv9aVIw9IWF11u53cf2CP7akACel2WvZdl1htEwFu/v9cFXD06fNVZjfx3OssKM/uHPE9XvZttQboAvP5UoK6lv9o3d+0GM4/3zP+yO3C0NExz1ZgFmbGFz703YJzM+zpKCOXaZyzPjADXp8qBBeVc5lmJqiCL4solZpxA1865yPigPAZcc9acSUlg23J1dptFK4n3Tl5HfSHP+oZ/QS/SHWbVFCtq7ZMQSRxLgEitfglTNz9P1CnpMwmW/Y4Gm5zdkv0JrdUVrn2UO9ARdHlPsW5ARgDmzaxnJypkfoHXNfxGGXWRk0sKLbz/ipnaQP/eFJv/ibNuSfqL6E4BnN/tHJSHYEaTQ/PdrA2i9laG3vJti3kAl5Ih87ct0w/tzYfp4SRPhEF1zzue9G/16eJEMzwmhQ5Ec7jJVcVGa4RltqnuF8unUu3iSRTQ+/MNNUkK6Mk+YuaJJs6Fjw6tRHuWi57SdKKv7GGkr0zlBUU2Dyo1MwpAqzsCcCTeQSv+8qt4wLf4uhU9Br7F/L0ZY9bFgh6iLDCdB+4iABXyZwT7Ufn762195hrSHcU4Okt0Zns9EeiBOFxnmpXEslYkYBpXw70GmymQfJlFOfoEp93QKCMS2DAEVeI51dJV1e+6t3pCSsQN69Vg6jUCsm1TMxSs2VX4BRbq562+VffchvW2BB4gMjsvHVUSRl8i5/ZSDlfzSPXcSGALLHBRzy+gn0oXXJ/447VHYZJDL3Ig8+QW5oFMgnWYhuwI5QSLEyflUrfSz+Pdwn/5eyjybXKJftePBD9Q+8NQ8zulU5sqvsMeIx/bBUx0fmOXsS3vjqCXW5IjkmSUV7q54GewZqTQBlcx+90xh/LSUxXex7UwZwRnifvyCbZ+zwNTHNb12chYeNjMV7kAIr3cGQv8vlOMM8ajyaZ5KVy7HpSXQjz4PGT2/nXbL5jKt8Lx0erGXsSsazkdoYDG3U","sig":"a3c6ce632b145c0869423c1afaff4a6d764a9b64dedaf15f170b944ead67227518a72e455567ca1c2a0d187832cecbde7ed478395ec4c95dd3e71749ed66c480"}"#;

const NIP17_TO_SENDER: &str = r#"{"id":"162b0611a1911cfcb30f8a5502792b346e535a45658b3a31ae5c178465509721","pubkey":"626be2af274b29ea4816ad672ee452b7cf96bbb4836815a55699ae402183f512","created_at":1702711587,"kind":1059,"tags":[["p","44900586091b284416a0c001f677f9c49f7639a55c3f1e2ec130a8e1a7998e1b"]],"content":"AsTClTzr0gzXXji7uye5UB6LYrx3HDjWGdkNaBS6BAX9CpHa+Vvtt5oI2xJrmWLen+Fo2NBOFazvl285Gb3HSM82gVycrzx1HUAaQDUG6HI7XBEGqBhQMUNwNMiN2dnilBMFC3Yc8ehCJT/gkbiNKOpwd2rFibMFRMDKai2mq2lBtPJF18oszKOjA+XlOJV8JRbmcAanTbEK5nA/GnG3eGUiUzhiYBoHomj3vztYYxc0QYHOx0WxiHY8dsC6jPsXC7f6k4P+Hv5ZiyTfzvjkSJOckel1lZuE5SfeZ0nduqTlxREGeBJ8amOykgEIKdH2VZBZB+qtOMc7ez9dz4wffGwBDA7912NFS2dPBr6txHNxBUkDZKFbuD5wijvonZDvfWq43tZspO4NutSokZB99uEiRH8NAUdGTiNb25m9JcDhVfdmABqTg5fIwwTwlem5aXIy8b66lmqqz2LBzJtnJDu36bDwkILph3kmvaKPD8qJXmPQ4yGpxIbYSTCohgt2/I0TKJNmqNvSN+IVoUuC7ZOfUV9lOV8Ri0AMfSr2YsdZ9ofV5o82ClZWlWiSWZwy6ypa7CuT1PEGHzywB4CZ5ucpO60Z7hnBQxHLiAQIO/QhiBp1rmrdQZFN6PUEjFDloykoeHe345Yqy9Ke95HIKUCS9yJurD+nZjjgOxZjoFCsB1hQAwINTIS3FbYOibZnQwv8PXvcSOqVZxC9U0+WuagK7IwxzhGZY3vLRrX01oujiRrevB4xbW7Oxi/Agp7CQGlJXCgmRE8Rhm+Vj2s+wc/4VLNZRHDcwtfejogjrjdi8p6nfUyqoQRRPARzRGUnnCbh+LqhigT6gQf3sVilnydMRScEc0/YYNLWnaw9nbyBa7wFBAiGbJwO40k39wj+xT6HTSbSUgFZzopxroO3f/o4+ubx2+IL3fkev22mEN38+dFmYF3zE+hpE7jVxrJpC3EP9PLoFgFPKCuctMnjXmeHoiGs756N5r1Mm1ffZu4H19MSuALJlxQR7VXE/LzxRXDuaB2u9days/6muP6gbGX1ASxbJd/ou8+viHmSC/ioHzNjItVCPaJjDyc6bv+gs1NPCt0qZ69G+JmgHW/PsMMeL4n5bh74g0fJSHqiI9ewEmOG/8bedSREv2XXtKV39STxPweceIOh0k23s3N6+wvuSUAJE7u1LkDo14cobtZ/MCw/QhimYPd1u5HnEJvRhPxz0nVPz0QqL/YQeOkAYk7uzgeb2yPzJ6DBtnTnGDkglekhVzQBFRJdk740LEj6swkJ","sig":"c94e74533b482aa8eeeb54ae72a5303e0b21f62909ca43c8ef06b0357412d6f8a92f96e1a205102753777fd25321a58fba3fb384eee114bd53ce6c06a1c22bab"}"#;

fn assert_nip17_example_rumor(got: &UnwrappedGift, sender: &Keys, receiver: &Keys) {
    assert_eq!(got.sender, sender.public_key());
    let rumor = &got.rumor;
    assert_eq!(rumor.content, "Hola, que tal?");
    assert_eq!(rumor.kind, Kind::PrivateDirectMessage);
    assert_eq!(rumor.pubkey, sender.public_key());
    assert_eq!(
        rumor.id.unwrap().to_hex(),
        "cf4d60706f9681a31c1cd5850779bcabe1578c1ae293296be20748c2e0771749"
    );
    assert_eq!(rumor.created_at.as_secs(), 1703172058);
    assert_eq!(
        rumor.tags.public_keys().copied().collect::<Vec<_>>(),
        vec![receiver.public_key()]
    );
}

#[test]
fn nip17_examples_unwrap_for_the_receiver_and_the_senders_copy() {
    let sender = keys(NIP17_SENDER_NSEC);
    let receiver = keys(NIP17_RECEIVER_NSEC);
    assert_eq!(
        sender.public_key().to_hex(),
        "44900586091b284416a0c001f677f9c49f7639a55c3f1e2ec130a8e1a7998e1b"
    );
    assert_eq!(
        receiver.public_key().to_hex(),
        "918e2da906df4ccd12c8ac672d8335add131a4cf9d27ce42b3bb3625755f0788"
    );

    let to_receiver = Event::from_json(NIP17_TO_RECEIVER).unwrap();
    let to_sender = Event::from_json(NIP17_TO_SENDER).unwrap();

    let a = nip59::unwrap(&receiver, &to_receiver).unwrap();
    assert_nip17_example_rumor(&a, &sender, &receiver);
    let b = nip59::unwrap(&sender, &to_sender).unwrap();
    assert_nip17_example_rumor(&b, &sender, &receiver);
    // Two seals, one rumor.
    assert_ne!(a.seal.id, b.seal.id);
    assert_eq!(a.rumor, b.rumor);

    // Each copy is for its own key only.
    assert_eq!(
        nip59::unwrap(&sender, &to_receiver),
        Err(Error::WrapDecryption(nip44::Error::InvalidMac))
    );
    assert_eq!(
        nip59::unwrap(&receiver, &to_sender),
        Err(Error::WrapDecryption(nip44::Error::InvalidMac))
    );
}

// ---------------------------------------------------------------------------------------------
// Real-world fixtures (a copy of shared/fixtures/giftwraps.json)
// ---------------------------------------------------------------------------------------------

fn variant(err: &Error) -> String {
    let debug = format!("{err:?}");
    match err {
        // Keep the NIP-44 reason: it tells which old format was met.
        Error::WrapDecryption(_) | Error::SealDecryption(_) => debug,
        _ => debug
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

#[test]
fn fixture_giftwraps_unwrap_or_are_refused() {
    let doc: Value = serde_json::from_str(include_str!("data/giftwraps.json")).unwrap();
    let entries = doc["events"].as_array().unwrap();
    assert_eq!(entries.len(), 28);
    assert_eq!(doc["counts"]["total"], 28);

    let nip59_recipient = keys(NIP59_RECIPIENT);
    let mut opened_wraps = 0;
    let mut opened_seals = 0;
    // (kind, recorded encryption, our error) -> count
    let mut refused: BTreeMap<(u16, String, String), usize> = BTreeMap::new();

    for entry in entries {
        let event = Event::from_json(entry["event"].to_string()).unwrap();
        let valid = entry["id_valid"].as_bool().unwrap() && entry["sig_valid"].as_bool().unwrap();
        assert_eq!(event.verify().is_ok(), valid, "{}", event.id);
        let kind = event.kind.as_u16();
        let open = |k: &Keys| {
            if kind == 13 {
                nip59::open_seal(k, &event)
            } else {
                nip59::unwrap(k, &event)
            }
        };

        if let Some(test_key) = entry.get("decrypts_with_test_key") {
            let k = keys(test_key["privkey_hex"].as_str().unwrap());
            let got = open(&k).unwrap_or_else(|e| panic!("{}: {e}", event.id));
            let expected_rumor = if kind == 13 {
                opened_seals += 1;
                &entry["decrypted_inner"]
            } else {
                opened_wraps += 1;
                assert_eq!(
                    got.seal.id.to_hex(),
                    entry["decrypted_inner"]["id"].as_str().unwrap()
                );
                &entry["rumor"]
            };
            assert_eq!(&serde_json::to_value(&got.rumor).unwrap(), expected_rumor);
            assert_eq!(got.sender, got.rumor.pubkey);
            // Nobody else opens it.
            assert!(open(&carol()).is_err());
        } else {
            // Older drafts and other keys: refused with a typed error for every key we hold.
            let mut first = None;
            for k in [
                &nip59_recipient,
                &keys(NIP17_SENDER_NSEC),
                &keys(NIP17_RECEIVER_NSEC),
                &carol(),
            ] {
                let err = open(k).expect_err("undecryptable entry opened");
                first.get_or_insert(err);
            }
            let encryption = entry["encryption"].as_str().unwrap().to_owned();
            *refused
                .entry((kind, encryption, variant(&first.unwrap())))
                .or_default() += 1;
        }
    }

    assert_eq!(opened_wraps, 3);
    assert_eq!(opened_seals, 2);
    assert_eq!(
        opened_wraps + opened_seals,
        doc["counts"]["fully_unwrapped_with_published_test_keys"]
    );

    let s = |x: &str| x.to_owned();
    let expected: BTreeMap<(u16, String, String), usize> = [
        // Seals in the legacy JSON draft format, and NIP-44 v1: not v2 payloads.
        (
            (
                13,
                s("legacy-json-draft"),
                s("SealDecryption(InvalidBase64)"),
            ),
            4,
        ),
        (
            (
                13,
                s("nip44-v1(deprecated)"),
                s("SealDecryption(UnsupportedVersion(Some(1)))"),
            ),
            1,
        ),
        // Wraps in older formats: not NIP-44 v2 payloads. (14 legacy JSON drafts and one NIP-04
        // "base64?iv=base64" payload fail base64 decoding; NIP-44 v1 has version byte 1.)
        (
            (
                1059,
                s("legacy-json-draft"),
                s("WrapDecryption(InvalidBase64)"),
            ),
            14,
        ),
        ((1059, s("nip04"), s("WrapDecryption(InvalidBase64)")), 1),
        (
            (
                1059,
                s("nip44-v1(deprecated)"),
                s("WrapDecryption(UnsupportedVersion(Some(1)))"),
            ),
            2,
        ),
        // NIP-59's earlier example, p-tagged to the published recipient but made with another
        // key than the published one.
        ((1059, s("nip44-v2"), s("WrapDecryption(InvalidMac)")), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(refused, expected);
    assert_eq!(refused.values().sum::<usize>(), 23);
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

fn in_tweak_window(t: Timestamp, now: Timestamp) -> bool {
    t <= now && t.as_secs() >= now.as_secs().saturating_sub(MAX_TIMESTAMP_TWEAK)
}

#[test]
fn round_trip_and_layer_shape() {
    let (alice, bob) = (alice(), bob());
    let rumor = rumor_from(&alice, "hello bob");
    let wrap =
        nip59::gift_wrap(&alice, &bob.public_key(), rumor.clone(), now(), &mut rng(1)).unwrap();

    // The wrap: kind 1059, valid, from a one-time key, addressed to Bob only, dated in the window.
    assert_eq!(wrap.kind, Kind::GiftWrap);
    wrap.verify().unwrap();
    assert_ne!(wrap.pubkey, alice.public_key());
    assert_ne!(wrap.pubkey, bob.public_key());
    assert_eq!(wrap.tags.len(), 1);
    assert_eq!(
        p_tags(&wrap),
        vec![vec!["p".to_owned(), bob.public_key().to_hex()]]
    );
    assert!(in_tweak_window(wrap.created_at, now()));

    // The seal: kind 13, signed by Alice, no tags, dated in the window.
    let seal = peek_seal(&bob, &wrap);
    assert_eq!(seal.kind, Kind::Seal);
    seal.verify().unwrap();
    assert_eq!(seal.pubkey, alice.public_key());
    assert!(seal.tags.is_empty());
    assert!(in_tweak_window(seal.created_at, now()));

    // The rumor inside the seal: no sig field, id set.
    let key = ConversationKey::derive(bob.secret_key(), &alice.public_key()).unwrap();
    let rumor_json: Value =
        serde_json::from_str(&nip44::decrypt(&key, &seal.content).unwrap()).unwrap();
    assert!(rumor_json.get("sig").is_none());
    assert!(rumor_json.get("id").is_some());

    // Bob unwraps it to Alice's rumor, with its own created_at and its id set.
    let got = nip59::unwrap(&bob, &wrap).unwrap();
    assert_eq!(got.sender, alice.public_key());
    assert_eq!(got.seal, seal);
    let mut expected = rumor;
    expected.ensure_id();
    assert_eq!(got.rumor, expected);
    assert_eq!(got.rumor.created_at.as_secs(), NOW - 100);
}

#[test]
fn same_seed_gives_byte_identical_wraps() {
    let make = |seed| {
        nip59::gift_wrap(
            &alice(),
            &bob().public_key(),
            rumor_from(&alice(), "hi"),
            now(),
            &mut rng(seed),
        )
        .unwrap()
        .as_json()
    };
    assert_eq!(make(7), make(7));
    assert_ne!(make(7), make(8));
}

#[test]
fn timestamps_are_independent_and_cover_two_days_in_the_past() {
    let (alice, bob) = (alice(), bob());
    let mut wrap_times = Vec::new();
    let mut seal_times = Vec::new();
    let mut one_time_keys = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let wrap = nip59::gift_wrap(
            &alice,
            &bob.public_key(),
            rumor_from(&alice, "x"),
            now(),
            &mut rng(seed),
        )
        .unwrap();
        let seal = peek_seal(&bob, &wrap);
        assert!(in_tweak_window(wrap.created_at, now()));
        assert!(in_tweak_window(seal.created_at, now()));
        wrap_times.push(wrap.created_at.as_secs());
        seal_times.push(seal.created_at.as_secs());
        one_time_keys.insert(wrap.pubkey);
    }
    // A fresh key each time.
    assert_eq!(one_time_keys.len(), 200);
    // Independent tweaks: the two layers are (almost) never dated the same.
    let same = wrap_times
        .iter()
        .zip(&seal_times)
        .filter(|(a, b)| a == b)
        .count();
    assert!(same <= 1, "{same}");
    // Spread over the window, not clustered at one end.
    for times in [&wrap_times, &seal_times] {
        let min = *times.iter().min().unwrap();
        let max = *times.iter().max().unwrap();
        assert!(min < NOW - MAX_TIMESTAMP_TWEAK * 9 / 10, "{min}");
        assert!(max > NOW - MAX_TIMESTAMP_TWEAK / 10, "{max}");
    }
}

#[test]
fn timestamps_saturate_at_zero_near_the_epoch() {
    let now = Timestamp::from_secs(100);
    let wrap = nip59::gift_wrap(
        &alice(),
        &bob().public_key(),
        rumor_from(&alice(), "x"),
        now,
        &mut rng(3),
    )
    .unwrap();
    assert!(wrap.created_at <= now);
    assert!(peek_seal(&bob(), &wrap).created_at <= now);
    nip59::unwrap(&bob(), &wrap).unwrap();
}

#[test]
fn ephemeral_wraps_are_kind_21059_and_unwrap() {
    let wrap = nip59::gift_wrap_ephemeral(
        &alice(),
        &bob().public_key(),
        rumor_from(&alice(), "live"),
        now(),
        &mut rng(4),
    )
    .unwrap();
    assert_eq!(wrap.kind.as_u16(), 21059);
    assert_eq!(WrapKind::Ephemeral.kind(), wrap.kind);
    assert_eq!(p_tags(&wrap).len(), 1);
    let got = nip59::unwrap(&bob(), &wrap).unwrap();
    assert_eq!(got.rumor.content, "live");
}

#[test]
fn extra_wrap_tags_follow_the_p_tag_and_the_seal_stays_empty() {
    let expiration = Tag::expiration(Timestamp::from_secs(NOW + 3600));
    let relay = Tag::parse(["relay", "wss://relay.example.com"]).unwrap();
    let wrap = nip59::gift_wrap_with_tags(
        &alice(),
        &bob().public_key(),
        rumor_from(&alice(), "ttl"),
        WrapKind::Regular,
        [expiration.clone(), relay.clone()],
        now(),
        &mut rng(5),
    )
    .unwrap();
    let tags: Vec<&Tag> = wrap.tags.iter().collect();
    assert_eq!(tags.len(), 3);
    assert_eq!(tags[0], &Tag::public_key(bob().public_key()));
    assert_eq!(tags[1], &expiration);
    assert_eq!(tags[2], &relay);
    assert!(peek_seal(&bob(), &wrap).tags.is_empty());
    nip59::unwrap(&bob(), &wrap).unwrap();
}

#[test]
fn one_rumor_to_several_receivers_keeps_its_id() {
    let alice = alice();
    let rumor = rumor_from(&alice, "group hello");
    let mut r = rng(6);
    let to_bob =
        nip59::gift_wrap(&alice, &bob().public_key(), rumor.clone(), now(), &mut r).unwrap();
    let to_carol =
        nip59::gift_wrap(&alice, &carol().public_key(), rumor.clone(), now(), &mut r).unwrap();
    let to_self = nip59::gift_wrap(&alice, &alice.public_key(), rumor, now(), &mut r).unwrap();
    let a = nip59::unwrap(&bob(), &to_bob).unwrap();
    let b = nip59::unwrap(&carol(), &to_carol).unwrap();
    let c = nip59::unwrap(&alice, &to_self).unwrap();
    assert_eq!(a.rumor.id, b.rumor.id);
    assert_eq!(a.rumor.id, c.rumor.id);
    assert_ne!(to_bob.pubkey, to_carol.pubkey);
}

#[test]
fn seal_and_open_seal_round_trip() {
    let seal = nip59::seal(
        &alice(),
        &bob().public_key(),
        rumor_from(&alice(), "sealed"),
        now(),
        &mut rng(9),
    )
    .unwrap();
    assert_eq!(seal.kind, Kind::Seal);
    assert!(seal.tags.is_empty());
    assert!(in_tweak_window(seal.created_at, now()));
    let got = nip59::open_seal(&bob(), &seal).unwrap();
    assert_eq!(got.sender, alice().public_key());
    assert_eq!(got.rumor.content, "sealed");
    assert_eq!(got.seal, seal);
    // A wrap is not a seal.
    let wrap = nip59::gift_wrap(
        &alice(),
        &bob().public_key(),
        rumor_from(&alice(), "x"),
        now(),
        &mut rng(9),
    )
    .unwrap();
    assert_eq!(
        nip59::open_seal(&bob(), &wrap),
        Err(Error::NotASeal(Kind::GiftWrap))
    );
}

// --- the checks gift_wrap makes on its input ---

#[test]
fn wrapping_refuses_a_rumor_by_someone_else() {
    let err = nip59::gift_wrap(
        &alice(),
        &bob().public_key(),
        rumor_from(&carol(), "x"),
        now(),
        &mut rng(1),
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::RumorAuthorMismatch {
            rumor: carol().public_key(),
            sender: alice().public_key()
        }
    );
}

#[test]
fn wrapping_checks_a_preset_rumor_id() {
    let mut rumor = rumor_from(&alice(), "original");
    let good = rumor.id();
    // A correct preset id is kept.
    let wrap = nip59::gift_wrap(
        &alice(),
        &bob().public_key(),
        rumor.clone(),
        now(),
        &mut rng(1),
    )
    .unwrap();
    assert_eq!(nip59::unwrap(&bob(), &wrap).unwrap().rumor.id, Some(good));
    // A stale one is refused.
    rumor.content = "edited".to_owned();
    let computed = {
        let mut fresh = rumor.clone();
        fresh.id = None;
        fresh.id()
    };
    assert_eq!(
        nip59::gift_wrap(&alice(), &bob().public_key(), rumor, now(), &mut rng(1)),
        Err(Error::RumorIdMismatch {
            carried: good,
            computed
        })
    );
}

#[test]
fn wrapping_to_an_invalid_public_key_is_an_encryption_error() {
    // All-ones is above the field prime: not the x coordinate of any point.
    let invalid = PublicKey::from_byte_array([0xff; 32]);
    assert_eq!(
        nip59::gift_wrap(
            &alice(),
            &invalid,
            rumor_from(&alice(), "x"),
            now(),
            &mut rng(1)
        ),
        Err(Error::Encryption(nip44::Error::InvalidPublicKey))
    );
}

/// A "CryptoRng" that returns one byte value forever: broken, to check we fail instead of hang.
struct ConstRng(u8);

impl rand::RngCore for ConstRng {
    fn next_u32(&mut self) -> u32 {
        u32::from_le_bytes([self.0; 4])
    }
    fn next_u64(&mut self) -> u64 {
        u64::from_le_bytes([self.0; 8])
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(self.0);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        dest.fill(self.0);
        Ok(())
    }
}

impl rand::CryptoRng for ConstRng {}

#[test]
fn a_broken_rng_fails_instead_of_hanging() {
    // All zeros is not a secret key, nor is all 0xff (above the curve order).
    for byte in [0x00, 0xff] {
        assert_eq!(
            nip59::gift_wrap(
                &alice(),
                &bob().public_key(),
                rumor_from(&alice(), "x"),
                now(),
                &mut ConstRng(byte)
            ),
            Err(Error::InvalidRandomKey)
        );
    }
    // A constant but valid key works (and is, of course, not private).
    let wrap = nip59::gift_wrap(
        &alice(),
        &bob().public_key(),
        rumor_from(&alice(), "x"),
        now(),
        &mut ConstRng(0x01),
    )
    .unwrap();
    nip59::unwrap(&bob(), &wrap).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Differential: the `nostr` crate's NIP-59 in both directions
// ---------------------------------------------------------------------------------------------

#[test]
fn our_wraps_open_with_the_nostr_crate() {
    for seed in 0..8 {
        let rumor = rumor_from(&alice(), &format!("message {seed}"));
        let wrap = nip59::gift_wrap(
            &alice(),
            &bob().public_key(),
            rumor.clone(),
            now(),
            &mut rng(seed),
        )
        .unwrap();
        let theirs = block_on(NostrUnwrappedGift::from_gift_wrap(&bob(), &wrap)).unwrap();
        let ours = nip59::unwrap(&bob(), &wrap).unwrap();
        assert_eq!(theirs.sender, alice().public_key());
        assert_eq!(theirs.sender, ours.sender);
        assert_eq!(theirs.rumor, ours.rumor);
        assert!(theirs.rumor.id.is_some());
    }
}

#[test]
fn nostr_crate_wraps_open_with_ours() {
    let expiration = Tag::expiration(Timestamp::from_secs(NOW + 60));
    for i in 0..8 {
        let mut rumor = rumor_from(&alice(), &format!("from rust-nostr {i}"));
        let wrap = block_on(EventBuilder::gift_wrap(
            &alice(),
            &bob().public_key(),
            rumor.clone(),
            [expiration.clone()],
        ))
        .unwrap();
        let got = nip59::unwrap(&bob(), &wrap).unwrap();
        assert_eq!(got.sender, alice().public_key());
        assert_eq!(got.rumor.id, Some(rumor.id()));
        assert_eq!(got.rumor, rumor);
    }
}

#[test]
fn the_nostr_crate_misses_checks_we_make() {
    // Not a property of this crate, but the reason for its checks: rust-nostr 0.44 accepts a
    // seal with tags and a rumor whose id does not match; we refuse both.
    let seal_with_tags = layered_to_bob(
        &good_rumor_json(),
        &alice(),
        13,
        vec![Tag::public_key(carol().public_key())],
    );
    assert!(block_on(NostrUnwrappedGift::from_gift_wrap(&bob(), &seal_with_tags)).is_ok());
    assert_eq!(
        nip59::unwrap(&bob(), &seal_with_tags),
        Err(Error::SealHasTags)
    );

    let mut forged: Value = serde_json::from_str(&good_rumor_json()).unwrap();
    forged["content"] = json!("edited after the id was computed");
    let wrap = layered_to_bob(&forged.to_string(), &alice(), 13, vec![]);
    assert!(block_on(NostrUnwrappedGift::from_gift_wrap(&bob(), &wrap)).is_ok());
    assert!(matches!(
        nip59::unwrap(&bob(), &wrap),
        Err(Error::RumorIdMismatch { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// One test per verification rule: each breaks that rule and only that one
// ---------------------------------------------------------------------------------------------

#[test]
fn baseline_hand_built_layers_unwrap() {
    // The hand-built layering the rule tests start from is itself valid.
    let got = nip59::unwrap(
        &bob(),
        &layered_to_bob(&good_rumor_json(), &alice(), 13, vec![]),
    )
    .unwrap();
    assert_eq!(got.sender, alice().public_key());
    assert_eq!(got.rumor.content, "hello bob");
}

#[test]
fn rule_wrap_kind_must_be_1059_or_21059() {
    let good = layered_to_bob(&good_rumor_json(), &alice(), 13, vec![]);
    for kind in [1u16, 4, 13, 14, 1058, 1060, 10059, 21058, 21060] {
        let one_time = Keys::generate_with_rng(&mut rng(u64::from(kind)));
        let mut r = rng(2);
        let other = signed(
            &one_time,
            kind,
            good.tags.iter().cloned().collect(),
            &good.content,
            &mut r,
        );
        assert_eq!(
            nip59::unwrap(&bob(), &other),
            Err(Error::NotAGiftWrap(Kind::from(kind)))
        );
    }
    // A seal handed to unwrap directly.
    let seal = peek_seal(&bob(), &good);
    assert_eq!(
        nip59::unwrap(&bob(), &seal),
        Err(Error::NotAGiftWrap(Kind::Seal))
    );
}

#[test]
fn rule_wrap_id_must_match() {
    let good = layered_to_bob(&good_rumor_json(), &alice(), 13, vec![]);
    let mut bad = good.clone();
    bad.created_at = Timestamp::from_secs(bad.created_at.as_secs() + 1);
    assert_eq!(
        nip59::unwrap(&bob(), &bad),
        Err(Error::InvalidWrap(EventFault::Id))
    );
    let mut bad = good;
    bad.tags = nostr_dvm::nostr::Tags::new();
    assert_eq!(
        nip59::unwrap(&bob(), &bad),
        Err(Error::InvalidWrap(EventFault::Id))
    );
}

#[test]
fn rule_wrap_signature_must_verify() {
    let good = layered_to_bob(&good_rumor_json(), &alice(), 13, vec![]);
    let mut bad = good.clone();
    bad.sig = signed(&carol(), 1, vec![], "x", &mut rng(3)).sig;
    assert_eq!(
        nip59::unwrap(&bob(), &bad),
        Err(Error::InvalidWrap(EventFault::Signature))
    );
}

#[test]
fn rule_wrap_p_tag_when_present_must_name_the_receiver() {
    let bob_pk = bob().public_key();
    let seal = seal_raw(
        &alice(),
        &bob_pk,
        &good_rumor_json(),
        13,
        vec![],
        &mut rng(4),
    );
    let wrap_with = |tags: Vec<Tag>| wrap_raw(&seal.as_json(), &bob_pk, 1059, tags, &mut rng(5));

    // Encrypted to Bob but addressed to Carol: Bob can decrypt it, and refuses it because he
    // could neither fetch it from an AUTH-guarded relay nor delete it.
    let misaddressed = wrap_with(vec![Tag::public_key(carol().public_key())]);
    assert_eq!(
        nip59::unwrap(&bob(), &misaddressed),
        Err(Error::RecipientMismatch)
    );
    // A malformed p tag does not name Bob either.
    let malformed = wrap_with(vec![Tag::parse(["p", "not a key"]).unwrap()]);
    assert_eq!(
        nip59::unwrap(&bob(), &malformed),
        Err(Error::RecipientMismatch)
    );
    // No p tag at all: the NIP says SHOULD, so it is accepted (decryption proves the receiver).
    nip59::unwrap(&bob(), &wrap_with(vec![])).unwrap();
    // Several p tags, one of them Bob's: accepted.
    nip59::unwrap(
        &bob(),
        &wrap_with(vec![
            Tag::public_key(carol().public_key()),
            Tag::public_key(bob_pk),
        ]),
    )
    .unwrap();
}

#[test]
fn rule_wrap_must_decrypt_for_the_receiver() {
    // Made for Bob by gift_wrap: Carol cannot open it.
    let bob_pk = bob().public_key();
    let ours = nip59::gift_wrap(
        &alice(),
        &bob_pk,
        rumor_from(&alice(), "x"),
        now(),
        &mut rng(6),
    )
    .unwrap();
    assert_eq!(
        nip59::unwrap(&carol(), &ours),
        Err(Error::WrapDecryption(nip44::Error::InvalidMac))
    );
    // Made for Bob with no p tag: the same.
    let seal = seal_raw(
        &alice(),
        &bob_pk,
        &good_rumor_json(),
        13,
        vec![],
        &mut rng(6),
    );
    let for_bob = wrap_raw(&seal.as_json(), &bob_pk, 1059, vec![], &mut rng(7));
    assert_eq!(
        nip59::unwrap(&carol(), &for_bob),
        Err(Error::WrapDecryption(nip44::Error::InvalidMac))
    );
    // Addressed to Carol but encrypted to Bob: the tag does not help Carol.
    let lying = wrap_raw(
        &seal.as_json(),
        &bob_pk,
        1059,
        vec![Tag::public_key(carol().public_key())],
        &mut rng(7),
    );
    assert_eq!(
        nip59::unwrap(&carol(), &lying),
        Err(Error::WrapDecryption(nip44::Error::InvalidMac))
    );
    // Garbage content, validly signed.
    let one_time = Keys::generate_with_rng(&mut rng(8));
    for garbage in ["", "hello", "#future-version", "AAAA", &"A".repeat(200)] {
        let wrap = signed(
            &one_time,
            1059,
            vec![Tag::public_key(bob_pk)],
            garbage,
            &mut rng(8),
        );
        assert!(
            matches!(nip59::unwrap(&bob(), &wrap), Err(Error::WrapDecryption(_))),
            "{garbage}"
        );
    }
}

#[test]
fn rule_wrap_content_size_is_limited() {
    let wrap = layered_to_bob(&good_rumor_json(), &alice(), 13, vec![]);
    let strict = UnwrapOptions::new().max_plaintext_len(64);
    assert!(matches!(
        nip59::unwrap_with(&bob(), &wrap, &strict),
        Err(Error::WrapDecryption(nip44::Error::PayloadTooLarge { .. }))
    ));
    // The seal layer has its own check under the same limit.
    let seal = peek_seal(&bob(), &wrap);
    assert!(matches!(
        nip59::open_seal_with(&bob(), &seal, &strict),
        Err(Error::SealDecryption(nip44::Error::PayloadTooLarge { .. }))
    ));
}

#[test]
fn rule_seal_must_be_event_json() {
    let bob_pk = bob().public_key();
    let tags = vec![Tag::public_key(bob_pk)];
    for inner in [
        "not json".to_owned(),
        "{}".to_owned(),
        "[1,2,3]".to_owned(),
        // An unsigned event is not a seal: no sig.
        good_rumor_json(),
    ] {
        let wrap = wrap_raw(&inner, &bob_pk, 1059, tags.clone(), &mut rng(10));
        assert!(
            matches!(nip59::unwrap(&bob(), &wrap), Err(Error::InvalidSealJson(_))),
            "{inner}"
        );
    }
}

#[test]
fn rule_seal_kind_must_be_13() {
    for kind in [1u16, 14, 1059, 12] {
        let wrap = layered_to_bob(&good_rumor_json(), &alice(), kind, vec![]);
        assert_eq!(
            nip59::unwrap(&bob(), &wrap),
            Err(Error::NotASeal(Kind::from(kind)))
        );
    }
}

#[test]
fn rule_seal_id_must_match() {
    let bob_pk = bob().public_key();
    let mut seal = seal_raw(
        &alice(),
        &bob_pk,
        &good_rumor_json(),
        13,
        vec![],
        &mut rng(11),
    );
    seal.created_at = Timestamp::from_secs(seal.created_at.as_secs() - 1);
    let wrap = wrap_raw(
        &seal.as_json(),
        &bob_pk,
        1059,
        vec![Tag::public_key(bob_pk)],
        &mut rng(12),
    );
    assert_eq!(
        nip59::unwrap(&bob(), &wrap),
        Err(Error::InvalidSeal(EventFault::Id))
    );
}

#[test]
fn rule_seal_signature_must_verify() {
    let bob_pk = bob().public_key();
    let mut seal = seal_raw(
        &alice(),
        &bob_pk,
        &good_rumor_json(),
        13,
        vec![],
        &mut rng(13),
    );
    seal.sig = signed(&alice(), 13, vec![], "another seal", &mut rng(13)).sig;
    let wrap = wrap_raw(
        &seal.as_json(),
        &bob_pk,
        1059,
        vec![Tag::public_key(bob_pk)],
        &mut rng(14),
    );
    assert_eq!(
        nip59::unwrap(&bob(), &wrap),
        Err(Error::InvalidSeal(EventFault::Signature))
    );
}

#[test]
fn rule_seal_must_have_no_tags() {
    let p = Tag::public_key(bob().public_key());
    let expiration = Tag::expiration(Timestamp::from_secs(NOW + 60));

    let with_p = layered_to_bob(&good_rumor_json(), &alice(), 13, vec![p.clone()]);
    assert_eq!(nip59::unwrap(&bob(), &with_p), Err(Error::SealHasTags));

    // NIP-17 disappearing messages put `expiration` on the seal: refused by default, accepted
    // when asked, and then only if it is the only kind of tag.
    let lenient = UnwrapOptions::new().allow_seal_expiration(true);
    let with_exp = layered_to_bob(&good_rumor_json(), &alice(), 13, vec![expiration.clone()]);
    assert_eq!(nip59::unwrap(&bob(), &with_exp), Err(Error::SealHasTags));
    nip59::unwrap_with(&bob(), &with_exp, &lenient).unwrap();
    assert_eq!(
        nip59::unwrap_with(&bob(), &with_p, &lenient),
        Err(Error::SealHasTags)
    );
    let both = layered_to_bob(&good_rumor_json(), &alice(), 13, vec![expiration, p]);
    assert_eq!(
        nip59::unwrap_with(&bob(), &both, &lenient),
        Err(Error::SealHasTags)
    );
}

#[test]
fn rule_seal_must_decrypt_for_the_receiver() {
    let bob_pk = bob().public_key();
    let mut r = rng(15);
    // Alice sealed it to Carol; someone re-wrapped the seal to Bob.
    let seal = seal_raw(
        &alice(),
        &carol().public_key(),
        &good_rumor_json(),
        13,
        vec![],
        &mut r,
    );
    let wrap = wrap_raw(
        &seal.as_json(),
        &bob_pk,
        1059,
        vec![Tag::public_key(bob_pk)],
        &mut r,
    );
    assert_eq!(
        nip59::unwrap(&bob(), &wrap),
        Err(Error::SealDecryption(nip44::Error::InvalidMac))
    );
    // Seal content that is not a NIP-44 payload.
    let seal = signed(&alice(), 13, vec![], "plain text", &mut r);
    let wrap = wrap_raw(
        &seal.as_json(),
        &bob_pk,
        1059,
        vec![Tag::public_key(bob_pk)],
        &mut r,
    );
    assert!(matches!(
        nip59::unwrap(&bob(), &wrap),
        Err(Error::SealDecryption(_))
    ));
}

#[test]
fn rule_rumor_must_be_unsigned_event_json() {
    let mut missing_pubkey: Value = serde_json::from_str(&good_rumor_json()).unwrap();
    missing_pubkey.as_object_mut().unwrap().remove("pubkey");
    let mut bad_kind: Value = serde_json::from_str(&good_rumor_json()).unwrap();
    bad_kind["kind"] = json!("fourteen");
    for rumor in [
        "not json".to_owned(),
        "null".to_owned(),
        missing_pubkey.to_string(),
        bad_kind.to_string(),
    ] {
        let wrap = layered_to_bob(&rumor, &alice(), 13, vec![]);
        assert!(
            matches!(
                nip59::unwrap(&bob(), &wrap),
                Err(Error::InvalidRumorJson(_))
            ),
            "{rumor}"
        );
    }
}

#[test]
fn rule_rumor_must_not_be_signed() {
    // A fully signed event by Alice as the "rumor".
    let event = signed(&alice(), 14, vec![], "signed inner", &mut rng(16));
    let wrap = layered_to_bob(&event.as_json(), &alice(), 13, vec![]);
    assert_eq!(nip59::unwrap(&bob(), &wrap), Err(Error::RumorSigned));
    // Any sig value counts, even one that is not a signature.
    let mut junk_sig: Value = serde_json::from_str(&good_rumor_json()).unwrap();
    junk_sig["sig"] = json!("");
    let wrap = layered_to_bob(&junk_sig.to_string(), &alice(), 13, vec![]);
    assert_eq!(nip59::unwrap(&bob(), &wrap), Err(Error::RumorSigned));
    // `"sig": null` is no signature: accepted.
    let mut null_sig: Value = serde_json::from_str(&good_rumor_json()).unwrap();
    null_sig["sig"] = Value::Null;
    let wrap = layered_to_bob(&null_sig.to_string(), &alice(), 13, vec![]);
    nip59::unwrap(&bob(), &wrap).unwrap();
}

#[test]
fn rule_seal_signer_must_be_the_rumor_author() {
    // Mallory seals (with her own valid signature) a rumor claiming to be from Alice.
    let wrap = layered_to_bob(&good_rumor_json(), &mallory(), 13, vec![]);
    assert_eq!(
        nip59::unwrap(&bob(), &wrap),
        Err(Error::SenderMismatch {
            seal: mallory().public_key(),
            rumor: alice().public_key()
        })
    );
}

#[test]
fn rule_rumor_id_must_match_its_content() {
    let mut edited: Value = serde_json::from_str(&good_rumor_json()).unwrap();
    let carried = EventId::from_hex(edited["id"].as_str().unwrap()).unwrap();
    edited["content"] = json!("send 1000 sats to mallory");
    let wrap = layered_to_bob(&edited.to_string(), &alice(), 13, vec![]);
    match nip59::unwrap(&bob(), &wrap) {
        Err(Error::RumorIdMismatch {
            carried: c,
            computed,
        }) => {
            assert_eq!(c, carried);
            assert_ne!(computed, carried);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rumor_without_id_gets_one() {
    let rumor = rumor_from(&alice(), "no id");
    assert!(rumor.id.is_none());
    let wrap = layered_to_bob(&rumor.as_json(), &alice(), 13, vec![]);
    let got = nip59::unwrap(&bob(), &wrap).unwrap();
    let mut expected = rumor;
    assert_eq!(got.rumor.id, Some(expected.id()));
}

#[test]
fn errors_read_in_lower_case() {
    let samples = [
        Error::NotAGiftWrap(Kind::TextNote),
        Error::InvalidWrap(EventFault::Id),
        Error::InvalidSeal(EventFault::Signature),
        Error::RecipientMismatch,
        Error::SealHasTags,
        Error::RumorSigned,
        Error::WrapDecryption(nip44::Error::InvalidMac),
        Error::InvalidSealJson("eof".to_owned()),
    ];
    for err in samples {
        let msg = err.to_string();
        assert!(msg.chars().next().unwrap().is_lowercase(), "{msg}");
    }
    // It converts into the crate-wide error.
    let _: nostr_dvm::Error = Error::SealHasTags.into();
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

fn any_wrap_kind() -> impl Strategy<Value = u16> {
    prop_oneof![Just(1059u16), Just(21059u16), Just(13u16), any::<u16>()]
}

fn any_tags() -> impl Strategy<Value = Vec<Vec<String>>> {
    prop::collection::vec(prop::collection::vec(".{0,70}", 1..4), 0..4)
}

fn to_tags(raw: &[Vec<String>]) -> Vec<Tag> {
    raw.iter()
        .filter_map(|t| Tag::parse(t.clone()).ok())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Arbitrary signed events of any kind, content and tags never make unwrap panic.
    #[test]
    fn unwrap_never_panics_on_arbitrary_wraps(
        seed in any::<u64>(),
        kind in any_wrap_kind(),
        content in prop_oneof![".*", "[A-Za-z0-9+/=]{0,400}", Just("#".to_owned())],
        tags in any_tags(),
        tag_bob in any::<bool>(),
    ) {
        let mut r = rng(seed);
        let one_time = Keys::generate_with_rng(&mut r);
        let mut tags = to_tags(&tags);
        if tag_bob {
            tags.push(Tag::public_key(bob().public_key()));
        }
        let wrap = signed(&one_time, kind, tags, &content, &mut r);
        prop_assert!(nip59::unwrap(&bob(), &wrap).is_err());
        let _ = nip59::open_seal(&bob(), &wrap);
    }

    /// Arbitrary plaintexts inside a valid wrap (where the seal should be) never panic.
    #[test]
    fn unwrap_never_panics_on_arbitrary_seal_plaintext(seed in any::<u64>(), inner in ".{1,300}") {
        let bob_pk = bob().public_key();
        let wrap = wrap_raw(&inner, &bob_pk, 1059, vec![Tag::public_key(bob_pk)], &mut rng(seed));
        prop_assert!(nip59::unwrap(&bob(), &wrap).is_err());
    }

    /// Near-valid rumor JSON inside a valid seal: never panics, and is accepted exactly when it
    /// is a well-formed, unsigned rumor by the seal's author with a correct or absent id.
    #[test]
    fn unwrap_never_panics_on_arbitrary_rumors(
        seed in any::<u64>(),
        kind in any::<u16>(),
        content in ".{0,100}",
        tags in any_tags(),
        author_is_sealer in any::<bool>(),
        id_mode in 0u8..3,
        with_sig in any::<bool>(),
        created_at in any::<u64>(),
    ) {
        let author = if author_is_sealer { alice() } else { mallory() };
        let mut rumor = UnsignedEvent::new(
            author.public_key(),
            Timestamp::from_secs(created_at),
            Kind::from(kind),
            to_tags(&tags),
            content,
        );
        match id_mode {
            0 => {}
            1 => rumor.ensure_id(),
            _ => rumor.id = Some(EventId::from_byte_array([7; 32])),
        }
        let mut json: Value = serde_json::to_value(&rumor).unwrap();
        if with_sig {
            json["sig"] = json!("00".repeat(64));
        }
        let bob_pk = bob().public_key();
        let mut r = rng(seed);
        let seal = seal_raw(&alice(), &bob_pk, &json.to_string(), 13, vec![], &mut r);
        let wrap = wrap_raw(&seal.as_json(), &bob_pk, 1059, vec![Tag::public_key(bob_pk)], &mut r);
        let got = nip59::unwrap(&bob(), &wrap);
        let should_open = author_is_sealer && !with_sig && id_mode != 2;
        prop_assert_eq!(got.is_ok(), should_open, "{:?}", got);
        if let Ok(got) = got {
            rumor.id = None;
            rumor.ensure_id();
            prop_assert_eq!(got.rumor, rumor);
        }
    }

    /// Whatever the rumor, wrapping then unwrapping gives it back, for both wrap kinds.
    #[test]
    fn round_trip_any_rumor(
        seed in any::<u64>(),
        kind in any::<u16>(),
        content in ".{0,300}",
        tags in any_tags(),
        ephemeral in any::<bool>(),
        now_secs in any::<u64>(),
    ) {
        let alice = alice();
        let rumor = UnsignedEvent::new(
            alice.public_key(), Timestamp::from_secs(1_600_000_000), Kind::from(kind), to_tags(&tags), content,
        );
        let now = Timestamp::from_secs(now_secs);
        let wrap_kind = if ephemeral { WrapKind::Ephemeral } else { WrapKind::Regular };
        let wrap = nip59::gift_wrap_with_tags(
            &alice, &bob().public_key(), rumor.clone(), wrap_kind, [], now, &mut rng(seed),
        ).unwrap();
        prop_assert!(in_tweak_window(wrap.created_at, now));
        let got = nip59::unwrap(&bob(), &wrap).unwrap();
        let mut expected = rumor;
        expected.ensure_id();
        prop_assert_eq!(got.rumor, expected);
        prop_assert_eq!(got.sender, alice.public_key());
    }
}
