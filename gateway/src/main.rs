use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc's malloc and free were 13 % of a kept-alive request's CPU (perf, bare route);
// mimalloc (preloaded, before this line existed) cut the request's CPU by a fifth on
// HTTP/1.1 and a tenth on HTTP/2 (benches/README.md, "Performance (issue 18)").
// Built without transparent huge pages (`no_thp`): mimalloc's madvise for them
// doubled an idle TLS connection's memory, from 57 to 117 KiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Portcullis: a security gateway for partner APIs.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Take over the listeners of a running instance (zero-downtime upgrade).
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate the configuration, policies and certificate without starting anything.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Also list which settings a reload applies and which need a
        /// restart, and every file the reload watch covers.
        #[arg(long)]
        reload: bool,
    },
    /// Manage partner API keys in the configured store.
    Keys {
        /// The gateway file (required; accepted before or after the action).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Manage the ownership index (who owns which object, for routes with `resource:`).
    Owners {
        /// The gateway file (required; accepted before or after the action).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: OwnersAction,
    },
    /// Print the JSON Schema of the gateway file or of policy files (for editors;
    /// the same schemas ship in schemas/portcullis/).
    ConfigSchema {
        #[arg(value_enum)]
        of: SchemaOf,
    },
    /// Print a reference page of the book (docs/src/reference/generated/):
    /// the gateway file's or policy files' fields, or every problem code.
    Reference {
        #[arg(value_enum)]
        of: ReferenceOf,
    },
    /// Check or search the audit trail.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Run the quickstart: certificate, example upstream and gateway, no setup needed.
    Demo {
        /// Where the demo keeps its certificate, secret and configuration.
        #[arg(long, default_value = ".portcullis-demo")]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8443")]
        https: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// The partner listener, where partners manage their own keys.
        #[arg(long, default_value = "127.0.0.1:8444")]
        partner: SocketAddr,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SchemaOf {
    Gateway,
    Policy,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReferenceOf {
    Gateway,
    Policy,
    Errors,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check the hash chain; reports the first altered, removed or reordered record.
    Verify {
        /// Audit files, oldest first (`audit.log.2 audit.log.1 audit.log`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The `audit.chain_key_file` the gateway used, if any.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Print the records matching every filter given, then a summary.
    Search {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        partner: Option<String>,
        #[arg(long)]
        key_id: Option<String>,
        #[arg(long)]
        client_ip: Option<String>,
        /// allow, deny or error.
        #[arg(long)]
        decision: Option<String>,
        #[arg(long)]
        route: Option<String>,
        /// An outcome code, e.g. key_invalid.
        #[arg(long)]
        reason: Option<String>,
        /// A duration back from now (`1h`, `2d`) or an RFC 3339 time.
        #[arg(long, value_parser = portcullis::monitor::audit::search::parse_time)]
        since: Option<std::time::SystemTime>,
        #[arg(long, value_parser = portcullis::monitor::audit::search::parse_time)]
        until: Option<std::time::SystemTime>,
        /// Include events (blocks, anomalies, gaps), not just requests.
        #[arg(long)]
        events: bool,
        /// Print at most this many records (the summary counts all).
        #[arg(long)]
        limit: Option<u64>,
        /// Print only the summary.
        #[arg(long)]
        summary_only: bool,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Issue a new key; prints it once, alone on the last line.
    Create {
        #[arg(long)]
        partner: String,
        #[arg(long, default_value = "primary")]
        name: String,
        /// Lifetime, e.g. `90d`; default: no expiry.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// A partner management credential (`ptc_mgmt_…`) instead of an API key.
        #[arg(long)]
        management: bool,
    },
    /// Replace a key; the old one is refused once this returns.
    Rotate {
        #[arg(long)]
        partner: String,
        #[arg(long, default_value = "primary")]
        name: String,
        /// A partner management credential (`ptc_mgmt_…`) instead of an API key.
        #[arg(long)]
        management: bool,
    },
    /// Delete a key; it is refused once this returns.
    Revoke {
        #[arg(long)]
        partner: String,
        #[arg(long, default_value = "primary")]
        name: String,
        /// A partner management credential (`ptc_mgmt_…`) instead of an API key.
        #[arg(long)]
        management: bool,
    },
    /// List keys (ids and metadata, never secrets).
    List {
        #[arg(long)]
        partner: Option<String>,
    },
    /// Refuse every key of a partner (403 partner_suspended) on every node,
    /// from the moment this returns until it is resumed.
    Suspend {
        #[arg(long)]
        partner: String,
    },
    /// Lift a runtime suspension.
    Resume {
        #[arg(long)]
        partner: String,
    },
    /// List partners suspended at runtime.
    Suspended,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OwnersFormat {
    Json,
    Csv,
}

impl From<OwnersFormat> for portcullis::cli::owners::Format {
    fn from(f: OwnersFormat) -> Self {
        match f {
            OwnersFormat::Json => Self::Json,
            OwnersFormat::Csv => Self::Csv,
        }
    }
}

#[derive(Subcommand)]
enum OwnersAction {
    /// Bulk import from the legacy database's export: a JSON array, JSON
    /// lines, or CSV with a header row. One bad record refuses the whole file.
    Import {
        /// The export; `-` reads standard input.
        file: PathBuf,
        /// Default: from the extension (.csv, .json, .jsonl), else from the content.
        #[arg(long, value_enum)]
        format: Option<OwnersFormat>,
        /// The kind of records that have no kind field (`order`).
        #[arg(long)]
        kind: Option<String>,
        /// The field or column holding the object id.
        #[arg(long, default_value = "id")]
        id_field: String,
        /// The field or column holding the owning partner.
        #[arg(long, default_value = "partner")]
        partner_field: String,
        /// The field or column holding the kind.
        #[arg(long, default_value = "kind")]
        kind_field: String,
    },
    /// Print the index (JSON lines or CSV, both importable).
    Export {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        partner: Option<String>,
        #[arg(long, value_enum, default_value = "json")]
        format: OwnersFormat,
    },
    /// Print an object's owner.
    Show { kind: String, id: String },
    /// Give an object to another partner; the old owner is refused once this returns.
    Transfer {
        kind: String,
        id: String,
        #[arg(long)]
        to: String,
    },
    /// Remove an object from the index: requests naming it are refused (or
    /// pre-flighted) until it is learnt again.
    Forget { kind: String, id: String },
}

impl From<OwnersAction> for portcullis::cli::owners::OwnersCommand {
    fn from(a: OwnersAction) -> Self {
        use portcullis::cli::owners::{Fields, OwnersCommand as O};
        match a {
            OwnersAction::Import {
                file,
                format,
                kind,
                id_field,
                partner_field,
                kind_field,
            } => O::Import {
                file,
                format: format.map(Into::into),
                fields: Fields {
                    id: id_field,
                    partner: partner_field,
                    kind: kind_field,
                    default_kind: kind,
                },
            },
            OwnersAction::Export {
                kind,
                partner,
                format,
            } => O::Export {
                kind,
                partner,
                format: format.into(),
            },
            OwnersAction::Show { kind, id } => O::Show { kind, id },
            OwnersAction::Transfer { kind, id, to } => O::Transfer {
                kind,
                id,
                partner: to,
            },
            OwnersAction::Forget { kind, id } => O::Forget { kind, id },
        }
    }
}

impl From<KeysAction> for portcullis::cli::keys::KeysCommand {
    fn from(a: KeysAction) -> Self {
        use portcullis::cli::keys::KeysCommand as K;
        match a {
            KeysAction::Create {
                partner,
                name,
                expires_in,
                management,
            } => K::Create {
                partner,
                name: slot_of(management, &name),
                expires_in,
            },
            KeysAction::Rotate {
                partner,
                name,
                management,
            } => K::Rotate {
                partner,
                name: slot_of(management, &name),
            },
            KeysAction::Revoke {
                partner,
                name,
                management,
            } => K::Revoke {
                partner,
                name: slot_of(management, &name),
            },
            KeysAction::List { partner } => K::List { partner },
            KeysAction::Suspend { partner } => K::Suspend { partner },
            KeysAction::Resume { partner } => K::Resume { partner },
            KeysAction::Suspended => K::Suspended,
        }
    }
}

/// The store's name for a credential: a management credential's is
/// `mgmt.<name>`, which the admin API takes as it is.
fn slot_of(management: bool, name: &str) -> String {
    use portcullis::keys::store::{slot, Kind};
    slot(
        if management {
            Kind::Management
        } else {
            Kind::Data
        },
        name,
    )
}

/// Sets up the log on stderr. A serving gateway (`serve`) writes its lines
/// in batches (`monitor::log_sink`); the guard writes out the last batch when
/// it drops. Every other command writes each line as it comes.
fn init_logging(
    format: LogFormat,
    serve: bool,
) -> Option<portcullis::monitor::log_sink::FlushOnDrop<std::io::Stderr>> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if serve {
        match portcullis::monitor::log_sink::BatchedLog::start(std::io::stderr()) {
            Ok((log, guard)) => {
                install(format, ansi, log);
                return Some(guard);
            }
            Err(e) => eprintln!("log: writing each line as it comes ({e})"),
        }
    }
    install(format, ansi, std::io::stderr);
    None
}

fn install<W>(format: LogFormat, ansi: bool, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder
            .fmt_fields(portcullis::monitor::log_fields::TextFields)
            .init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn print_reload_classes(loaded: &portcullis::plan::Loaded) {
    use portcullis::config::restart::{settings, Applies};
    for s in settings(&loaded.settings) {
        let when = match s.applies {
            Applies::OnReload => "reload",
            Applies::OnRestart => "restart",
        };
        println!("{:<26} applies on {when}", s.name);
    }
    for file in loaded.sources.iter().chain(&loaded.referenced) {
        println!("watched: {}", file.display());
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serve = matches!(cli.command, Command::Run { .. } | Command::Demo { .. });
    let _log = init_logging(cli.log_format, serve);
    let result = match cli.command {
        Command::Run { config, upgrade } => portcullis::server::run(&config, upgrade),
        Command::Check { config, reload } => match portcullis::server::check(&config) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    eprintln!("warning: {warning}");
                }
                if reload {
                    print_reload_classes(&loaded);
                }
                println!(
                    "{}: OK ({} routes, {} policy files)",
                    config.display(),
                    loaded.plan.routes(),
                    loaded.sources.len() - 1
                );
                Ok(())
            }
            Err(problems) => {
                for p in &problems {
                    eprintln!("{p}");
                }
                eprintln!("{} problem(s) found", problems.len());
                return ExitCode::FAILURE;
            }
        },
        Command::Keys { config, action } => match config {
            Some(config) => portcullis::cli::keys::run(&config, action.into()),
            None => Err("keys: --config FILE is required".to_string()),
        },
        Command::Owners { config, action } => match config {
            Some(config) => portcullis::cli::owners::run(&config, action.into()),
            None => Err("owners: --config FILE is required".to_string()),
        },
        Command::ConfigSchema { of } => {
            print!(
                "{}",
                match of {
                    SchemaOf::Gateway => portcullis::config::schema::gateway(),
                    SchemaOf::Policy => portcullis::config::schema::policy(),
                }
            );
            Ok(())
        }
        Command::Reference { of } => {
            print!(
                "{}",
                match of {
                    ReferenceOf::Gateway => portcullis::cli::reference::gateway_file(),
                    ReferenceOf::Policy => portcullis::cli::reference::policy_file(),
                    ReferenceOf::Errors => portcullis::cli::reference::problem_codes(),
                }
            );
            Ok(())
        }
        Command::Audit {
            action: AuditAction::Verify { files, key_file },
        } => match portcullis::cli::audit::verify(&files, key_file.as_deref()) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Audit {
            action:
                AuditAction::Search {
                    files,
                    partner,
                    key_id,
                    client_ip,
                    decision,
                    route,
                    reason,
                    since,
                    until,
                    events,
                    limit,
                    summary_only,
                },
        } => {
            let filter = portcullis::monitor::audit::search::Filter {
                partner,
                key_id,
                client_ip,
                decision,
                route,
                reason,
                since,
                until,
                events,
            };
            portcullis::cli::audit::search(&files, &filter, limit, summary_only)
        }
        #[cfg(feature = "demo")]
        Command::Demo {
            dir,
            https,
            admin,
            partner,
        } => portcullis::cli::demo::run(portcullis::cli::demo::DemoOptions {
            dir,
            https,
            admin,
            partner,
        }),
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => Err(
            "this build has no demo (a production build leaves the example upstream out): \
             run `cargo run --release -p portcullis --features demo -- demo`"
                .to_string(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}
