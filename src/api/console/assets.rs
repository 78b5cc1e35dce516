//! The console's stylesheet and script, compiled into the binary. Pages
//! link them with their version (`?v=<hash>`, cached for a year) and
//! their Subresource Integrity digest.

use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha384};

struct Asset {
    file: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 2] = [
    Asset {
        file: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../../assets/console/console.css"),
    },
    Asset {
        file: "console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../assets/console/console.js"),
    },
];

/// How a page links one asset.
pub struct Link {
    /// `/ui/assets/<file>?v=<version>`.
    pub url: String,
    /// `sha384-…`.
    pub integrity: String,
    version: String,
}

/// The links of every asset, made once.
pub struct Links {
    pub css: Link,
    pub js: Link,
}

fn link(asset: &Asset) -> Link {
    let digest = Sha384::digest(asset.bytes);
    let version: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Link {
        url: format!("/ui/assets/{}?v={version}", asset.file),
        integrity: format!("sha384-{}", STANDARD.encode(digest)),
        version,
    }
}

static LINKS: LazyLock<Links> = LazyLock::new(|| Links {
    css: link(&ASSETS[0]),
    js: link(&ASSETS[1]),
});

pub fn links() -> &'static Links {
    &LINKS
}

#[derive(serde::Deserialize)]
pub struct Version {
    v: Option<String>,
}

/// `GET /ui/assets/{file}`: no credential needed (the sign-in page uses
/// them); cached for a year when asked for by its current version.
pub async fn serve(Path(file): Path<String>, Query(version): Query<Version>) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.file == file) else {
        return super::problem(StatusCode::NOT_FOUND, "no such file");
    };
    let asset = &ASSETS[index];
    let current = [&LINKS.css, &LINKS.js][index].version.as_str();
    let cache = if version.v.as_deref() == Some(current) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_is_the_sha384_of_the_bytes() {
        let links = links();
        assert!(links.js.integrity.starts_with("sha384-"));
        assert_eq!(links.js.integrity.len(), "sha384-".len() + 64);
        assert!(links.css.url.starts_with("/ui/assets/console.css?v="));
        assert_ne!(links.css.integrity, links.js.integrity);
    }
}
