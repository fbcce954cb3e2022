//! Machine metadata carried by every benchmark record.

use std::process::Command;

/// Where and how a measurement was taken.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MachineInfo {
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// Logical CPUs the process may use.
    pub logical_cpus: usize,
    /// The SIMD instruction set pulp dispatches to.
    pub simd_level: &'static str,
    /// Threads of the measurement.
    pub threads: usize,
    /// `git rev-parse --short HEAD`.
    pub git_revision: String,
    /// `rustc --version`.
    pub rustc: String,
}

impl MachineInfo {
    /// Collects the metadata; fields that cannot be read say `"unknown"`.
    pub fn collect(threads: usize) -> Self {
        MachineInfo {
            cpu_model: cpu_model(),
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            simd_level: poly_core::simd_level(),
            threads,
            git_revision: command_output("git", &["rev-parse", "--short", "HEAD"]),
            rustc: command_output("rustc", &["--version"]),
        }
    }

    /// The metadata as one line of JSON.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).expect("machine metadata serializes")
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), or `unknown`: a busy machine is the
/// first suspect when figures drift.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_filled_in() {
        let info = MachineInfo::collect(2);
        assert_eq!(info.threads, 2);
        assert!(info.logical_cpus >= 1);
        assert!(!info.simd_level.is_empty());
        let json: serde_json::Value = serde_json::from_str(&info.json_line()).unwrap();
        assert_eq!(json["threads"], 2);
        if cfg!(target_os = "linux") {
            let before = peak_rss_bytes().unwrap();
            let big = vec![1u8; 64 << 20];
            std::hint::black_box(&big);
            assert!(peak_rss_bytes().unwrap() >= before.max(64 << 20));
        }
    }
}
