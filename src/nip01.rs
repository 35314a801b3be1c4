//! NIP-01 event checks, done once and cheaply.
//!
//! `nostr` 0.44's `Event::verify_id` builds a `serde_json::Value` of the event and then a
//! `String` before hashing it. [`verify_id`] serializes `[0, pubkey, created_at, kind, tags,
//! content]` with the same serde impls straight into SHA-256: the same bytes, about a third
//! of the cost. Every parser and state machine in this crate checks ids through it.

use nostr::Event;
use sha2::{Digest, Sha256};

/// Whether the event's id is the NIP-01 hash of its fields.
pub fn verify_id(event: &Event) -> bool {
    let mut writer = HashWriter(Sha256::new());
    let fields = (
        0u8,
        &event.pubkey,
        event.created_at,
        event.kind,
        &event.tags,
        &event.content,
    );
    if serde_json::to_writer(&mut writer, &fields).is_err() {
        return false;
    }
    let hash: [u8; 32] = writer.0.finalize().into();
    hash == event.id.to_bytes()
}

/// Whether the event's id and its BIP-340 signature are both valid.
pub fn verify(event: &Event) -> bool {
    verify_id(event) && event.verify_signature()
}

/// SHA-256 as an `io::Write`.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::JsonUtil;

    #[test]
    fn agrees_with_nostr_on_every_fixture_event() {
        let file: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/dvm_events.json")).unwrap();
        let mut checked = 0;
        let mut invalid = 0;
        for entry in file["events"].as_array().unwrap() {
            let event = Event::from_json(entry["event"].to_string()).unwrap();
            assert_eq!(verify_id(&event), event.verify_id(), "{}", event.id);
            assert_eq!(verify(&event), event.verify().is_ok(), "{}", event.id);
            checked += 1;
            invalid += usize::from(!verify_id(&event));
        }
        assert_eq!(checked, 168);
        assert!(invalid > 0, "the fixture's bad ids must be seen as bad");
    }

    #[test]
    fn unicode_and_escapes_hash_the_same() {
        let keys =
            nostr::Keys::parse("0000000000000000000000000000000000000000000000000000000000000005")
                .unwrap();
        for content in [
            "",
            "é€𝄞",
            "line\nbreak \"quoted\" \\ \u{0} \u{1f} \t",
            "</script>",
        ] {
            let event = nostr::EventBuilder::text_note(content)
                .tag(nostr::Tag::parse(["t", "ü\u{7f}"]).unwrap())
                .sign_with_keys(&keys)
                .unwrap();
            assert!(verify_id(&event), "{content:?}");
            assert!(event.verify_id());
        }
    }
}
