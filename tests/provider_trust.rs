//! Whom the provider trusts and what remote input may cost it: each test is an input a
//! stranger controls, and what it must not achieve.
#![cfg(feature = "test-util")]

mod provider_harness;

use provider_harness::*;

fn wrap(h: &mut Harness, request: &Event) -> Event {
    let rumor = nostr_dvm::nostr::UnsignedEvent::from(request.clone());
    nip59::gift_wrap(
        &h.customer,
        &h.keys.public_key(),
        rumor,
        h.now(),
        &mut h.rng,
    )
    .unwrap()
}

fn deletion(h: &mut Harness, by: &Keys, target: EventId) -> Event {
    sign(
        by,
        Kind::EventDeletion,
        vec![Tag::event(target)],
        "",
        h.now(),
        &mut h.rng,
    )
}

// ---- deletions ----------------------------------------------------------------------------------

#[test]
fn a_strangers_deletion_never_replaces_the_authors() {
    let mut h = Harness::new(|c| c);
    let stranger = keys_from_seed(99);
    let request = h.request(|b| b);
    // The author deletes the request before it reaches us, then a stranger "deletes" it too.
    let customer = h.customer.clone();
    let by_author = deletion(&mut h, &customer, request.id);
    h.send(by_author);
    let by_stranger = deletion(&mut h, &stranger, request.id);
    h.send(by_stranger);
    // The author's deletion still holds: the request does not run.
    assert!(run_tasks(&h.send(request)).is_empty());
}

#[test]
fn a_strangers_deletion_before_the_request_does_not_stop_it() {
    let mut h = Harness::new(|c| c);
    let stranger = keys_from_seed(99);
    let request = h.request(|b| b);
    let by_stranger = deletion(&mut h, &stranger, request.id);
    h.send(by_stranger);
    assert_eq!(run_tasks(&h.send(request.clone())), [request.id]);
    // And after it: nothing either.
    let again = deletion(&mut h, &stranger, request.id);
    h.send(again);
    assert_eq!(h.state(&request.id), JobState::Running);
}

#[test]
fn a_deletion_is_read_up_to_a_bounded_number_of_tags() {
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    h.send(request.clone());
    // The job's id comes after MAX_DELETION_TAGS other ids: it is not looked at.
    let mut tags: Vec<Tag> = (0..nostr_dvm::provider::MAX_DELETION_TAGS)
        .map(|i| Tag::event(event_id(i as u8)))
        .collect();
    tags.push(Tag::event(request.id));
    let customer = h.customer.clone();
    let long = sign(
        &customer,
        Kind::EventDeletion,
        tags,
        "",
        h.now(),
        &mut h.rng,
    );
    h.send(long);
    assert_eq!(h.state(&request.id), JobState::Running);
    let short = deletion(&mut h, &customer, request.id);
    h.send(short);
    assert_eq!(h.state(&request.id), JobState::Cancelled);
}

#[test]
fn a_forged_deletion_naming_nothing_of_ours_costs_no_signature_check() {
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    h.send(request.clone());
    // A deletion with a broken signature naming a job of someone else: refused as foreign,
    // never reported as a bad signature (which would mean the signature was checked).
    let stranger = keys_from_seed(99);
    let good = deletion(&mut h, &stranger, request.id);
    let forged = Event::new(
        good.id,
        good.pubkey,
        good.created_at,
        good.kind,
        good.tags.to_vec(),
        good.content.clone(),
        request.sig,
    );
    let out = h.send(forged);
    assert!(notes(&out).iter().all(|n| !matches!(
        n,
        Notification::EventRefused { reason, .. } if reason.contains("signature")
    )));
    assert_eq!(h.state(&request.id), JobState::Running);
}

// ---- chained jobs --------------------------------------------------------------------------------

#[test]
fn a_strangers_result_is_never_a_chained_jobs_input() {
    let mut h = Harness::new(|c| c);
    let named = keys_from_seed(77);
    let stranger = keys_from_seed(78);
    let first = h.request(|b| b.provider(named.public_key()).param("step", "1"));
    let second = h.request(|b| b.input(JobInput::job(first.id, None)));
    h.send(second.clone());
    let first_parsed = JobRequest::from_event(&first, None).unwrap();

    // A stranger answers the first job (a valid signature, the right `e` tag).
    let fake = JobResult::builder(&first_parsed, "attacker text")
        .sign(&stranger, h.now(), &mut h.rng)
        .unwrap();
    assert!(run_tasks(&h.send(fake)).is_empty());
    assert_eq!(h.state(&second.id), JobState::WaitingForInputs);

    // A stranger with a made-up `request` tag naming itself, not signed by the customer.
    let forged_request = sign(
        &stranger,
        Kind::from(KIND),
        vec![Tag::public_key(stranger.public_key())],
        "",
        h.now(),
        &mut h.rng,
    );
    let mut tags = vec![
        Tag::event(first.id),
        Tag::public_key(h.customer.public_key()),
    ];
    tags.push(
        Tag::parse([
            "request".to_owned(),
            nostr_dvm::nostr::JsonUtil::as_json(&forged_request),
        ])
        .unwrap(),
    );
    let crafted = sign(
        &stranger,
        Kind::from(KIND + 1000),
        tags,
        "attacker text",
        h.now(),
        &mut h.rng,
    );
    assert!(run_tasks(&h.send(crafted)).is_empty());
    assert_eq!(h.state(&second.id), JobState::WaitingForInputs);

    // The provider the customer named: taken.
    let real = JobResult::builder(&first_parsed, "real text")
        .sign(&named, h.now(), &mut h.rng)
        .unwrap();
    let out = h.send(real);
    let task = out
        .iter()
        .find_map(|o| match o {
            Output::RunTask(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert!(task.texts().any(|t| t == "real text"));
}

#[test]
fn with_named_providers_off_only_trusted_results_are_inputs() {
    let trusted = keys_from_seed(79);
    let named = keys_from_seed(77);
    let mut h = Harness::new(|mut c| {
        c.inputs_from_named_providers = false;
        c.trusted_input_providers = vec![trusted.public_key()];
        c
    });
    let first = h.request(|b| b.provider(named.public_key()).param("step", "1"));
    let second = h.request(|b| b.input(JobInput::job(first.id, None)));
    h.send(second.clone());
    // The merged subscription names the trusted authors.
    let out = h.advance(DELETION_REFRESH_SECS);
    let filter = out
        .iter()
        .find_map(|o| match o {
            Output::Relay(RelayCommand::Subscribe { id, filter }) if id == "dvm-inputs" => {
                Some(filter.clone())
            }
            _ => None,
        })
        .unwrap();
    let authors = filter.authors.unwrap();
    assert!(authors.contains(&trusted.public_key()));
    assert!(authors.contains(&h.keys.public_key()));
    let first_parsed = JobRequest::from_event(&first, None).unwrap();
    let by_named = JobResult::builder(&first_parsed, "named")
        .sign(&named, h.now(), &mut h.rng)
        .unwrap();
    assert!(run_tasks(&h.send(by_named)).is_empty());
    let by_trusted = JobResult::builder(&first_parsed, "trusted")
        .sign(&trusted, h.now(), &mut h.rng)
        .unwrap();
    assert_eq!(run_tasks(&h.send(by_trusted)), [second.id]);
}

#[test]
fn chained_inputs_are_capped_in_number_and_size() {
    let mut h = Harness::new(|c| {
        c.admission(Admission {
            max_request_bytes: 1_000,
            ..Admission::default()
        })
    });
    let too_many = h.request(|mut b| {
        for i in 0..=nostr_dvm::provider::MAX_JOB_INPUTS {
            b = b.input(JobInput::job(event_id(i as u8 + 1), None));
        }
        b
    });
    assert!(matches!(
        rejected(&h.send(too_many))[..],
        [RejectReason::Malformed(_)]
    ));
    // An input larger than a request may be fails the job.
    let named = keys_from_seed(77);
    let first = h.request(|b| b.provider(named.public_key()).param("step", "1"));
    let second = h.request(|b| b.input(JobInput::job(first.id, None)));
    h.send(second.clone());
    let first_parsed = JobRequest::from_event(&first, None).unwrap();
    let big = JobResult::builder(&first_parsed, "x".repeat(1_001))
        .sign(&named, h.now(), &mut h.rng)
        .unwrap();
    let out = h.send(big);
    assert!(run_tasks(&out).is_empty());
    assert!(matches!(h.state(&second.id), JobState::Failed { .. }));
}

// ---- cheap checks first ---------------------------------------------------------------------------

#[test]
fn the_same_wrap_from_five_relays_is_opened_once() {
    let mut h = Harness::new(|c| c);
    // A wrap whose content is garbage: each opening would end in a refusal.
    let request = h.request(|b| b);
    let good = wrap(&mut h, &request);
    let garbage = sign(
        &keys_from_seed(98),
        Kind::from(1059),
        vec![Tag::public_key(h.keys.public_key())],
        "AgAAAAAA",
        h.now(),
        &mut h.rng,
    );
    let mut refusals = 0;
    for _ in 0..5 {
        refusals += notes(&h.send(garbage.clone()))
            .iter()
            .filter(|n| matches!(n, Notification::EventRefused { .. }))
            .count();
    }
    assert_eq!(refusals, 1, "opened once");
    let mut runs = 0;
    for _ in 0..5 {
        runs += run_tasks(&h.send(good.clone())).len();
    }
    assert_eq!(runs, 1);
}

#[test]
fn a_broken_copy_of_a_wrap_delivered_first_does_not_shadow_the_real_one() {
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    let good = wrap(&mut h, &request);
    let another = h.request(|b| b.param("n", "5"));
    let other = wrap(&mut h, &another);
    // A hostile relay delivers the wrap first with a signature that does not sign it, then
    // with its content changed under the same id: both refused.
    assert!(run_tasks(&h.send(with_signature_of(&good, &other))).is_empty());
    assert!(run_tasks(&h.send(with_content(&good, "garbage"))).is_empty());
    // The real wrap, from another relay, is still opened, once.
    assert_eq!(run_tasks(&h.send(good.clone())), [request.id]);
    assert!(run_tasks(&h.send(good)).is_empty());
}

#[test]
fn wraps_too_large_or_for_others_are_refused_before_any_ecdh() {
    let mut h = Harness::new(|c| {
        c.admission(Admission {
            max_request_bytes: 10_000,
            ..Admission::default()
        })
    });
    // At the edge: a request of max_request_bytes, gift-wrapped, is taken.
    let edge = h.request(|b| b.content("").param("n", "x".repeat(10_000 - 64 - 13)));
    let size = edge.content.len()
        + edge
            .tags
            .iter()
            .map(|t| t.as_slice().iter().map(String::len).sum::<usize>())
            .sum::<usize>();
    assert!(size <= 10_000, "{size}");
    let edge_wrap = wrap(&mut h, &edge);
    assert_eq!(run_tasks(&h.send(edge_wrap)), [edge.id]);
    // A wrap whose content is longer than any such request can make: refused unopened.
    let huge = sign(
        &keys_from_seed(98),
        Kind::from(1059),
        vec![Tag::public_key(h.keys.public_key())],
        &"A".repeat(60_000),
        h.now(),
        &mut h.rng,
    );
    assert!(matches!(
        rejected(&h.send(huge))[..],
        [RejectReason::TooLarge { .. }]
    ));
    // A wrap for someone else.
    let other = keys_from_seed(97);
    let rumor = nostr_dvm::nostr::UnsignedEvent::from(h.request(|b| b.param("n", "2")));
    let elsewhere =
        nip59::gift_wrap(&h.customer, &other.public_key(), rumor, h.now(), &mut h.rng).unwrap();
    let out = h.send(elsewhere);
    assert!(notes(&out).iter().any(|n| matches!(
        n,
        Notification::EventRefused { reason, .. } if reason.contains("someone else")
    )));
}

#[test]
fn proof_of_work_is_asked_of_wrapped_requests_too() {
    let mut h = Harness::new(|c| {
        c.admission(Admission {
            min_pow: 20,
            ..Admission::default()
        })
    });
    let request = h.request(|b| b);
    let wrapped = wrap(&mut h, &request);
    assert!(matches!(
        rejected(&h.send(wrapped))[..],
        [RejectReason::InsufficientPow { .. }]
    ));
}

#[test]
fn re_deliveries_and_refused_requests_do_not_eat_the_rate_limit() {
    let mut h = Harness::new(|c| {
        c.admission(Admission {
            rate_limit: Some(RateLimit {
                max_requests: 2,
                window_secs: 60,
            }),
            ..Admission::default()
        })
    });
    let first = h.request(|b| b);
    for _ in 0..5 {
        h.send(first.clone());
    }
    // An expired request is refused without counting.
    let expired = h.request(|b| b.expiration(Timestamp::from(T0 - 1)).param("n", "e"));
    assert_eq!(rejected(&h.send(expired)), [RejectReason::Expired]);
    let second = h.request(|b| b.param("n", "2"));
    assert_eq!(run_tasks(&h.send(second.clone())), [second.id]);
    let third = h.request(|b| b.param("n", "3"));
    assert_eq!(rejected(&h.send(third)), [RejectReason::RateLimited]);
}

// ---- time --------------------------------------------------------------------------------------

#[test]
fn a_far_future_expiration_gives_a_sane_wake_up() {
    let mut h = Harness::new(|mut c| {
        c.auto_accept = false;
        c
    });
    let request = h.request(|b| b.expiration(Timestamp::from(u64::MAX)));
    h.send(request.clone());
    let wake = h.provider.poll_timeout().unwrap().as_secs();
    assert!(wake <= h.now + 365 * 24 * 3_600, "{wake}");
    // A job awaiting acceptance has a deadline of its own.
    h.advance(600);
    assert_eq!(h.state(&request.id), JobState::Expired);
}

#[test]
fn a_clock_that_steps_back_does_not_reopen_a_window() {
    let mut h = Harness::new(|c| c.pricing(FixedPrice(PRICE)));
    let request = h.request(|b| b);
    let out = h.send(request.clone());
    let out = h.answer_invoices(&out);
    let fb = feedback(&out, None);
    let receipt = h.zap(fb[0].id, PRICE);
    // The provider has seen T+601 (an unrelated event), past the 600 s window; its timer
    // has not run yet.
    h.now += 601;
    let other = h.request(|b| b.param("n", "2"));
    h.send(other);
    // The wall clock steps back; the receipt arrives "at" T+100.
    h.now = T0 + 100;
    let out = h.send(receipt);
    assert!(run_tasks(&out).is_empty(), "the window reopened");
    let refund = out
        .iter()
        .find_map(|o| match o {
            Output::Refund(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(refund.reason, RefundReason::PaymentWindowClosed);
    assert_eq!(refund.received_at, Timestamp::from(T0 + 601));
}

#[test]
fn resume_does_not_restart_a_task_whose_request_expired_meanwhile() {
    // Found by the property tests: after a crash, `resume` re-issued the task of a job whose
    // request had expired while the host was down.
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b.expiration(Timestamp::from(T0 + 1)));
    assert_eq!(run_tasks(&h.send(request.clone())), [request.id]);
    let snapshot = h.provider.snapshot();
    let config = ProviderConfig::new([Kind::from(KIND)]).deterministic_seed([7; 32]);
    let mut restored = Provider::restore(h.keys.clone(), config, snapshot).unwrap();
    restored.resume(Timestamp::from(T0 + 2));
    let out: Vec<_> = std::iter::from_fn(|| restored.poll_output()).collect();
    assert!(run_tasks(&out).is_empty());
    assert_eq!(restored.job_state(&request.id), Some(&JobState::Expired));
}

// ---- telling customers ----------------------------------------------------------------------

#[test]
fn a_refused_request_that_names_us_is_told_why_once_and_within_caps() {
    let mut h = Harness::new(|c| c);
    let me = h.keys.public_key();
    let expired = h.request(|b| b.provider(me).expiration(Timestamp::from(T0 - 1)));
    let out = h.send(expired.clone());
    let fb = feedback(&out, None);
    assert_eq!(fb.len(), 1);
    assert_eq!(fb[0].status, FeedbackStatus::Error);
    assert_eq!(fb[0].request_id, expired.id);
    assert!(fb[0].extra_info.as_deref().unwrap().contains("expired"));
    // The same request from another relay: told once.
    assert!(published(&h.send(expired)).is_empty());
    // Not named: silent.
    let silent = h.request(|b| b.expiration(Timestamp::from(T0 - 1)).param("n", "1"));
    assert!(published(&h.send(silent)).is_empty());
    // A forged one (someone else's signature) is not told.
    let good = h.request(|b| {
        b.provider(me)
            .expiration(Timestamp::from(T0 - 1))
            .param("n", "2")
    });
    let forged = Event::new(
        good.id,
        good.pubkey,
        good.created_at,
        good.kind,
        good.tags.to_vec(),
        good.content.clone(),
        fb[0].event.sig,
    );
    assert!(published(&h.send(forged)).is_empty());
    // At most 3 a minute for one customer.
    let mut told = 0;
    for i in 0..6 {
        let r = h.request(|b| {
            b.provider(me)
                .expiration(Timestamp::from(T0 - 1))
                .param("m", i.to_string())
        });
        told += published(&h.send(r)).len();
    }
    assert_eq!(
        told, 2,
        "3 a minute, one of them used above; the forged one used none"
    );
}

#[test]
fn a_refused_gift_wrapped_request_is_told_gift_wrapped() {
    let mut h = Harness::new(|c| c);
    let expired = h.request(|b| b.expiration(Timestamp::from(T0 - 1)));
    let wrapped = wrap(&mut h, &expired);
    let out = h.send(wrapped);
    let events = published(&out);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind.as_u16(), 1059);
    let gift = nip59::unwrap(&h.customer, events[0]).unwrap();
    assert_eq!(gift.sender, h.keys.public_key());
    assert!(gift.rumor.content.is_empty());
    assert!(gift
        .rumor
        .tags
        .iter()
        .any(|t| t.as_slice().first().map(String::as_str) == Some("status")));
}

#[test]
fn the_relays_a_request_names_reach_the_host_only_by_policy() {
    let mut h = Harness::new(|c| c);
    let many: Vec<String> = (0..256).map(|i| format!("wss://r{i}.example")).collect();
    let request = h.request(|b| b.relays(many.clone()));
    h.send(request.clone());
    h.provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("done")))
        .unwrap();
    for out in h.drain() {
        if let Output::Relay(RelayCommand::Publish { relays, .. }) = out {
            assert_eq!(relays, ["wss://dvm.example"]);
        }
    }
    // With the opt-in, a bounded number of them, first come first.
    let mut h = Harness::new(|mut c| {
        c.max_request_relays = 2;
        c
    });
    let request = h.request(|b| b.relays(many.clone()));
    h.send(request.clone());
    h.provider
        .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("done")))
        .unwrap();
    let relays = h
        .drain()
        .into_iter()
        .find_map(|o| match o {
            Output::Relay(RelayCommand::Publish { relays, .. }) => Some(relays),
            _ => None,
        })
        .unwrap();
    assert_eq!(relays, [&many[0], &many[1], "wss://dvm.example"]);
}

#[test]
fn an_encrypted_jobs_replies_share_one_ecdh() {
    let mut h = Harness::new(|mut c| {
        c.success_feedback = true;
        c
    });
    let me = h.keys.public_key();
    for i in 0..3 {
        let request = h.request(|b| {
            b.provider(me)
                .encrypt(Scheme::Nip44)
                .param("n", i.to_string())
        });
        h.send(request.clone());
        h.provider
            .handle_task_result(h.now(), request.id, Ok(TaskOutput::new("secret")))
            .unwrap();
        let out = h.drain();
        let customer = h.customer.clone();
        assert_eq!(results(&out, Some(&customer))[0].content, "secret");
    }
    // Three jobs, each read once and answered three times (processing, result, success), one
    // customer: one ECDH.
    assert_eq!(h.provider.conversation_cache_stats(), (11, 1));
}

#[test]
fn a_malformed_expiration_counts_as_expired_plain_or_wrapped() {
    // As `nip40::is_expired` reads it: it asked to expire and its time cannot be read.
    let mut h = Harness::new(|c| c);
    let garbage = Tag::parse(["expiration", "soon"]).unwrap();
    let plain = h.request(|b| b.tag(garbage.clone()));
    assert_eq!(rejected(&h.send(plain)), [RejectReason::Expired]);
    let request = h.request(|b| b.tag(garbage).param("n", "2"));
    let wrapped = wrap(&mut h, &request);
    assert_eq!(rejected(&h.send(wrapped)), [RejectReason::Expired]);
}

// ---- events whose signature the host checked -------------------------------------------------

#[test]
fn a_host_checked_event_skips_the_signature_check_only() {
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    let other = h.request(|b| b.param("n", "2"));
    let forged = with_signature_of(&request, &other);
    // Handed in as it is, a signature that does not sign the request is refused.
    assert!(run_tasks(&h.send(forged.clone())).is_empty());
    assert!(h.provider.job_state(&request.id).is_none());
    // The host vouches for the signature: the check is skipped (the host checked some event
    // with this id, which proves its author signed exactly this content).
    h.provider.handle_verified_event(h.now(), forged);
    assert_eq!(run_tasks(&h.drain()), [request.id]);

    // Content changed under a vouched id: the id does not match, refused.
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    let tampered = with_content(&request, "something else");
    h.provider.handle_verified_event(h.now(), tampered);
    assert!(run_tasks(&h.drain()).is_empty());
    assert!(h.provider.job_state(&request.id).is_none());
    // The vouching ends with the call: the same forged signature handed in plainly later is
    // refused again.
    let other = h.request(|b| b.param("n", "3"));
    let forged = with_signature_of(&request, &other);
    assert!(run_tasks(&h.send(forged)).is_empty());
}

#[test]
fn a_seal_inside_a_host_checked_wrap_is_still_checked() {
    let mut h = Harness::new(|c| c);
    let request = h.request(|b| b);
    let good = wrap(&mut h, &request);
    // A wrap (validly signed: the host vouches for it) around a seal whose signature does
    // not sign it: the seal's own check refuses it.
    let rumor = nostr_dvm::nostr::UnsignedEvent::from(request.clone());
    let provider = h.keys.public_key();
    let seal = nip59::seal(&h.customer, &provider, rumor, h.now(), &mut h.rng).unwrap();
    let bad_seal = with_signature_of(&seal, &request);
    let ephemeral = Keys::generate();
    let content = nostr_dvm::nostr::nips::nip44::encrypt(
        ephemeral.secret_key(),
        &provider,
        serde_json::to_string(&bad_seal).unwrap(),
        nostr_dvm::nostr::nips::nip44::Version::V2,
    )
    .unwrap();
    let forged = nostr_dvm::nostr::EventBuilder::new(Kind::GiftWrap, content)
        .tags([Tag::public_key(provider)])
        .sign_with_keys(&ephemeral)
        .unwrap();
    h.provider.handle_verified_event(h.now(), forged);
    assert!(run_tasks(&h.drain()).is_empty());
    // The wrap's own signature is what the host vouches for: a wrap whose signature does not
    // sign it is refused handed in plainly, and opened when vouched for.
    let another = h.request(|b| b.param("n", "4"));
    let other = wrap(&mut h, &another);
    let badly_signed = with_signature_of(&good, &other);
    assert!(run_tasks(&h.send(badly_signed.clone())).is_empty());
    h.provider.handle_verified_event(h.now(), badly_signed);
    assert_eq!(run_tasks(&h.drain()), [request.id]);
}
