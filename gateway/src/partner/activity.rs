//! A partner's recent activity, read from this node's audit trail: its own
//! requests and refusals and its key management, never another partner's
//! line. Only the end of the current file is read, so the cost is bounded
//! whatever the trail's size; older history is `portcullis audit search`.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{json, Value};

/// How much of the end of the trail is read.
const TAIL_BYTES: u64 = 1024 * 1024;

/// The newest `limit` entries of `partner`, newest first.
pub fn recent(path: &Path, partner: &str, limit: usize) -> std::io::Result<Vec<Value>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    // The seek may cut a multi-byte character: that line is dropped anyway.
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    if start > 0 {
        // The first line was cut by the seek.
        lines.next();
    }
    let mut out: Vec<Value> = lines
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["partner"].as_str() == Some(partner))
        .map(|entry| view(&entry))
        .collect();
    let keep = out.len().saturating_sub(limit);
    out.drain(..keep);
    out.reverse();
    Ok(out)
}

/// What the console shows of one line: never the query, a body or a key.
fn view(entry: &Value) -> Value {
    let what = if entry["kind"] == "event" {
        entry["event"].clone()
    } else {
        entry["route"].clone()
    };
    json!({
        "time": entry["time"],
        "kind": entry["kind"],
        "what": what,
        "method": entry["method"],
        "path": entry["path"],
        "status": entry["status"].as_u64().or_else(|| entry["detail"]["status"].as_u64()),
        "decision": entry["decision"],
        "reason": if entry["reason"].is_null() { entry["detail"]["reason"].clone() } else { entry["reason"].clone() },
        "key_id": entry["key_id"],
        "client_ip": entry["client_ip"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_partners_own_lines_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut lines = String::new();
        for i in 0..10 {
            let partner = if i % 2 == 0 { "acme" } else { "globex" };
            lines.push_str(&format!(
                "{{\"time\":\"t{i}\",\"kind\":\"request\",\"partner\":\"{partner}\",\"route\":\"r\",\"status\":200,\"decision\":\"allow\",\"reason\":\"proxied\"}}\n"
            ));
        }
        lines.push_str("{\"kind\":\"event\",\"event\":\"client_blocked\"}\nnot json\n");
        std::fs::write(&path, lines).unwrap();
        let seen = recent(&path, "acme", 3).unwrap();
        let times: Vec<&str> = seen.iter().map(|e| e["time"].as_str().unwrap()).collect();
        assert_eq!(times, vec!["t8", "t6", "t4"]);
        assert!(recent(&dir.path().join("none.log"), "acme", 3)
            .unwrap()
            .is_empty());
    }
}
