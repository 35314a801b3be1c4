//! BOLT11 parsing ([`nostr_dvm::bolt11::Invoice`]) on hostile input.
//!
//! - `Raw`: any string;
//! - `Mutated`: a real LNbits invoice (no feature field) with characters replaced, so the
//!   bech32 checksum, the tagged fields and the signature see near-valid input.
//!
//! Whatever `lightning-invoice` accepts strictly, the crate accepts with the same fields; what
//! the crate accepts never panics when read.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nostr_dvm::bolt11::Invoice;

const LNBITS: &str = "lnbc210n1p43rlpzdq8v3jkzusxqrrsssp5jzvjft2ktlhr566vv7tlv5apc0lcle2lwrug9ct6csgzu066gcaspp56taghyq503lw3k2p0j9d6mk2h2utq3f0eww7dtxv0f0czfe572gqrjt70ffk3zdt670l0hhg7l02h2yysvya89cdc2c8uzs83twn2zth0dqegxvpwqwaasqecgkxcrs9rvxjm947yd9uqrkn8pwt2e8m3dqpggqmu7";

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(String),
    Mutated(Vec<(u16, u8)>),
}

fuzz_target!(|input: Input| {
    let text = match input {
        Input::Raw(s) => s,
        Input::Mutated(edits) => {
            let mut bytes = LNBITS.as_bytes().to_vec();
            for (at, with) in edits {
                let at = usize::from(at) % bytes.len();
                bytes[at] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l"[usize::from(with) % 32];
            }
            String::from_utf8(bytes).expect("bech32 characters")
        }
    };
    let ours = Invoice::parse(&text);
    if let Ok(invoice) = &ours {
        let _ = invoice.description();
        let _ = invoice.currency();
        assert!(invoice.expires_at() >= invoice.created_at());
        let _ = invoice.payment_hash();
        let _ = invoice.amount_msat();
    }
    if let Ok(strict) = text.trim().parse::<lightning_invoice::Bolt11Invoice>() {
        let invoice = ours.expect("what lightning-invoice accepts is accepted");
        assert_eq!(invoice.amount_msat(), strict.amount_milli_satoshis());
        let strict_hash: &[u8] = strict.payment_hash().as_ref();
        assert_eq!(invoice.payment_hash().as_slice(), strict_hash);
    }
});
