use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run { config, upgrade } => portcullis::server::run(&config, upgrade),
        Command::Check { config } => match portcullis::server::check(&config) {
            Ok(loaded) => {
                println!(
                    "{}: OK ({} routes, {} policy files)",
                    config.display(),
                    loaded.plan.routes,
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
        Command::Demo { dir, https, admin } => {
            portcullis::demo::run(portcullis::demo::DemoOptions { dir, https, admin })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}
