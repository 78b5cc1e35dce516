//! The control socket, `data_dir/control.sock`: a Unix socket that only the
//! data dir's owner can reach (mode 0600), through which the command line
//! asks a running daemon for what needs its open store (a backup). One JSON
//! request line, one JSON response line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::store::Store;

pub const SOCKET: &str = "control.sock";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Backup { path: PathBuf },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(Value),
    Error(String),
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Binds the socket (replacing a stale one: the caller holds the store, so
/// no other daemon can be using this data dir).
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, store: Store, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    continue;
                }
            },
        };
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, store).await {
                tracing::warn!(error = %e, "control request failed");
            }
        });
    }
    if let Some(path) = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_owned))
    {
        let _ = std::fs::remove_file(path);
    }
}

async fn answer(stream: UnixStream, store: Store) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Err(e) => Response::Error(format!("bad request: {e}")),
        Ok(Request::Backup { path }) => {
            tracing::info!(path = %path.display(), "backup requested");
            let result = tokio::task::spawn_blocking(move || store.backup_to(&path)).await;
            match result {
                Ok(Ok(report)) => Response::Ok(serde_json::to_value(report).unwrap_or_default()),
                Ok(Err(e)) => Response::Error(e.to_string()),
                Err(e) => Response::Error(e.to_string()),
            }
        }
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await
}

/// Sends a request to the daemon serving `data_dir`; `None` when no daemon
/// listens there.
pub async fn call(data_dir: &Path, request: &Request) -> std::io::Result<Option<Response>> {
    let Ok(stream) = UnixStream::connect(socket_path(data_dir)).await else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    let mut out = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    serde_json::from_str(&line)
        .map(Some)
        .map_err(std::io::Error::other)
}
