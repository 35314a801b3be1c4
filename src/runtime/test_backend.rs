//! A [`LightningBackend`] made of a [`TestLightningNode`] (features `runtime` + `test-util`).

use std::collections::HashMap;
use std::sync::Mutex;

use nostr::EventId;
use sha2::{Digest, Sha256};

use super::{now, InvoiceRequest, LightningBackend, SettleError, Settlements};
use crate::provider::PaymentProof;
use crate::testing::{InvoiceDescription, InvoiceParams, TestLightningNode};

/// A Lightning backend for tests and demos: real BOLT11 invoices signed by a
/// [`TestLightningNode`], and an in-process "network" where [`pay`](Self::pay) settles one
/// and reports the preimage to the provider runtime, as a real node would.
///
/// It keeps its invoices across runtime restarts: give the same backend (in an `Arc`) to
/// the restarted runtime, and payments made while it was down are reported when it attaches.
#[derive(Debug)]
pub struct TestLightningBackend {
    node: TestLightningNode,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// bolt11 -> (job, preimage, settled)
    invoices: HashMap<String, (EventId, [u8; 32], bool)>,
    settlements: Option<Settlements>,
    /// Settlements made while no runtime was attached, or whose runtime had stopped.
    undelivered: Vec<(EventId, [u8; 32])>,
    counter: u64,
}

impl TestLightningBackend {
    /// A backend invoicing through `node`.
    pub fn new(node: TestLightningNode) -> Self {
        Self {
            node,
            state: Mutex::new(State::default()),
        }
    }

    /// Pays `bolt11`, one of this backend's invoices: marks it settled, reports the preimage
    /// to the attached runtime (or to the next one to attach), and returns the preimage.
    pub fn pay(&self, bolt11: &str) -> Result<[u8; 32], String> {
        let mut state = self.state.lock().map_err(|_| "poisoned lock".to_owned())?;
        let (job, preimage, settled) = state
            .invoices
            .get_mut(bolt11.trim())
            .ok_or_else(|| "unknown invoice".to_owned())?;
        if *settled {
            return Err("invoice already paid".into());
        }
        *settled = true;
        let (job, preimage) = (*job, *preimage);
        let delivered = match &state.settlements {
            Some(settlements) => deliver(settlements, job, preimage),
            None => false,
        };
        if !delivered {
            state.undelivered.push((job, preimage));
        }
        Ok(preimage)
    }
}

/// Reports a settlement to the runtime: at once when its queue has room, else from a tokio
/// task that waits for room (when there is a tokio runtime). `false` when it could not.
fn deliver(settlements: &Settlements, job: EventId, preimage: [u8; 32]) -> bool {
    match settlements.try_settle(job, PaymentProof::Preimage(preimage)) {
        Ok(()) => true,
        Err(SettleError::Stopped(..)) => false,
        Err(SettleError::Full(job, proof)) => match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let settlements = settlements.clone();
                handle.spawn(async move { settlements.settle(job, proof).await });
                true
            }
            Err(_) => false,
        },
    }
}

#[async_trait::async_trait]
impl LightningBackend for TestLightningBackend {
    async fn create_invoice(&self, request: InvoiceRequest) -> Result<String, String> {
        let mut state = self.state.lock().map_err(|_| "poisoned lock".to_owned())?;
        state.counter += 1;
        let mut hasher = Sha256::new();
        hasher.update(b"nostr-dvm test preimage");
        hasher.update(request.job.as_bytes());
        hasher.update(state.counter.to_be_bytes());
        let preimage: [u8; 32] = hasher.finalize().into();
        let mut description = request.description;
        description.truncate(639);
        let invoice = self.node.invoice(&InvoiceParams {
            amount_msat: Some(request.amount_msat),
            description: InvoiceDescription::Direct(description),
            created_at: now(),
            expiry_secs: request.expiry_secs,
            preimage,
        });
        state
            .invoices
            .insert(invoice.bolt11.clone(), (request.job, preimage, false));
        Ok(invoice.bolt11)
    }

    fn attach(&self, settlements: Settlements) {
        if let Ok(mut state) = self.state.lock() {
            let undelivered = std::mem::take(&mut state.undelivered);
            for (job, preimage) in undelivered {
                if !deliver(&settlements, job, preimage) {
                    state.undelivered.push((job, preimage));
                }
            }
            state.settlements = Some(settlements);
        }
    }
}
