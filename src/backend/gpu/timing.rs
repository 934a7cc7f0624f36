//! Where a context's decodes spend their wall time, by phase, for `RF_GPU_TIMING=1`: the
//! host's tables and their upload, enqueueing the launches (or replaying a graph), waiting
//! for the GPU, and the logits download. With it on, each decode synchronizes the stream
//! before the download, so that the wait and the copy are told apart (the copy then no
//! longer overlaps anything: a few microseconds at most). The totals go to stderr when the
//! context is dropped; only decodes that end in a download of logits count.

use std::time::{Duration, Instant};

/// The phases, in the order a decode runs them.
#[derive(Clone, Copy)]
pub(super) enum Phase {
    Tables,
    Launches,
    Wait,
    Download,
}

const NAMES: [&str; 4] = ["tables + upload", "launches", "GPU wait", "logits download"];

pub(super) struct PhaseClock {
    on: bool,
    mark: Option<Instant>,
    totals: [Duration; 4],
    decodes: u64,
    rows: u64,
    bytes: u64,
}

impl PhaseClock {
    pub fn from_env() -> PhaseClock {
        PhaseClock {
            on: std::env::var("RF_GPU_TIMING").is_ok_and(|v| v == "1"),
            mark: None,
            totals: [Duration::ZERO; 4],
            decodes: 0,
            rows: 0,
            bytes: 0,
        }
    }

    pub fn on(&self) -> bool {
        self.on
    }

    /// A decode begins.
    pub fn start(&mut self) {
        if self.on {
            self.mark = Some(Instant::now());
        }
    }

    /// `phase` ended now.
    pub fn lap(&mut self, phase: Phase) {
        if let Some(m) = self.mark {
            let now = Instant::now();
            self.totals[phase as usize] += now - m;
            self.mark = Some(now);
        }
    }

    /// The download of `bytes` of logits for `rows` batch rows ended: the decode counts.
    pub fn done(&mut self, rows: usize, bytes: usize) {
        if self.mark.is_some() {
            self.lap(Phase::Download);
            self.mark = None;
            self.decodes += 1;
            self.rows += rows as u64;
            self.bytes += bytes as u64;
        }
    }

    /// The report: per decode, each phase's mean in milliseconds.
    fn report(&self) -> String {
        let n = self.decodes.max(1) as f64;
        let phases: Vec<String> = NAMES
            .iter()
            .zip(&self.totals)
            .map(|(name, t)| format!("{name} {:.3}", t.as_secs_f64() * 1e3 / n))
            .collect();
        let total: Duration = self.totals.iter().sum();
        format!(
            "GPU decode timing: {} decodes, {:.1} rows and {:.1} MB of logits each; ms per \
             decode: {}; total {:.3}",
            self.decodes,
            self.rows as f64 / n,
            self.bytes as f64 / n / 1e6,
            phases.join(", "),
            total.as_secs_f64() * 1e3 / n
        )
    }
}

impl Drop for PhaseClock {
    fn drop(&mut self) {
        if self.on && self.decodes > 0 {
            // Asked for by RF_GPU_TIMING=1: a diagnostic for whoever set it.
            eprintln!("{}", self.report());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finished_decodes_count_and_the_report_averages_them() {
        let mut c = PhaseClock {
            on: true,
            ..PhaseClock::from_env()
        };
        c.start();
        c.lap(Phase::Tables);
        // A decode that ended before any download (partial offload, no outputs).
        c.start();
        c.lap(Phase::Tables);
        c.lap(Phase::Launches);
        c.lap(Phase::Wait);
        c.done(4, 2_000_000);
        assert_eq!((c.decodes, c.rows, c.bytes), (1, 4, 2_000_000));
        let r = c.report();
        assert!(r.contains("1 decodes, 4.0 rows and 2.0 MB"), "{r}");
        assert!(r.contains("logits download"), "{r}");
        // Off, so that dropping it prints nothing into the test's output.
        c.on = false;
        let mut off = PhaseClock {
            on: false,
            ..PhaseClock::from_env()
        };
        off.start();
        off.done(1, 1);
        assert_eq!(off.decodes, 0);
    }
}
