//! Server TLS: the certificate of the HTTPS ports (GraphQL, WebSocket,
//! metrics) and of syslog TLS, reloaded without a restart, and the
//! development PKI that `secmon init` writes.
//!
//! TLS 1.2 and 1.3 only ([`PROTOCOL_VERSIONS`]). One [`ServerTls`] holds two
//! configurations made from one read of the files: the HTTP one (ALPN h2 and
//! http/1.1), shared with axum-server through its [`RustlsConfig`] handle,
//! and the syslog one, which requires a client certificate from
//! `tls.syslog_client_ca_path` when that is set and which
//! [`SyslogAcceptor`] takes afresh for every accepted connection.
//! [`ServerTls::watch`] re-reads the files on SIGHUP and when their metadata
//! changes; a reload that fails keeps the running certificate. Errors name
//! the file, never its contents.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::version::{TLS12, TLS13};
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::telemetry::metric;

/// The protocol versions every listener speaks; TLS 1.0 and 1.1 clients are
/// refused at their hello (alert `protocol_version`).
pub const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] = &[&TLS13, &TLS12];

/// ALPN of the HTTPS ports.
const HTTP_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How long a syslog TLS client gets to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error(
        "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        path.display()
    )]
    NoCertificate { path: PathBuf },
    #[error(
        "{} holds no PEM private key: give PKCS#8, PKCS#1 (RSA) or SEC1 (EC) PEM",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("{} is not valid PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: &'static str },
    #[error(
        "the private key {} does not go with the certificate {}: give the key the certificate was issued for",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the private key {} is unusable: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("the client CA bundle {} is unusable: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
    #[error("cannot build the TLS configuration: {0}")]
    Config(rustls::Error),
    #[error("cannot generate the development certificates: {0}")]
    Generate(rcgen::Error),
    #[error(
        "{} exists but not all of ca.crt, ca.key, server.crt, server.key do: remove them or overwrite them",
        path.display()
    )]
    Incomplete { path: PathBuf },
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: io::Error },
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|error| Error::Read {
        path: path.to_owned(),
        error,
    })
}

/// Why a PEM file does not parse, in words that quote nothing of it.
fn pem_error(path: &Path, e: &pem::Error) -> Error {
    let reason = match e {
        pem::Error::MissingSectionEnd { .. } => {
            "a section has no END line (is the file cut short?)"
        }
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "unreadable",
    };
    Error::Pem {
        path: path.to_owned(),
        reason,
    }
}

/// Reads a PEM certificate chain (or CA bundle): every certificate in the file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// A client configuration (for Postgres) that verifies servers against
/// the CA bundle at `ca`, or the system's roots without one.
pub fn client_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|_| Error::Pem {
                    path: path.to_owned(),
                    reason: "a certificate does not parse",
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "a system root certificate was not loaded");
            }
            roots.add_parsable_certificates(found.certs);
        }
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Reads the first PEM private key of a file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => Error::NoKey {
            path: path.to_owned(),
        },
        e => pem_error(path, &e),
    })
}

/// The two server configurations made from one read of the files.
#[derive(Debug, Clone)]
pub struct Configs {
    /// For the HTTPS ports: ALPN h2 and http/1.1, no client certificates.
    pub http: Arc<ServerConfig>,
    /// For syslog TLS: client certificates required when a client CA is set.
    pub syslog: Arc<ServerConfig>,
}

/// Reads the certificate, key and client CA of `cfg` and builds both server
/// configurations (blocking I/O).
pub fn server_configs(cfg: &config::Tls) -> Result<Configs, Error> {
    let chain = load_certs(&cfg.cert_path)?;
    let key = load_key(&cfg.key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(Error::Config)
    };
    let key_error = |e| match e {
        rustls::Error::InconsistentKeys(_) => Error::KeyMismatch {
            cert: cfg.cert_path.clone(),
            key: cfg.key_path.clone(),
        },
        e => Error::BadKey {
            path: cfg.key_path.clone(),
            reason: e.to_string(),
        },
    };
    let mut http = builder()?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(key_error)?;
    http.alpn_protocols = HTTP_ALPN.iter().map(|p| p.to_vec()).collect();
    let syslog = match &cfg.syslog_client_ca_path {
        None => builder()?.with_no_client_auth(),
        Some(ca) => builder()?.with_client_cert_verifier(client_verifier(ca, &provider)?),
    }
    .with_single_cert(chain, key)
    .map_err(key_error)?;
    Ok(Configs {
        http: Arc::new(http),
        syslog: Arc::new(syslog),
    })
}

/// Requires a client certificate issued by one of the CAs in `path`.
fn client_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let unusable = |reason: String| Error::ClientCa {
        path: path.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| unusable(e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| unusable(e.to_string()))
}

/// What the files look like now (device, inode, length, modification time;
/// `None` for a missing file), from their metadata only. Symbolic links are
/// followed, so a Kubernetes secret mount's swap counts as a change.
type Fingerprint = Vec<Option<(u64, u64, u64, i64, i64)>>;

fn fingerprint(cfg: &config::Tls) -> Fingerprint {
    [Some(&cfg.cert_path), Some(&cfg.key_path)]
        .into_iter()
        .chain([cfg.syslog_client_ca_path.as_ref()])
        .flatten()
        .map(|path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

/// The running server TLS material: the HTTP handle and the syslog
/// configuration, swapped together by [`ServerTls::reload`].
pub struct ServerTls {
    files: config::Tls,
    /// The files as they were when last read.
    loaded: Fingerprint,
    http: RustlsConfig,
    syslog: watch::Sender<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Reads the certificate, key and client CA of `cfg` (blocking I/O: call
    /// it on a blocking thread).
    pub fn load(cfg: &config::Tls) -> Result<ServerTls, Error> {
        let loaded = fingerprint(cfg);
        let configs = server_configs(cfg)?;
        Ok(ServerTls {
            files: cfg.clone(),
            loaded,
            http: RustlsConfig::from_config(configs.http),
            syslog: watch::channel(configs.syslog).0,
        })
    }

    /// The HTTPS configuration: a shared handle, so servers given it serve
    /// the reloaded certificate to their next connections.
    pub fn http(&self) -> RustlsConfig {
        self.http.clone()
    }

    /// The syslog TLS acceptor, which follows reloads.
    pub fn syslog(&self) -> SyslogAcceptor {
        SyslogAcceptor {
            config: self.syslog.subscribe(),
        }
    }

    /// Re-reads the files and swaps both configurations; on error the
    /// running ones stay. Counted in `secmon_tls_reloads_total` by result.
    /// Blocking I/O.
    pub fn reload(&self) -> Result<(), Error> {
        let result = server_configs(&self.files).map(|configs| {
            self.http.reload_from_config(configs.http);
            self.syslog.send_replace(configs.syslog);
        });
        let label = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(metric::TLS_RELOADS, "result" => label).increment(1);
        result
    }

    /// Reloads on SIGHUP and, every `tls.reload_interval_seconds` (0: never),
    /// when one of the files changed, until `shutdown`. The SIGHUP handler is
    /// installed before this returns, so a SIGHUP sent once the daemon is up
    /// never takes its default action (terminate).
    pub fn watch(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + use<> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: certificates reload on file changes only");
                None
            }
        };
        let every = self.files.reload_interval_seconds;
        async move {
            let mut seen = self.loaded.clone();
            loop {
                let why = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    Some(()) = async { match &mut hangup { Some(h) => h.recv().await, None => None } } => "SIGHUP",
                    _ = tokio::time::sleep(Duration::from_secs(every)), if every > 0 => "a file changed",
                };
                let this = self.clone();
                let before = std::mem::take(&mut seen);
                let Ok((now, result)) = tokio::task::spawn_blocking(move || {
                    // Taken before the read: a change during it is seen next time.
                    let now = fingerprint(&this.files);
                    let result = (why == "SIGHUP" || now != before).then(|| this.reload());
                    (now, result)
                })
                .await
                else {
                    continue;
                };
                seen = now;
                match result {
                    None => {}
                    Some(Ok(())) => tracing::info!(
                        reason = why,
                        cert = %self.files.cert_path.display(),
                        "TLS certificate reloaded"
                    ),
                    Some(Err(e)) => tracing::error!(
                        reason = why,
                        error = %e,
                        "TLS certificate not reloaded; the running certificate stays"
                    ),
                }
            }
        }
    }
}

/// Accepts syslog TLS connections with the configuration current at each
/// accept.
#[derive(Clone)]
pub struct SyslogAcceptor {
    config: watch::Receiver<Arc<ServerConfig>>,
}

impl SyslogAcceptor {
    /// The handshake, within [`HANDSHAKE_TIMEOUT`]. A refused or failed one
    /// is counted in `secmon_tls_handshake_failures_total` by `source` and
    /// reason, logged with the peer (a refused client certificate at warn),
    /// and gives `None`.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        peer: SocketAddr,
        source: &'static str,
    ) -> Option<TlsStream<S>> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.borrow().clone());
        let (reason, error) =
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => return Some(stream),
                Ok(Err(e)) => (refusal(&e), e.to_string()),
                Err(_) => ("timeout", "no handshake within 10 s".to_owned()),
            };
        metrics::counter!(metric::TLS_HANDSHAKE_FAILURES, "source" => source, "reason" => reason)
            .increment(1);
        if reason.starts_with("client_certificate") {
            tracing::warn!(source, %peer, reason, error, "TLS client refused");
        } else {
            tracing::debug!(source, %peer, reason, error, "TLS handshake failed");
        }
        None
    }
}

/// The metric label for a failed handshake.
fn refusal(e: &io::Error) -> &'static str {
    match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::NoCertificatesPresented) => "client_certificate_missing",
        Some(rustls::Error::InvalidCertificate(_)) => "client_certificate_invalid",
        Some(rustls::Error::PeerIncompatible(_)) => "incompatible",
        _ => "other",
    }
}

/// The files [`generate_dev_pki`] wrote or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// False when all four files were there already and were kept.
    pub created: bool,
}

/// Writes a development PKI into `dir` (created if missing, mode 0700):
/// `ca.crt` and `ca.key`, a CA valid ten years, and `server.crt` and
/// `server.key`, a server certificate it signed, valid 800 days, for
/// `localhost`, `127.0.0.1`, `::1` and `hostnames` (DNS names or IP
/// addresses). Keys are ECDSA P-256 in PKCS#8 PEM, mode 0600; certificates
/// mode 0644. Point `TLS_CERT_PATH`/`TLS_KEY_PATH` at the server files and
/// have clients trust `ca.crt`.
///
/// Existing files are never overwritten unless `overwrite`: when all four
/// exist they are kept (`created: false`, so running it again is harmless);
/// when only some exist it is an error naming one. With `overwrite` each
/// file is replaced atomically (written aside, then renamed), so a running
/// daemon reloads a complete file.
pub fn generate_dev_pki(
    dir: &Path,
    hostnames: &[String],
    overwrite: bool,
) -> Result<DevPki, Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let pki = DevPki {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        created: true,
    };
    let files = [&pki.ca_cert, &pki.ca_key, &pki.server_cert, &pki.server_key];
    if !overwrite {
        let existing: Vec<&&PathBuf> = files.iter().filter(|p| p.exists()).collect();
        if existing.len() == files.len() {
            return Ok(DevPki {
                created: false,
                ..pki
            });
        }
        if let Some(path) = existing.first() {
            return Err(Error::Incomplete {
                path: path.to_path_buf(),
            });
        }
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| Error::Write {
                path: dir.to_owned(),
                error,
            })?;
    }

    let today = chrono::Utc::now().date_naive();
    let date = |d: chrono::NaiveDate| {
        use chrono::Datelike;
        // Valid calendar dates by construction.
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let not_before = date(today - chrono::Days::new(1));

    let ca_key = KeyPair::generate().map_err(Error::Generate)?;
    let ca_key_pem = ca_key.serialize_pem();
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(Error::Generate)?;
    ca.distinguished_name
        .push(DnType::CommonName, "secmon development CA");
    ca.distinguished_name
        .push(DnType::OrganizationName, "secmon");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = date(today + chrono::Months::new(120));
    let ca = CertifiedIssuer::self_signed(ca, ca_key).map_err(Error::Generate)?;

    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for name in hostnames {
        if !name.is_empty() && !names.contains(name) {
            names.push(name.clone());
        }
    }
    let common_name = hostnames
        .iter()
        .find(|h| !h.is_empty())
        .map_or("localhost", String::as_str)
        .to_owned();
    let server_key = KeyPair::generate().map_err(Error::Generate)?;
    let mut server = CertificateParams::new(names).map_err(Error::Generate)?;
    server
        .distinguished_name
        .push(DnType::CommonName, common_name);
    server
        .distinguished_name
        .push(DnType::OrganizationName, "secmon");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    server.not_before = not_before;
    server.not_after = date(today + chrono::Days::new(800));
    let server_cert = server
        .signed_by(&server_key, &ca)
        .map_err(Error::Generate)?;

    write_file(&pki.ca_key, &ca_key_pem, 0o600, overwrite)?;
    write_file(&pki.ca_cert, &ca.pem(), 0o644, overwrite)?;
    write_file(
        &pki.server_key,
        &server_key.serialize_pem(),
        0o600,
        overwrite,
    )?;
    write_file(&pki.server_cert, &server_cert.pem(), 0o644, overwrite)?;
    Ok(pki)
}

/// Writes `contents` with `mode`: a new file only, or with `replace` a
/// file written aside and renamed over `path`.
fn write_file(path: &Path, contents: &str, mode: u32, replace: bool) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let write_error = |error| Error::Write {
        path: path.to_owned(),
        error,
    };
    let target = if replace {
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(".tmp");
        path.with_file_name(name)
    } else {
        path.to_owned()
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(mode);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(&target).map_err(write_error)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    if replace {
        std::fs::rename(&target, path).map_err(write_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tls_config(dir: &Path) -> config::Tls {
        config::Tls {
            enabled: true,
            cert_path: dir.join("server.crt"),
            key_path: dir.join("server.key"),
            ..config::Tls::default()
        }
    }

    #[test]
    fn dev_pki_files_modes_and_reruns() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let pki = generate_dev_pki(&dir, &["secmon.example".to_owned()], false).unwrap();
        assert!(pki.created);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&pki.ca_key), 0o600);
        assert_eq!(mode(&pki.server_key), 0o600);
        assert_eq!(mode(&pki.ca_cert), 0o644);
        assert_eq!(mode(&pki.server_cert), 0o644);
        // The server files load as a server configuration.
        server_configs(&tls_config(&dir)).unwrap();

        // Again: everything kept, byte for byte.
        let before = std::fs::read(&pki.server_key).unwrap();
        let again = generate_dev_pki(&dir, &[], false).unwrap();
        assert!(!again.created);
        assert_eq!(std::fs::read(&pki.server_key).unwrap(), before);

        // Overwrite: a new key, still private, no temporary file left.
        let replaced = generate_dev_pki(&dir, &[], true).unwrap();
        assert!(replaced.created);
        assert_ne!(std::fs::read(&pki.server_key).unwrap(), before);
        assert_eq!(mode(&pki.server_key), 0o600);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["ca.crt", "ca.key", "server.crt", "server.key"]);

        // Some files missing: refused, naming one that exists, nothing written.
        std::fs::remove_file(&pki.server_cert).unwrap();
        let err = generate_dev_pki(&dir, &[], false).unwrap_err();
        assert!(
            err.to_string().contains("ca.crt exists but not all"),
            "{err}"
        );
        assert!(!pki.server_cert.exists());
    }

    #[test]
    fn load_errors_name_the_file_and_quote_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = generate_dev_pki(tmp.path(), &[], false).unwrap();
        let mut cfg = tls_config(tmp.path());
        let key_pem = std::fs::read_to_string(&pki.server_key).unwrap();
        let key_body = key_pem.lines().nth(1).unwrap().to_owned();

        cfg.cert_path = tmp.path().join("missing.crt");
        let err = server_configs(&cfg).unwrap_err().to_string();
        assert!(err.starts_with("cannot read "), "{err}");
        assert!(err.contains("missing.crt"), "{err}");

        // A key where the certificate should be.
        cfg.cert_path = pki.server_key.clone();
        let err = server_configs(&cfg).unwrap_err().to_string();
        assert!(err.contains("server.key holds no PEM certificate"), "{err}");

        // A certificate where the key should be.
        cfg.cert_path = pki.server_cert.clone();
        cfg.key_path = pki.server_cert.clone();
        let err = server_configs(&cfg).unwrap_err().to_string();
        assert!(err.contains("server.crt holds no PEM private key"), "{err}");

        // A key cut short.
        let cut = tmp.path().join("cut.key");
        std::fs::write(&cut, &key_pem[..key_pem.len() / 2]).unwrap();
        cfg.key_path = cut;
        let err = server_configs(&cfg).unwrap_err().to_string();
        assert!(err.contains("cut.key is not valid PEM"), "{err}");
        assert!(!err.contains(&key_body), "{err}");

        // The CA's key with the server's certificate.
        cfg.key_path = pki.ca_key.clone();
        let err = server_configs(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("ca.key does not go with the certificate") && err.contains("server.crt"),
            "{err}"
        );

        // A client CA bundle that holds no certificate.
        cfg.key_path = pki.server_key.clone();
        cfg.syslog_client_ca_path = Some(pki.ca_key.clone());
        let err = server_configs(&cfg).unwrap_err().to_string();
        assert!(err.contains("ca.key holds no PEM certificate"), "{err}");
    }

    #[test]
    fn http_speaks_h2_and_http1_and_syslog_no_alpn() {
        let tmp = tempfile::tempdir().unwrap();
        generate_dev_pki(tmp.path(), &[], false).unwrap();
        let configs = server_configs(&tls_config(tmp.path())).unwrap();
        assert_eq!(
            configs.http.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(configs.syslog.alpn_protocols.is_empty());
    }
}
