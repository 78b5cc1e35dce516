//! The control socket, `data_dir/control.sock`: a Unix socket that only the
//! data dir's owner can reach (mode 0600), through which the command line
//! asks a running daemon for what needs its open store (a backup, users,
//! API keys, the audit log). One JSON request line, one JSON response line.
//! Whoever can reach it can open the data dir: it acts as a local admin.
//! Without a daemon, the command line runs the same [`execute`] on the
//! data dir itself. Every backup, over the socket or offline, is audited
//! (`backup.create` with what it holds, or `backup.failed`); a backup whose
//! entry cannot be written is deleted. The audit log names the user the
//! request claims and, over the socket, the caller's uid from the kernel.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, CanAdminister, Capability, Principal, Role, token};
use crate::store::audit::Record;
use crate::store::backup::BackupReport;

pub const SOCKET: &str = "control.sock";

/// An operation, and the local user who asks for it (for the audit log).
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub by: String,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Backup {
        path: PathBuf,
    },
    /// A user; a password is generated (and returned once) when none is given.
    UserAdd {
        name: String,
        role: Role,
        password: Option<String>,
    },
    UserList,
    UserPasswd {
        name: String,
        password: Option<String>,
    },
    UserDisable {
        name: String,
    },
    ApikeyCreate {
        name: String,
        role: Role,
    },
    ApikeyList,
    ApikeyRevoke {
        id: String,
    },
    AuditVerify,
}

impl Op {
    /// Asked by the local user running this process.
    pub fn by_me(self) -> Request {
        Request {
            by: Principal::local().name,
            op: self,
        }
    }
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

pub async fn serve(listener: UnixListener, auth: Arc<Auth>, shutdown: CancellationToken) {
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
        let auth = auth.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, auth).await {
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

async fn answer(stream: UnixStream, auth: Arc<Auth>) -> std::io::Result<()> {
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Err(e) => Response::Error(format!("bad request: {e}")),
        Ok(mut request) => {
            // `by` is what the caller says; the uid is what the kernel says.
            if let Some(uid) = uid {
                request.by = format!("{} (uid {uid})", request.by);
            }
            tokio::task::spawn_blocking(move || execute(&auth, request))
                .await
                .unwrap_or_else(|e| Response::Error(e.to_string()))
        }
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await
}

/// Carries out `request` (blocking: backups, argon2).
pub fn execute(auth: &Auth, request: Request) -> Response {
    let local = Principal {
        name: request.by,
        ..Principal::local()
    };
    let cap: CanAdminister = match local.grant(None) {
        Ok(cap) => cap,
        Err(e) => return Response::Error(e.to_string()),
    };
    let generated = |given: Option<String>| match given {
        Some(p) => Ok((p, false)),
        None => token::random_secret()
            .map(|p| (p, true))
            .map_err(|e| format!("no randomness: {e}")),
    };
    let result = (|| -> Result<Value, String> {
        match request.op {
            Op::Backup { path } => {
                tracing::info!(path = %path.display(), "backup requested");
                let report = backup(auth, &cap, &path)?;
                serde_json::to_value(report).map_err(|e| e.to_string())
            }
            Op::UserAdd {
                name,
                role,
                password,
            } => {
                let (password, generated) = generated(password)?;
                let user = auth
                    .create_user(&cap, &name, &password, role)
                    .map_err(|e| e.to_string())?;
                Ok(json!({
                    "username": user.username,
                    "role": user.role,
                    "password": generated.then_some(password),
                }))
            }
            Op::UserList => {
                let users = auth.store().users().map_err(|e| e.to_string())?;
                Ok(users
                    .into_iter()
                    .map(|u| {
                        json!({
                            "username": u.username,
                            "role": u.role,
                            "disabled": u.disabled,
                            "created_at": u.created_at,
                        })
                    })
                    .collect())
            }
            Op::UserPasswd { name, password } => {
                let (password, generated) = generated(password)?;
                auth.reset_password(&cap, &name, &password)
                    .map_err(|e| e.to_string())?;
                Ok(json!({ "username": name, "password": generated.then_some(password) }))
            }
            Op::UserDisable { name } => {
                auth.set_disabled(&cap, &name, true)
                    .map_err(|e| e.to_string())?;
                Ok(json!({ "username": name, "disabled": true }))
            }
            Op::ApikeyCreate { name, role } => {
                let (record, key) = auth
                    .create_api_key(&cap, &name, role)
                    .map_err(|e| e.to_string())?;
                Ok(json!({ "id": record.id, "name": record.name, "role": record.role, "key": key }))
            }
            Op::ApikeyList => {
                let keys = auth.store().api_keys().map_err(|e| e.to_string())?;
                Ok(keys
                    .into_iter()
                    .map(|k| {
                        json!({
                            "id": k.id,
                            "name": k.name,
                            "role": k.role,
                            "created_at": k.created_at,
                            "revoked_at": k.revoked_at,
                        })
                    })
                    .collect())
            }
            Op::ApikeyRevoke { id } => {
                let key = auth.revoke_api_key(&cap, &id).map_err(|e| e.to_string())?;
                Ok(json!({ "id": key.id, "revoked_at": key.revoked_at }))
            }
            Op::AuditVerify => match auth.store().verify_audit().map_err(|e| e.to_string())? {
                Ok(v) => Ok(json!({ "ok": true, "entries": v.entries, "head": v.head })),
                Err(broken) => Ok(json!({ "ok": false, "error": broken.to_string() })),
            },
        }
    })();
    match result {
        Ok(v) => Response::Ok(v),
        Err(e) => Response::Error(e),
    }
}

/// [`backup`] by the daemon itself, audited as `actor` (the scheduled
/// backups: `backup.schedule`).
pub fn backup_as(auth: &Auth, actor: &str, path: &Path) -> Result<BackupReport, String> {
    let me = Principal {
        name: actor.to_owned(),
        ..Principal::local()
    };
    let cap: CanAdminister = me.grant(None).map_err(|e| e.to_string())?;
    backup(auth, &cap, path)
}

/// Writes a backup to `path` and audits it (or its failure). A backup
/// that cannot be audited is deleted: none exists that the log misses.
fn backup(auth: &Auth, cap: &CanAdminister, path: &Path) -> Result<BackupReport, String> {
    let store = auth.store();
    let target = path.display().to_string();
    let (record, result) = match store.backup_to(path) {
        Ok(report) => (
            Record::new("backup.create").target(target).after(json!({
                "events": report.events,
                "last_seq": report.last_seq,
                "bytes": report.bytes,
            })),
            Ok(report),
        ),
        Err(e) => {
            let error = e.to_string();
            (
                Record::new("backup.failed")
                    .target(target)
                    .after(json!({ "error": error })),
                Err(error),
            )
        }
    };
    if let Err(e) = store.audit(cap.actor(), record) {
        if result.is_ok() {
            let _ = std::fs::remove_file(path);
        }
        return Err(format!(
            "cannot write the audit entry of the backup, so no backup was kept: {e}"
        ));
    }
    result
}

/// Carries out `request` on `data_dir` itself, when no daemon serves it.
pub fn execute_offline(data_dir: &Path, request: Request) -> Result<Response, crate::store::Error> {
    let store = crate::store::Store::open(data_dir)?;
    // Nothing here signs a token: the key only has to exist.
    let signing_key = token::random_secret().unwrap_or_default();
    let auth = Auth::new(
        store,
        signing_key.as_bytes(),
        &crate::config::Auth::default(),
    );
    Ok(execute(&auth, request))
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
