//! Layered loading: built-in defaults -> `config.yaml` -> `ports.yaml` ->
//! `services.yaml` -> `<environment>.yaml` -> environment variables.
//!
//! Each YAML file is parsed to a generic tree, `${VAR}` / `${VAR:-default}`
//! is substituted inside string values (never before parsing, so a variable
//! can not add keys), and the file is checked alone against [`Config`] so a
//! problem names its file and key. The trees are deep-merged (maps merge,
//! everything else is replaced) and deserialized once at the end.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::types::{Config, Environment};
use super::{ConfigErrors, Problem};

/// Files read from the config directory, in order, before `<environment>.yaml`.
const FILES: [&str; 3] = ["config.yaml", "ports.yaml", "services.yaml"];

/// After this many problems in one source, stop looking for more there.
const MAX_PROBLEMS_PER_SOURCE: usize = 50;

/// Where to load from. `env` is a snapshot of the process environment so
/// tests can inject variables without touching the real one.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config DIR`; must exist when given.
    pub config_dir: Option<PathBuf>,
    /// `--environment ENV`; wins over `ENVIRONMENT`.
    pub environment: Option<Environment>,
    pub env: HashMap<String, String>,
}

impl LoadOptions {
    /// Options over the current process environment (variables that are not
    /// valid UTF-8 are ignored).
    pub fn from_process(config_dir: Option<PathBuf>, environment: Option<Environment>) -> Self {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        LoadOptions {
            config_dir,
            environment,
            env,
        }
    }

    /// A variable's value; an unset variable is `None`, an empty one `Some("")`.
    fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }
}

/// Load the effective configuration, or every problem found on the way.
/// Semantic checks (production requirements, port conflicts) are in
/// [`super::validate`].
pub fn load(opts: &LoadOptions) -> Result<Config, ConfigErrors> {
    let mut problems = Vec::new();
    let environment = select_environment(opts, &mut problems);

    let mut tree = serde_json::json!({
        "environment": environment,
        "bind_address": environment.default_bind_address(),
    });
    if let Some(dir) = config_dir(opts, &mut problems) {
        let env_file = format!("{environment}.yaml");
        for name in FILES.iter().copied().chain([env_file.as_str()]) {
            if let Some(layer) = read_layer(&dir.join(name), opts, environment, &mut problems) {
                merge(&mut tree, layer);
            }
        }
    }
    merge(&mut tree, env_layer(opts, &mut problems));
    super::vault::resolve(&mut tree, opts, &mut problems);

    if !problems.is_empty() {
        return Err(ConfigErrors { problems });
    }
    serde_json::from_value(tree).map_err(|e| ConfigErrors {
        problems: vec![Problem::new("configuration", "", e.to_string())],
    })
}

fn select_environment(opts: &LoadOptions, problems: &mut Vec<Problem>) -> Environment {
    if let Some(environment) = opts.environment {
        return environment;
    }
    match opts.var("ENVIRONMENT") {
        None | Some("") => Environment::Development,
        Some(value) => value.parse().unwrap_or_else(|reason: String| {
            problems.push(Problem::new(
                "environment variable ENVIRONMENT",
                "environment",
                reason,
            ));
            Environment::Development
        }),
    }
}

fn config_dir(opts: &LoadOptions, problems: &mut Vec<Problem>) -> Option<PathBuf> {
    let (dir, source) = match (&opts.config_dir, opts.var("SECMON_CONFIG_DIR")) {
        (Some(dir), _) => (dir.clone(), dir.display().to_string()),
        (None, Some(dir)) if !dir.is_empty() => (
            PathBuf::from(dir),
            "environment variable SECMON_CONFIG_DIR".to_string(),
        ),
        _ => {
            let default = PathBuf::from(super::types::DEFAULT_CONFIG_DIR);
            return default.is_dir().then_some(default);
        }
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        problems.push(Problem::new(
            source,
            "",
            format!(
                "config directory {} does not exist: create it or point to an existing directory",
                dir.display()
            ),
        ));
        None
    }
}

/// One file as a checked tree with its bad keys removed; `None` when the file
/// is missing or unusable.
fn read_layer(
    path: &Path,
    opts: &LoadOptions,
    environment: Environment,
    problems: &mut Vec<Problem>,
) -> Option<Value> {
    let source = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            problems.push(Problem::new(
                source,
                "",
                format!("cannot read the file ({e}): check its permissions"),
            ));
            return None;
        }
    };
    // No snippet: it would quote the file, and the file may hold a secret.
    let options = serde_saphyr::options! { with_snippet: false };
    let mut tree: Value = match serde_saphyr::from_str_with_options(&text, options) {
        Ok(Value::Null) => Value::Object(Map::new()),
        Ok(tree @ Value::Object(_)) => tree,
        Ok(_) => {
            problems.push(Problem::new(
                source,
                "",
                "the top level must be a map of settings (key: value)",
            ));
            return None;
        }
        Err(e) => {
            problems.push(Problem::new(source, "", format!("invalid YAML: {e}")));
            return None;
        }
    };

    let mut path_keys = Vec::new();
    substitute(&mut tree, &mut path_keys, opts, &source, problems);

    if let Value::Object(map) = &mut tree
        && let Some(value) = map.get("environment")
        && value.as_str() != Some(environment.as_str())
    {
        problems.push(Problem::new(
            source.as_str(),
            "environment",
            format!(
                "the environment is chosen by ENVIRONMENT or --environment (this run is {environment}): remove the key"
            ),
        ));
        map.remove("environment");
    }

    check(&mut tree, &source, problems);
    Some(tree)
}

/// Replace `${VAR}` / `${VAR:-default}` in every string value. A value whose
/// substitution fails is removed (so its default applies) and reported.
fn substitute(
    value: &mut Value,
    path: &mut Vec<String>,
    opts: &LoadOptions,
    source: &str,
    problems: &mut Vec<Problem>,
) {
    match value {
        Value::String(s) if s.contains("${") => match expand(s, opts) {
            Ok(expanded) => *value = coerce(expanded),
            Err(reason) => {
                problems.push(Problem::new(source, dotted(path), reason));
                *value = Value::Null;
            }
        },
        Value::Object(map) => {
            let mut failed = Vec::new();
            for (key, child) in map.iter_mut() {
                path.push(key.clone());
                let before = problems.len();
                substitute(child, path, opts, source, problems);
                if problems.len() > before && !child.is_object() {
                    failed.push(key.clone());
                }
                path.pop();
            }
            for key in failed {
                map.remove(&key);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                substitute(item, path, opts, source, problems);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Expand the `${...}` references in one string. The default after `:-` is
/// used only when the variable is unset: an empty variable gives an empty
/// value (which disables a syslog port).
fn expand(s: &str, opts: &LoadOptions) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${`: close it with `}`".to_string())?;
        let reference = &after[..end];
        let (name, default) = match reference.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (reference, None),
        };
        if !is_variable_name(name) {
            return Err(format!(
                "`${{{reference}}}` is not a variable reference: write ${{NAME}} or ${{NAME:-default}}"
            ));
        }
        match (opts.var(name), default) {
            (Some(value), _) => out.push_str(value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "variable {name} is not set: set it or write ${{{name}:-default}}"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `["exposure", "firewall", "[0]"]` -> `exposure.firewall[0]`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if !out.is_empty() && !part.starts_with('[') {
            out.push('.');
        }
        out.push_str(part);
    }
    out
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A substituted string that reads as an integer, `true`/`false` or nothing
/// becomes a number, bool or null. Only canonical integers are converted
/// (`007` stays text), so converting back gives the same text.
fn coerce(s: String) -> Value {
    if s.is_empty() {
        return Value::Null;
    }
    match s.as_str() {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = s.parse::<u64>()
        && n.to_string() == s
    {
        return Value::from(n);
    }
    if let Ok(n) = s.parse::<i64>()
        && n.to_string() == s
    {
        return Value::from(n);
    }
    Value::String(s)
}

/// Deserialize `tree` alone as a [`Config`]; report each error with its key
/// and remove that key, until the tree is clean.
fn check(tree: &mut Value, source: &str, problems: &mut Vec<Problem>) {
    use serde_path_to_error::Segment;
    for _ in 0..MAX_PROBLEMS_PER_SOURCE {
        let Err(e) = serde_path_to_error::deserialize::<_, Config>(tree.clone()) else {
            return;
        };
        // Map keys and indexes only: an error in a map key (an unknown
        // environment under `firewall`) is reported at, and removes, the map.
        let mut path: Vec<String> = Vec::new();
        for segment in e.path().iter() {
            match segment {
                Segment::Map { key } => path.push(key.clone()),
                Segment::Seq { index } => path.push(format!("[{index}]")),
                Segment::Enum { .. } | Segment::Unknown => break,
            }
        }
        problems.push(Problem::new(
            source,
            dotted(&path),
            explain(&e.inner().to_string()),
        ));
        if !remove(tree, &path) {
            return;
        }
    }
}

/// Turn serde's message into one that says what to do.
fn explain(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        format!("unknown key {rest}: remove it or fix its spelling")
    } else if let Some(rest) = message.strip_prefix("missing field ") {
        format!("missing key {rest}: add it")
    } else {
        message.to_string()
    }
}

/// Remove the value at `path` (as built by [`check`]); false when there is
/// nothing to remove.
fn remove(tree: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for part in parents {
        let next = match node {
            Value::Object(map) => map.get_mut(part),
            Value::Array(items) => index(part).and_then(|i| items.get_mut(i)),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match node {
        Value::Object(map) => map.remove(last).is_some(),
        Value::Array(items) => match index(last) {
            Some(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// `"[3]"` -> 3.
fn index(part: &str) -> Option<usize> {
    part.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// Deep merge: maps merge key by key, anything else in `layer` replaces.
fn merge(base: &mut Value, layer: Value) {
    match (base, layer) {
        (Value::Object(base), Value::Object(layer)) => {
            for (key, value) in layer {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, layer) => *base = layer,
    }
}

/// How an environment variable's text becomes a value.
#[derive(Clone, Copy)]
enum VarKind {
    /// Taken as text; empty means unset.
    Text,
    /// Number or bool; empty means unset.
    Scalar,
    /// Number; empty means disabled (`null`).
    OptionalScalar,
    /// Text; empty means none (`null`).
    OptionalText,
    /// Like `OptionalText`, and `NAME_FILE` may hold the value instead.
    Secret,
    /// Comma-separated items (`10.0.0.0/8,192.168.0.0/16`); empty means none.
    List,
}

/// The environment variables of the last layer (DESIGN.md "Command line and
/// environment") and the key each one sets.
const VARIABLES: &[(&str, &str, VarKind)] = &[
    ("SECMON_DATA_DIR", "data_dir", VarKind::Text),
    ("BIND_ADDRESS", "bind_address", VarKind::Text),
    ("GRAPHQL_PORT", "ports.graphql", VarKind::Scalar),
    ("WEBSOCKET_PORT", "ports.websocket", VarKind::Scalar),
    ("METRICS_PORT", "ports.metrics", VarKind::Scalar),
    ("HEALTH_PORT", "ports.health", VarKind::Scalar),
    (
        "SYSLOG_UDP_PORT",
        "ports.syslog_udp",
        VarKind::OptionalScalar,
    ),
    (
        "SYSLOG_TCP_PORT",
        "ports.syslog_tcp",
        VarKind::OptionalScalar,
    ),
    (
        "SYSLOG_TLS_PORT",
        "ports.syslog_tls",
        VarKind::OptionalScalar,
    ),
    ("GELF_UDP_PORT", "ports.gelf_udp", VarKind::OptionalScalar),
    ("GELF_TCP_PORT", "ports.gelf_tcp", VarKind::OptionalScalar),
    ("DATABASE_URL", "services.database_url", VarKind::Secret),
    (
        "DATABASE_READ_URL",
        "services.database_read_url",
        VarKind::Secret,
    ),
    ("REDIS_URL", "services.redis_url", VarKind::Secret),
    ("NATS_URL", "export.nats_url", VarKind::Secret),
    ("NATS_STREAM", "export.nats_stream", VarKind::Text),
    ("ARCHIVE_URL", "export.archive_url", VarKind::OptionalText),
    (
        "ARCHIVE_FLUSH_SECONDS",
        "export.archive_flush_seconds",
        VarKind::Scalar,
    ),
    ("AWS_ENDPOINT_URL", "s3.endpoint_url", VarKind::OptionalText),
    ("AWS_REGION", "s3.region", VarKind::OptionalText),
    ("AWS_ACCESS_KEY_ID", "s3.access_key_id", VarKind::Secret),
    (
        "AWS_SECRET_ACCESS_KEY",
        "s3.secret_access_key",
        VarKind::Secret,
    ),
    ("AWS_ALLOW_HTTP", "s3.allow_http", VarKind::Scalar),
    ("VAULT_ADDR", "services.vault_addr", VarKind::OptionalText),
    ("VAULT_TOKEN", "services.vault_token", VarKind::Secret),
    ("JWT_SECRET", "auth.jwt_secret", VarKind::Secret),
    (
        "SECMON_ADMIN_PASSWORD",
        "auth.admin_password",
        VarKind::Secret,
    ),
    ("METRICS_TOKEN", "auth.metrics_token", VarKind::Secret),
    ("FLEET_API_KEY", "auth.fleet_api_key", VarKind::Secret),
    ("FLEET_API_URL", "fleet.api_url", VarKind::OptionalText),
    (
        "AUTH_TRUSTED_PROXIES",
        "auth.trusted_proxies",
        VarKind::List,
    ),
    ("TLS_ENABLED", "tls.enabled", VarKind::Scalar),
    ("TLS_CERT_PATH", "tls.cert_path", VarKind::Text),
    ("TLS_KEY_PATH", "tls.key_path", VarKind::Text),
    (
        "SYSLOG_TLS_CLIENT_CA_PATH",
        "tls.syslog_client_ca_path",
        VarKind::OptionalText,
    ),
    ("RUST_LOG", "log.filter", VarKind::Text),
    ("LOG_FORMAT", "log.format", VarKind::Text),
];

/// The environment-variable layer; each variable is checked alone so a bad
/// value names the variable.
fn env_layer(opts: &LoadOptions, problems: &mut Vec<Problem>) -> Value {
    let mut layer = Value::Object(Map::new());
    for &(name, key, kind) in VARIABLES {
        let source = format!("environment variable {name}");
        let raw = match kind {
            VarKind::Secret => match secret_var(name, opts) {
                Ok(raw) => raw,
                Err(reason) => {
                    problems.push(Problem::new(source, key, reason));
                    continue;
                }
            },
            _ => opts.var(name).map(str::to_string),
        };
        let Some(raw) = raw else { continue };
        let value = match kind {
            VarKind::Text | VarKind::Scalar if raw.is_empty() => continue,
            VarKind::Text => Value::String(raw),
            VarKind::Scalar | VarKind::OptionalScalar => coerce(raw),
            VarKind::OptionalText | VarKind::Secret if raw.is_empty() => Value::Null,
            VarKind::OptionalText | VarKind::Secret => Value::String(raw),
            VarKind::List => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| Value::String(item.to_owned()))
                    .collect(),
            ),
        };
        let mut single = value;
        for part in key.rsplit('.') {
            let mut map = Map::new();
            map.insert(part.to_string(), single);
            single = Value::Object(map);
        }
        check(&mut single, &source, problems);
        merge(&mut layer, single);
    }
    layer
}

/// `NAME`, or the contents of the file named by `NAME_FILE` (trailing line
/// breaks trimmed), or `None`; both set is an error.
fn secret_var(name: &str, opts: &LoadOptions) -> Result<Option<String>, String> {
    let file_var = format!("{name}_FILE");
    let file = opts.var(&file_var).filter(|f| !f.is_empty());
    match (opts.var(name), file) {
        (Some(_), Some(_)) => Err(format!(
            "both {name} and {file_var} are set: set only one of them"
        )),
        (value, None) => Ok(value.map(str::to_string)),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(contents) => Ok(Some(contents.trim_end_matches(['\r', '\n']).to_string())),
            Err(e) => Err(format!(
                "cannot read {path} named by {file_var} ({e}): check the path and its permissions"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Ports;

    /// Injected environment variables.
    type Env<'a> = &'a [(&'a str, &'a str)];

    fn config_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn options(dir: &Path, env: &[(&str, &str)]) -> LoadOptions {
        LoadOptions {
            config_dir: Some(dir.to_path_buf()),
            environment: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn shipped(env: &[(&str, &str)]) -> LoadOptions {
        options(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config"), env)
    }

    fn problems(result: Result<Config, ConfigErrors>) -> Vec<Problem> {
        match result {
            Ok(cfg) => panic!("expected problems, loaded {cfg:?}"),
            Err(e) => e.problems,
        }
    }

    /// (source file name or variable, key) of each problem.
    fn where_(problems: &[Problem]) -> Vec<(String, String)> {
        problems
            .iter()
            .map(|p| {
                let source = Path::new(&p.source)
                    .file_name()
                    .filter(|_| !p.source.starts_with("environment variable"))
                    .map_or(p.source.clone(), |f| f.to_string_lossy().into_owned());
                (source, p.key.clone())
            })
            .collect()
    }

    #[test]
    fn layers_apply_in_order_and_maps_merge() {
        let dir = config_dir(&[
            (
                "config.yaml",
                "log: {filter: config}\nnode_name: config\nservices: {vault_addr: config}\n\
                 data_dir: config\ntls: {cert_path: config}\ningest: {max_body_bytes: 1}\n",
            ),
            (
                "ports.yaml",
                "node_name: ports\nservices: {vault_addr: ports}\ndata_dir: ports\ntls: {cert_path: ports}\n",
            ),
            (
                "services.yaml",
                "services: {vault_addr: services}\ndata_dir: services\ntls: {cert_path: services}\n",
            ),
            (
                "development.yaml",
                "data_dir: development\ntls: {cert_path: development}\ningest: {queue_capacity: 2}\n",
            ),
            ("production.yaml", "data_dir: production\n"),
        ]);
        let cfg = load(&options(
            dir.path(),
            &[
                ("TLS_CERT_PATH", "env"),
                ("SYSLOG_TLS_CLIENT_CA_PATH", "/etc/secmon/clients.crt"),
            ],
        ))
        .unwrap();
        assert_eq!(
            cfg.tls.syslog_client_ca_path.as_deref(),
            Some(Path::new("/etc/secmon/clients.crt"))
        );
        assert_eq!(cfg.log.filter, "config");
        assert_eq!(cfg.node_name.as_deref(), Some("ports"));
        assert_eq!(cfg.services.vault_addr.as_deref(), Some("services"));
        assert_eq!(cfg.data_dir, Path::new("development"));
        assert_eq!(cfg.tls.cert_path, Path::new("env"));
        // Deep merge: keys of the same map from different layers are kept.
        assert_eq!(cfg.ingest.max_body_bytes, 1);
        assert_eq!(cfg.ingest.queue_capacity, 2);
        // Untouched keys keep the built-in defaults.
        assert_eq!(cfg.index.commit_max_events, 100_000);
        assert_eq!(cfg.tls.key_path, Path::new("/etc/ssl/private/server.key"));
    }

    #[test]
    fn environment_selects_the_overlay_and_bind_default() {
        let dir = config_dir(&[("production.yaml", "data_dir: /var/lib/secmon\n")]);
        let cases: [(Option<Environment>, Env, &str, &str); 4] = [
            (None, &[], "./data", "127.0.0.1"),
            (
                None,
                &[("ENVIRONMENT", "production")],
                "/var/lib/secmon",
                "0.0.0.0",
            ),
            (
                Some(Environment::Production),
                &[("ENVIRONMENT", "development")],
                "/var/lib/secmon",
                "0.0.0.0",
            ),
            (
                None,
                &[("ENVIRONMENT", "production"), ("BIND_ADDRESS", "10.1.2.3")],
                "/var/lib/secmon",
                "10.1.2.3",
            ),
        ];
        for (environment, env, data_dir, bind) in cases {
            let mut opts = options(dir.path(), env);
            opts.environment = environment;
            let cfg = load(&opts).unwrap();
            assert_eq!(cfg.data_dir, Path::new(data_dir), "{env:?}");
            assert_eq!(cfg.bind_address.to_string(), bind, "{env:?}");
        }
        // A file's bind_address wins over the environment's default.
        let dir = config_dir(&[("config.yaml", "bind_address: 192.168.0.1\n")]);
        let cfg = load(&options(dir.path(), &[("ENVIRONMENT", "production")])).unwrap();
        assert_eq!(cfg.bind_address.to_string(), "192.168.0.1");
        assert_eq!(cfg.environment, Environment::Production);
    }

    #[test]
    fn expand_substitutes_per_value() {
        let opts = LoadOptions {
            env: HashMap::from([
                ("A".to_string(), "x".to_string()),
                ("EMPTY".to_string(), String::new()),
            ]),
            ..LoadOptions::default()
        };
        let cases: [(&str, Result<&str, &str>); 9] = [
            ("${A}", Ok("x")),
            ("${A:-d}", Ok("x")),
            ("${UNSET:-d}", Ok("d")),
            ("${UNSET:-}", Ok("")),
            ("${EMPTY:-d}", Ok("")), // default only when unset
            ("pre-${A}-${UNSET:-y}-post", Ok("pre-x-y-post")),
            (
                "${UNSET}",
                Err("variable UNSET is not set: set it or write ${UNSET:-default}"),
            ),
            ("${A", Err("unterminated `${`: close it with `}`")),
            (
                "${1A}",
                Err("`${1A}` is not a variable reference: write ${NAME} or ${NAME:-default}"),
            ),
        ];
        for (input, expected) in cases {
            let got = expand(input, &opts);
            assert_eq!(got.as_deref().map_err(String::as_str), expected, "{input}");
        }
    }

    #[test]
    fn coerce_turns_canonical_scalars_into_typed_values() {
        let cases = [
            ("8000", serde_json::json!(8000)),
            ("-1", serde_json::json!(-1)),
            ("true", serde_json::json!(true)),
            ("false", serde_json::json!(false)),
            ("", Value::Null),
            ("007", serde_json::json!("007")),
            ("1.5", serde_json::json!("1.5")),
            ("yes", serde_json::json!("yes")),
            ("8000/udp", serde_json::json!("8000/udp")),
        ];
        for (input, expected) in cases {
            assert_eq!(coerce(input.to_string()), expected, "{input}");
        }
    }

    #[test]
    fn substituted_values_are_typed_and_empty_disables_a_syslog_port() {
        let dir = config_dir(&[(
            "ports.yaml",
            "ports:\n  graphql: ${GRAPHQL_PORT:-8000}\n  syslog_udp: ${SYSLOG_UDP_PORT:-5514}\n\
             tls:\n  enabled: ${TLS_ON:-false}\n",
        )]);
        let cfg = load(&options(
            dir.path(),
            &[
                ("GRAPHQL_PORT", "9000"),
                ("SYSLOG_UDP_PORT", ""),
                ("TLS_ON", "true"),
            ],
        ))
        .unwrap();
        assert_eq!(cfg.ports.graphql, 9000);
        assert_eq!(cfg.ports.syslog_udp, None);
        assert_eq!(cfg.ports.syslog_tcp, Some(5601));
        assert!(cfg.tls.enabled);

        let cfg = load(&options(dir.path(), &[])).unwrap();
        assert_eq!(cfg.ports.graphql, 8000);
        assert_eq!(cfg.ports.syslog_udp, Some(5514));
    }

    #[test]
    fn a_variable_can_not_inject_keys() {
        let dir = config_dir(&[(
            "config.yaml",
            "node_name: ${NODE}\nlog:\n  filter: ${FILTER}\n",
        )]);
        let injected = "a: b\nc: d";
        let cfg = load(&options(
            dir.path(),
            &[("NODE", injected), ("FILTER", "x\nlog:\n  format: pretty")],
        ))
        .unwrap();
        assert_eq!(cfg.node_name.as_deref(), Some(injected));
        assert_eq!(cfg.log.filter, "x\nlog:\n  format: pretty");
        assert_eq!(cfg.log.format, crate::config::LogFormat::Json);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_file_and_key() {
        let dir = config_dir(&[
            (
                "config.yaml",
                "ingest:\n  max_body_byte: 1\nlog:\n  format: xml\nfoo: 1\n",
            ),
            (
                "ports.yaml",
                concat!(
                    "ports:\n  graphql: abc\n  syslog_udp: ${SYSLOG_UDP}\n",
                    "exposure:\n  firewall:\n    staging: [80]\n",
                    "  dependencies:\n    grafana: {kind: api}\n",
                ),
            ),
            ("services.yaml", "services: [\n"),
            ("development.yaml", "environment: production\n"),
        ]);
        let problems = problems(load(&options(
            dir.path(),
            &[("GRAPHQL_PORT", "abc"), ("BIND_ADDRESS", "localhost")],
        )));
        // Within a file, keys come in sorted order.
        let expected = [
            ("config.yaml", "foo"),
            ("config.yaml", "ingest.max_body_byte"),
            ("config.yaml", "log.format"),
            ("ports.yaml", "ports.syslog_udp"),
            ("ports.yaml", "exposure.dependencies.grafana"),
            ("ports.yaml", "exposure.firewall"),
            ("ports.yaml", "ports.graphql"),
            ("services.yaml", ""),
            ("development.yaml", "environment"),
            ("environment variable BIND_ADDRESS", "bind_address"),
            ("environment variable GRAPHQL_PORT", "ports.graphql"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(s, k)| (s.to_string(), k.to_string()))
            .collect();
        assert_eq!(where_(&problems), expected, "{problems:#?}");

        let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
        let config_yaml = dir.path().join("config.yaml").display().to_string();
        assert_eq!(
            lines[1],
            format!(
                "{config_yaml}: ingest.max_body_byte: unknown key `max_body_byte`, expected one of \
                 `max_body_bytes`, `max_message_bytes`, `queue_capacity`, `queue_max_bytes`, \
                 `batch_max_events`, `api_trusted`, `connections`, `files`, `journald`: remove it \
                 or fix its spelling"
            )
        );
        assert!(
            lines[3].ends_with(
                "variable SYSLOG_UDP is not set: set it or write ${SYSLOG_UDP:-default}"
            )
        );
        assert!(lines[4].ends_with("exposure.dependencies.grafana: missing key `port`: add it"));
        assert!(lines[10].starts_with(
            "environment variable GRAPHQL_PORT: ports.graphql: invalid type: string \"abc\""
        ));
        // Display: one problem per line.
        let all = ConfigErrors { problems }.to_string();
        assert_eq!(all.lines().count(), expected.len());
    }

    #[test]
    fn secrets_come_from_name_or_name_file() {
        let dir = config_dir(&[]);
        let secret_file = dir.path().join("jwt");
        std::fs::write(&secret_file, "from-file-secret\n").unwrap();
        let path = secret_file.display().to_string();

        let cfg = load(&options(
            dir.path(),
            &[
                ("JWT_SECRET_FILE", &path),
                ("METRICS_TOKEN", "tok"),
                ("DATABASE_URL", ""),
            ],
        ))
        .unwrap();
        assert_eq!(
            cfg.auth.jwt_secret.as_ref().map(|s| s.expose()),
            Some("from-file-secret")
        );
        assert_eq!(
            cfg.auth.metrics_token.as_ref().map(|s| s.expose()),
            Some("tok")
        );
        assert!(cfg.services.database_url.is_none(), "empty means unset");

        let problems = problems(load(&options(
            dir.path(),
            &[
                ("JWT_SECRET", "x"),
                ("JWT_SECRET_FILE", &path),
                ("VAULT_TOKEN_FILE", "/nonexistent/token"),
            ],
        )));
        let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert_eq!(
            lines[0],
            "environment variable VAULT_TOKEN: services.vault_token: cannot read /nonexistent/token \
             named by VAULT_TOKEN_FILE (No such file or directory (os error 2)): check the path and its permissions"
        );
        assert_eq!(
            lines[1],
            "environment variable JWT_SECRET: auth.jwt_secret: both JWT_SECRET and JWT_SECRET_FILE are set: set only one of them"
        );
    }

    #[test]
    fn bad_environment_and_missing_config_dir_are_errors() {
        let missing = std::env::temp_dir().join("secmon-config-test-does-not-exist");
        let problems = problems(load(&options(&missing, &[("ENVIRONMENT", "staging")])));
        let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
        assert_eq!(
            lines,
            [
                "environment variable ENVIRONMENT: environment: unknown environment `staging`: use development or production".to_string(),
                format!(
                    "{0}: config directory {0} does not exist: create it or point to an existing directory",
                    missing.display()
                ),
            ]
        );
    }

    #[test]
    fn shipped_files_load_in_development_as_the_builtin_defaults() {
        let cfg = load(&shipped(&[])).unwrap();
        assert_eq!(
            serde_json::to_value(&cfg).unwrap(),
            serde_json::to_value(Config::default()).unwrap()
        );
    }

    #[test]
    fn shipped_files_follow_port_variables_and_production_overlay() {
        let cfg = load(&shipped(&[
            ("GRAPHQL_PORT", "9000"),
            ("SYSLOG_TCP_PORT", ""),
        ]))
        .unwrap();
        assert_eq!(cfg.ports.graphql, 9000);
        assert_eq!(cfg.ports.syslog_tcp, None);

        let cfg = load(&shipped(&[("ENVIRONMENT", "production")])).unwrap();
        let expected = Ports {
            syslog_udp: Some(514),
            syslog_tcp: Some(601),
            ..Ports::default()
        };
        assert_eq!(
            serde_json::to_value(&cfg.ports).unwrap(),
            serde_json::to_value(expected).unwrap()
        );
        assert!(cfg.tls.enabled);
        assert_eq!(cfg.bind_address.to_string(), "0.0.0.0");
    }

    #[test]
    fn trusted_proxies_come_as_a_comma_separated_variable() {
        let cfg = load(&shipped(&[(
            "AUTH_TRUSTED_PROXIES",
            " 10.0.0.0/8, fd00::/8 ,",
        )]))
        .unwrap();
        let nets: Vec<String> = cfg
            .auth
            .trusted_proxies
            .iter()
            .map(|c| String::from(*c))
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "fd00::/8"]);
        assert!(
            load(&shipped(&[("AUTH_TRUSTED_PROXIES", "")]))
                .unwrap()
                .auth
                .trusted_proxies
                .is_empty()
        );
        let problems = problems(load(&shipped(&[("AUTH_TRUSTED_PROXIES", "10.0.0.1")])));
        assert_eq!(
            where_(&problems),
            [(
                "environment variable AUTH_TRUSTED_PROXIES".to_string(),
                "auth.trusted_proxies[0]".to_string()
            )]
        );
    }
}
