//! Shared by the benches: reads criterion's own estimates back and prints ratios against the
//! limits the issues set, in the same run.

use std::path::PathBuf;

/// Where criterion writes its estimates.
fn criterion_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CRITERION_HOME") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    PathBuf::from(target).join("criterion")
}

/// The mean time in nanoseconds criterion measured for `id` (`group/function/parameter`), or
/// `None` when that benchmark did not run (for instance when filtered out).
pub fn mean_ns(id: &str) -> Option<f64> {
    let path = criterion_dir().join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

/// Prints `label: a / b = ratio (goal OP limit) PASS|MISS`.
pub fn report(label: &str, numerator: &str, denominator: &str, goal: Goal) {
    match (mean_ns(numerator), mean_ns(denominator)) {
        (Some(a), Some(b)) if b > 0.0 => {
            let ratio = a / b;
            let (op, met) = match goal {
                Goal::AtMost(limit) => ("<=", ratio <= limit),
                Goal::AtLeast(limit) => (">=", ratio >= limit),
            };
            let limit = match goal {
                Goal::AtMost(l) | Goal::AtLeast(l) => l,
            };
            println!(
                "ratio {label}: {a:.0} ns / {b:.0} ns = {ratio:.3}x (goal {op} {limit}x) {}",
                if met { "MET" } else { "MISSED" }
            );
        }
        _ => println!("ratio {label}: not measured in this run"),
    }
}

/// The limit a ratio is held to.
#[derive(Clone, Copy)]
#[allow(dead_code)]
pub enum Goal {
    /// The ratio must not exceed this.
    AtMost(f64),
    /// The ratio must reach at least this.
    AtLeast(f64),
}
