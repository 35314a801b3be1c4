//! The heap a provider keeps per job, live and ended, counted by a global allocator: with
//! persistence by updates an ended job is kept as a summary (its full record is in the
//! store), without it whole. Shared by `benches/memory.rs` (the figure) and
//! `tests/ended_memory.rs` (the bound). The binary that uses it installs the allocator:
//! `#[global_allocator] static HEAP: heap::Counting = heap::Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use nostr_dvm::nip90::{JobInput, JobRequest};
use nostr_dvm::nostr::{Event, EventId, JsonUtil, Keys, Kind, Timestamp};
use nostr_dvm::provider::{Admission, Output, Provider, ProviderConfig, RelayCommand};
use nostr_dvm::task::TaskOutput;

/// Bytes allocated and not freed, in the whole process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting.
pub struct Counting;

// SAFETY: every call is forwarded to `System` with the same arguments; the counter is a
// side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The job kind measured.
const KIND: u16 = 5050;
/// The size of each request's text input, in bytes.
pub const INPUT_BYTES: usize = 1_000;

/// Heap bytes per job a provider holds.
#[derive(Debug, Clone, Copy)]
pub struct PerJob {
    /// While the jobs run.
    pub live: f64,
    /// Once they all ended (results published).
    pub ended: f64,
}

/// Runs `jobs` free jobs of [`INPUT_BYTES`] each through one provider (persisting by updates
/// when `tracking`; every update acknowledged at once, every event reported published) and
/// measures what it holds per job, running and then ended. Requests are signed (and held as
/// JSON) before the measurement; the provider parses them inside it, as from a relay.
pub fn per_job(jobs: usize, tracking: bool) -> PerJob {
    let now = Timestamp::from(1_760_000_000);
    let customer = Keys::generate();
    let requests: Vec<String> = (0..jobs)
        .map(|n| {
            let text = format!("{n:08} {}", "x".repeat(INPUT_BYTES - 9));
            JobRequest::builder(Kind::from(KIND))
                .input(JobInput::text(text))
                .sign(&customer, now, &mut rand::rngs::OsRng)
                .expect("signed")
                .as_json()
        })
        .collect();
    let config = ProviderConfig::new([Kind::from(KIND)])
        .relays(["wss://relay.example"])
        .admission(Admission {
            max_live_jobs: jobs + 1,
            max_jobs: jobs + 1,
            rate_limit: None,
            global_rate_limit: None,
            ..Admission::default()
        });
    let mut provider = Provider::new(Keys::generate(), config, now);
    if tracking {
        provider.track_updates();
    }
    let mut running = Vec::with_capacity(jobs);
    pump(&mut provider, &mut running);
    running.clear();

    let before = live_bytes();
    for json in &requests {
        provider.handle_event(now, Event::from_json(json).expect("an event"));
        pump(&mut provider, &mut running);
    }
    assert_eq!(running.len(), jobs, "every job runs");
    let live = live_bytes();
    for id in std::mem::take(&mut running) {
        provider
            .handle_task_result(now, id, Ok(TaskOutput::new("a short answer")))
            .expect("a running job");
        pump(&mut provider, &mut running);
    }
    assert_eq!(provider.live_jobs(), 0, "every job ended");
    let ended = live_bytes();
    PerJob {
        live: (live - before) as f64 / jobs as f64,
        ended: (ended - before) as f64 / jobs as f64,
    }
}

/// Drains outputs and updates: updates acknowledged, events reported published, the jobs
/// asked to run pushed onto `running`.
fn pump(provider: &mut Provider, running: &mut Vec<EventId>) {
    loop {
        let mut any = false;
        if let Some(update) = provider.poll_update() {
            provider.handle_persisted(update.id).expect("handed out");
            any = true;
        }
        while let Some(output) = provider.poll_output() {
            any = true;
            match output {
                Output::RunTask(request) => running.push(request.job),
                Output::Relay(RelayCommand::Publish { event, .. }) => {
                    provider.handle_published(event.id)
                }
                _ => {}
            }
        }
        if !any {
            return;
        }
    }
}
