//! Configuration: typed structs ([`types`]), layered loading ([`load`]:
//! defaults -> `config.yaml` -> `ports.yaml` -> `services.yaml` ->
//! `<environment>.yaml` -> environment variables, with `${VAR:-default}`
//! substituted per value), semantic checks ([`validate`]) and the port plan
//! rules of `secmon validate-ports` ([`ports`]); `vault:` references in any
//! value are read from Vault at load ([`vault`]).
//!
//! Every stage reports all the problems it finds at once, each naming where
//! it comes from (file or variable), the dotted key and what to do.

use std::fmt;

mod load;
mod ports;
mod types;
mod validate;
mod vault;

pub use load::{LoadOptions, load};
pub use ports::{PortReport, RuleResult, validate_ports};
pub use types::{
    ActionKind, Api, ApiListener, Auth, AuthMode, Backup, Channel, ChannelKind, Cidr, Config,
    Connections, Dependency, Detection, Environment, Export, Exposure, Files, FleetSearch,
    ForwardedHeader, IndexConfig, Ingest, Journald, Kind, Listeners, Log, LogFormat, LoginLimits,
    Notifications, PlainListener, PortSpec, Ports, Protocol, RateLimits, Replication, Response,
    ResponseAction, Retention, S3, Scope, Secret, Services, Span, StartAt, SyslogListener, Tls,
    Trigger,
};
pub use validate::{redacted_yaml, validate};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A file path, `environment variable X`, or `configuration` for checks
    /// on the merged result.
    pub source: String,
    /// Dotted key path (`ports.graphql`); empty when the whole source is wrong.
    pub key: String,
    pub reason: String,
}

impl Problem {
    pub fn new(
        source: impl Into<String>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Problem {
            source: source.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.source, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.source, self.key, self.reason)
        }
    }
}

/// Every problem found while loading, one per line when displayed.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}
