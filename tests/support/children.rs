//! Provider processes for the tests that kill them: this test binary started again as a
//! child, a task that logs every run to a file shared by the children, and SIGKILL.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use nostr_dvm::nostr::{EventId, Kind};
use nostr_dvm::task::{Progress, Task, TaskError, TaskOutput, TaskRequest};
use rand::rngs::OsRng;
use rand::RngCore;
use tokio::process::Child;

/// Upper-cases its text inputs after 40 ms, each run answering differently (a job run again
/// after its result went out would show as a second result event), and appends `node job`
/// to `runs` for every run.
pub struct LoggedShout {
    /// The kind it serves.
    pub kind: u16,
    /// The process's name in the log.
    pub node: String,
    /// The log, shared by the processes.
    pub runs: PathBuf,
}

#[async_trait::async_trait]
impl Task for LoggedShout {
    fn kinds(&self) -> Vec<Kind> {
        vec![Kind::from(self.kind)]
    }

    async fn run(&self, request: TaskRequest, _: Progress) -> Result<TaskOutput, TaskError> {
        log_run(&self.runs, &self.node, request.job)?;
        tokio::time::sleep(Duration::from_millis(40)).await;
        Ok(TaskOutput::new(format!(
            "{} (run {:016x})",
            request.texts().collect::<String>().to_uppercase(),
            OsRng.next_u64()
        )))
    }
}

/// Appends `node job` to the run log `runs`.
pub fn log_run(runs: &PathBuf, node: &str, job: EventId) -> Result<(), TaskError> {
    let line = format!("{node} {}\n", job.to_hex());
    // One write of one short line to a file opened for appending: lines never mix.
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(runs)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| TaskError::new(format!("run log: {e}")))
}

/// A plain nostr-sdk client of a customer with `keys` on `relay`, subscribed to the results
/// of `kind` and the feedback addressed to it; and its notifications.
pub async fn customer_client(
    relay: &str,
    keys: &nostr_dvm::nostr::Keys,
    kind: u16,
) -> (
    nostr_dvm::runtime::nostr_sdk::Client,
    tokio::sync::broadcast::Receiver<nostr_dvm::runtime::nostr_sdk::RelayPoolNotification>,
) {
    use nostr_dvm::nostr::Filter;
    let client = nostr_dvm::runtime::nostr_sdk::Client::default();
    client.add_relay(relay).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(10)).await;
    let notifications = client.notifications();
    let filter = Filter::new()
        .kinds([Kind::from(kind + 1000), Kind::JobFeedback])
        .pubkey(keys.public_key());
    client.subscribe(filter, None).await.unwrap();
    (client, notifications)
}

/// How many results of `kind` signed by `author` the relay holds for each job, fetched
/// through `client`: every result must parse as one `author` signed.
pub async fn results_per_job(
    client: &nostr_dvm::runtime::nostr_sdk::Client,
    author: nostr_dvm::nostr::PublicKey,
    kind: u16,
) -> BTreeMap<EventId, usize> {
    let filter = nostr_dvm::nostr::Filter::new()
        .kind(Kind::from(kind + 1000))
        .author(author);
    let results = client
        .fetch_events(filter, Duration::from_secs(10))
        .await
        .unwrap();
    let mut per_job: BTreeMap<EventId, usize> = BTreeMap::new();
    for event in results.iter() {
        let result = nostr_dvm::nip90::JobResult::from_event(event, None)
            .expect("a result the provider signed");
        *per_job.entry(result.request_id).or_default() += 1;
    }
    per_job
}

/// The runs logged in `runs` so far: the processes that ran each job, in order.
pub fn read_runs(runs: &PathBuf) -> BTreeMap<EventId, Vec<String>> {
    let log = std::fs::read_to_string(runs).unwrap_or_default();
    let mut by_job: BTreeMap<EventId, Vec<String>> = BTreeMap::new();
    for line in log.lines() {
        let (node, job) = line.split_once(' ').expect("node job");
        by_job
            .entry(EventId::from_hex(job).expect("a job id"))
            .or_default()
            .push(node.to_owned());
    }
    by_job
}

/// The runs logged in `runs` ([`read_runs`]), and the log removed.
pub fn take_runs(runs: &PathBuf) -> BTreeMap<EventId, Vec<String>> {
    let by_job = read_runs(runs);
    let _ = std::fs::remove_file(runs);
    by_job
}

/// SIGKILL, then reaped.
pub async fn kill_9(mut child: Child) {
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
}
