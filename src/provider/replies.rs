//! Replies: feedback and results, built, signed and sealed in the scheme the request used
//! (plain, NIP-04, NIP-44, or a NIP-59 gift wrap to the customer), and where they go.

use crate::relay::RelayCommand;
use nostr::{Event, EventId, Timestamp, UnsignedEvent};

use super::{Error, Job, Notification, Output, Provider, Reply};
use crate::job::JobState;
use crate::nip59;
use crate::nip90::{FeedbackStatus, JobFeedback, JobResult};

impl Provider {
    /// Builds, signs and publishes feedback on a job in its reply scheme; returns the id the
    /// customer sees (for a gift-wrapped job, the rumor's).
    pub(super) fn send_feedback(
        &mut self,
        now: Timestamp,
        id: EventId,
        status: FeedbackStatus,
        extra: Option<String>,
        content: Option<String>,
        with_amount: bool,
    ) -> Result<EventId, Error> {
        let job = self.jobs.get(&id).ok_or(Error::UnknownJob(id))?;
        let mut builder = JobFeedback::builder(&job.request, status);
        if let Some(extra) = extra {
            builder = builder.extra_info(extra);
        }
        if let Some(content) = content {
            builder = builder.content(content);
        }
        if with_amount {
            builder = builder.amount(job.price_msat, job.bolt11().map(str::to_owned));
        }
        if let Some(key) = cached_key(&mut self.conversations, &job.request) {
            builder = builder.conversation_key(key);
        }
        let event = builder
            .nip44_length_prefix(self.length_prefix())
            .sign(&self.keys, now, &mut self.rng)
            .map_err(|e| Error::Build(e.to_string()))?;
        self.publish_reply(now, id, event)
    }

    /// Publishes a signed reply: as it is, or gift-wrapped to the customer.
    pub(super) fn publish_reply(
        &mut self,
        now: Timestamp,
        id: EventId,
        event: Event,
    ) -> Result<EventId, Error> {
        let (event, seen_id) = self.seal_reply(now, id, event)?;
        let relays = self.job_relays(id);
        self.outbox
            .push_back(Output::Relay(RelayCommand::Publish { event, relays }));
        self.dirty = true;
        Ok(seen_id)
    }

    /// A signed reply in the job's reply scheme (gift-wrapped to the customer when the
    /// request was), and its id as the customer sees it.
    pub(super) fn seal_reply(
        &mut self,
        now: Timestamp,
        id: EventId,
        event: Event,
    ) -> Result<(Event, EventId), Error> {
        let job = self.jobs.get(&id).ok_or(Error::UnknownJob(id))?;
        let seen_id = event.id;
        let event = match job.reply {
            Reply::Direct => event,
            Reply::GiftWrap => {
                let customer = job.customer();
                let rumor = UnsignedEvent::from(event);
                let options = nip59::WrapOptions::new().length_prefix(self.length_prefix());
                nip59::gift_wrap_with(
                    &self.keys,
                    &customer,
                    rumor,
                    options,
                    [],
                    now,
                    &mut self.rng,
                )
                .map_err(|e| Error::Build(e.to_string()))?
            }
        };
        Ok((event, seen_id))
    }

    /// Builds, signs (and gift-wraps, when the job replies so) the result of a job; returns
    /// the event to publish and the result's id as the customer sees it.
    pub(super) fn build_result(
        &mut self,
        now: Timestamp,
        id: EventId,
        content: String,
    ) -> Result<(Event, EventId), Error> {
        let job = self.jobs.get(&id).ok_or(Error::UnknownJob(id))?;
        let mut builder = JobResult::builder(&job.request, content);
        if let Some(key) = cached_key(&mut self.conversations, &job.request) {
            builder = builder.conversation_key(key);
        }
        let event = builder
            .nip44_length_prefix(self.length_prefix())
            .sign(&self.keys, now, &mut self.rng)
            .map_err(|e| Error::Build(e.to_string()))?;
        self.seal_reply(now, id, event)
    }

    /// Publishes a built result and ends the job as delivered.
    pub(super) fn deliver(&mut self, now: Timestamp, id: EventId, event: Event, paid: bool) {
        self.publish_result(now, id, event);
        self.dirty = true;
        if self.config.success_feedback {
            let _ = self.send_feedback(now, id, FeedbackStatus::Success, None, None, false);
        }
        self.finish(now, id, JobState::Delivered { paid });
        self.notify(Notification::JobCompleted { job: id });
    }

    /// Publishes a job's result, and hands it to the chained jobs of this provider that wait
    /// for it as their input: a relay may never send it back to the connection that
    /// published it, and the input subscription is sent again only with the next refresh.
    pub(super) fn publish_result(&mut self, now: Timestamp, id: EventId, event: Event) {
        // A copy only when a job waits for it (a gift wrap is no input).
        let input = (self.dependents.contains_key(&id)
            && self.config.registry.for_result(event.kind).is_some())
        .then(|| event.clone());
        self.outbox.push_back(Output::Relay(RelayCommand::Publish {
            relays: self.job_relays(id),
            event,
        }));
        if let Some(input) = input {
            self.on_result_event(now, input);
        }
    }

    /// The NIP-44 length prefixes replies may use ([`ProviderConfig::nip44_extended_prefix`](super::ProviderConfig::nip44_extended_prefix)).
    pub(super) fn length_prefix(&self) -> crate::nip44::LengthPrefix {
        crate::nip44::LengthPrefix::extended_if(self.config.nip44_extended_prefix)
    }

    /// Where a job's replies go: the request's relays, then the provider's own.
    pub(super) fn job_relays(&self, id: EventId) -> Vec<String> {
        self.jobs
            .get(&id)
            .map(|job| self.reply_relays(job))
            .unwrap_or_else(|| self.config.relays.clone())
    }

    pub(super) fn reply_relays(&self, job: &Job) -> Vec<String> {
        let mut relays: Vec<String> = job
            .request
            .relays
            .iter()
            .take(self.config.max_request_relays)
            .cloned()
            .collect();
        for r in &self.config.relays {
            if !relays.contains(r) {
                relays.push(r.clone());
            }
        }
        relays
    }
}

/// The NIP-44 conversation key with a NIP-44 job's customer, from the cache (one ECDH per
/// customer while it stays cached); `None` for other schemes, or a key not on the curve (the
/// builder then reports the error).
fn cached_key(
    conversations: &mut crate::nip44::ConversationKeyCache,
    request: &crate::nip90::JobRequest,
) -> Option<crate::nip44::ConversationKey> {
    match request.encrypted {
        Some(enc) if enc.scheme == crate::encryption::Scheme::Nip44 => {
            conversations.get(&request.author).ok()
        }
        _ => None,
    }
}
