//! `secmon validate-ports [ENV]`: the five rules of the port plan applied to
//! the effective configuration (ports from `ports:`, declarations from
//! `exposure:` in config/ports.yaml).

use std::collections::HashMap;
use std::fmt::Write;

use super::types::{AuthMode, Cidr, Config, Environment, Kind, PortSpec, Scope};

/// The outcome of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleResult {
    pub name: &'static str,
    pub passed: bool,
    /// What passed, or the failure (or how many) when it failed.
    pub summary: String,
    /// Every failure when there are several, then warnings.
    pub details: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PortReport {
    pub environment: Environment,
    pub rules: Vec<RuleResult>,
}

impl PortReport {
    pub fn passed(&self) -> bool {
        self.rules.iter().all(|r| r.passed)
    }

    /// One line per rule (`✓ name: summary` / `✗ name: summary`), details
    /// indented below.
    pub fn render(&self) -> String {
        let mut out = format!("port plan for {}\n", self.environment);
        for rule in &self.rules {
            let mark = if rule.passed { '✓' } else { '✗' };
            let _ = writeln!(out, "{mark} {}: {}", rule.name, rule.summary);
            for detail in &rule.details {
                let _ = writeln!(out, "    {detail}");
            }
        }
        out
    }
}

/// A service in the plan: one of secmon's enabled listeners or a declared
/// dependency.
struct Endpoint<'a> {
    name: &'a str,
    spec: PortSpec,
    kind: Kind,
    scope: Scope,
    /// Declared auth of graphql / websocket.
    auth: Option<AuthMode>,
    allow_sources: &'a [Cidr],
}

impl Endpoint<'_> {
    fn label(&self) -> String {
        format!("{} ({})", self.name, self.spec)
    }

    fn external(&self) -> bool {
        self.scope == Scope::External
    }
}

fn endpoints(cfg: &Config) -> Vec<Endpoint<'_>> {
    let l = &cfg.exposure.listeners;
    let mut out = Vec::new();
    for (name, port, protocol) in cfg.ports.enabled() {
        let (kind, scope, auth, allow_sources): (Kind, Scope, Option<AuthMode>, &[Cidr]) =
            match name {
                "graphql" => (Kind::Api, l.graphql.scope, Some(l.graphql.auth), &[]),
                "websocket" => (
                    Kind::Websocket,
                    l.websocket.scope,
                    Some(l.websocket.auth),
                    &[],
                ),
                "metrics" => (Kind::Metrics, l.metrics.scope, None, &[]),
                "health" => (Kind::Health, l.health.scope, None, &[]),
                _ => {
                    let listener = match name {
                        "syslog_udp" => &l.syslog_udp,
                        "syslog_tcp" => &l.syslog_tcp,
                        "syslog_tls" => &l.syslog_tls,
                        "gelf_udp" => &l.gelf_udp,
                        _ => &l.gelf_tcp,
                    };
                    (Kind::Syslog, listener.scope, None, &listener.allow_sources)
                }
            };
        out.push(Endpoint {
            name,
            spec: PortSpec { port, protocol },
            kind,
            scope,
            auth,
            allow_sources,
        });
    }
    for (name, dep) in &cfg.exposure.dependencies {
        out.push(Endpoint {
            name,
            spec: PortSpec {
                port: dep.port,
                protocol: dep.protocol,
            },
            kind: dep.kind,
            scope: dep.scope,
            auth: None,
            allow_sources: &[],
        });
    }
    out
}

pub fn validate_ports(cfg: &Config) -> PortReport {
    let endpoints = endpoints(cfg);
    let open: &[PortSpec] = cfg
        .exposure
        .firewall
        .get(&cfg.environment)
        .map_or(&[], Vec::as_slice);
    let production = cfg.environment == Environment::Production;
    PortReport {
        environment: cfg.environment,
        rules: vec![
            port_conflicts(&endpoints),
            internal_not_exposed(&endpoints, open, production),
            auth_on_sensitive_ports(cfg, &endpoints, production),
            https_on_external(cfg, &endpoints, production),
            firewall_consistency(&endpoints, open, cfg.environment),
        ],
    }
}

/// Build a rule result. In development, `production_only` failures are
/// warnings and the rule passes.
fn result(
    name: &'static str,
    ok_summary: &str,
    failures: Vec<String>,
    production_only: Vec<String>,
    production: bool,
) -> RuleResult {
    let (failures, warnings) = if production {
        ([failures, production_only].concat(), Vec::new())
    } else {
        (failures, production_only)
    };
    let warnings = warnings
        .into_iter()
        .map(|w| format!("warning: {w} (fails in production)"));
    match failures.len() {
        0 => RuleResult {
            name,
            passed: true,
            summary: ok_summary.to_string(),
            details: warnings.collect(),
        },
        1 => RuleResult {
            name,
            passed: false,
            summary: failures.concat(),
            details: warnings.collect(),
        },
        n => RuleResult {
            name,
            passed: false,
            summary: format!("{n} problems"),
            details: failures.into_iter().chain(warnings).collect(),
        },
    }
}

/// Rule 1: no two services on the same port and protocol (port 0 is picked
/// at start, so never conflicts).
fn port_conflicts(endpoints: &[Endpoint]) -> RuleResult {
    let mut seen: HashMap<PortSpec, &str> = HashMap::new();
    let mut failures = Vec::new();
    for e in endpoints.iter().filter(|e| e.spec.port != 0) {
        match seen.get(&e.spec) {
            Some(first) => failures.push(format!("{first} and {} both use {}", e.name, e.spec)),
            None => {
                seen.insert(e.spec, e.name);
            }
        }
    }
    result(
        "port conflicts",
        "no two services share a port",
        failures,
        Vec::new(),
        false,
    )
}

/// Rule 2: databases, caches, debug and profiler ports and secmon's metrics
/// are neither scoped external nor opened in the firewall in production.
fn internal_not_exposed(endpoints: &[Endpoint], open: &[PortSpec], production: bool) -> RuleResult {
    let mut exposed = Vec::new();
    for e in endpoints {
        let internal_only = matches!(
            e.kind,
            Kind::Database | Kind::Cache | Kind::Debug | Kind::Profiler | Kind::Metrics
        );
        if !internal_only {
            continue;
        }
        if e.external() {
            exposed.push(format!("{} is scoped external", e.label()));
        }
        if open.contains(&e.spec) {
            exposed.push(format!("{} is exposed in the firewall", e.label()));
        }
    }
    result(
        "internal ports not exposed in production",
        "databases, caches, debug ports and metrics stay internal",
        Vec::new(),
        exposed,
        production,
    )
}

/// Rule 3: graphql/websocket require auth, metrics has a token (production),
/// an external syslog or GELF listener has an allow-list, or is syslog TLS
/// requiring client certificates (production; a warning in development).
fn auth_on_sensitive_ports(cfg: &Config, endpoints: &[Endpoint], production: bool) -> RuleResult {
    let mut failures = Vec::new();
    let mut production_only = Vec::new();
    for e in endpoints {
        match e.kind {
            Kind::Api | Kind::Websocket if e.auth == Some(AuthMode::None) => failures.push(format!(
                "{} is declared auth: none: secmon always authenticates it, declare auth: required",
                e.label()
            )),
            Kind::Metrics if cfg.auth.metrics_token.is_none() => production_only.push(format!(
                "{} has no token: set METRICS_TOKEN or METRICS_TOKEN_FILE",
                e.label()
            )),
            // Syslog and GELF carry no sender authentication: anyone who
            // reaches an open listener can write log lines that raise
            // alerts and steer active response.
            Kind::Syslog if e.external() && e.allow_sources.is_empty() => {
                if e.name != "syslog_tls" {
                    failures.push(format!(
                        "{} is external without TLS or allow_sources, so anyone can send it forged log lines: declare exposure.listeners.{}.allow_sources, or keep it internal and use syslog_tls with client certificates",
                        e.label(),
                        e.name
                    ));
                } else if cfg.tls.syslog_client_ca_path.is_none() {
                    production_only.push(format!(
                        "{} is external without client certificates or allow_sources, so anyone can send it forged log lines: set tls.syslog_client_ca_path (SYSLOG_TLS_CLIENT_CA_PATH) to require client certificates, or declare exposure.listeners.syslog_tls.allow_sources",
                        e.label()
                    ));
                }
            }
            _ => {}
        }
    }
    result(
        "authentication on sensitive ports",
        "graphql and websocket require auth, metrics has a token, external syslog is restricted",
        failures,
        production_only,
        production,
    )
}

/// Rule 4: in production, external HTTP services need `tls.enabled` and only
/// syslog over TLS may be external.
fn https_on_external(cfg: &Config, endpoints: &[Endpoint], production: bool) -> RuleResult {
    let mut production_only = Vec::new();
    for e in endpoints.iter().filter(|e| e.external()) {
        match e.kind {
            Kind::Api | Kind::Websocket | Kind::Metrics if !cfg.tls.enabled => production_only
                .push(format!(
                    "{} is external without TLS: set TLS_ENABLED=true",
                    e.label()
                )),
            Kind::Syslog if e.name != "syslog_tls" => production_only.push(format!(
                "{} is external in plain text: keep it internal, only syslog_tls may be external",
                e.label()
            )),
            _ => {}
        }
    }
    result(
        "HTTPS on external services",
        "every external service uses TLS",
        Vec::new(),
        production_only,
        production,
    )
}

/// Rule 5: the firewall opens exactly the ports of the external services.
fn firewall_consistency(
    endpoints: &[Endpoint],
    open: &[PortSpec],
    environment: Environment,
) -> RuleResult {
    let mut failures = Vec::new();
    for spec in open {
        let served = endpoints.iter().any(|e| e.external() && e.spec == *spec);
        if !served {
            failures.push(format!(
                "{spec} is open in the firewall for {environment} but no enabled external service uses it: close it or declare the service"
            ));
        }
    }
    for e in endpoints.iter().filter(|e| e.external()) {
        if e.spec.port == 0 {
            failures.push(format!(
                "{} is external on port 0 (picked at start): give it a fixed port",
                e.name
            ));
        } else if !open.contains(&e.spec) {
            failures.push(format!(
                "{} is external but not open in the firewall for {environment}: add {} to exposure.firewall.{environment}",
                e.label(),
                e.spec
            ));
        }
    }
    result(
        "firewall consistency",
        "the firewall opens exactly the external services' ports",
        failures,
        Vec::new(),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Dependency, LoadOptions, Protocol, Secret, load};

    /// Production with TLS on, a metrics token and syslog TLS requiring
    /// client certificates: every rule passes.
    fn production() -> Config {
        let mut cfg = Config {
            environment: Environment::Production,
            ..Config::default()
        };
        cfg.tls.enabled = true;
        cfg.auth.metrics_token = Some(Secret::new("token"));
        cfg.tls.syslog_client_ca_path = Some("/etc/secmon/syslog-clients-ca.crt".into());
        cfg
    }

    fn open(cfg: &mut Config, spec: &str) {
        let spec = spec.parse().unwrap();
        let env = cfg.environment;
        cfg.exposure.firewall.entry(env).or_default().push(spec);
    }

    const CONFLICTS: usize = 0;
    const INTERNAL: usize = 1;
    const AUTH: usize = 2;
    const HTTPS: usize = 3;
    const FIREWALL: usize = 4;

    type Case = (&'static str, fn(&mut Config), usize, bool, &'static str);

    /// (case, change to the passing production config, rule, passes, text in
    /// the rule's summary or details).
    const CASES: &[Case] = &[
        (
            "baseline conflicts",
            |_| {},
            CONFLICTS,
            true,
            "no two services share a port",
        ),
        (
            "udp and tcp on one port do not conflict",
            |c| c.ports.syslog_udp = Some(6514),
            CONFLICTS,
            true,
            "no two services share a port",
        ),
        (
            "dependency on a listener's port",
            |c| {
                c.exposure.dependencies.get_mut("redis").unwrap().port = 8000;
            },
            CONFLICTS,
            false,
            "graphql and redis both use 8000/tcp",
        ),
        ("baseline internal", |_| {}, INTERNAL, true, "stay internal"),
        (
            "redis in the firewall",
            |c| open(c, "6379"),
            INTERNAL,
            false,
            "redis (6379/tcp) is exposed in the firewall",
        ),
        (
            "profiler scoped external",
            |c| {
                let profiler = Dependency {
                    port: 6060,
                    kind: Kind::Profiler,
                    protocol: Protocol::Tcp,
                    scope: Scope::External,
                };
                c.exposure.dependencies.insert("profiler".into(), profiler);
            },
            INTERNAL,
            false,
            "profiler (6060/tcp) is scoped external",
        ),
        (
            "metrics scoped external",
            |c| c.exposure.listeners.metrics.scope = Scope::External,
            INTERNAL,
            false,
            "metrics (9090/tcp) is scoped external",
        ),
        (
            "redis exposed in development is only a warning",
            |c| {
                c.environment = Environment::Development;
                open(c, "6379");
            },
            INTERNAL,
            true,
            "warning: redis (6379/tcp) is exposed in the firewall (fails in production)",
        ),
        ("baseline auth", |_| {}, AUTH, true, "require auth"),
        (
            "graphql declared without auth",
            |c| c.exposure.listeners.graphql.auth = AuthMode::None,
            AUTH,
            false,
            "graphql (8000/tcp) is declared auth: none",
        ),
        (
            "metrics without a token in production",
            |c| c.auth.metrics_token = None,
            AUTH,
            false,
            "metrics (9090/tcp) has no token: set METRICS_TOKEN",
        ),
        (
            "metrics without a token in development is a warning",
            |c| {
                c.environment = Environment::Development;
                c.auth.metrics_token = None;
            },
            AUTH,
            true,
            "warning: metrics (9090/tcp) has no token",
        ),
        (
            "external plain syslog without allow_sources",
            |c| c.exposure.listeners.syslog_udp.scope = Scope::External,
            AUTH,
            false,
            "syslog_udp (5514/udp) is external without TLS or allow_sources, so anyone can send it forged log lines: declare exposure.listeners.syslog_udp.allow_sources",
        ),
        (
            "external GELF over TCP without allow_sources",
            |c| {
                c.ports.gelf_tcp = Some(12201);
                c.exposure.listeners.gelf_tcp.scope = Scope::External;
            },
            AUTH,
            false,
            "gelf_tcp (12201/tcp) is external without TLS or allow_sources",
        ),
        (
            "external GELF over UDP without allow_sources, in development too",
            |c| {
                c.environment = Environment::Development;
                c.ports.gelf_udp = Some(12201);
                c.exposure.listeners.gelf_udp.scope = Scope::External;
            },
            AUTH,
            false,
            "gelf_udp (12201/udp) is external without TLS or allow_sources",
        ),
        (
            "external syslog TLS without client certificates or allow_sources",
            |c| c.tls.syslog_client_ca_path = None,
            AUTH,
            false,
            "syslog_tls (6514/tcp) is external without client certificates or allow_sources, so anyone can send it forged log lines: set tls.syslog_client_ca_path (SYSLOG_TLS_CLIENT_CA_PATH)",
        ),
        (
            "external syslog TLS without client certificates but with allow_sources",
            |c| {
                c.tls.syslog_client_ca_path = None;
                let l = &mut c.exposure.listeners.syslog_tls;
                l.allow_sources = vec![Cidr::try_from("192.0.2.0/24".to_string()).unwrap()];
            },
            AUTH,
            true,
            "require auth",
        ),
        (
            "external syslog TLS without client certificates in development is a warning",
            |c| {
                c.environment = Environment::Development;
                c.tls.syslog_client_ca_path = None;
            },
            AUTH,
            true,
            "warning: syslog_tls (6514/tcp) is external without client certificates or allow_sources",
        ),
        (
            "external plain syslog with allow_sources",
            |c| {
                let l = &mut c.exposure.listeners.syslog_udp;
                l.scope = Scope::External;
                l.allow_sources = vec![Cidr::try_from("10.0.0.0/8".to_string()).unwrap()];
            },
            AUTH,
            true,
            "require auth",
        ),
        (
            "baseline https",
            |_| {},
            HTTPS,
            true,
            "every external service uses TLS",
        ),
        (
            "TLS off in production",
            |c| c.tls.enabled = false,
            HTTPS,
            false,
            "websocket (8001/tcp) is external without TLS: set TLS_ENABLED=true",
        ),
        (
            "plain syslog external in production",
            |c| c.exposure.listeners.syslog_tcp.scope = Scope::External,
            HTTPS,
            false,
            "syslog_tcp (5601/tcp) is external in plain text",
        ),
        (
            "TLS off in development is a warning",
            |c| {
                c.environment = Environment::Development;
                c.tls.enabled = false;
            },
            HTTPS,
            true,
            "warning: graphql (8000/tcp) is external without TLS",
        ),
        ("baseline firewall", |_| {}, FIREWALL, true, "opens exactly"),
        (
            "port open with no service",
            |c| open(c, "9999/udp"),
            FIREWALL,
            false,
            "9999/udp is open in the firewall for production but no enabled external service uses it",
        ),
        (
            "external service moved off its open port",
            |c| c.ports.graphql = 9000,
            FIREWALL,
            false,
            "graphql (9000/tcp) is external but not open in the firewall for production",
        ),
        (
            "open port of a disabled listener",
            |c| c.ports.syslog_tls = None,
            FIREWALL,
            false,
            "6514/tcp is open in the firewall for production but no enabled external service",
        ),
        (
            "external service on port 0",
            |c| c.ports.websocket = 0,
            FIREWALL,
            false,
            "websocket is external on port 0",
        ),
    ];

    #[test]
    fn each_rule_passes_and_fails() {
        for (case, change, rule, passes, text) in CASES {
            let mut cfg = production();
            change(&mut cfg);
            let report = validate_ports(&cfg);
            assert_eq!(report.rules.len(), 5);
            let result = &report.rules[*rule];
            assert_eq!(result.passed, *passes, "{case}: {result:#?}");
            let shown = std::iter::once(&result.summary)
                .chain(&result.details)
                .any(|line| line.contains(text));
            assert!(shown, "{case}: `{text}` not in {result:#?}");
            assert_eq!(report.passed(), report.rules.iter().all(|r| r.passed));
        }
    }

    #[test]
    fn render_shows_one_line_per_rule_and_details() {
        let mut cfg = production();
        open(&mut cfg, "6379");
        cfg.exposure.listeners.metrics.scope = Scope::External;
        let report = validate_ports(&cfg);
        assert!(!report.passed());
        let text = report.render();
        let expected = "\
port plan for production
✓ port conflicts: no two services share a port
✗ internal ports not exposed in production: 2 problems
    metrics (9090/tcp) is scoped external
    redis (6379/tcp) is exposed in the firewall
";
        assert!(text.starts_with(expected), "{text}");
        assert_eq!(
            text.lines().filter(|l| !l.starts_with(' ')).count(),
            6,
            "{text}"
        );
    }

    fn shipped(env: &[(&str, &str)]) -> Config {
        let opts = LoadOptions {
            config_dir: Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config")),
            environment: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        load(&opts).unwrap()
    }

    #[test]
    fn shipped_plan_passes_in_production_with_tls_metrics_token_and_client_certificates() {
        const CA: (&str, &str) = (
            "SYSLOG_TLS_CLIENT_CA_PATH",
            "/etc/secmon/syslog-clients-ca.crt",
        );
        let cfg = shipped(&[("ENVIRONMENT", "production"), ("METRICS_TOKEN", "t"), CA]);
        let report = validate_ports(&cfg);
        assert!(report.passed(), "{}", report.render());
        assert!(
            report.rules.iter().all(|r| r.details.is_empty()),
            "{}",
            report.render()
        );

        // Without client certificates, syslog TLS takes anyone's lines.
        let cfg = shipped(&[("ENVIRONMENT", "production"), ("METRICS_TOKEN", "t")]);
        let report = validate_ports(&cfg);
        assert!(!report.passed());
        assert!(
            report
                .render()
                .contains("set tls.syslog_client_ca_path (SYSLOG_TLS_CLIENT_CA_PATH)"),
            "{}",
            report.render()
        );

        // Without the token it fails, on that rule only.
        let cfg = shipped(&[("ENVIRONMENT", "production"), CA]);
        let report = validate_ports(&cfg);
        let failed: Vec<&str> = report
            .rules
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.name)
            .collect();
        assert_eq!(
            failed,
            ["authentication on sensitive ports"],
            "{}",
            report.render()
        );
    }

    #[test]
    fn shipped_plan_passes_in_development() {
        let report = validate_ports(&shipped(&[]));
        assert!(report.passed(), "{}", report.render());
    }
}
