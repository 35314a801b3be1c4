//! A job's life after admission: inputs, payment, the task, its result, and the end; the
//! timer index and the per-job bookkeeping every other part uses.

use nostr::{EventId, Timestamp};

use super::{
    hex_lower, Error, HeldResult, Notification, Output, PaymentPolicy, Provider, RejectReason,
};
use crate::job::JobState;
use crate::nip90::{FeedbackStatus, InputType, JobInput};
use crate::task::{TaskOutput, TaskRequest};

impl Provider {
    /// Moves an admitted, priced job forward: wait for inputs, ask for payment, or run. A
    /// request that expired by `now` goes no further, whether or not its timer ran.
    pub(super) fn proceed(&mut self, now: Timestamp, id: EventId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.request.is_expired(now) {
            self.finish(now, id, JobState::Expired);
            self.notify(Notification::JobExpired { job: id });
            return;
        }
        let unresolved = job
            .waiting_for()
            .iter()
            .any(|dep| !job.resolved().iter().any(|(d, _)| d == dep));
        if unresolved {
            self.set_state(
                now,
                id,
                JobState::WaitingForInputs,
                Some(self.config.input_wait_secs),
            );
            let deps = self
                .jobs
                .get(&id)
                .map(|j| j.waiting_for().to_vec())
                .unwrap_or_default();
            for dep in deps {
                let list = self.dependents.entry(dep).or_default();
                if !list.contains(&id) {
                    list.push(id);
                }
            }
            // The merged input subscription: sent at once, unless it was sent within the
            // refresh interval (then with the next refresh), so a flood of chained requests
            // cannot make the provider re-send it per request.
            let recent = self.inputs_pushed_at.is_some_and(|t| {
                t.as_secs().saturating_add(super::DELETION_REFRESH_SECS) > now.as_secs()
            });
            if recent {
                self.live_set_changed(now);
            } else {
                self.inputs_pushed_at = Some(now);
                self.push_inputs_filter();
            }
            return;
        }
        let price = job.price_msat;
        // A zap on the request may have paid already (before acceptance or inputs).
        let paid = self.ledger.paid_job(&id);
        if price > 0 && self.config.payment == PaymentPolicy::PayFirst && !paid {
            if !self.take_invoice_slot(now) {
                self.refuse_job(
                    now,
                    id,
                    "too many invoices asked for: try again later".into(),
                    RejectReason::InvoiceRateLimited,
                );
                return;
            }
            self.make_unpaid_room(now);
            self.set_state(
                now,
                id,
                JobState::Invoicing,
                Some(self.config.invoice_timeout_secs),
            );
            self.ask_invoice(now, id, price);
        } else {
            self.start_task(now, id);
        }
    }

    pub(super) fn push_invoice_request(&mut self, id: EventId, amount_msat: u64) {
        let kind = self
            .jobs
            .get(&id)
            .map(|j| j.request.kind.as_u16())
            .unwrap_or_default();
        self.outbox.push_back(Output::RequestInvoice {
            job: id,
            amount_msat,
            description: format!("DVM job {} (kind {kind})", hex_lower(id.as_bytes())),
            // The window opens when the invoice arrives, at most the invoice timeout later.
            expiry_secs: self
                .config
                .payment_window_secs
                .saturating_add(self.config.invoice_timeout_secs),
        });
    }

    pub(super) fn start_task(&mut self, now: Timestamp, id: EventId) {
        self.set_state(
            now,
            id,
            JobState::Running,
            Some(self.config.run_timeout_secs),
        );
        if self.config.processing_feedback {
            let _ = self.send_feedback(now, id, FeedbackStatus::Processing, None, None, false);
        }
        if let Some(request) = self.task_request(id) {
            let output = Output::RunTask(Box::new(request));
            if self.ledger.paid_job(&id) {
                // Paid: the task starts only once the payment's ledger entry is durable.
                self.outbox.push_back(output);
            } else {
                // Nothing paid yet: a crash before the job is stored loses a run whose
                // result was never published (results wait for the job's `Delivered`
                // state), and the request, delivered again, makes the job anew. No need to
                // wait for the store.
                self.outbox.push_back_early(output);
            }
        }
        self.notify(Notification::JobStarted { job: id });
    }

    pub(super) fn task_request(&self, id: EventId) -> Option<TaskRequest> {
        let job = self.jobs.get(&id)?;
        let inputs = job
            .request
            .inputs
            .iter()
            .map(|input| {
                if input.input_type == InputType::Job {
                    let resolved = EventId::from_hex(&input.data).ok().and_then(|dep| {
                        job.resolved()
                            .iter()
                            .find(|(d, _)| *d == dep)
                            .map(|(_, c)| c)
                    });
                    if let Some(content) = resolved {
                        return JobInput {
                            data: content.clone(),
                            input_type: InputType::Text,
                            relay: input.relay.clone(),
                            marker: input.marker.clone(),
                        };
                    }
                }
                input.clone()
            })
            .collect();
        Some(TaskRequest {
            job: id,
            request: job.request.clone(),
            inputs,
            deadline: job.deadline,
        })
    }

    /// A task's output: the result is built and signed now, whatever the payment policy, so
    /// a payment only ever releases an event that exists. A result that cannot be built (an
    /// empty output cannot be NIP-44 encrypted, say) fails the job with `error` feedback.
    pub(super) fn on_task_output(
        &mut self,
        now: Timestamp,
        id: EventId,
        output: TaskOutput,
    ) -> Result<(), Error> {
        let job = self.jobs.get(&id).ok_or(Error::UnknownJob(id))?;
        let price = job.price_msat;
        let paid = self.ledger.paid_job(&id);
        let (event, seen_id) = match self.build_result(now, id, output.content) {
            Ok(built) => built,
            Err(e) => {
                self.fail(now, id, format!("the result could not be built: {e}"));
                return Ok(());
            }
        };
        if price == 0 || paid || self.config.payment == PaymentPolicy::PayFirst {
            self.deliver(now, id, event, price > 0);
            return Ok(());
        }
        match self.config.payment {
            PaymentPolicy::PartialThenPay => {
                if let Some(job) = self.job_mut(&id) {
                    job.held = Some(Box::new(HeldResult {
                        event,
                        sample: output.sample,
                    }));
                }
            }
            _ => {
                // Pay after the result: it goes out now, payment-required follows it, and a
                // zap of the result pays too.
                self.publish_result(now, id, event);
                self.bindings.insert(seen_id, id);
                if let Some(job) = self.job_mut(&id) {
                    job.result_id = Some(Box::new(seen_id));
                }
                self.notify(Notification::JobCompleted { job: id });
            }
        }
        self.set_state(
            now,
            id,
            JobState::InvoicingResult,
            Some(self.config.invoice_timeout_secs),
        );
        if self.take_invoice_slot(now) {
            self.ask_invoice(now, id, price);
        } else {
            self.no_invoice(
                now,
                id,
                "too many invoices asked for: try again later".into(),
            );
        }
        Ok(())
    }

    /// Releases the held result of a partial-then-pay job that was just paid.
    pub(super) fn release_held(&mut self, now: Timestamp, id: EventId) {
        match self.job_mut(&id).and_then(|j| j.held.take()) {
            Some(held) => self.deliver(now, id, held.event, true),
            None => self.fail(now, id, "the result was lost".into()),
        }
    }

    /// The invoice of a job whose work is done could not be made: under pay-after-result the
    /// result is out and the job ends unpaid; under partial-then-pay it fails.
    pub(super) fn no_invoice(&mut self, now: Timestamp, id: EventId, reason: String) {
        self.notify(Notification::InvoiceFailed {
            job: id,
            reason: reason.clone(),
        });
        if self.jobs.get(&id).is_some_and(|j| j.held.is_none()) {
            self.finish(now, id, JobState::Delivered { paid: false });
        } else {
            self.fail(now, id, format!("no invoice: {reason}"));
        }
    }

    /// Refuses a job with `error` feedback.
    pub(super) fn refuse_job(
        &mut self,
        now: Timestamp,
        id: EventId,
        message: String,
        reason: RejectReason,
    ) {
        let _ = self.send_feedback(
            now,
            id,
            FeedbackStatus::Error,
            Some(message.clone()),
            None,
            false,
        );
        self.finish(now, id, JobState::Rejected { reason: message });
        self.notify(Notification::JobRejected { job: id, reason });
    }

    pub(super) fn set_state(
        &mut self,
        now: Timestamp,
        id: EventId,
        state: JobState,
        timeout_secs: Option<u64>,
    ) {
        if let Some(job) = self.job_mut(&id) {
            if job.state.is_terminal() {
                return;
            }
            let unpaid = matches!(state, JobState::Invoicing | JobState::AwaitingPayment);
            job.state = state;
            job.deadline = timeout_secs.map(|t| Timestamp::from(now.as_secs().saturating_add(t)));
            job.updated_at = now;
            let key = (job.seq, id);
            if unpaid {
                self.unpaid.insert(key);
            } else {
                self.unpaid.remove(&key);
            }
            self.dirty = true;
        }
        self.schedule(id);
    }

    /// Puts a job in the timer index at its next wake-up (or takes it out).
    pub(super) fn schedule(&mut self, id: EventId) {
        let retention = self.config.retention_secs;
        // The wake-up is not part of the record: no change to persist.
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let next = job.wake_at(retention);
        if job.wake == next {
            return;
        }
        if let Some(t) = job.wake {
            self.timers.remove(&(t, job.seq, id));
        }
        if let Some(t) = next {
            self.timers.insert((t, job.seq, id));
        }
        job.wake = next;
    }

    /// The set of live jobs changed: refresh the deletion subscription soon.
    pub(super) fn live_set_changed(&mut self, now: Timestamp) {
        if self.deletion_refresh_at.is_none() {
            self.deletion_refresh_at = Some(Timestamp::from(
                now.as_secs().saturating_add(super::DELETION_REFRESH_SECS),
            ));
            self.dirty = true;
        }
    }

    /// Ends a job in a terminal state and drops what it no longer needs.
    pub(super) fn finish(&mut self, now: Timestamp, id: EventId, state: JobState) {
        let Some(job) = self.job_mut(&id) else {
            return;
        };
        if job.state.is_terminal() {
            return;
        }
        job.state = state;
        job.deadline = None;
        job.updated_at = now;
        job.held = None;
        // Chained inputs are dropped with the job.
        let chain = job.chain.take();
        let seq = job.seq;
        self.unpaid.remove(&(seq, id));
        let deps = chain.map(|c| c.waiting_for).unwrap_or_default();
        self.live = self.live.saturating_sub(1);
        self.terminal.insert((now, seq, id));
        self.schedule(id);
        for dep in deps {
            if let Some(list) = self.dependents.get_mut(&dep) {
                list.retain(|j| *j != id);
                if list.is_empty() {
                    self.dependents.remove(&dep);
                }
            }
        }
        self.dirty = true;
        self.live_set_changed(now);
    }

    pub(super) fn fail(&mut self, now: Timestamp, id: EventId, reason: String) {
        let _ = self.send_feedback(
            now,
            id,
            FeedbackStatus::Error,
            Some(reason.clone()),
            None,
            false,
        );
        self.finish(
            now,
            id,
            JobState::Failed {
                reason: reason.clone(),
            },
        );
        self.notify(Notification::JobFailed { job: id, reason });
    }

    pub(super) fn cancel_job(&mut self, now: Timestamp, id: EventId) {
        if self
            .jobs
            .get(&id)
            .is_some_and(|j| j.state == JobState::Running)
        {
            self.outbox.push_back(Output::CancelTask(id));
        }
        self.finish(now, id, JobState::Cancelled);
        self.notify(Notification::JobCancelled { job: id });
    }

    /// Checks that `job` exists and is in `expected`; the error names the state it is in.
    pub(super) fn expect_state(&self, job: EventId, expected: JobState) -> Result<(), Error> {
        let state = &self.jobs.get(&job).ok_or(Error::UnknownJob(job))?.state;
        if *state != expected {
            return Err(Error::WrongState {
                job,
                state: state.name(),
            });
        }
        Ok(())
    }

    pub(super) fn notify(&mut self, note: Notification) {
        self.outbox.push_back(Output::Notify(note));
    }

    pub(super) fn refuse_event(&mut self, event: EventId, reason: &str) {
        self.notify(Notification::EventRefused {
            event,
            reason: reason.to_owned(),
        });
    }
}
