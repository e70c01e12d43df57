//! What the kernel and the gateway's `/metrics` say about the processes under test: CPU time
//! (utime + stime of `/proc/<pid>/stat`), resident memory (`VmRSS`, `VmHWM`), sampled while a
//! run goes on, and the LDAP operations the gateway sent, by operation.

use crate::release_gateway::status_field_kib;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the resident memory is sampled.
const RSS_PERIOD: Duration = Duration::from_millis(50);

/// Clock ticks per second of the `/proc/<pid>/stat` times: `getconf CLK_TCK`, else 100.
pub fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User plus system CPU time of a process so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    // Counting from state (field 3), utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (field(11), field(12)) {
        (Some(utime), Some(stime)) => Ok(utime + stime),
        _ => Err(format!("unexpected {path}: {stat}")),
    }
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`), `None` once the process is gone.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field_kib(&status, field)
}

/// The largest `VmRSS` of the watched process since the last [`RssWatch::take_max`], sampled in
/// the background every 50 ms.
pub struct RssWatch {
    pid: AtomicU32,
    max_kib: AtomicU64,
}

impl RssWatch {
    pub fn start(pid: u32) -> Arc<RssWatch> {
        let watch = Arc::new(RssWatch {
            pid: AtomicU32::new(pid),
            max_kib: AtomicU64::new(0),
        });
        let sampler = Arc::downgrade(&watch);
        tokio::spawn(async move {
            while let Some(watch) = sampler.upgrade() {
                watch.sample();
                drop(watch);
                tokio::time::sleep(RSS_PERIOD).await;
            }
        });
        watch
    }

    /// Watches another process from now on (a restarted gateway).
    pub fn follow(&self, pid: u32) {
        self.pid.store(pid, Ordering::Relaxed);
        self.take_max();
    }

    fn sample(&self) -> u64 {
        let rss = status_kib(self.pid.load(Ordering::Relaxed), "VmRSS").unwrap_or(0);
        self.max_kib.fetch_max(rss, Ordering::Relaxed);
        rss
    }

    /// The peak since the last call (including a sample taken now), and starts a new period.
    pub fn take_max(&self) -> u64 {
        let now = self.sample();
        self.max_kib.swap(now, Ordering::Relaxed).max(now)
    }
}

/// `scim_gateway_directory_operations_total` summed over result codes, by operation.
pub fn directory_operations(exposition: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("scim_gateway_directory_operations_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let operation = labels
            .split(',')
            .find_map(|l| l.strip_prefix("operation=\""))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or("?");
        *out.entry(operation.to_string()).or_insert(0.0) += value.trim().parse().unwrap_or(0.0);
    }
    out
}

/// The sum of every series of the histogram `name` (its `_sum` lines), in seconds.
pub fn histogram_seconds(exposition: &str, name: &str) -> f64 {
    let prefix = format!("{name}_sum");
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .filter(|rest| rest.starts_with('{') || rest.starts_with(' '))
        .filter_map(|rest| rest.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum()
}

/// `after - before`, per key.
pub fn difference(
    after: &BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
