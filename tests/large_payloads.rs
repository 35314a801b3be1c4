//! Payloads near NIP-44's 65,535-byte standard limit: requests and replies stay readable by
//! every NIP-44 implementation unless the extended length prefix is opted into, and what
//! cannot fit fails with an error naming the limit instead of being sent unreadable.
#![cfg(feature = "test-util")]

use nostr_dvm::customer::{self, Customer, CustomerConfig, Delivery, Notification};
use nostr_dvm::encryption::Scheme;
use nostr_dvm::job::JobState;
use nostr_dvm::nip44::{self, STANDARD_MAX_PLAINTEXT_LEN};
use nostr_dvm::nip59;
use nostr_dvm::nip89::{HandlerInfo, HandlerMetadata};
use nostr_dvm::nip90::{FeedbackStatus, JobFeedback, JobInput, JobRequest};
use nostr_dvm::nostr::{Event, EventId, Keys, Kind, Timestamp};
use nostr_dvm::provider::{self, Provider, ProviderConfig};
use nostr_dvm::relay::RelayCommand;
use nostr_dvm::rng::SeedSource;
use nostr_dvm::task::TaskOutput;
use nostr_dvm::testing::keys_from_seed;
use rand::rngs::StdRng;
use rand::SeedableRng;

const T0: u64 = 1_760_000_000;
const KIND: u16 = 5001;

fn now() -> Timestamp {
    Timestamp::from(T0)
}

fn provider(extended: bool) -> (Provider, Keys) {
    let keys = keys_from_seed(60);
    let mut config = ProviderConfig::new([Kind::from(KIND)]).deterministic_seed([6; 32]);
    config.admission.max_request_bytes = 256 * 1024;
    config.nip44_extended_prefix = extended;
    (Provider::new(keys.clone(), config, now()), keys)
}

fn customer(extended: bool) -> Customer {
    let mut config = CustomerConfig::new(["wss://relay.example"]);
    config.seed = SeedSource::Deterministic([5; 32]);
    config.nip44_extended_prefix = extended;
    Customer::new(keys_from_seed(61), config, now())
}

fn drain_customer(c: &mut Customer) -> Vec<customer::Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

fn published_by_customer(out: &[customer::Output]) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            customer::Output::Relay(RelayCommand::Publish { event, .. }) => Some(event.clone()),
            _ => None,
        })
        .collect()
}

/// Feeds `events` to the provider, finishes every task it starts with `answer`, and returns
/// the events it publishes.
fn serve(p: &mut Provider, events: Vec<Event>, answer: &str) -> Vec<Event> {
    for e in events {
        p.handle_event(now(), e);
    }
    let mut published = Vec::new();
    while let Some(out) = p.poll_output() {
        match out {
            provider::Output::RunTask(request) => p
                .handle_task_result(now(), request.job, Ok(TaskOutput::new(answer)))
                .unwrap(),
            provider::Output::Relay(RelayCommand::Publish { event, .. }) => published.push(event),
            _ => {}
        }
    }
    published
}

fn text_of(len: usize) -> String {
    "word ".repeat(len / 5 + 1)[..len].to_owned()
}

#[test]
fn a_gift_wrapped_summary_of_30_kib_refers_to_its_request_and_every_reader_opens_it() {
    let (mut p, provider_keys) = provider(false);
    let mut c = customer(false);
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text(text_of(30 * 1024)));
    let job = c
        .submit(
            now(),
            request,
            Delivery::GiftWrap(provider_keys.public_key()),
        )
        .unwrap();
    let sent = published_by_customer(&drain_customer(&mut c));
    let replies = serve(&mut p, sent, "a short summary");
    assert_eq!(
        p.job_state(&job),
        Some(&JobState::Delivered { paid: false })
    );
    let mut result_rumor = None;
    for wrap in &replies {
        // Within the standard limit: the payload is no longer than 65,535 bytes can make.
        assert!(wrap.content.len() <= nip44::max_payload_len(STANDARD_MAX_PLAINTEXT_LEN));
        let gift = nip59::unwrap(&keys_from_seed(61), wrap).unwrap();
        if gift.rumor.kind.as_u16() == KIND + 1000 {
            result_rumor = Some(gift.rumor);
        }
    }
    let rumor = result_rumor.expect("a result");
    let names: Vec<&str> = rumor
        .tags
        .iter()
        .map(|t| t.as_slice()[0].as_str())
        .collect();
    assert!(names.contains(&"e") && names.contains(&"p"), "{names:?}");
    assert!(
        !names.contains(&"request") && !names.contains(&"i"),
        "{names:?}"
    );
    for wrap in replies {
        c.handle_event(now(), wrap);
    }
    let notes: Vec<Notification> = drain_customer(&mut c)
        .into_iter()
        .filter_map(|o| match o {
            customer::Output::Notify(n) => Some(n),
            _ => None,
        })
        .collect();
    assert!(notes.iter().any(
        |n| matches!(n, Notification::Result { job: j, content, .. } if *j == job && content == "a short summary")
    ));
}

#[test]
fn a_public_request_still_repeats_the_request_in_its_result() {
    let (mut p, _) = provider(false);
    let mut c = customer(false);
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("short"));
    c.submit(now(), request, Delivery::Public).unwrap();
    let sent = published_by_customer(&drain_customer(&mut c));
    let replies = serve(&mut p, sent, "done");
    let result = replies
        .iter()
        .find(|e| e.kind.as_u16() == KIND + 1000)
        .unwrap();
    let names: Vec<&str> = result
        .tags
        .iter()
        .map(|t| t.as_slice()[0].as_str())
        .collect();
    assert!(
        names.contains(&"request") && names.contains(&"i"),
        "{names:?}"
    );
}

/// The provider's `error` feedback for `job`, opened as the customer sees it.
fn error_feedback(replies: &[Event], customer: &Keys, job: EventId) -> Option<String> {
    replies.iter().find_map(|e| {
        let fb = if e.kind.as_u16() == nip59::GIFT_WRAP_KIND {
            let gift = nip59::unwrap(customer, e).ok()?;
            let inner = nostr_dvm::nip90::rumor_event(&gift.rumor);
            JobFeedback::from_verified_event(&inner, Some(customer)).ok()?
        } else {
            JobFeedback::from_event(e, Some(customer)).ok()?
        };
        (fb.status == FeedbackStatus::Error && fb.request_id == job)
            .then(|| fb.extra_info.unwrap_or_default())
    })
}

#[test]
fn a_reply_too_long_for_the_standard_prefix_fails_the_job_with_feedback_naming_the_limit() {
    for delivery_is_wrap in [false, true] {
        let (mut p, provider_keys) = provider(false);
        let mut c = customer(false);
        let delivery = if delivery_is_wrap {
            Delivery::GiftWrap(provider_keys.public_key())
        } else {
            Delivery::Encrypted(provider_keys.public_key(), Scheme::Nip44)
        };
        let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("go"));
        let job = c.submit(now(), request, delivery).unwrap();
        let sent = published_by_customer(&drain_customer(&mut c));
        // 50,000 bytes: fits NIP-44 on its own, but not inside a gift wrap's two layers.
        let len = if delivery_is_wrap { 50_000 } else { 70_000 };
        let replies = serve(&mut p, sent, &text_of(len));
        assert!(
            matches!(p.job_state(&job), Some(JobState::Failed { .. })),
            "wrap {delivery_is_wrap}: {:?}",
            p.job_state(&job)
        );
        let said = error_feedback(&replies, &keys_from_seed(61), job).expect("error feedback");
        assert!(said.contains("65535"), "wrap {delivery_is_wrap}: {said}");
        assert!(replies.iter().all(|e| e.kind.as_u16() != KIND + 1000));
    }
}

#[test]
fn with_the_extended_prefix_opted_in_the_long_reply_is_delivered() {
    let (mut p, provider_keys) = provider(true);
    let mut c = customer(false);
    let delivery = Delivery::Encrypted(provider_keys.public_key(), Scheme::Nip44);
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("go"));
    let job = c.submit(now(), request, delivery).unwrap();
    let sent = published_by_customer(&drain_customer(&mut c));
    let long = text_of(70_000);
    let replies = serve(&mut p, sent, &long);
    assert_eq!(
        p.job_state(&job),
        Some(&JobState::Delivered { paid: false })
    );
    for e in replies {
        c.handle_event(now(), e);
    }
    assert!(drain_customer(&mut c).iter().any(|o| matches!(
        o,
        customer::Output::Notify(Notification::Result { content, .. }) if *content == long
    )));
}

#[test]
fn the_customer_refuses_before_sending_a_request_too_long_for_the_standard_prefix() {
    let provider_key = keys_from_seed(60).public_key();
    let cases = [
        (Delivery::Encrypted(provider_key, Scheme::Nip44), 70_000),
        (Delivery::GiftWrap(provider_key), 50_000),
    ];
    for (delivery, len) in cases {
        let mut c = customer(false);
        drain_customer(&mut c);
        let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text(text_of(len)));
        let err = c.submit(now(), request, delivery).unwrap_err();
        match &err {
            customer::Error::PlaintextTooLong { len, max } => {
                assert_eq!(*max, 65_535);
                assert!(*len > 65_535);
            }
            other => panic!("{delivery:?}: {other:?}"),
        }
        assert!(err.to_string().contains("65535"), "{err}");
        assert!(drain_customer(&mut c).is_empty(), "nothing is sent");
        assert_eq!(c.job_count(), 0);

        // Opted in, it goes out.
        let mut c = customer(true);
        let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text(text_of(len)));
        c.submit(now(), request, delivery).unwrap();
        assert_eq!(published_by_customer(&drain_customer(&mut c)).len(), 1);
    }
    // Public requests are not encrypted: no such limit.
    let mut c = customer(false);
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text(text_of(70_000)));
    c.submit(now(), request, Delivery::Public).unwrap();
}

fn announcement(keys: &Keys, at: u64, encryption: Option<bool>, wraps: Option<bool>) -> Event {
    let metadata = HandlerMetadata {
        encryption_supported: encryption,
        accepts_gift_wraps: wraps,
        ..HandlerMetadata::default()
    };
    HandlerInfo::builder("dvm")
        .kind(Kind::from(KIND))
        .metadata(metadata)
        .sign(keys, Timestamp::from(at), &mut StdRng::seed_from_u64(at))
        .unwrap()
}

#[test]
fn the_customer_fails_fast_on_a_scheme_the_providers_announcement_refuses() {
    let provider_keys = keys_from_seed(60);
    let p = provider_keys.public_key();
    let mut c = customer(false);
    drain_customer(&mut c);
    c.handle_event(
        now(),
        announcement(&provider_keys, T0 - 10, Some(false), None),
    );
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("x"));
    let err = c
        .submit(now(), request, Delivery::Encrypted(p, Scheme::Nip44))
        .unwrap_err();
    assert_eq!(
        err,
        customer::Error::Unsupported {
            provider: p,
            what: "encrypted requests"
        }
    );
    assert!(published_by_customer(&drain_customer(&mut c)).is_empty());

    // Gift wraps: the announcement says nothing, so the customer tries, and asks for newer
    // announcements of that provider while the job runs.
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("x"));
    let job = c.submit(now(), request, Delivery::GiftWrap(p)).unwrap();
    let out = drain_customer(&mut c);
    assert_eq!(published_by_customer(&out).len(), 1);
    assert!(!out.iter().any(|o| matches!(
        o,
        customer::Output::Relay(RelayCommand::Subscribe { id, .. }) if id == "dvm-customer-announcements"
    )), "the announcement for the kind is known: nothing to ask for");

    // A newer announcement refuses gift wraps: the job ends at once, with the reason.
    c.handle_event(
        now(),
        announcement(&provider_keys, T0 - 5, None, Some(false)),
    );
    let out = drain_customer(&mut c);
    assert!(out.iter().any(|o| matches!(
        o,
        customer::Output::Notify(Notification::Unsupported { job: j, provider, what })
            if *j == job && *provider == p && what == "gift-wrapped requests"
    )));
    assert_eq!(c.is_ended(&job), Some(true));
}

#[test]
fn the_customer_asks_for_the_announcement_of_a_provider_it_does_not_know() {
    let provider_keys = keys_from_seed(60);
    let p = provider_keys.public_key();
    let mut c = customer(false);
    drain_customer(&mut c);
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("x"));
    let job = c
        .submit(now(), request, Delivery::Encrypted(p, Scheme::Nip44))
        .unwrap();
    let out = drain_customer(&mut c);
    let filter = out
        .iter()
        .find_map(|o| match o {
            customer::Output::Relay(RelayCommand::Subscribe { id, filter })
                if id == "dvm-customer-announcements" =>
            {
                Some(filter.clone())
            }
            _ => None,
        })
        .expect("an announcement subscription");
    assert!(filter.authors.as_ref().unwrap().contains(&p));
    // Another key's announcement cannot speak for the provider.
    let stranger = keys_from_seed(62);
    c.handle_event(now(), announcement(&stranger, T0, Some(false), None));
    assert_eq!(c.is_ended(&job), Some(false));
    // The provider's own, refusing encryption, ends the job and closes the subscription.
    c.handle_event(now(), announcement(&provider_keys, T0, Some(false), None));
    let out = drain_customer(&mut c);
    assert_eq!(c.is_ended(&job), Some(true));
    assert!(out.iter().any(|o| matches!(
        o,
        customer::Output::Relay(RelayCommand::Unsubscribe(id)) if id == "dvm-customer-announcements"
    )));
    // A forged copy (signature broken) teaches nothing.
    let mut c = customer(false);
    let mut forged = announcement(&provider_keys, T0, Some(true), None);
    forged.content = forged.content.replace("true", "false");
    c.handle_event(now(), forged);
    let request = JobRequest::builder(Kind::from(KIND)).input(JobInput::text("x"));
    assert!(c
        .submit(now(), request, Delivery::Encrypted(p, Scheme::Nip44))
        .is_ok());
}
