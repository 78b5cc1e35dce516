//! The `secmon` command line. The only place `anyhow` lives.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secmon::config::{self, Config, Environment, LoadOptions};

#[derive(Parser)]
#[command(name = "secmon", version, about = "Security monitoring appliance")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (no config at all: development defaults).
    Serve {
        /// Configuration directory (default: $SECMON_CONFIG_DIR, else ./config if present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (default: $SECMON_DATA_DIR, else ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check the port plan against the deployment rules (exit 1 on a violation).
    ValidatePorts {
        /// development or production (default: $ENVIRONMENT, else development).
        environment: Option<Environment>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Load generators and measurements against a running node.
    #[command(subcommand)]
    Bench(secmon::bench::BenchCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (secrets redacted), or every problem (exit 2).
    Check {
        #[arg(long)]
        environment: Option<Environment>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Exit code for configuration problems.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    secmon::install_crypto_provider();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("secmon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config, data_dir } => {
            let mut cfg = match load(config, None, true) {
                Ok(cfg) => cfg,
                Err(code) => return Ok(code),
            };
            if let Some(dir) = data_dir {
                cfg.data_dir = dir;
            }
            secmon::telemetry::init_logging(&cfg.log.filter, cfg.log.format);
            serve(cfg)
        }
        Command::Config {
            command:
                ConfigCommand::Check {
                    environment,
                    config,
                },
        } => match load(config, environment, true) {
            Ok(cfg) => {
                print!("{}", config::redacted_yaml(&cfg));
                Ok(ExitCode::SUCCESS)
            }
            Err(code) => Ok(code),
        },
        Command::ValidatePorts {
            environment,
            config,
        } => {
            let cfg = match load(config, environment, false) {
                Ok(cfg) => cfg,
                Err(code) => return Ok(code),
            };
            let report = config::validate_ports(&cfg);
            print!("{}", report.render());
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bench(command) => {
            let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
            let report = rt.block_on(secmon::bench::run(command))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads (and with `validate`, checks) the configuration; on problems prints
/// every one and returns the exit code.
fn load(
    dir: Option<PathBuf>,
    environment: Option<Environment>,
    validate: bool,
) -> Result<Config, ExitCode> {
    let opts = LoadOptions::from_process(dir, environment);
    let problems = match config::load(&opts) {
        Ok(cfg) => {
            let problems = if validate {
                config::validate(&cfg)
            } else {
                Vec::new()
            };
            if problems.is_empty() {
                return Ok(cfg);
            }
            problems
        }
        Err(errors) => errors.problems,
    };
    eprintln!(
        "secmon: the configuration has {} problem(s):",
        problems.len()
    );
    for p in &problems {
        eprintln!("  {p}");
    }
    Err(ExitCode::from(EXIT_CONFIG))
}

fn serve(cfg: Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("secmon")
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let app = secmon::App::start(cfg).await.context("cannot start")?;
        let token = app.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            token.cancel();
        });
        app.run_until_stopped().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
