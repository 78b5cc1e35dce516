//! `vault:<mount>/<path>#<key>` references: a configuration value (from a
//! file or an environment variable) that names a field of a secret in a
//! HashiCorp Vault (or OpenBao) KV version 2 engine. They are read once, at
//! load, over HTTPS: `GET $VAULT_ADDR/v1/<mount>/data/<path>` with
//! `X-Vault-Token`. A problem names the reference and the key it is for,
//! never a value, and names Vault by scheme and host only. Redirects are
//! not followed: the token would go wherever a `Location` points, so a
//! redirect is an error naming its status (and not where it pointed).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use super::Problem;
use super::load::LoadOptions;
use crate::notify::redact::{http_error, redact};

const PREFIX: &str = "vault:";
const TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    mount: String,
    path: String,
    key: String,
}

impl Reference {
    fn parse(text: &str) -> Result<Reference, String> {
        let usage = "write vault:<mount>/<path>#<key>, e.g. vault:secret/secmon#jwt_secret";
        let rest = text.strip_prefix(PREFIX).unwrap_or(text);
        let (location, key) = rest
            .split_once('#')
            .ok_or_else(|| format!("no #<key>: {usage}"))?;
        let (mount, path) = location
            .split_once('/')
            .ok_or_else(|| format!("no <mount>/ before the path: {usage}"))?;
        let valid = |part: &str| {
            !part.is_empty()
                && part.split('/').all(|segment| {
                    !segment.is_empty()
                        && segment != ".."
                        && segment
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c))
                })
        };
        if !valid(mount) || !valid(path) || key.is_empty() {
            return Err(format!("not a secret reference: {usage}"));
        }
        Ok(Reference {
            mount: mount.into(),
            path: path.trim_end_matches('/').into(),
            key: key.into(),
        })
    }

    /// The secret it is in, for fetching each secret once.
    fn secret(&self) -> String {
        format!("{}/{}", self.mount, self.path)
    }
}

/// Where the references are: (dotted config key, original text, parsed).
type Found = Vec<(Vec<String>, String, Result<Reference, String>)>;

/// Replace every `vault:` string in `tree` by the value it names. A
/// reference that cannot be resolved is reported and its key removed.
pub(super) fn resolve(tree: &mut Value, opts: &LoadOptions, problems: &mut Vec<Problem>) {
    let mut found = Found::new();
    collect(tree, &mut Vec::new(), &mut found);
    if found.is_empty() {
        return;
    }
    let mut secrets: BTreeMap<String, Option<Result<Value, String>>> = BTreeMap::new();
    for (_, _, parsed) in &found {
        if let Ok(reference) = parsed {
            secrets.entry(reference.secret()).or_insert(None);
        }
    }
    let client = Client::new(tree, opts);
    match &client {
        Ok(client) => fetch_all(client, &mut secrets),
        Err(reason) => {
            for slot in secrets.values_mut() {
                *slot = Some(Err(reason.clone()));
            }
        }
    }
    for (path, text, parsed) in found {
        let value = parsed.and_then(|reference| {
            let secret = match secrets.get(&reference.secret()) {
                Some(Some(Ok(secret))) => secret,
                Some(Some(Err(reason))) => return Err(reason.clone()),
                _ => return Err("not read".into()),
            };
            field(secret, &reference)
        });
        match value {
            Ok(value) => set(tree, &path, Value::String(value)),
            Err(reason) => {
                problems.push(Problem::new(text, dotted(&path), reason));
                set(tree, &path, Value::Null);
            }
        }
    }
}

fn collect(value: &Value, path: &mut Vec<String>, found: &mut Found) {
    match value {
        Value::String(s) if s.starts_with(PREFIX) => {
            let parsed =
                if path_is(path, "services.vault_addr") || path_is(path, "services.vault_token") {
                    Err("Vault's own address and token can not come from Vault".into())
                } else {
                    Reference::parse(s)
                };
            found.push((path.clone(), s.clone(), parsed));
        }
        Value::Object(map) => {
            for (key, child) in map {
                path.push(key.clone());
                collect(child, path, found);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                collect(item, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

fn path_is(path: &[String], dotted_key: &str) -> bool {
    path.iter().map(String::as_str).eq(dotted_key.split('.'))
}

fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.parse::<usize>().is_ok() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

fn set(tree: &mut Value, path: &[String], new: Value) {
    let mut node = tree;
    for part in path {
        let next = match node {
            Value::Object(map) => map.get_mut(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return,
        }
    }
    *node = new;
}

/// The field a reference names, as text.
fn field(secret: &Value, reference: &Reference) -> Result<String, String> {
    match secret.get(&reference.key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
        Some(_) => Err(format!(
            "key {} of {} is not a single value (text, number or bool)",
            reference.key,
            reference.secret()
        )),
        None => Err(format!(
            "key {} not found in {}",
            reference.key,
            reference.secret()
        )),
    }
}

struct Client {
    addr: String,
    token: String,
    namespace: Option<String>,
    http: reqwest::Client,
}

impl Client {
    fn new(tree: &Value, opts: &LoadOptions) -> Result<Client, String> {
        let text = |key: &str| {
            tree.get("services")
                .and_then(|s| s.get(key))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let addr = text("vault_addr")
            .ok_or("VAULT_ADDR (services.vault_addr) is not set: set it to the Vault server's https:// address")?;
        let token = text("vault_token").ok_or(
            "VAULT_TOKEN (services.vault_token) is not set: set it or VAULT_TOKEN_FILE to a token that may read the secret",
        )?;
        let shown = redact(&addr);
        let url = reqwest::Url::parse(&addr)
            .map_err(|e| format!("VAULT_ADDR {shown} is not a URL ({e})"))?;
        let loopback = url.host_str().is_some_and(|host| {
            host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(format!(
                    "VAULT_ADDR {shown} must be https:// (plain http only to a loopback address): the token would cross the network in clear"
                ));
            }
        }
        let ca = opts.env.get("VAULT_CACERT").filter(|p| !p.is_empty());
        let tls = crate::tls::client_config(ca.map(std::path::Path::new))
            .map_err(|e| format!("VAULT_CACERT: {e}"))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {}", http_error(e)))?;
        Ok(Client {
            addr: addr.trim_end_matches('/').to_string(),
            token,
            namespace: opts
                .env
                .get("VAULT_NAMESPACE")
                .filter(|n| !n.is_empty())
                .cloned(),
            http,
        })
    }

    /// The `data` of the current version of the KV v2 secret `mount/path`.
    async fn read(&self, secret: &str) -> Result<Value, String> {
        let (mount, path) = secret.split_once('/').unwrap_or((secret, ""));
        let url = format!("{}/v1/{mount}/data/{path}", self.addr);
        let mut request = self.http.get(&url).header("X-Vault-Token", &self.token);
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        let response = request.send().await.map_err(|e| {
            format!(
                "cannot reach Vault at {} ({})",
                redact(&self.addr),
                http_error(e)
            )
        })?;
        match response.status().as_u16() {
            200 => {}
            403 => {
                return Err(format!(
                    "permission denied reading {secret}: check VAULT_TOKEN and that its policy may read {mount}/data/{path}"
                ));
            }
            404 => {
                return Err(format!(
                    "no secret at {secret} (is {mount}/ a KV version 2 engine, and the path right?)"
                ));
            }
            status @ 300..=399 => {
                return Err(format!(
                    "Vault answered a redirect (HTTP {status}) reading {secret}: secmon follows none (the token would go with it); set VAULT_ADDR to the server that answers, e.g. the active node"
                ));
            }
            status => return Err(format!("Vault answered HTTP {status} reading {secret}")),
        }
        let body: Value = response.json().await.map_err(|e| {
            format!(
                "Vault's answer for {secret} is not KV v2 JSON ({})",
                http_error(e)
            )
        })?;
        match body.pointer("/data/data") {
            Some(data @ Value::Object(_)) => Ok(data.clone()),
            Some(Value::Null) => Err(format!(
                "the current version of {secret} is deleted or destroyed"
            )),
            _ => Err(format!(
                "Vault's answer for {secret} has no data.data: is {mount}/ a KV version 2 engine?"
            )),
        }
    }
}

/// Read every secret once, on a runtime of its own in a thread of its own:
/// loading is synchronous and may run inside or outside a runtime.
fn fetch_all(client: &Client, secrets: &mut BTreeMap<String, Option<Result<Value, String>>>) {
    let names: Vec<String> = secrets.keys().cloned().collect();
    let results = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime to read Vault ({e})"))?;
                Ok::<_, String>(rt.block_on(async {
                    let mut results = Vec::with_capacity(names.len());
                    for name in &names {
                        results.push(client.read(name).await);
                    }
                    results
                }))
            })
            .join()
            .unwrap_or_else(|_| Err("reading Vault failed".into()))
    });
    match results {
        Ok(results) => {
            for (name, result) in names.into_iter().zip(results) {
                secrets.insert(name, Some(result));
            }
        }
        Err(reason) => {
            for slot in secrets.values_mut() {
                *slot = Some(Err(reason.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        assert_eq!(
            Reference::parse("vault:secret/secmon/prod#jwt_secret").unwrap(),
            Reference {
                mount: "secret".into(),
                path: "secmon/prod".into(),
                key: "jwt_secret".into()
            }
        );
        for bad in [
            "vault:secret/secmon",
            "vault:secmon#key",
            "vault:secret/#key",
            "vault:secret/a/../b#key",
            "vault:secret/x#",
            "vault:/x#key",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(e.contains("vault:<mount>/<path>#<key>"), "{bad}: {e}");
        }
    }

    #[test]
    fn dotted_paths_name_list_items() {
        let path = ["notifications", "channels", "0", "url"].map(String::from);
        assert_eq!(dotted(&path), "notifications.channels[0].url");
    }
}
