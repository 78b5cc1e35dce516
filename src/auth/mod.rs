//! Who may do what: principals (users and API keys), their roles, and the
//! capabilities a role grants.
//!
//! An operation that needs a right takes the capability as a parameter
//! (`&CanAdminister`, `&CanTriage`, ...). A capability can only be obtained
//! from a [`Principal`] whose role grants it ([`Principal::grant`]), so a
//! resolver cannot reach an admin operation without an admin principal:
//! the compiler checks it. Each capability carries the [`Actor`] that holds
//! it, which is what the audit log and alert histories record.
//!
//! The matrix (one place, tested in `tests/auth.rs` over the real API):
//!
//! | capability     | admin | analyst | viewer | ingest |
//! |----------------|-------|---------|--------|--------|
//! | read           | yes   | yes     | yes    |        |
//! | triage alerts  | yes   | yes     |        |        |
//! | edit rules     | yes   | yes     |        |        |
//! | ingest events  | yes   |         |        | yes    |
//! | administer     | yes   |         |        |        |

pub mod limit;
pub mod password;
pub mod service;
pub mod token;

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use service::{Auth, AuthError, Tokens};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Analyst,
    Viewer,
    Ingest,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Analyst, Role::Viewer, Role::Ingest];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
            Role::Ingest => "ingest",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    ApiKey,
    /// The command line on the node itself (whoever can open the data dir).
    Local,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User name, API key name, or the local operator's name.
    pub name: String,
    pub kind: PrincipalKind,
    pub role: Role,
}

impl Principal {
    /// The command line acting on the data dir it can open.
    pub fn local() -> Principal {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "root".to_owned());
        Principal {
            name: format!("local:{user}"),
            kind: PrincipalKind::Local,
            role: Role::Admin,
        }
    }

    /// How the audit log and alert histories name this principal.
    pub fn display_name(&self) -> String {
        match self.kind {
            PrincipalKind::User | PrincipalKind::Local => self.name.clone(),
            PrincipalKind::ApiKey => format!("apikey:{}", self.name),
        }
    }

    /// The capability `C`, if this principal's role grants it.
    pub fn grant<C: Capability>(&self, ip: Option<IpAddr>) -> Result<C, Denied> {
        if C::allows(self.role) {
            Ok(C::new(
                Actor {
                    name: self.display_name(),
                    ip,
                },
                Seal(()),
            ))
        } else {
            Err(Denied {
                role: self.role,
                needs: C::NAME,
            })
        }
    }
}

/// Who did something, and from where (none for the local command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub ip: Option<IpAddr>,
}

impl Actor {
    /// The daemon itself acting (`system:<what>`), e.g. a response action.
    pub fn system(what: &str) -> Actor {
        Actor {
            name: format!("system:{what}"),
            ip: None,
        }
    }
}

/// A role lacks a capability.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the {role} role may not {needs}")]
pub struct Denied {
    pub role: Role,
    pub needs: &'static str,
}

/// A right to a class of operations. Only this module can make one: the
/// constructor takes a [`Seal`], which nothing else can build.
pub trait Capability: Sized {
    /// What the capability allows, for error messages ("administer", ...).
    const NAME: &'static str;
    fn allows(role: Role) -> bool;
    fn new(actor: Actor, seal: Seal) -> Self;
    fn actor(&self) -> &Actor;
}

/// Proof that a capability is made here. Its field is private.
pub struct Seal(());

macro_rules! capability {
    ($(#[$doc:meta])* $name:ident, $what:literal, $($role:ident)|+) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            actor: Actor,
        }

        impl Capability for $name {
            const NAME: &'static str = $what;
            fn allows(role: Role) -> bool {
                matches!(role, $(Role::$role)|+)
            }
            fn new(actor: Actor, _: Seal) -> Self {
                $name { actor }
            }
            fn actor(&self) -> &Actor {
                &self.actor
            }
        }
    };
}

capability!(
    /// Read events, alerts, rules, statistics and status; subscribe.
    CanRead, "read data", Admin | Analyst | Viewer
);
capability!(
    /// Change alerts: acknowledge, resolve, assign, comment, ...
    CanTriage, "triage alerts", Admin | Analyst
);
capability!(
    /// Create, change, enable, delete and back-test rules.
    CanEditRules, "edit rules", Admin | Analyst
);
capability!(
    /// Send events.
    CanIngest, "ingest events", Admin | Ingest
);
capability!(
    /// Manage users and API keys; read the audit log.
    CanAdminister, "administer", Admin
);

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role) -> Principal {
        Principal {
            name: "p".into(),
            kind: PrincipalKind::User,
            role,
        }
    }

    #[test]
    fn ingest_role_can_send_and_nothing_else() {
        let p = principal(Role::Ingest);
        assert!(p.grant::<CanIngest>(None).is_ok());
        assert!(p.grant::<CanRead>(None).is_err());
        assert!(p.grant::<CanTriage>(None).is_err());
        assert!(p.grant::<CanEditRules>(None).is_err());
        let denied = p.grant::<CanAdminister>(None).unwrap_err();
        assert_eq!(denied.to_string(), "the ingest role may not administer");
    }

    #[test]
    fn admin_holds_every_capability_and_viewer_only_reads() {
        let admin = principal(Role::Admin);
        assert!(admin.grant::<CanRead>(None).is_ok());
        assert!(admin.grant::<CanTriage>(None).is_ok());
        assert!(admin.grant::<CanEditRules>(None).is_ok());
        assert!(admin.grant::<CanIngest>(None).is_ok());
        assert!(admin.grant::<CanAdminister>(None).is_ok());
        let viewer = principal(Role::Viewer);
        assert!(viewer.grant::<CanRead>(None).is_ok());
        assert!(viewer.grant::<CanTriage>(None).is_err());
        assert!(viewer.grant::<CanIngest>(None).is_err());
    }
}
