//! `portcullis audit search`: the records matching every filter given,
//! then a summary by reason, route and client.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub partner: Option<String>,
    pub key_id: Option<String>,
    pub client_ip: Option<String>,
    pub decision: Option<String>,
    pub route: Option<String>,
    pub reason: Option<String>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// Include events (blocks, anomalies), not just requests.
    pub events: bool,
}

/// `1h`, `30m` (that long ago) or an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| format!("{s}: too far back"));
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| {
        format!("{s}: expected a duration like 1h or a time like 2026-11-29T10:00:00Z")
    })
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(|f| f.as_str())
}

impl Filter {
    pub fn matches(&self, v: &serde_json::Value) -> bool {
        let kind = field(v, "kind");
        if kind != Some("request") && !(self.events && kind == Some("event")) {
            return false;
        }
        let same = |want: &Option<String>, name: &str| {
            want.as_deref().is_none_or(|w| field(v, name) == Some(w))
        };
        if !(same(&self.partner, "partner")
            && same(&self.key_id, "key_id")
            && same(&self.client_ip, "client_ip")
            && same(&self.decision, "decision")
            && same(&self.route, "route")
            && same(&self.reason, "reason"))
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(t) = field(v, "time").and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
                return false;
            }
        }
        true
    }
}

#[derive(Default)]
pub struct Summary {
    pub matched: u64,
    pub unreadable: u64,
    by_reason: BTreeMap<String, u64>,
    by_route: BTreeMap<String, u64>,
    by_client: BTreeMap<String, u64>,
    by_decision: BTreeMap<String, u64>,
    first: Option<String>,
    last: Option<String>,
}

impl Summary {
    fn add(&mut self, v: &serde_json::Value) {
        self.matched += 1;
        let bump = |m: &mut BTreeMap<String, u64>, name: &str| {
            let key = field(v, name).unwrap_or("-").to_string();
            *m.entry(key).or_default() += 1;
        };
        bump(&mut self.by_reason, "reason");
        bump(&mut self.by_route, "route");
        bump(&mut self.by_client, "client_ip");
        bump(&mut self.by_decision, "decision");
        if let Some(t) = field(v, "time") {
            self.first.get_or_insert_with(|| t.to_string());
            self.last = Some(t.to_string());
        }
    }

    /// A few lines a person can read: totals, then the top entries.
    pub fn render(&self) -> String {
        let mut out = format!("{} matching record(s)", self.matched);
        if let (Some(first), Some(last)) = (&self.first, &self.last) {
            out.push_str(&format!(", {first} .. {last}"));
        }
        out.push('\n');
        for (title, map) in [
            ("decision", &self.by_decision),
            ("reason", &self.by_reason),
            ("route", &self.by_route),
            ("client", &self.by_client),
        ] {
            let mut top: Vec<(&String, &u64)> = map.iter().collect();
            top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let shown: Vec<String> = top
                .iter()
                .take(10)
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            if !shown.is_empty() {
                out.push_str(&format!("  by {title}: {}\n", shown.join(" ")));
            }
        }
        if self.unreadable > 0 {
            out.push_str(&format!(
                "  {} line(s) were not JSON and were skipped\n",
                self.unreadable
            ));
        }
        out
    }
}

/// Prints matching lines to `out` as they are found; returns the summary.
pub fn search(
    files: &[PathBuf],
    filter: &Filter,
    limit: Option<u64>,
    out: &mut impl Write,
) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut printed = 0u64;
    for path in files {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                summary.unreadable += 1;
                continue;
            };
            if !filter.matches(&v) {
                continue;
            }
            summary.add(&v);
            if limit.is_none_or(|l| printed < l) {
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
                printed += 1;
            }
        }
    }
    Ok(summary)
}

/// Kept for symmetry with `--since`: how long ago a time was.
pub fn age(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partner: &str, decision: &str, reason: &str, ip: &str, time: &str) -> String {
        format!(
            r#"{{"time":"{time}","kind":"request","partner":"{partner}","decision":"{decision}","reason":"{reason}","route":"list-orders","client_ip":"{ip}","seq":0,"chain":"00"}}"#
        )
    }

    #[test]
    fn filters_combine_and_the_summary_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let lines = [
            record(
                "acme",
                "allow",
                "proxied",
                "10.0.0.1",
                "2026-11-29T10:00:00.000Z",
            ),
            record(
                "acme",
                "deny",
                "key_invalid",
                "10.0.0.9",
                "2026-11-29T10:01:00.000Z",
            ),
            record(
                "globex",
                "deny",
                "partner_mismatch",
                "10.0.0.2",
                "2026-11-29T10:02:00.000Z",
            ),
            record(
                "acme",
                "deny",
                "key_invalid",
                "10.0.0.9",
                "2026-11-29T12:00:00.000Z",
            ),
            "not json".to_string(),
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let filter = Filter {
            partner: Some("acme".into()),
            decision: Some("deny".into()),
            until: Some(parse_time("2026-11-29T11:00:00Z").unwrap()),
            ..Filter::default()
        };
        let mut out = Vec::new();
        let s = search(std::slice::from_ref(&path), &filter, None, &mut out).unwrap();
        assert_eq!(s.matched, 1);
        assert_eq!(String::from_utf8(out).unwrap().trim(), lines[1]);
        let text = s.render();
        assert!(text.contains("reason: key_invalid=1"), "{text}");
        assert!(text.contains("client: 10.0.0.9=1"), "{text}");
        assert!(text.contains("1 line(s) were not JSON"), "{text}");
    }

    #[test]
    fn relative_and_absolute_times_parse() {
        assert!(age(parse_time("1h").unwrap()) >= Duration::from_secs(3599));
        assert!(parse_time("2026-11-29T10:00:00Z").is_ok());
        assert!(parse_time("yesterday-ish").is_err());
    }
}
