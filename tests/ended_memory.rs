//! An ended job leaves memory once its full record is stored: with persistence by updates
//! the provider keeps a summary of well under a third of the whole job (a 1,000-byte input
//! each), and without a store the job stays whole. Counted by a global allocator.

#[path = "../benches/support/heap.rs"]
mod heap;

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

#[test]
fn an_ended_job_costs_a_summary_not_the_whole_job() {
    let whole = heap::per_job(300, false);
    let summary = heap::per_job(300, true);
    eprintln!("whole {whole:?}, summary {summary:?}");
    assert!(
        whole.ended > heap::INPUT_BYTES as f64 * 2.0,
        "without a store the request stays whole: {whole:?}"
    );
    assert!(
        summary.ended * 3.0 < whole.ended,
        "summary {summary:?} vs whole {whole:?}"
    );
    assert!(summary.ended < 1_200.0, "{summary:?}");
    assert!(
        summary.live > 3.0 * summary.ended,
        "a running job is held whole"
    );
}
