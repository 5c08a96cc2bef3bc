//! CPU time and memory of a server under test, read from `/proc`, summed
//! over the process and its descendants (nginx's and HAProxy's workers,
//! the gateway's threads are all in its one process).

use std::fs;

/// `pid` and every process descended from it.
pub fn tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat_fields(pid)?.get(1)?.parse().ok()?)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found
}

/// The fields of `/proc/PID/stat` after the command name (which may hold
/// spaces): state, ppid, … so utime is index 11 and stime index 12.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Clock ticks per second, the unit of `/proc/PID/stat` times.
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// User plus system CPU time, in seconds, of this process's children that
/// have ended and been waited for (a load tool run to completion).
pub fn waited_children_cpu_seconds() -> f64 {
    let ticks = stat_fields(std::process::id()).map_or(0, |f| {
        let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // cutime and cstime, fields 16 and 17 of proc(5).
        field(13) + field(14)
    });
    ticks as f64 / clock_ticks() as f64
}

/// User plus system CPU time of the tree under `root`, in ticks.
pub fn cpu_ticks(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| {
            let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            field(11) + field(12)
        })
        .sum()
}

fn status_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory of the tree under `root`, in KiB.
pub fn rss_kib(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .map(|p| status_kib(p, "VmRSS:"))
        .sum()
}

/// The highest resident memory each process of the tree reached, summed, in KiB.
pub fn peak_rss_kib(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .map(|p| status_kib(p, "VmHWM:"))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu() {
        let me = std::process::id();
        // Burn CPU until the kernel has charged at least one tick.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut spin = 0u64;
        while cpu_ticks(me) == 0 && std::time::Instant::now() < deadline {
            spin = (0..100_000u64).fold(spin, |a, i| a.wrapping_add(i ^ (a >> 3)));
        }
        assert!(cpu_ticks(me) > 0, "no CPU time read ({spin})");
        assert!(rss_kib(me) > 0);
        // Read in this order, the high-water mark cannot be below the
        // earlier reading (the tree is not used: the other test's child
        // may come and go between two readings).
        let rss = status_kib(me, "VmRSS:");
        assert!(status_kib(me, "VmHWM:") >= rss);
        assert!(tree(me).contains(&me));
    }

    #[test]
    fn a_child_is_part_of_the_tree() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let found = tree(std::process::id()).contains(&child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found);
    }
}
