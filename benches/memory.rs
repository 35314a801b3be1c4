//! What a provider holds in memory per job (the storage issue's memory figure): 10,000 free
//! jobs with a 1,000-byte input each, measured by a counting global allocator while they run
//! and once they ended, with persistence by updates (ended jobs kept as summaries, their full
//! records in the store) and without (ended jobs kept whole: the snapshot is the only copy).
//! Memory is bounded by the live jobs in full plus at most `Admission::max_jobs` ended
//! summaries (10,000 by default) and as many forgotten ids. Prints the summary's ratio to the
//! whole ended job (the issue names no number: the figure is the bound it gives).

#[path = "support/heap.rs"]
mod heap;

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

const JOBS: usize = 10_000;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: a smaller run.
    let jobs = if std::env::args().any(|a| a == "--bench") {
        JOBS
    } else {
        500
    };
    let whole = heap::per_job(jobs, false);
    let summary = heap::per_job(jobs, true);
    println!(
        "memory/live job ({} B input): {:.0} B; ended job kept whole (no store): {:.0} B; \
         ended job kept as a summary (store by updates): {:.0} B",
        heap::INPUT_BYTES,
        summary.live,
        whole.ended,
        summary.ended
    );
    println!(
        "memory/ended summary vs whole: {:.2}x; {} ended jobs (the default max_jobs) hold \
         {:.1} MB as summaries, {:.1} MB whole",
        summary.ended / whole.ended,
        JOBS,
        summary.ended * JOBS as f64 / 1e6,
        whole.ended * JOBS as f64 / 1e6
    );
}
