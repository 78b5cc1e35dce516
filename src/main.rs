//! The `secmon` command line. The only place `anyhow` lives.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secmon::auth::Role;
use secmon::config::{self, Config, Environment, LoadOptions};
use secmon::control::{Op, Response};

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
    /// Prepare a data dir: node id, JWT secret, first admin (its password
    /// printed once), development TLS certificates.
    Init {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// More names for the development server certificate (besides
        /// localhost, 127.0.0.1 and ::1).
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
    },
    /// Users (through the running daemon, or on the data dir when none runs).
    User {
        #[command(subcommand)]
        command: UserCommand,
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// API keys for shippers and automation; a key is printed once.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Probe a running daemon's liveness (for container health checks, which
    /// have no curl): exit 0 when the URL answers 200, 1 otherwise.
    Health {
        /// What to probe; `/ready` instead of `/health` asks for readiness.
        /// Default: http://127.0.0.1:$HEALTH_PORT/health (port 8080 when unset).
        #[arg(long)]
        url: Option<String>,
    },
    /// Check the port plan against the deployment rules (exit 1 on a violation).
    ValidatePorts {
        /// development or production (default: $ENVIRONMENT, else development).
        environment: Option<Environment>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Import log files (syslog lines or NDJSON) into the data dir, without a daemon.
    Ingest {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "auto")]
        format: secmon::offline::Format,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Search the data dir, without a daemon (same query syntax as GraphQL).
    Search {
        query: String,
        /// Inclusive lower bound, RFC 3339.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Exclusive upper bound, RFC 3339.
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON event per line.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write a consistent copy of the store to PATH, or to s3://BUCKET/PREFIX/
    /// (asks the daemon when one runs); verified, with its SHA-256 beside it.
    Backup {
        /// A new file, or s3://bucket/prefix/ (AWS_* settings, docs/OPERATIONS.md).
        target: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Replace the store by a backup, a file or s3://BUCKET/KEY (refused while a
    /// daemon uses the data dir); checks its SHA-256; rebuilds the index.
    Restore {
        /// A backup file, or s3://bucket/key.
        source: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The full-text index.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Sigma rules: check them, back-test them.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Load generators and measurements against a running node.
    #[command(subcommand)]
    Bench(secmon::bench::BenchCommand),
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load rule files and folders as the daemon would; list what is rejected and why (exit 1 if any).
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also list warnings (fields no mapping knows).
        #[arg(long)]
        warnings: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a rule file over events (an NDJSON or syslog file, or the stored
    /// events of a time range) and list its hits; raises no alert.
    Test {
        rule: PathBuf,
        /// Events to test on, one per line (JSON or syslog).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        events: Option<PathBuf>,
        /// Stored events from this time (RFC 3339, inclusive).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Stored events before this time (RFC 3339).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; without --password-stdin a password is generated and printed once.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    List,
    /// Set a user's password (generated and printed once without --password-stdin); ends its sessions.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user; ends its sessions.
    Disable {
        name: String,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create a key for `Authorization: Bearer` (printed once; only its digest is kept).
    Create {
        name: String,
        #[arg(long, value_enum)]
        role: Role,
    },
    List,
    Revoke {
        id: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain: exit 1 naming the first edited, removed or reordered entry.
    Verify,
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Drop the index and rebuild it from the store (the daemon must be stopped).
    Rebuild,
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
/// Exit code when an import rejected some lines (the rest was stored).
const EXIT_PARTIAL: u8 = 3;

/// `--data-dir`, else the configuration's (SECMON_DATA_DIR, config files, ./data).
fn resolve_data_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    let cfg =
        config::load(&LoadOptions::from_process(None, None)).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cfg.data_dir)
}

/// `secmon backup`: written (and audited) by the daemon or offline, then
/// verified and checksummed here, and uploaded when the target is S3.
fn backup(target: &str, data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cfg =
        config::load(&LoadOptions::from_process(None, None)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let data_dir = data_dir.unwrap_or(cfg.data_dir);
    let remote = target.starts_with("s3://");
    let path = if remote {
        secmon::backup::staging_file(&data_dir).map_err(|e| anyhow::anyhow!("{e}"))?
    } else {
        std::path::absolute(target).context("resolving the backup path")?
    };
    let report = control(&data_dir, Op::Backup { path: path.clone() }).context("backup failed")?;
    let report: secmon::store::backup::BackupReport =
        serde_json::from_value(report).context("the daemon's backup report")?;
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let made = rt
        .block_on(async {
            let location = match remote {
                true => Some(secmon::backup::target_location(target, &cfg.s3)?),
                false => None,
            };
            secmon::backup::finish(&path, report, location.as_ref()).await
        })
        .map_err(|e| anyhow::anyhow!("backup failed: {e}"))?;
    println!("{}", serde_json::to_string_pretty(&made)?);
    Ok(ExitCode::SUCCESS)
}

/// `secmon restore`: a local file (checked against `<file>.sha256` when
/// there is one) or `s3://bucket/key` (downloaded, checked against its
/// checksum, which must be there).
fn restore(
    source: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<secmon::store::backup::BackupReport> {
    let file = if source.starts_with("s3://") {
        let cfg = config::load(&LoadOptions::from_process(None, None))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        std::fs::create_dir_all(data_dir).context("creating the data dir")?;
        let dest = data_dir.join("restore.download");
        let _ = std::fs::remove_file(&dest);
        let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
        rt.block_on(secmon::backup::download(source, &cfg.s3, &dest))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        eprintln!("downloaded {source}, SHA-256 checked");
        dest
    } else {
        let file = PathBuf::from(source);
        if secmon::backup::check_local(&file).map_err(|e| anyhow::anyhow!("{e}"))? {
            eprintln!("SHA-256 checked against {source}.sha256");
        }
        file
    };
    let report = secmon::store::backup::restore(&file, data_dir);
    if source.starts_with("s3://") {
        let _ = std::fs::remove_file(&file);
    }
    Ok(report?)
}

/// Runs `op` in the daemon serving `data_dir`, or on the data dir itself
/// when no daemon runs there.
fn control(data_dir: &std::path::Path, op: Op) -> anyhow::Result<serde_json::Value> {
    let request = op.by_me();
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let response = match rt.block_on(secmon::control::call(data_dir, &request))? {
        Some(response) => response,
        None => secmon::control::execute_offline(data_dir, request)?,
    };
    match response {
        Response::Ok(value) => Ok(value),
        Response::Error(e) => anyhow::bail!("{e}"),
    }
}

/// The first line of standard input, without its line end.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// `secmon init`: what a node needs before its first start.
fn init(data_dir: PathBuf, hostnames: &[String]) -> anyhow::Result<ExitCode> {
    let store = secmon::store::Store::open(&data_dir)?;
    println!("data dir: {}", data_dir.display());
    println!("node id: {}", store.node_id());
    drop(store);
    secmon::app::dev_jwt_secret(&data_dir)?;
    println!(
        "JWT secret (development): {}",
        data_dir.join("jwt_secret").display()
    );
    let pki = secmon::tls::generate_dev_pki(&data_dir.join("tls"), hostnames, false)?;
    println!(
        "development TLS ({}): CA {}, server certificate {}, key {}",
        if pki.created { "created" } else { "kept" },
        pki.ca_cert.display(),
        pki.server_cert.display(),
        pki.server_key.display()
    );
    println!(
        "  to use it: TLS_ENABLED=true TLS_CERT_PATH={} TLS_KEY_PATH={}",
        pki.server_cert.display(),
        pki.server_key.display()
    );
    let users = control(&data_dir, Op::UserList)?;
    if users.as_array().is_some_and(Vec::is_empty) {
        let admin = control(
            &data_dir,
            Op::UserAdd {
                name: "admin".into(),
                role: Role::Admin,
                password: None,
            },
        )?;
        println!(
            "user admin created; its password (shown once): {}",
            admin["password"].as_str().unwrap_or_default()
        );
    } else {
        println!("users exist already: no admin created");
    }
    Ok(ExitCode::SUCCESS)
}

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
        Command::Health { url } => health(url),
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
        Command::Ingest {
            files,
            format,
            data_dir,
        } => {
            let data_dir = resolve_data_dir(data_dir)?;
            let opts = secmon::parse::ParseOptions::default();
            let report = secmon::offline::ingest(&data_dir, &files, format, &opts)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.rejected == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_PARTIAL)
            })
        }
        Command::Search {
            query,
            from,
            to,
            limit,
            json,
            data_dir,
        } => {
            let data_dir = resolve_data_dir(data_dir)?;
            let q = secmon::store::index::SearchQuery {
                text: Some(query),
                from,
                to,
                after: None,
                limit,
            };
            let (total, events) = secmon::offline::search(&data_dir, &q)?;
            for e in &events {
                if json {
                    println!("{}", serde_json::to_string(e)?);
                } else {
                    println!(
                        "{} {} {}",
                        e.timestamp.to_rfc3339(),
                        e.host_name.as_deref().unwrap_or("-"),
                        e.message
                    );
                }
            }
            if !json {
                eprintln!("{} of {total} events", events.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { target, data_dir } => backup(&target, data_dir),
        Command::Init {
            data_dir,
            hostnames,
        } => init(resolve_data_dir(data_dir)?, &hostnames),
        Command::User { command, data_dir } => {
            let data_dir = resolve_data_dir(data_dir)?;
            let op = match command {
                UserCommand::Add {
                    name,
                    role,
                    password_stdin,
                } => Op::UserAdd {
                    name,
                    role,
                    password: password_stdin.then(read_password).transpose()?,
                },
                UserCommand::List => Op::UserList,
                UserCommand::Passwd {
                    name,
                    password_stdin,
                } => Op::UserPasswd {
                    name,
                    password: password_stdin.then(read_password).transpose()?,
                },
                UserCommand::Disable { name } => Op::UserDisable { name },
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&control(&data_dir, op)?)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Apikey { command, data_dir } => {
            let data_dir = resolve_data_dir(data_dir)?;
            let op = match command {
                ApikeyCommand::Create { name, role } => Op::ApikeyCreate { name, role },
                ApikeyCommand::List => Op::ApikeyList,
                ApikeyCommand::Revoke { id } => Op::ApikeyRevoke { id },
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&control(&data_dir, op)?)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify,
            data_dir,
        } => {
            let data_dir = resolve_data_dir(data_dir)?;
            let report = control(&data_dir, Op::AuditVerify)?;
            if report["ok"] == true {
                println!(
                    "audit log intact: {} entries, head {}",
                    report["entries"],
                    report["head"].as_str().unwrap_or_default()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "secmon: audit log broken: {}",
                    report["error"].as_str().unwrap_or_default()
                );
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Restore { source, data_dir } => {
            let data_dir = resolve_data_dir(data_dir)?;
            let report = restore(&source, &data_dir)?;
            let indexed = secmon::offline::rebuild_index(&data_dir)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!("index rebuilt up to seq {indexed}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Index {
            command: IndexCommand::Rebuild,
            data_dir,
        } => {
            let data_dir = resolve_data_dir(data_dir)?;
            let indexed = secmon::offline::rebuild_index(&data_dir)?;
            println!("index rebuilt up to seq {indexed}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules {
            command:
                RulesCommand::Check {
                    paths,
                    warnings,
                    config,
                },
        } => {
            let cfg = match load(config, None, false) {
                Ok(cfg) => cfg,
                Err(code) => return Ok(code),
            };
            let report = secmon::detect::tools::check(&paths, &cfg.detection)
                .map_err(|e| anyhow::anyhow!(e))?;
            for line in &report.rejected {
                println!("rejected: {line}");
            }
            if warnings {
                for line in &report.warnings {
                    println!("warning: {line}");
                }
            }
            println!(
                "{} files: {} rules, {} correlations, {} filters loaded; {} rejected; {} warnings",
                report.files,
                report.rules,
                report.correlations,
                report.filters,
                report.rejected.len(),
                report.warnings.len()
            );
            for (reason, n) in &report.reasons {
                println!("  {n} x {reason}");
            }
            Ok(if report.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Rules {
            command:
                RulesCommand::Test {
                    rule,
                    events,
                    from,
                    to,
                    data_dir,
                    config,
                },
        } => {
            let cfg = match load(config, None, false) {
                Ok(cfg) => cfg,
                Err(code) => return Ok(code),
            };
            let events = match events {
                Some(path) => secmon::detect::tools::read_events(&path),
                None => secmon::detect::tools::stored_events(
                    &data_dir.unwrap_or(cfg.data_dir.clone()),
                    from,
                    to,
                ),
            }
            .map_err(|e| anyhow::anyhow!(e))?;
            let hits = secmon::detect::tools::backtest(&rule, &events, &cfg.detection)
                .map_err(|e| anyhow::anyhow!(e))?;
            for hit in &hits {
                println!("{}", serde_json::to_string(hit)?);
            }
            eprintln!("{} hits in {} events", hits.len(), events.len());
            Ok(ExitCode::SUCCESS)
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

fn health(url: Option<String>) -> anyhow::Result<ExitCode> {
    let url = url.unwrap_or_else(|| {
        let port = std::env::var("HEALTH_PORT")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "8080".into());
        format!("http://127.0.0.1:{port}/health")
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let answer = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        client.get(&url).send().await
    });
    match answer {
        Ok(resp) if resp.status().is_success() => Ok(ExitCode::SUCCESS),
        Ok(resp) => {
            eprintln!("secmon health: {url} answered {}", resp.status());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("secmon health: {url}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
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
        Ok::<_, anyhow::Error>(())
    })?;
    secmon::telemetry::shutdown();
    Ok(ExitCode::SUCCESS)
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
