//! `cargo xtask demo` runs the gateway end to end; `cargo xtask test` runs
//! the whole test suite. Each first makes sure the machine has the tools it
//! needs, installing the missing ones with apt on Debian and Ubuntu (with
//! `sudo` when not root) and saying which and why; elsewhere it names them
//! and stops. Nothing is installed, and apt is not called, when everything
//! is present; nothing else on the machine is touched (no upgrade).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// A command the build or the tests run, the Debian package that has it,
/// and why it is needed.
struct Tool {
    command: &'static str,
    package: &'static str,
    why: &'static str,
}

const BUILD: &[Tool] = &[
    Tool {
        command: "cc",
        package: "build-essential",
        why: "C code in the dependencies (ring, zstd)",
    },
    Tool {
        command: "cmake",
        package: "cmake",
        why: "pingora builds zlib-ng with it",
    },
];

const TEST: &[Tool] = &[
    Tool {
        command: "redis-server",
        package: "redis-server",
        why: "the Redis key-store tests start their own servers",
    },
    Tool {
        command: "redis-cli",
        package: "redis-tools",
        why: "the Redis tests and the cluster check",
    },
    Tool {
        command: "openssl",
        package: "openssl",
        why: "the TLS tests prove old protocols are refused with `openssl s_client`",
    },
    Tool {
        command: "curl",
        package: "curl",
        why: "the tests drive the gateway with curl, as users do",
    },
    Tool {
        command: "nghttp",
        package: "nghttp2-client",
        why: "the HTTP/2 tests send :authority and Host as given",
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (verb, rest) = match args.split_first() {
        Some((verb, rest)) => (verb.as_str(), rest),
        None => ("", &[][..]),
    };
    let result = match verb {
        "demo" => ensure(&[BUILD]).and_then(|()| {
            cargo(
                &[
                    "run",
                    "--release",
                    "-p",
                    "portcullis",
                    "--features",
                    "demo",
                    "--",
                    "demo",
                ],
                rest,
            )
        }),
        "test" => ensure(&[BUILD, TEST])
            .and_then(|()| cargo(&["test", "--workspace", "--all-features"], rest)),
        "setup" => ensure(&[BUILD, TEST]),
        _ => Err("usage: cargo xtask demo [DEMO OPTIONS] | test [CARGO TEST ARGS] | setup".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the missing tools, or says why it cannot.
fn ensure(groups: &[&[Tool]]) -> Result<(), String> {
    let missing: Vec<&Tool> = groups
        .iter()
        .flat_map(|g| g.iter())
        .filter(|t| find(t.command).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    if find("apt-get").is_none() || !Path::new("/etc/debian_version").exists() {
        return Err(format!(
            "missing {}; install the packages {} (names as in Debian) and run again",
            names(&missing),
            packages.join(" ")
        ));
    }
    eprintln!("xtask: installing with apt-get:");
    for t in &missing {
        eprintln!("  {} (for `{}`: {})", t.package, t.command, t.why);
    }
    let sudo = if is_root() { None } else { Some("sudo") };
    if sudo.is_some() && find("sudo").is_none() {
        return Err(format!(
            "missing {}, and not root without sudo: as root, run apt-get install {}",
            names(&missing),
            packages.join(" ")
        ));
    }
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut command = match sudo {
            Some(sudo) => {
                let mut c = Command::new(sudo);
                c.arg("apt-get");
                c
            }
            None => Command::new("apt-get"),
        };
        let status = command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("could not run apt-get: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("apt-get {} failed ({status})", args.join(" ")))
        }
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&packages);
    apt(&install)?;
    let still: Vec<&Tool> = missing
        .into_iter()
        .filter(|t| find(t.command).is_none())
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!("still missing after apt-get: {}", names(&still)))
    }
}

fn names(tools: &[&Tool]) -> String {
    tools
        .iter()
        .map(|t| format!("`{}`", t.command))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The executable `name` on PATH (as a shell would find it), if any.
fn find(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Runs cargo (the one running us) with `args` then the user's `extra`.
fn cargo(args: &[&str], extra: &[String]) -> Result<(), String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .args(extra)
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_found_on_path_and_absent_ones_are_not() {
        assert!(find("sh").is_some(), "every Unix has sh on PATH");
        assert!(find("no-such-tool-portcullis").is_none());
    }

    #[test]
    fn every_tool_names_a_package_and_a_reason() {
        for tool in BUILD.iter().chain(TEST) {
            assert!(
                !tool.package.is_empty() && !tool.why.is_empty(),
                "{}",
                tool.command
            );
        }
    }
}
