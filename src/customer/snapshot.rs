//! Persistence: everything a customer knows, as serde data.

use crate::relay::RelayCommand;
use std::collections::{BTreeMap, HashMap, VecDeque};

use nostr::{Event, EventId, Keys, PublicKey, Timestamp};
use serde::{Deserialize, Serialize};

use super::{
    job_subscription, Customer, CustomerConfig, Delivery, Error, Job, JobEnd, Notification, Output,
    Payment, PaymentRef, PaymentState, ProviderAnswer,
};
use crate::nip90::JobRequest;
use crate::rng::{DvmRng, RngState};

/// A customer's whole state: its jobs and their answers, its payments (with their outcomes or
/// their lack of one), its RNG position and the outputs not yet drained. Serialize it with
/// any serde format; it holds the RNG seed, so keep it as private as the keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerSnapshot {
    version: u32,
    rng: RngState,
    jobs: Vec<SavedJob>,
    payments: Vec<(PaymentRef, Payment)>,
    outbox: Vec<SavedOutput>,
}

/// Version 2: relay outputs are saved as one [`RelayCommand`].
const VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedJob {
    request: Event,
    delivery: Delivery,
    answers: Vec<(PublicKey, ProviderAnswer)>,
    deadline: Timestamp,
    payee: Option<PublicKey>,
    result_from: Option<(PublicKey, Timestamp)>,
    ended: Option<(Timestamp, JobEnd)>,
    seen: Vec<EventId>,
}

/// The outputs kept: payments are not, they are looked up on restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum SavedOutput {
    Relay(RelayCommand),
    Notify(Notification),
}

impl Customer {
    /// The customer's whole state. Clears [`needs_persistence`](Self::needs_persistence).
    pub fn snapshot(&mut self) -> CustomerSnapshot {
        self.dirty = false;
        let mut jobs: Vec<SavedJob> = self
            .jobs
            .values()
            .map(|j| SavedJob {
                request: j.request.event.clone(),
                delivery: j.delivery,
                answers: j.answers.iter().map(|(k, a)| (*k, a.clone())).collect(),
                deadline: j.deadline,
                payee: j.payee,
                result_from: j.result_from,
                ended: j.ended,
                seen: j.seen.iter().copied().collect(),
            })
            .collect();
        jobs.sort_by_key(|j| (j.request.created_at, j.request.id));
        CustomerSnapshot {
            version: VERSION,
            rng: self.rng.state(),
            jobs,
            payments: self.payments.iter().map(|(r, p)| (*r, p.clone())).collect(),
            outbox: self.outbox.iter().filter_map(save_output).collect(),
        }
    }

    /// A customer that continues where the one that made `snapshot` was. Give it the same
    /// keys and an equivalent config.
    ///
    /// Its first outputs subscribe again (to its gift wraps and to the answers of every job
    /// not ended), then come the saved outputs, then one [`Output::LookupPayment`] for every
    /// payment without an outcome: the host looks it up in its wallet and reports with
    /// [`handle_payment_outcome`](Self::handle_payment_outcome); nothing is paid again.
    ///
    /// Randomness: under the default [`SeedSource::OperatingSystem`](crate::rng::SeedSource)
    /// fresh entropy is mixed into the saved RNG state ([`DvmRng::restore`]); under a
    /// deterministic seed the restored customer continues byte for byte.
    pub fn restore(
        keys: Keys,
        config: CustomerConfig,
        snapshot: CustomerSnapshot,
        now: Timestamp,
    ) -> Result<Self, Error> {
        if snapshot.version != VERSION {
            return Err(Error::Restore(format!(
                "snapshot version {} (this build reads {VERSION})",
                snapshot.version
            )));
        }
        let mut jobs = HashMap::new();
        let mut since = now;
        for saved in snapshot.jobs {
            let request =
                JobRequest::from_verified_event_with(&saved.request, Some(&keys), &config.registry)
                    .map_err(|e| Error::Restore(format!("job request: {e}")))?;
            if saved.ended.is_none() {
                since = since.min(request.created_at);
            }
            jobs.insert(
                request.id,
                Job {
                    request,
                    delivery: saved.delivery,
                    answers: saved.answers.into_iter().collect::<BTreeMap<_, _>>(),
                    deadline: saved.deadline,
                    payee: saved.payee,
                    result_from: saved.result_from,
                    ended: saved.ended,
                    seen: saved.seen.into_iter().collect::<VecDeque<_>>(),
                    payments: Vec::new(),
                },
            );
        }
        let mut payments: Vec<(PaymentRef, Payment)> = snapshot.payments;
        payments.sort_by_key(|(r, p)| (p.started_at, *r));
        for (reference, payment) in &payments {
            let job = jobs.get_mut(&payment.job).ok_or_else(|| {
                Error::Restore(format!("a payment of unknown job {}", payment.job))
            })?;
            job.payments.push(*reference);
        }
        let rng = DvmRng::restore(snapshot.rng, &config.seed);
        let mut customer = Self {
            conversations: super::conversation_cache(&keys),
            keys,
            config,
            rng,
            jobs,
            payments: payments.into_iter().collect(),
            outbox: VecDeque::new(),
            dirty: false,
            announcements: Default::default(),
            announcement_authors: Default::default(),
            announcements_stale: false,
        };
        customer.subscribe_inbox(since);
        let mut live: Vec<&Job> = customer
            .jobs
            .values()
            .filter(|j| j.ended.is_none())
            .collect();
        live.sort_by_key(|j| (j.request.created_at, j.request.id));
        let subscriptions: Vec<Output> = live
            .into_iter()
            .map(|j| job_subscription(&j.request, &customer.keys))
            .collect();
        customer.outbox.extend(subscriptions);
        customer.subscribe_announcements();
        for saved in snapshot.outbox {
            customer.outbox.push_back(match saved {
                SavedOutput::Relay(command) => Output::Relay(command),
                SavedOutput::Notify(n) => Output::Notify(n),
            });
        }
        let mut in_doubt: Vec<(Timestamp, PaymentRef)> = customer
            .payments
            .iter()
            .filter(|(_, p)| p.state == PaymentState::InFlight)
            .map(|(r, p)| (p.started_at, *r))
            .collect();
        in_doubt.sort();
        for (_, reference) in in_doubt {
            if let Some(p) = customer.payments.get(&reference) {
                customer.outbox.push_back(Output::LookupPayment {
                    job: p.job,
                    provider: p.provider,
                    payment: reference,
                    amount_msat: p.amount_msat,
                    bolt11: p.bolt11.clone(),
                });
            }
        }
        Ok(customer)
    }
}

fn save_output(output: &Output) -> Option<SavedOutput> {
    Some(match output {
        Output::Relay(command) => SavedOutput::Relay(command.clone()),
        Output::Notify(n) => SavedOutput::Notify(n.clone()),
        Output::PayInvoice { .. } | Output::SendZap { .. } | Output::LookupPayment { .. } => {
            return None
        }
    })
}
