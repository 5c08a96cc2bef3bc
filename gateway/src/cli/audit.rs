//! `portcullis audit verify` and `portcullis audit search`.

use std::path::{Path, PathBuf};

use crate::monitor::audit::chain::{self, ChainKey, Finding};
use crate::monitor::audit::search::{self, Filter};

/// Verifies the chain over `files` (oldest first). Ok(false) when a
/// record was altered, removed or reordered; the finding is printed.
pub fn verify(files: &[PathBuf], key_file: Option<&Path>) -> Result<bool, String> {
    if files.is_empty() {
        return Err("audit verify: give at least one file, oldest first".into());
    }
    let key = key_file.map(ChainKey::load).transpose()?;
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    match chain::verify(&refs, key.as_ref())? {
        Finding::Intact {
            records,
            first_seq,
            last_chain,
        } => {
            println!("OK: {records} record(s) intact");
            match first_seq {
                Some(0) | None => {}
                Some(seq) => println!(
                    "note: the chain starts at seq {seq}; give the older rotated files to check what came before"
                ),
            }
            if let Some(head) = last_chain {
                println!("chain head: {head}");
            }
            Ok(true)
        }
        Finding::Broken {
            file,
            line,
            problem,
        } => {
            println!("TAMPERED: {file}:{line}: {problem}");
            Ok(false)
        }
    }
}

/// Prints matching records on stdout, then the summary.
pub fn search(
    files: &[PathBuf],
    filter: &Filter,
    limit: Option<u64>,
    summary_only: bool,
) -> Result<(), String> {
    if files.is_empty() {
        return Err("audit search: give at least one file".into());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let summary = if summary_only {
        search::search(files, filter, Some(0), &mut std::io::sink())?
    } else {
        search::search(files, filter, limit, &mut out)?
    };
    if !summary_only && summary.matched > 0 {
        println!();
    }
    print!("{}", summary.render());
    Ok(())
}
