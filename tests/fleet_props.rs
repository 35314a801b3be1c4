//! Property tests of a fleet in the sans-IO core: three providers with the same keys, claims
//! decided by one table (first answer wins, as the database's insert does), each persisting
//! by updates into records of its own, driven by random sequences of: new requests (free or
//! priced) delivered to every member in a random order, deliveries again, claim answers in
//! any order, acknowledged writes, zap receipts (each delivered to every member, some twice),
//! task results, time, and crashes — a member dies with whatever it had not written, and a
//! random survivor adopts its records (`Provider::adopt`), as a lease takeover does; the
//! claim table moves the dead member's jobs to the heir. At the end the fleet settles (every
//! claim answered, write acknowledged, payment request zapped, task finished). Checked:
//!
//! - (a) no job has two result events (an heir may publish the dead member's unpublished
//!   result again: the same event);
//! - (b) after settling, every job has exactly one result (nothing lost, even across crashes);
//! - (c) a job runs at most once among the members alive at the end, and a paid job never
//!   runs before a receipt for it was delivered;
//! - (d) a receipt is counted by at most one living member, and every paid job's receipt by
//!   exactly one after settling.
//!
//! Real signed requests, real zap receipts from the test zapper.
#![cfg(feature = "test-util")]

mod provider_harness;

use std::collections::{HashMap, HashSet};

use nostr_dvm::provider::{JobRecord, ProviderSnapshot, RecordSet, StoreUpdate};
use proptest::prelude::*;
use provider_harness::*;

const MEMBERS: usize = 3;

#[derive(Debug, Clone)]
enum Action {
    /// A new request, priced or free, delivered to the members in the order `order` picks.
    NewJob { paid: bool, order: u8 },
    /// A known request delivered again to a member.
    Again { job: u8, member: u8 },
    /// A pending claim answered.
    Claim { pick: u8 },
    /// A member's pending update written and acknowledged.
    Persist { member: u8 },
    /// A payment request seen on the relay zapped; the receipt reaches every member (twice
    /// when `twice`).
    Zap { pick: u8, twice: bool },
    /// A running task of a member finishes.
    Finish { member: u8, pick: u8 },
    /// Time passes.
    Tick { secs: u8 },
    /// A member dies; a survivor (`heir`) adopts its records.
    Crash { member: u8, heir: u8 },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (any::<bool>(), any::<u8>()).prop_map(|(paid, order)| Action::NewJob { paid, order }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(job, member)| Action::Again { job, member }),
        4 => any::<u8>().prop_map(|pick| Action::Claim { pick }),
        4 => any::<u8>().prop_map(|member| Action::Persist { member }),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(pick, twice)| Action::Zap { pick, twice }),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(member, pick)| Action::Finish { member, pick }),
        1 => (1u8..20).prop_map(|secs| Action::Tick { secs }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(member, heir)| Action::Crash { member, heir }),
    ]
}

struct Member {
    h: Harness,
    alive: bool,
    /// What it wrote and had acknowledged: what a takeover finds.
    records: RecordSet,
    /// Taken and not acknowledged yet.
    unacked: Option<StoreUpdate>,
    /// The records of members it took over (their rows are its own now), newest first.
    inherited: Vec<ProviderSnapshot>,
    running: Vec<EventId>,
}

struct Fleet {
    members: Vec<Member>,
    /// Signs the customers' requests and the zapper's receipts (one random stream for all:
    /// two harnesses would draw the same preimages), on the living members' clock.
    tools: Harness,
    /// Claim table: job -> owner (moves to the heir on a takeover).
    owner: HashMap<EventId, usize>,
    /// Claims asked and not answered: (member, the job's first record).
    claims: Vec<(usize, JobRecord)>,
    /// The first records of the jobs each member won: a takeover finds them with the rest,
    /// as the database's claimed rows.
    won: Vec<Vec<JobRecord>>,
    requests: Vec<(Event, bool)>,
    /// Payment requests published: (job, feedback id).
    asked: Vec<(EventId, EventId)>,
    zapped: HashSet<EventId>,
    receipts: Vec<EventId>,
    /// Result events published per job: (member, event id).
    results: HashMap<EventId, HashSet<(usize, EventId)>>,
    /// Runs per (member, job).
    runs: HashMap<(usize, EventId), usize>,
    /// Jobs a receipt was delivered for.
    paid_for: HashSet<EventId>,
}

fn member() -> Member {
    let mut h = Harness::new(|mut c| {
        c.claim_jobs = true;
        c.zaps_only = true;
        c.admission.rate_limit = None;
        c.admission.global_rate_limit = None;
        c.run_timeout_secs = 3_600;
        c.payment_window_secs = 3_600;
        c.pricing(
            |request: &nostr_dvm::nip90::JobRequest| match request.param("paid") {
                Some(_) => Quote::Price { amount_msat: PRICE },
                None => Quote::Free,
            },
        )
    });
    h.provider.track_updates();
    Member {
        h,
        alive: true,
        records: RecordSet::default(),
        unacked: None,
        inherited: Vec::new(),
        running: Vec::new(),
    }
}

impl Fleet {
    fn new() -> Self {
        Self {
            members: (0..MEMBERS).map(|_| member()).collect(),
            tools: member().h,
            owner: HashMap::new(),
            claims: Vec::new(),
            won: vec![Vec::new(); MEMBERS],
            requests: Vec::new(),
            asked: Vec::new(),
            zapped: HashSet::new(),
            receipts: Vec::new(),
            results: HashMap::new(),
            runs: HashMap::new(),
            paid_for: HashSet::new(),
        }
    }

    fn alive(&self) -> Vec<usize> {
        (0..MEMBERS).filter(|m| self.members[*m].alive).collect()
    }

    /// Member `m`'s task for `job` finished; what it hands out then is carried out. A late
    /// result for a job that ended meanwhile is the host's error: fine.
    fn finish_task(&mut self, m: usize, job: EventId) {
        let h = &mut self.members[m].h;
        let _ =
            h.provider
                .handle_task_result(h.now(), job, Ok(TaskOutput::new(format!("done {job}"))));
        self.drain(m);
    }

    /// Carries out what member `m` hands out now, and takes its next update.
    fn drain(&mut self, m: usize) {
        let out = self.members[m].h.drain();
        for o in &out {
            match o {
                Output::ClaimJob(record) => self.claims.push((m, (**record).clone())),
                Output::RunTask(request) => {
                    let job = request.job;
                    let priced = self.requests.iter().any(|(r, paid)| r.id == job && *paid);
                    assert!(
                        !priced || self.paid_for.contains(&job),
                        "(c) member {m} runs priced job {job} before any receipt for it"
                    );
                    *self.runs.entry((m, job)).or_default() += 1;
                    self.members[m].running.push(job);
                }
                Output::Relay(RelayCommand::Publish { event, .. }) => {
                    // The relay took it.
                    self.members[m].h.provider.handle_published(event.id);
                    if event.kind.as_u16() == KIND + 1000 {
                        let result = JobResult::from_event(event, None).unwrap();
                        self.results
                            .entry(result.request_id)
                            .or_default()
                            .insert((m, event.id));
                    } else if event.kind.as_u16() == 7000 {
                        let fb = JobFeedback::from_event(event, None).unwrap();
                        if fb.status == FeedbackStatus::PaymentRequired {
                            self.asked.push((fb.request_id, fb.id));
                        }
                    }
                }
                _ => {}
            }
        }
        let member = &mut self.members[m];
        if member.unacked.is_none() {
            member.unacked = member.h.provider.poll_update();
        }
    }

    fn persist(&mut self, m: usize) {
        if let Some(update) = self.members[m].unacked.take() {
            self.members[m].records.apply(&update);
            self.members[m]
                .h
                .provider
                .handle_persisted(update.id)
                .unwrap();
        }
        self.drain(m);
    }

    fn deliver(&mut self, m: usize, event: Event) {
        if self.members[m].alive {
            let h = &mut self.members[m].h;
            h.provider.handle_event(h.now(), event);
            self.drain(m);
        }
    }

    fn act(&mut self, action: &Action) {
        let alive = self.alive();
        match *action {
            Action::NewJob { paid, order } => {
                let n = self.requests.len();
                // On a living member's clock: a dead one's stopped.
                self.tools.now = self.members[alive[0]].h.now;
                let request = self.tools.request(|b| {
                    let b = b.input(JobInput::text(format!("job {n}")));
                    if paid {
                        b.param("paid", "yes")
                    } else {
                        b
                    }
                });
                self.requests.push((request.clone(), paid));
                let mut members = alive.clone();
                let shift = usize::from(order) % members.len().max(1);
                members.rotate_left(shift);
                for m in members {
                    self.deliver(m, request.clone());
                }
            }
            Action::Again { job, member } => {
                if let Some((request, _)) = self
                    .requests
                    .get(usize::from(job) % self.requests.len().max(1))
                    .cloned()
                {
                    self.deliver(alive[usize::from(member) % alive.len()], request);
                }
            }
            Action::Claim { pick } => {
                if self.claims.is_empty() {
                    return;
                }
                let (m, record) = self.claims.remove(usize::from(pick) % self.claims.len());
                if !self.members[m].alive {
                    return;
                }
                let job = record.id();
                let won = *self.owner.entry(job).or_insert(m) == m;
                // The database holds one row per job.
                if won && !self.won.iter().flatten().any(|r| r.id() == job) {
                    self.won[m].push(record);
                }
                let h = &mut self.members[m].h;
                h.provider.handle_claim(h.now(), job, won).unwrap();
                self.drain(m);
            }
            Action::Persist { member } => {
                self.persist(alive[usize::from(member) % alive.len()]);
            }
            Action::Zap { pick, twice } => {
                let open: Vec<(EventId, EventId)> = self
                    .asked
                    .iter()
                    .filter(|(_, fid)| !self.zapped.contains(fid))
                    .copied()
                    .collect();
                if open.is_empty() {
                    return;
                }
                let (job, fid) = open[usize::from(pick) % open.len()];
                self.zap(job, fid, twice);
            }
            Action::Finish { member, pick } => {
                let m = alive[usize::from(member) % alive.len()];
                if self.members[m].running.is_empty() {
                    return;
                }
                let i = usize::from(pick) % self.members[m].running.len();
                let job = self.members[m].running.remove(i);
                self.finish_task(m, job);
            }
            Action::Tick { secs } => {
                for m in alive {
                    self.members[m].h.now += u64::from(secs);
                    let h = &mut self.members[m].h;
                    h.provider.handle_timeout(h.now());
                    self.drain(m);
                }
            }
            Action::Crash { member, heir } => {
                if alive.len() < 2 {
                    return;
                }
                let dead = alive[usize::from(member) % alive.len()];
                let others: Vec<usize> = alive.iter().copied().filter(|m| *m != dead).collect();
                let heir = others[usize::from(heir) % others.len()];
                self.members[dead].alive = false;
                self.members[dead].running.clear();
                for owner in self.owner.values_mut() {
                    if *owner == dead {
                        *owner = heir;
                    }
                }
                let claimed = std::mem::take(&mut self.won[dead]);
                self.won[heir].extend(claimed.iter().cloned());
                // Its rows, newest first: what it wrote itself, what it had taken over, the
                // jobs it won and wrote nothing more about (their claimed records). A job is
                // taken from the first that has it.
                let mut rows: Vec<ProviderSnapshot> =
                    self.members[dead].records.snapshot().into_iter().collect();
                rows.append(&mut self.members[dead].inherited);
                rows.push(ProviderSnapshot::records_only(claimed, [], []));
                let h = &mut self.members[heir].h;
                for snapshot in &rows {
                    h.provider.adopt(h.now(), snapshot.clone()).unwrap();
                }
                // The heir's own writes come first when it is taken over in turn.
                self.members[heir].inherited.extend(rows);
                self.drain(heir);
            }
        }
    }

    fn zap(&mut self, job: EventId, fid: EventId, twice: bool) {
        self.zapped.insert(fid);
        self.tools.now = self.members[self.alive()[0]].h.now;
        let receipt = self.tools.zap(fid, PRICE);
        self.receipts.push(receipt.id);
        self.paid_for.insert(job);
        for _ in 0..if twice { 2 } else { 1 } {
            for m in self.alive() {
                self.deliver(m, receipt.clone());
            }
        }
    }

    /// Everything pending is done, until nothing changes.
    fn settle(&mut self) {
        for _ in 0..200 {
            let mut busy = false;
            while !self.claims.is_empty() {
                busy = true;
                self.act(&Action::Claim { pick: 0 });
            }
            for m in self.alive() {
                if self.members[m].unacked.is_some() {
                    busy = true;
                }
                self.persist(m);
                while !self.members[m].running.is_empty() {
                    busy = true;
                    let job = self.members[m].running.remove(0);
                    self.finish_task(m, job);
                }
            }
            let open: Vec<(EventId, EventId)> = self
                .asked
                .iter()
                .filter(|(_, fid)| !self.zapped.contains(fid))
                .copied()
                .collect();
            for (job, fid) in open {
                // One payment per job: a second payment request for a paid job is not zapped.
                if self.paid_for.contains(&job) {
                    self.zapped.insert(fid);
                    continue;
                }
                busy = true;
                self.zap(job, fid, false);
            }
            if !busy {
                return;
            }
        }
        panic!("the fleet does not settle");
    }

    fn check(&self, settled: bool) {
        for (job, published) in &self.results {
            // The same signed event published again (by an heir that found it unpublished
            // in the dead member's records) is one result: relays keep it once.
            let events: HashSet<EventId> = published.iter().map(|(_, id)| *id).collect();
            assert!(events.len() <= 1, "(a) job {job} has results {published:?}");
        }
        let alive = self.alive();
        for (request, _) in &self.requests {
            let runs: usize = alive
                .iter()
                .map(|m| self.runs.get(&(*m, request.id)).copied().unwrap_or(0))
                .sum();
            assert!(
                runs <= 1,
                "(c) job {} ran {runs} times among the living",
                request.id
            );
        }
        for receipt in &self.receipts {
            let counted = alive
                .iter()
                .filter(|m| self.members[**m].h.provider.ledger().receipt_spent(receipt))
                .count();
            assert!(
                counted <= 1,
                "(d) receipt {receipt} counted by {counted} members"
            );
            if settled {
                assert_eq!(counted, 1, "(d) receipt {receipt} counted by nobody");
            }
        }
        if settled {
            for (request, _) in &self.requests {
                let results = self.results.get(&request.id).map_or(0, |published| {
                    published
                        .iter()
                        .map(|(_, id)| *id)
                        .collect::<HashSet<_>>()
                        .len()
                });
                assert_eq!(results, 1, "(b) job {} has {results} results", request.id);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("DVM_PROP_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_fleet_answers_each_job_once_and_counts_each_payment_once(
        actions in proptest::collection::vec(action(), 1..40)
    ) {
        let mut fleet = Fleet::new();
        for action in &actions {
            fleet.act(action);
            fleet.check(false);
        }
        fleet.settle();
        fleet.check(true);
    }
}
