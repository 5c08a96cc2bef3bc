//! The hash chain over audit lines. Each line ends with
//! `,"seq":N,"chain":"<hex>"}`, where `chain` is BLAKE3 over the previous
//! line's chain value followed by this line's bytes up to (not including)
//! `,"chain"`. Editing a line breaks its own hash; removing or reordering
//! lines shows in `seq`. With a chain key (a secret file), the hash is
//! keyed, so someone able to edit the file cannot recompute the chain
//! either.

use std::io::BufRead;
use std::path::Path;

/// The chain value before the first record.
pub const GENESIS: [u8; 32] = [0; 32];

const CHAIN_FIELD: &str = ",\"chain\":\"";

/// Secret that keys the chain hash.
#[derive(Clone)]
pub struct ChainKey([u8; 32]);

impl ChainKey {
    /// Any file of at least 32 bytes; the key is derived from its content.
    pub fn load(path: &Path) -> Result<ChainKey, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < 32 {
            return Err(format!(
                "{}: an audit chain key needs at least 32 bytes",
                path.display()
            ));
        }
        Ok(ChainKey(blake3::derive_key(
            "portcullis audit chain 2026-11 v1",
            trimmed,
        )))
    }
}

fn hasher(key: Option<&ChainKey>) -> blake3::Hasher {
    match key {
        Some(k) => blake3::Hasher::new_keyed(&k.0),
        None => blake3::Hasher::new(),
    }
}

/// Where the chain stands: the next sequence number and the last hash.
#[derive(Clone)]
pub struct Chain {
    key: Option<ChainKey>,
    pub next_seq: u64,
    pub prev: [u8; 32],
}

impl Chain {
    pub fn new(key: Option<ChainKey>) -> Chain {
        Chain {
            key,
            next_seq: 0,
            prev: GENESIS,
        }
    }

    /// Continues after an existing line, when that line is well-formed.
    pub fn resume_after(&mut self, line: &str) -> bool {
        match parse_line(line) {
            Some(parsed) => {
                self.next_seq = parsed.seq + 1;
                self.prev = parsed.chain;
                true
            }
            None => false,
        }
    }

    /// Turns a serialised JSON object into a chained line (with newline).
    pub fn seal(&mut self, mut object: Vec<u8>) -> Vec<u8> {
        if object.last() == Some(&b'}') {
            object.pop();
        }
        if object.len() > 1 {
            object.push(b',');
        }
        object.extend_from_slice(format!("\"seq\":{}", self.next_seq).as_bytes());
        let mut h = hasher(self.key.as_ref());
        h.update(&self.prev);
        h.update(&object);
        let hash = h.finalize();
        object.extend_from_slice(CHAIN_FIELD.as_bytes());
        object.extend_from_slice(hash.to_hex().as_bytes());
        object.extend_from_slice(b"\"}\n");
        self.prev = *hash.as_bytes();
        self.next_seq += 1;
        object
    }
}

struct Parsed<'a> {
    hashed: &'a str,
    seq: u64,
    chain: [u8; 32],
}

fn parse_line(line: &str) -> Option<Parsed<'_>> {
    let at = line.rfind(CHAIN_FIELD)?;
    let hex = line[at + CHAIN_FIELD.len()..].strip_suffix("\"}")?;
    let chain: [u8; 32] = blake3::Hash::from_hex(hex).ok()?.into();
    let hashed = &line[..at];
    let seq_at = hashed
        .rfind(",\"seq\":")
        .map(|i| i + 7)
        .or_else(|| hashed.strip_prefix("{\"seq\":").map(|_| "{\"seq\":".len()))?;
    let seq = hashed[seq_at..].parse().ok()?;
    Some(Parsed { hashed, seq, chain })
}

/// What `audit verify` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Finding {
    /// Every line checked out.
    Intact {
        records: u64,
        first_seq: Option<u64>,
        last_chain: Option<String>,
    },
    /// The first problem: where, and what it looks like.
    Broken {
        file: String,
        line: usize,
        problem: String,
    },
}

/// Checks files in the order given (oldest rotated file first). When the
/// first line is not the start of a chain (seq 0), it is taken on trust as
/// the anchor: there is nothing before it to check it against.
pub fn verify(files: &[&Path], key: Option<&ChainKey>) -> Result<Finding, String> {
    let mut prev: Option<([u8; 32], u64)> = None;
    let mut records = 0u64;
    let mut first_seq = None;
    for file in files {
        let name = file.display().to_string();
        let f = std::fs::File::open(file).map_err(|e| format!("cannot read {name}: {e}"))?;
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| format!("cannot read {name}: {e}"))?;
            let broken = |problem: String| Finding::Broken {
                file: name.clone(),
                line: i + 1,
                problem,
            };
            let Some(parsed) = parse_line(&line) else {
                return Ok(broken(
                    "not a chained audit line (altered or truncated)".into(),
                ));
            };
            let expected_prev = match prev {
                None if parsed.seq == 0 => Some(GENESIS),
                None => None,
                Some((_, seq)) if parsed.seq > seq + 1 => {
                    return Ok(broken(format!(
                        "seq {} follows seq {seq}: {} record(s) removed",
                        parsed.seq,
                        parsed.seq - seq - 1
                    )));
                }
                Some((_, seq)) if parsed.seq <= seq => {
                    return Ok(broken(format!(
                        "seq {} follows seq {seq}: records reordered or repeated",
                        parsed.seq
                    )));
                }
                Some((chain, _)) => Some(chain),
            };
            if let Some(expected_prev) = expected_prev {
                let mut h = hasher(key);
                h.update(&expected_prev);
                h.update(parsed.hashed.as_bytes());
                if *h.finalize().as_bytes() != parsed.chain {
                    return Ok(broken(format!(
                        "record seq {} was altered (its hash does not match)",
                        parsed.seq
                    )));
                }
            }
            first_seq.get_or_insert(parsed.seq);
            prev = Some((parsed.chain, parsed.seq));
            records += 1;
        }
    }
    Ok(Finding::Intact {
        records,
        first_seq,
        last_chain: prev.map(|(c, _)| blake3::Hash::from(c).to_hex().to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_lines(lines: &[Vec<u8>]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for l in lines {
            f.write_all(l).unwrap();
        }
        f
    }

    fn chained(n: usize, key: Option<ChainKey>) -> Vec<Vec<u8>> {
        let mut chain = Chain::new(key);
        (0..n)
            .map(|i| chain.seal(format!("{{\"n\":{i},\"who\":\"acme\"}}").into_bytes()))
            .collect()
    }

    fn check(lines: &[Vec<u8>], key: Option<&ChainKey>) -> Finding {
        let f = write_lines(lines);
        verify(&[f.path()], key).unwrap()
    }

    fn broken_line(f: Finding) -> (usize, String) {
        match f {
            Finding::Broken { line, problem, .. } => (line, problem),
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let lines = chained(5, None);
        assert!(matches!(
            check(&lines, None),
            Finding::Intact {
                records: 5,
                first_seq: Some(0),
                ..
            }
        ));
    }

    #[test]
    fn an_edited_line_is_reported_at_its_line() {
        let mut lines = chained(5, None);
        lines[2] = String::from_utf8(lines[2].clone())
            .unwrap()
            .replace("acme", "acmf")
            .into_bytes();
        let (line, problem) = broken_line(check(&lines, None));
        assert_eq!(line, 3);
        assert!(problem.contains("altered"), "{problem}");
    }

    #[test]
    fn a_removed_line_is_reported() {
        let mut lines = chained(5, None);
        lines.remove(1);
        let (line, problem) = broken_line(check(&lines, None));
        assert_eq!(line, 2);
        assert!(problem.contains("1 record(s) removed"), "{problem}");
    }

    #[test]
    fn swapped_lines_are_reported() {
        let mut lines = chained(5, None);
        lines.swap(2, 3);
        let (line, problem) = broken_line(check(&lines, None));
        assert_eq!(line, 3);
        assert!(problem.contains("removed") || problem.contains("reordered"));
    }

    #[test]
    fn a_recomputed_chain_fails_against_the_key() {
        let key = ChainKey(blake3::derive_key("test", b"secret material"));
        let forged = chained(3, None);
        let (line, _) = broken_line(check(&forged, Some(&key)));
        assert_eq!(line, 1);
        let genuine = chained(3, Some(key.clone()));
        assert!(matches!(
            check(&genuine, Some(&key)),
            Finding::Intact { .. }
        ));
    }

    #[test]
    fn the_chain_continues_across_rotated_files() {
        let lines = chained(6, None);
        let older = write_lines(&lines[..3]);
        let newer = write_lines(&lines[3..]);
        assert!(matches!(
            verify(&[older.path(), newer.path()], None).unwrap(),
            Finding::Intact { records: 6, .. }
        ));
        // Given newest first, the order is wrong and says so.
        assert!(matches!(
            verify(&[newer.path(), older.path()], None).unwrap(),
            Finding::Broken { .. }
        ));
        // A rotated file alone is anchored on its first line.
        assert!(matches!(
            verify(&[newer.path()], None).unwrap(),
            Finding::Intact {
                records: 3,
                first_seq: Some(3),
                ..
            }
        ));
    }

    #[test]
    fn resuming_continues_the_same_chain() {
        let mut lines = chained(2, None);
        let mut chain = Chain::new(None);
        assert!(chain.resume_after(std::str::from_utf8(&lines[1]).unwrap().trim_end()));
        lines.push(chain.seal(b"{\"n\":2}".to_vec()));
        assert!(matches!(
            check(&lines, None),
            Finding::Intact { records: 3, .. }
        ));
    }
}
