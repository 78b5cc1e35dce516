//! Object storage for the archive and backups: S3 and S3-compatible stores
//! (`s3://bucket/prefix`, through the `s3` settings) or a local directory
//! (`file:///path`), through the object_store crate.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore};

use crate::config::{S3, Secret};

/// A bucket (or directory) and a prefix in it.
#[derive(Clone, Debug)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// Where objects go inside `store` (empty: its root).
    pub prefix: Path,
    /// `s3://bucket/prefix` or `file:///path`, for messages (never holds a
    /// credential: those come from the `s3` settings).
    pub url: String,
}

impl Location {
    /// Opens `url` (`s3://bucket[/prefix]` or `file:///absolute/path`); a
    /// local directory is created when missing.
    pub fn open(url: &str, s3: &S3) -> Result<Location, String> {
        // The S3 client's TLS (reqwest without a bundled provider).
        crate::install_crypto_provider();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("names no bucket: use s3://bucket/prefix".to_owned());
            }
            let mut options = ClientOptions::new()
                .with_allow_http(s3.allow_http)
                .with_connect_timeout(Duration::from_secs(10))
                .with_timeout(Duration::from_secs(300));
            if let Some(ca) = &s3.ca_path {
                let pem =
                    std::fs::read(ca).map_err(|e| format!("s3.ca_path {}: {e}", ca.display()))?;
                let certs = object_store::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("s3.ca_path {}: {e}", ca.display()))?;
                options = options.with_no_system_certificates(true);
                for cert in certs {
                    options = options.with_root_certificate(cert);
                }
            }
            // The SDKs' other variables (a session token, container
            // credentials), then ours, which also come from `_FILE` and Vault.
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_client_options(options);
            if let Some(endpoint) = &s3.endpoint_url {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            if let Some(key) = s3.access_key_id.as_ref().map(Secret::expose) {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = s3.secret_access_key.as_ref().map(Secret::expose) {
                builder = builder.with_secret_access_key(secret);
            }
            let store = builder
                .build()
                .map_err(|e| crate::notify::redact::redact(&e.to_string()))?;
            Ok(Location {
                store: Arc::new(store),
                prefix: Path::from(prefix.trim_matches('/')),
                url: format!("s3://{bucket}/{}", prefix.trim_matches('/')),
            })
        } else if let Some(dir) = url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(
                    "a file:// URL needs an absolute path: file:///var/lib/secmon-archive"
                        .to_owned(),
                );
            }
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
            let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| e.to_string())?;
            Ok(Location {
                store: Arc::new(store),
                prefix: Path::default(),
                url: url.to_owned(),
            })
        } else {
            Err("use s3://bucket/prefix or file:///path".to_owned())
        }
    }

    /// `prefix/relative`.
    pub fn path(&self, relative: &str) -> Path {
        let relative = relative.trim_start_matches('/');
        if self.prefix.as_ref().is_empty() {
            Path::from(relative)
        } else {
            Path::from(format!("{}/{relative}", self.prefix))
        }
    }
}

/// Checks an `s3://` or `file://` URL's form (`secmon config check`).
pub fn check_url(url: &str) -> Result<(), String> {
    match url.split_once("://") {
        Some(("s3", rest)) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        Some(("file", rest)) if rest.starts_with('/') => Ok(()),
        _ => Err("use s3://bucket/prefix or file:///absolute/path".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_or_an_absolute_directory() {
        assert!(check_url("s3://bucket/a/b").is_ok());
        assert!(check_url("s3://bucket").is_ok());
        assert!(check_url("file:///var/lib/x").is_ok());
        for bad in ["s3:///x", "file://relative", "http://x", "bucket/prefix"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/archive", dir.path().display());
        let location = Location::open(&url, &S3::default()).unwrap();
        assert!(dir.path().join("archive").is_dir());
        assert_eq!(location.path("/events/x").as_ref(), "events/x");
        let s3 = Location::open("s3://b/p/q/", &S3::default()).unwrap();
        assert_eq!(s3.path("events/x").as_ref(), "p/q/events/x");
        assert_eq!(s3.url, "s3://b/p/q");
    }
}
