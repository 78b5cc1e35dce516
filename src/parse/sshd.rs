//! OpenSSH server (`sshd`, `sshd-session`, `sshd-auth`) messages.
//!
//! The catalogue is OpenSSH's own source (`auth.c`, `auth2.c`, `auth-pam.c`,
//! `packet.c`, `kex.c`, `sshd.c`, `sshd-session.c`, `srclimit.c`,
//! `canohost.c`): every message that tells of an authentication attempt, a
//! refusal, a pre-authentication disconnect, throttling or protocol abuse,
//! in the wordings of OpenSSH 4 to 10. Actions (`event.action`), all with
//! dataset `sshd`:
//!
//! | action | category | outcome | lines |
//! |---|---|---|---|
//! | `ssh_login` | authentication | success/failure | `Accepted <method> for`, `Failed <method> for [invalid user]` |
//! | `ssh_auth_partial` | authentication | unknown | `Partial <method> for` (one of several required methods passed) |
//! | `ssh_auth_postponed` | authentication | unknown | `Postponed <method> for` |
//! | `ssh_pam_failure` | authentication | failure | `PAM: <error> for [illegal user ]X from HOST[ via IP]`, `Access denied for user X by PAM account configuration` |
//! | `ssh_invalid_user` | authentication | failure | `Invalid user X from IP`, `input_userauth_request: invalid\|illegal user X` |
//! | `ssh_user_not_allowed` | authentication | failure | `User X [from HOST] not allowed because ...`, `ROOT LOGIN REFUSED FROM IP` |
//! | `ssh_auth_refused` | authentication | failure | `Authentication refused: bad ownership or modes ...`, `... Authentication tried for X with correct key but not from a permitted host`, revoked keys |
//! | `ssh_preauth_disconnect` | authentication | failure | `Connection closed by`, `Disconnected from` `authenticating\|invalid user X IP port P`, `Connection from ... timed out` |
//! | `ssh_max_auth_attempts` | authentication | failure | `maximum authentication attempts exceeded`, `Too many authentication failures`, `PAM service(sshd) ignoring max retries` |
//! | `ssh_username_change` | authentication | failure | `Disconnecting ...: Change of username or service not allowed` |
//! | `ssh_auth_failures` | authentication | failure | `PAM N more authentication failures` (`fields.ssh.failures` = N) |
//! | `ssh_auth_timeout` | authentication | failure | `Timeout before authentication for IP port P` / `for connection from IP to IP, pid = N` |
//! | `ssh_logout` | session | success | `Disconnected from user X IP port P` |
//! | `ssh_disconnect` | network | see below | `Received disconnect`, `Connection closed by`, `Disconnected from` (no user) |
//! | `ssh_connection_reset` | authentication / network | failure / see below | `Connection reset by [authenticating\|invalid user X ]IP port P`, `Read from socket failed: Connection reset by peer` |
//! | `ssh_connection` | network | unknown | `Connection from IP port P on IP port P` |
//! | `ssh_connection_dropped` | network | failure | `drop connection #N from [IP]:P on [IP]:P <reason>` (MaxStartups, per-source penalties) |
//! | `ssh_penalty` | network | unknown | `srclimit_penalise: ...`, `... MaxStartups throttling ...` |
//! | `ssh_connection_refused` | network | failure | tcp_wrappers `refused connect from` |
//! | `ssh_no_identification` | network | failure | `Did not receive identification string`, `kex_exchange_identification: Connection closed\|reset` |
//! | `ssh_bad_protocol` | network | failure | bad banners, `probed\|scanned from`, `Bad packet length`, `ssh_dispatch_run_fatal`, `Disconnecting ...: Packet corrupt`, IP options |
//! | `ssh_bad_keyexchange` | network | failure | `Unable to negotiate ...`, `no matching <algorithm> found` |
//! | `ssh_preauth_crash` | network | failure | `session process\|preauth child N for ... killed by signal`, `... unpriv child crash` |
//! | `ssh_reverse_mapping_failed` | network | unknown | `reverse mapping checking getaddrinfo ... failed`, `Address ... does not map back`, `Nasty PTR record` |
//!
//! A disconnect, close or reset is a `failure` when it happened before
//! authentication (`[preauth]`, or a connection that never got that far:
//! `Connection closed by IP port P` at the banner exchange) or when the
//! client gave up on authentication (`Auth fail`, `No (more\|supported)
//! authentication methods`); otherwise `unknown`.
//!
//! `fields.ssh.method` holds the auth method, `fields.ssh.invalid_user` is
//! true when sshd said the user does not exist, `fields.ssh.reason` the
//! reason sshd gave for a refusal, drop or disconnect. A host logged by name
//! (`UseDNS yes`) goes to `fields.source.domain`. `[preauth]`, `error: `,
//! `fatal: ` and `<function>: ` decorations are read, not required. PAM
//! lines logged by sshd (`pam_unix(sshd:...)`) go to [`super::pam`].
//!
//! User names are chosen by the client, so they may contain spaces and
//! words like ` from 1.2.3.4 port 22`: the address is read where sshd's
//! format puts it, from the end of the line (`IP port P` last) or from the
//! ` from HOST port P sshN` that ends the line or is followed by `: `.

use serde_json::Value;

use super::{parse_ip, set_field, set_source_host, strip_preauth};
use crate::model::Event;

/// Parses one sshd message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let (m, preauth) = strip_preauth(msg);
    let m = skip_kernel_stamp(m);
    let m = m
        .strip_prefix("error: ")
        .or_else(|| m.strip_prefix("fatal: "))
        .unwrap_or(m);
    let Some(first) = m.split(' ').next() else {
        return false;
    };
    match first {
        "Accepted" | "Failed" | "Partial" | "Postponed" => {
            let rest = m[first.len()..].trim_start();
            login(first, rest, event)
        }
        "Invalid" | "input_userauth_request:" => {
            let rest = m
                .strip_prefix("Invalid user ")
                .or_else(|| m.strip_prefix("input_userauth_request: invalid user "))
                .or_else(|| m.strip_prefix("input_userauth_request: illegal user "));
            let Some(rest) = rest else { return false };
            match auth_from(rest) {
                Some((user, host)) => {
                    event.user_name = Some(user.to_owned());
                    host_port(host, event);
                }
                None => event.user_name = Some(rest.to_owned()),
            }
            set_field(event, "ssh.invalid_user", Value::Bool(true));
            done(event, "authentication", "ssh_invalid_user", "failure")
        }
        "PAM:" => m
            .strip_prefix("PAM: ")
            .is_some_and(|rest| pam_error(rest, event)),
        "Access" => {
            let Some(user) = m
                .strip_prefix("Access denied for user ")
                .and_then(|r| r.strip_suffix(" by PAM account configuration"))
            else {
                return false;
            };
            event.user_name = Some(user.to_owned());
            reason(event, "PAM account configuration");
            done(event, "authentication", "ssh_pam_failure", "failure")
        }
        "Connection" | "Disconnected" => closed(m, preauth, event),
        "Received" => {
            // Received disconnect from IP port P:11: reason | from IP: 11: reason
            let Some(rest) = m.strip_prefix("Received disconnect from ") else {
                return false;
            };
            let (addr, why) = rest.split_once(": ").unwrap_or((rest, ""));
            host_port(addr.trim_end_matches(':'), event);
            // `IP port P:11` or `IP`: the code after the port, then the text.
            let why = why.trim_start_matches(|c: char| c.is_ascii_digit() || c == ':' || c == ' ');
            if !why.is_empty() {
                reason(event, why);
            }
            let gave_up = why.contains("Auth fail") || why.contains("authentication methods");
            let outcome = if preauth || gave_up {
                "failure"
            } else {
                "unknown"
            };
            done(event, "network", "ssh_disconnect", outcome)
        }
        "Disconnecting" | "Disconnecting:" => disconnecting(m, event),
        "maximum" => {
            let Some(rest) = m.strip_prefix("maximum authentication attempts exceeded for ") else {
                return false;
            };
            user_from(rest, event);
            done(event, "authentication", "ssh_max_auth_attempts", "failure")
        }
        "PAM" => {
            if m.starts_with("PAM service(") && m.contains("ignoring max retries") {
                return done(event, "authentication", "ssh_max_auth_attempts", "failure");
            }
            let Some((n, rest)) = m
                .strip_prefix("PAM ")
                .and_then(|r| r.split_once(" more authentication failure"))
            else {
                return false;
            };
            if let Ok(n) = n.parse::<u64>() {
                set_field(event, "ssh.failures", Value::from(n));
            }
            if let Some(rhost) = super::non_empty(super::kv(rest, "rhost")) {
                set_source_host(event, rhost);
            }
            if let Some(user) = super::non_empty(super::kv(rest, "user")) {
                event.user_name = Some(user.to_owned());
            }
            done(event, "authentication", "ssh_auth_failures", "failure")
        }
        "Did" => {
            let Some(rest) = m.strip_prefix("Did not receive identification string from ") else {
                return false;
            };
            host_port(rest, event);
            done(event, "network", "ssh_no_identification", "failure")
        }
        "reverse" => {
            // reverse mapping checking getaddrinfo for NAME [IP] failed[ - POSSIBLE BREAK-IN ATTEMPT!]
            if !m.starts_with("reverse mapping checking getaddrinfo for ") {
                return false;
            }
            let ip = m
                .rsplit_once('[')
                .and_then(|(_, r)| r.split_once(']'))
                .map(|(ip, _)| ip);
            event.source_ip = ip.and_then(parse_ip);
            done(event, "network", "ssh_reverse_mapping_failed", "unknown")
        }
        "Address" => {
            // Address IP maps to NAME, but this does not map back to the address[ - POSSIBLE BREAK-IN ATTEMPT!]
            if !m.contains(" but this does not map back to the address") {
                return false;
            }
            event.source_ip = m.split(' ').nth(1).and_then(parse_ip);
            done(event, "network", "ssh_reverse_mapping_failed", "unknown")
        }
        "Nasty" => {
            // Nasty PTR record "NAME" is set up for IP, ignoring
            let Some((_, rest)) = m.split_once("\" is set up for ") else {
                return false;
            };
            event.source_ip = rest.split(',').next().and_then(parse_ip);
            done(event, "network", "ssh_reverse_mapping_failed", "unknown")
        }
        "Write" | "Read" if m.ends_with("Connection reset by peer") => {
            // Write failed: / Read from socket failed: Connection reset by peer
            done(event, "network", "ssh_connection_reset", "failure")
        }
        "Timeout" => {
            let Some(rest) = m.strip_prefix("Timeout before authentication for ") else {
                return false;
            };
            // 9.8+: `connection from IP to IP, pid = N[ (early)]`.
            match rest.strip_prefix("connection from ") {
                Some(r) => {
                    let src = r.split([' ', ',']).next().unwrap_or(r);
                    event.source_ip = parse_ip(src);
                }
                None => host_port(rest, event),
            }
            done(event, "authentication", "ssh_auth_timeout", "failure")
        }
        "Unable" => {
            if let Some(rest) = m.strip_prefix("Unable to negotiate with ") {
                let (addr, why) = rest.split_once(": ").unwrap_or((rest, ""));
                host_port(addr, event);
                if let Some(why) = why.split(". Their offer").next().filter(|w| !w.is_empty()) {
                    reason(event, why);
                }
            } else if !m.starts_with("Unable to negotiate a key exchange method") {
                return false;
            }
            done(event, "network", "ssh_bad_keyexchange", "failure")
        }
        "no" if m.starts_with("no matching ") && m.contains(" found") => {
            // fatal: no matching mac found: client ... server ...
            reason(event, m.split(':').next().unwrap_or(m));
            done(event, "network", "ssh_bad_keyexchange", "failure")
        }
        "Bad" => {
            if let Some((_, addr)) = m
                .strip_prefix("Bad protocol version identification ")
                .and_then(|r| r.rsplit_once(" from "))
            {
                host_port(addr, event);
            } else if !(m.starts_with("Bad remote protocol version identification")
                || m.starts_with("Bad packet length"))
            {
                return false;
            }
            done(event, "network", "ssh_bad_protocol", "failure")
        }
        "Corrupted" | "padding" | "Protocol"
            if m.starts_with("Corrupted MAC on input")
                || m.starts_with("Corrupted padlen")
                || m.starts_with("padding error")
                || m.starts_with("Protocol major versions differ") =>
        {
            done(event, "network", "ssh_bad_protocol", "failure")
        }
        "probed" | "scanned" => {
            // scanned from IP port P with BANNER.  Don't panic.
            let Some(rest) = m.split_once(" from ").map(|(_, r)| r) else {
                return false;
            };
            host_port(rest.split(" with ").next().unwrap_or(rest), event);
            done(event, "network", "ssh_bad_protocol", "failure")
        }
        "banner" => {
            let Some(rest) = m.strip_prefix("banner exchange: Connection from ") else {
                return false;
            };
            let (addr, why) = rest.split_once(": ").unwrap_or((rest, ""));
            host_port(addr, event);
            if !why.is_empty() {
                reason(event, why);
            }
            done(event, "network", "ssh_bad_protocol", "failure")
        }
        "kex_exchange_identification:" => {
            let why = m
                .strip_prefix("kex_exchange_identification:")
                .unwrap_or(m)
                .trim();
            reason(event, why);
            let action = if why.starts_with("Connection closed") || why.contains("Connection reset")
            {
                "ssh_no_identification"
            } else {
                "ssh_bad_protocol"
            };
            done(event, "network", action, "failure")
        }
        "refused" => {
            // tcp_wrappers: refused connect from HOST (IP)
            let Some(rest) = m.strip_prefix("refused connect from ") else {
                return false;
            };
            let ip = rest
                .rsplit_once('(')
                .and_then(|(_, r)| r.strip_suffix(')'))
                .unwrap_or(rest);
            event.source_ip = parse_ip(ip);
            done(event, "network", "ssh_connection_refused", "failure")
        }
        "Magic" => {
            // Magic value check failed (N) on obfuscated handshake from IP port P
            // (the obfuscated-handshake patch some distributions carry).
            let Some((_, addr)) = m.split_once(" from ") else {
                return false;
            };
            host_port(addr, event);
            done(event, "network", "ssh_bad_protocol", "failure")
        }
        "drop" => dropped(m, event),
        "srclimit_penalise:" | "beginning" | "in" | "exited"
            if first == "srclimit_penalise:" || m.contains("MaxStartups throttling") =>
        {
            penalty(m, event)
        }
        "User" => {
            let Some((who, why)) = m.split_once(" not allowed because ") else {
                return false;
            };
            user_from(who.trim_start_matches("User").trim_start(), event);
            reason(event, why);
            done(event, "authentication", "ssh_user_not_allowed", "failure")
        }
        "ROOT" => {
            let Some(rest) = m.strip_prefix("ROOT LOGIN REFUSED FROM ") else {
                return false;
            };
            event.user_name = Some("root".into());
            host_port(rest, event);
            done(event, "authentication", "ssh_user_not_allowed", "failure")
        }
        "Authentication" => {
            // Authentication refused: bad ownership or modes for file P
            // Authentication refused for X: bad owner or modes for P
            let Some(rest) = m.strip_prefix("Authentication refused") else {
                return false;
            };
            if let Some((user, why)) = rest.strip_prefix(" for ").and_then(|r| r.split_once(": ")) {
                event.user_name = Some(user.to_owned());
                reason(event, why);
            } else {
                reason(event, rest.trim_start_matches(':').trim());
            }
            done(event, "authentication", "ssh_auth_refused", "failure")
        }
        "WARNING:" if m.contains(" revoked key for ") => {
            reason(event, "revoked key");
            done(event, "authentication", "ssh_auth_refused", "failure")
        }
        "session" | "preauth" | "Session" if m.contains(" for connection from ") => {
            // session process N for connection from IP to IP killed by signal S
            let after = m
                .split_once(" for connection from ")
                .map(|(_, r)| r)
                .unwrap_or("");
            event.source_ip = after.split(' ').next().and_then(parse_ip);
            reason(event, m);
            done(event, "network", "ssh_preauth_crash", "failure")
        }
        _ => other(m, event),
    }
}

/// Lines recognised by something other than their first word.
fn other(m: &str, event: &mut Event) -> bool {
    // FILE:LINE: Authentication tried for X with correct key but not from a
    // permitted host (host=H, ip=IP, required=LIST).
    // FILE:LINE: Authentication tried for X with valid certificate but not
    // from a permitted source address (IP).
    if let Some((_, rest)) = m.split_once(": Authentication tried for ") {
        let (user, why) = rest.split_once(" with ").unwrap_or((rest, ""));
        event.user_name = Some(user.to_owned());
        let ip = match why.rsplit_once("ip=") {
            Some((_, r)) => r.split([',', ')']).next(),
            None => why
                .rsplit_once('(')
                .map(|(_, r)| r.trim_end_matches(['.', ')'])),
        };
        event.source_ip = ip.and_then(parse_ip);
        reason(event, why.split(" (").next().unwrap_or(why));
        return done(event, "authentication", "ssh_auth_refused", "failure");
    }
    // Authentication key TYPE FP revoked by file F
    if m.starts_with("Authentication key ") && m.contains(" revoked by file ") {
        reason(event, "revoked key");
        return done(event, "authentication", "ssh_auth_refused", "failure");
    }
    // FUNCTION: Connection from [preamble ]IP port P: error (sshpkt_fatal)
    if let Some((func, rest)) = m.split_once(": Connection from ")
        && !func.contains(' ')
    {
        let (id, why) = rest.split_once(": ").unwrap_or((rest, ""));
        preamble_ip_port(id, event);
        reason(event, why);
        return done(event, "network", "ssh_bad_protocol", "failure");
    }
    false
}

/// `Accepted|Failed|Partial|Postponed <method> for [invalid user ]USER from HOST port P sshN[: INFO]`
fn login(kind: &str, rest: &str, event: &mut Event) -> bool {
    let Some((method, rest)) = rest.split_once(" for ") else {
        return false;
    };
    set_field(event, "ssh.method", Value::from(method));
    user_from(rest, event);
    let (action, outcome) = match kind {
        "Accepted" => ("ssh_login", "success"),
        "Failed" => ("ssh_login", "failure"),
        "Partial" => ("ssh_auth_partial", "unknown"),
        _ => ("ssh_auth_postponed", "unknown"),
    };
    done(event, "authentication", action, outcome)
}

/// `[invalid user ]USER from HOST[ port P][ sshN][: INFO]`
fn user_from(rest: &str, event: &mut Event) {
    let rest = match rest.strip_prefix("invalid user ") {
        Some(r) => {
            set_field(event, "ssh.invalid_user", Value::Bool(true));
            r
        }
        None => rest,
    };
    match auth_from(rest) {
        Some((user, host)) => {
            event.user_name = Some(user.to_owned());
            host_port(host, event);
        }
        None => event.user_name = Some(rest.trim().to_owned()),
    }
}

/// Splits `USER from HOST[ port P][ sshN][: INFO]` where both USER (chosen
/// by the client) and INFO may hold ` from `: the address is the first
/// ` from HOST[ port P][ sshN]` that ends the text or is followed by `: `;
/// failing that, the last ` from `.
fn auth_from(s: &str) -> Option<(&str, &str)> {
    let mut best = None;
    let mut at = 0;
    while let Some(pos) = s[at..].find(" from ") {
        let start = at + pos;
        let tail = &s[start + " from ".len()..];
        if ends_address(tail) {
            return Some((&s[..start], tail));
        }
        best = Some((&s[..start], tail));
        at = start + 1;
    }
    best
}

/// `HOST[ port P][ sshN]` then the end or `: `.
fn ends_address(tail: &str) -> bool {
    let mut words = tail.splitn(2, ' ');
    let host = words.next().unwrap_or("");
    let mut rest = words.next().unwrap_or("");
    if host.is_empty() || host.ends_with(':') {
        return false;
    }
    if let Some(r) = rest.strip_prefix("port ") {
        let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        if digits == 0 {
            return false;
        }
        rest = r[digits..].trim_start();
    }
    if let Some(r) = rest.strip_prefix("ssh") {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    rest.is_empty() || rest.starts_with(": ")
}

/// `PAM: <error> for [illegal user ]USER from HOST[ via IP]`
fn pam_error(rest: &str, event: &mut Event) -> bool {
    let Some((why, who)) = rest.split_once(" for ") else {
        return false;
    };
    let who = match who.strip_prefix("illegal user ") {
        Some(w) => {
            set_field(event, "ssh.invalid_user", Value::Bool(true));
            w
        }
        None => who,
    };
    let Some((user, host)) = who.rsplit_once(" from ") else {
        return false;
    };
    event.user_name = Some(user.to_owned());
    set_source_host(event, host.split(" via ").next().unwrap_or(host));
    reason(event, why);
    done(event, "authentication", "ssh_pam_failure", "failure")
}

/// `Connection closed by ...`, `Connection reset by ...`, `Disconnected from ...`,
/// `Connection from IP port P on IP port P`, `Connection from ... timed out`,
/// `Connection from IP port P with IP opts: ...`.
fn closed(m: &str, preauth: bool, event: &mut Event) -> bool {
    let (rest, reset) = if let Some(r) = m.strip_prefix("Connection closed by ") {
        (r, false)
    } else if let Some(r) = m.strip_prefix("Disconnected from ") {
        (r, false)
    } else if let Some(r) = m.strip_prefix("Connection reset by ") {
        (r, true)
    } else if let Some(r) = m.strip_prefix("Connection from ") {
        return connection_from(r, event);
    } else {
        return false;
    };
    if let Some(r) = rest.strip_prefix("user ") {
        preamble_ip_port(r, event);
        return done(event, "session", "ssh_logout", "success");
    }
    let (auth_action, action) = if reset {
        ("ssh_connection_reset", "ssh_connection_reset")
    } else {
        ("ssh_preauth_disconnect", "ssh_disconnect")
    };
    if rest.starts_with("authenticating user ") || rest.starts_with("invalid user ") {
        preamble_ip_port(rest, event);
        return done(event, "authentication", auth_action, "failure");
    }
    host_port(rest, event);
    // Without [preauth], `closed by IP port P` is the banner exchange (the
    // pre-authentication child did not exist yet); older versions logged
    // `closed by IP` (no port) at any stage.
    let banner = !reset && m.starts_with("Connection closed") && event.source_port.is_some();
    let outcome = if preauth || banner {
        "failure"
    } else {
        "unknown"
    };
    done(event, "network", action, outcome)
}

/// After `Connection from `.
fn connection_from(r: &str, event: &mut Event) -> bool {
    if let Some(id) = r.strip_suffix(" timed out") {
        preamble_ip_port(id, event);
        reason(event, "timed out");
        return done(event, "authentication", "ssh_preauth_disconnect", "failure");
    }
    if let Some((addr, _)) = r
        .split_once(" with IP opts: ")
        .or_else(|| r.split_once(" with IP options:"))
    {
        host_port(addr, event);
        reason(event, "IP options");
        return done(event, "network", "ssh_bad_protocol", "failure");
    }
    let (src, dst) = r.split_once(" on ").unwrap_or((r, ""));
    host_port(src, event);
    let mut words = dst.split(' ');
    if let (Some(ip), Some("port"), Some(port)) = (words.next(), words.next(), words.next()) {
        event.destination_ip = parse_ip(ip);
        event.destination_port = port.parse().ok();
    }
    done(event, "network", "ssh_connection", "unknown")
}

/// `Disconnecting <id>: <reason>` and the old `Disconnecting: <reason>`.
fn disconnecting(m: &str, event: &mut Event) -> bool {
    let (id, why) = match m.strip_prefix("Disconnecting: ") {
        Some(why) => ("", why),
        None => match m
            .strip_prefix("Disconnecting ")
            .and_then(|r| r.split_once(": "))
        {
            Some(pair) => pair,
            None => return false,
        },
    };
    if !id.is_empty() {
        if id.starts_with("invalid user ") {
            set_field(event, "ssh.invalid_user", Value::Bool(true));
        }
        preamble_ip_port(id, event);
    }
    reason(event, why);
    if let Some(user) = why.strip_prefix("Too many authentication failures") {
        if let Some(user) = user.strip_prefix(" for ") {
            event.user_name = Some(user.trim().to_owned());
        }
        return done(event, "authentication", "ssh_max_auth_attempts", "failure");
    }
    if why.starts_with("Change of username or service not allowed") {
        return done(event, "authentication", "ssh_username_change", "failure");
    }
    if why.starts_with("no authentication methods enabled") {
        return done(event, "authentication", "ssh_preauth_disconnect", "failure");
    }
    done(event, "network", "ssh_bad_protocol", "failure")
}

/// `drop connection #N from [IP]:P on [IP]:P <reason>`
fn dropped(m: &str, event: &mut Event) -> bool {
    let Some(rest) = m.strip_prefix("drop connection #") else {
        return false;
    };
    let Some((_, rest)) = rest.split_once(" from [") else {
        return false;
    };
    let Some((src, rest)) = rest.split_once("]:") else {
        return false;
    };
    event.source_ip = parse_ip(src);
    let (port, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    event.source_port = port.parse().ok();
    let mut why = rest;
    if let Some(r) = rest.strip_prefix("on [")
        && let Some((dst, r)) = r.split_once("]:")
    {
        event.destination_ip = parse_ip(dst);
        let (port, r) = r.split_once(' ').unwrap_or((r, ""));
        event.destination_port = port.parse().ok();
        why = r;
    }
    if !why.is_empty() {
        reason(event, why);
    }
    done(event, "network", "ssh_connection_dropped", "failure")
}

/// `srclimit_penalise: ...` and MaxStartups throttling: the listener's own
/// bookkeeping, with the network when it names one.
fn penalty(m: &str, event: &mut Event) -> bool {
    // srclimit_penalise: ipv4: new 203.0.113.7/32 active penalty of 30.000 seconds for penalty: ...
    // srclimit_penalise: 203.0.113.7/32: activating ipv4 penalty of 45.000 seconds for penalty: ...
    let net = m
        .split(' ')
        .map(|w| w.trim_end_matches(':'))
        .find(|w| w.contains('/') && w.split('/').next().and_then(parse_ip).is_some());
    if let Some(net) = net {
        set_field(event, "ssh.penalty.network", Value::from(net));
        let (ip, bits) = net.split_once('/').unwrap_or((net, ""));
        if matches!(bits, "32" | "128") {
            event.source_ip = parse_ip(ip);
        }
    }
    if let Some((_, why)) = m.split_once(" for ") {
        reason(event, why);
    }
    done(event, "network", "ssh_penalty", "unknown")
}

/// `[authenticating |invalid ]user USER IP port P` or `IP port P`: the
/// address and port are the last words (the user may contain spaces).
fn preamble_ip_port(s: &str, event: &mut Event) {
    let s = s.trim();
    let (head, port) = match s.rsplit_once(" port ") {
        Some((head, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (head, port.parse().ok())
        }
        _ => (s, None),
    };
    let (user, ip) = match head.rsplit_once(' ') {
        Some((user, ip)) => (Some(user), ip),
        None => (None, head),
    };
    event.source_ip = parse_ip(ip);
    event.source_port = port;
    if let Some(user) = user {
        let user = user
            .strip_prefix("authenticating user ")
            .or_else(|| user.strip_prefix("invalid user "))
            .or_else(|| user.strip_prefix("user "))
            .unwrap_or(user);
        if s.starts_with("invalid user ") {
            set_field(event, "ssh.invalid_user", Value::Bool(true));
        }
        event.user_name = Some(user.to_owned());
    }
}

/// `HOST[:][ port P[:...]][ anything]` into source ip (or domain) and port.
fn host_port(s: &str, event: &mut Event) {
    let mut words = s.trim().split(' ');
    if let Some(host) = words.next().map(|w| w.trim_end_matches([':', ','])) {
        set_source_host(event, host);
    }
    if words.next() == Some("port")
        && let Some(port) = words.next()
    {
        let end = port
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(port.len());
        event.source_port = port[..end].parse().ok();
    }
}

/// `kernel:[  970.699396]: msg` or `kernel: [970.6] msg` -> `msg`: a
/// kernel-style stamp some journal forwarders put before sshd's text.
fn skip_kernel_stamp(m: &str) -> &str {
    let Some(rest) = m.strip_prefix("kernel:") else {
        return m;
    };
    let Some((stamp, after)) = rest
        .trim_start()
        .strip_prefix('[')
        .and_then(|r| r.split_once(']'))
    else {
        return m;
    };
    if !stamp
        .trim()
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.')
    {
        return m;
    }
    after.strip_prefix(':').unwrap_or(after).trim_start()
}

fn reason(event: &mut Event, why: &str) {
    set_field(event, "ssh.reason", Value::from(why.trim()));
}

done_in!("sshd");

#[cfg(test)]
mod tests {
    use super::*;

    fn p(msg: &str) -> Event {
        let mut e = Event::default();
        assert!(parse(msg, &mut e), "not recognised: {msg}");
        e
    }

    fn ip(e: &Event) -> Option<String> {
        e.source_ip.map(|ip| ip.to_string())
    }

    #[test]
    fn logins() {
        let e = p("Accepted publickey for alice from 2001:db8::1 port 50022 ssh2: RSA SHA256:abc");
        assert_eq!(e.action.as_deref(), Some("ssh_login"));
        assert_eq!(e.outcome.as_deref(), Some("success"));
        assert_eq!(e.user_name.as_deref(), Some("alice"));
        assert_eq!(e.source_ip, "2001:db8::1".parse().ok());
        assert_eq!(e.source_port, Some(50022));
        assert_eq!(e.fields["ssh"]["method"], "publickey");

        let e = p("Failed password for invalid user admin from 10.0.0.1 port 4242 ssh2");
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.user_name.as_deref(), Some("admin"));
        assert_eq!(e.fields["ssh"]["invalid_user"], true);

        let e = p("Failed none for invalid user  from 10.0.0.1 port 4242 ssh2");
        assert_eq!(e.user_name.as_deref(), Some(""));
        let e = p("Failed keyboard-interactive/pam for root from 10.0.0.1 port 1 ssh2");
        assert_eq!(e.fields["ssh"]["method"], "keyboard-interactive/pam");

        let e = p(
            "Postponed keyboard-interactive for invalid user u from 172.18.1.1 port 3 ssh2 [preauth]",
        );
        assert_eq!(e.action.as_deref(), Some("ssh_auth_postponed"));
        assert_eq!(e.outcome.as_deref(), Some("unknown"));
        let e = p("Partial publickey for alice from 203.0.113.7 port 50022 ssh2: ED25519 SHA256:x");
        assert_eq!(e.action.as_deref(), Some("ssh_auth_partial"));
    }

    /// fail2ban's injection tests: the address is where sshd put it, not
    /// what the client wrote into its user name or auth info.
    #[test]
    fn injected_addresses_are_not_believed() {
        let e = p("Failed password for invalid user from 10.10.1.1 from 127.0.0.1 port 58946 ssh2");
        assert_eq!(ip(&e).as_deref(), Some("127.0.0.1"));
        let e = p(
            "Failed password for invalid user test from 10.10.1.2 port 55555 ssh2 from 127.0.0.1 port 58946 ssh2",
        );
        assert_eq!(ip(&e).as_deref(), Some("127.0.0.1"));
        assert_eq!(
            e.user_name.as_deref(),
            Some("test from 10.10.1.2 port 55555 ssh2")
        );
        let e = p(
            "Failed password for invalid user test from 127.0.0.1 port 58946 ssh2: from 10.10.1.2 port 55555 ssh2",
        );
        assert_eq!(ip(&e).as_deref(), Some("127.0.0.1"));
        let e = p("Failed password for user from 127.0.0.1 port 20000 ssh1: ruser from 1.2.3.4");
        assert_eq!(ip(&e).as_deref(), Some("127.0.0.1"));
        let e = p(
            "Connection closed by authenticating user test 127.0.0.1 port 12345 192.0.2.11 port 46039 [preauth]",
        );
        assert_eq!(ip(&e).as_deref(), Some("192.0.2.11"));
        assert_eq!(e.user_name.as_deref(), Some("test 127.0.0.1 port 12345"));
    }

    #[test]
    fn refusals() {
        let e = p("User root from 172.18.1.100 not allowed because listed in DenyUsers");
        assert_eq!(e.action.as_deref(), Some("ssh_user_not_allowed"));
        assert_eq!(ip(&e).as_deref(), Some("172.18.1.100"));
        assert_eq!(e.fields["ssh"]["reason"], "listed in DenyUsers");
        let e = p("User bob from host.example not allowed because not in any group");
        assert_eq!(e.fields["source"]["domain"], "host.example");
        let e = p("ROOT LOGIN REFUSED FROM 203.0.113.7 port 51514 [preauth]");
        assert_eq!(ip(&e).as_deref(), Some("203.0.113.7"));
        assert_eq!(e.source_port, Some(51514));
        let e = p("error: PAM: authentication error for illegal user badguy from 192.168.33.1");
        assert_eq!(e.action.as_deref(), Some("ssh_pam_failure"));
        assert_eq!(e.user_name.as_deref(), Some("badguy"));
        assert_eq!(ip(&e).as_deref(), Some("192.168.33.1"));
        let e = p("error: PAM: authentication error for james from example.com via 192.168.1.201");
        assert_eq!(e.fields["source"]["domain"], "example.com");
        let e = p("fatal: Access denied for user bob by PAM account configuration [preauth]");
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        let e = p(
            "Authentication refused: bad ownership or modes for file /home/u/.ssh/authorized_keys",
        );
        assert_eq!(e.action.as_deref(), Some("ssh_auth_refused"));
        let e = p(
            "/home/bob/.ssh/authorized_keys:2: Authentication tried for bob with correct key but not from a permitted host (host=198.51.100.3, ip=198.51.100.3, required=10.0.0.0/8).",
        );
        assert_eq!(ip(&e).as_deref(), Some("198.51.100.3"));
        assert_eq!(e.user_name.as_deref(), Some("bob"));
        let e = p(
            "Disconnecting invalid user admin 192.0.2.117 port 44004: Change of username or service not allowed: (admin,ssh-connection) -> (user,ssh-connection) [preauth]",
        );
        assert_eq!(e.action.as_deref(), Some("ssh_username_change"));
        assert_eq!(ip(&e).as_deref(), Some("192.0.2.117"));
        assert_eq!(e.user_name.as_deref(), Some("admin"));
    }

    #[test]
    fn preauth_and_network_lines() {
        let e =
            p("Connection closed by authenticating user root 206.81.24.125 port 45362 [preauth]");
        assert_eq!(e.action.as_deref(), Some("ssh_preauth_disconnect"));
        assert_eq!(e.user_name.as_deref(), Some("root"));
        assert_eq!(ip(&e).as_deref(), Some("206.81.24.125"));
        assert_eq!(e.source_port, Some(45362));

        let e = p("Disconnected from invalid user odd name 1.2.3.4 port 22 [preauth]");
        assert_eq!(e.user_name.as_deref(), Some("odd name"));

        let e = p(
            "error: maximum authentication attempts exceeded for invalid user x from 1.2.3.4 port 5 ssh2 [preauth]",
        );
        assert_eq!(e.action.as_deref(), Some("ssh_max_auth_attempts"));
        assert_eq!(e.user_name.as_deref(), Some("x"));

        let e = p(
            "Unable to negotiate with 2001:db8::7 port 45626: no matching key exchange method found. Their offer: a,b [preauth]",
        );
        assert_eq!(e.source_ip, "2001:db8::7".parse().ok());
        assert_eq!(e.source_port, Some(45626));
        assert_eq!(
            e.fields["ssh"]["reason"],
            "no matching key exchange method found"
        );
        let e = p("refused connect from x@::ffff:192.168.1.1 (::ffff:192.168.1.1)");
        assert_eq!(e.source_ip, "192.168.1.1".parse().ok());

        let e = p("Did not receive identification string from 1.2.3.4 port 6");
        assert_eq!(e.action.as_deref(), Some("ssh_no_identification"));
        assert_eq!(e.source_port, Some(6));

        let e = p("Received disconnect from 139.59.209.18: 11: Bye Bye [preauth]");
        assert_eq!(ip(&e).as_deref(), Some("139.59.209.18"));
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        let e = p("Received disconnect from 1.2.3.4 port 9:11: disconnected by user");
        assert_eq!(e.source_port, Some(9));
        assert_eq!(e.outcome.as_deref(), Some("unknown"));
        assert_eq!(e.fields["ssh"]["reason"], "disconnected by user");

        let e = p("Disconnected from user bob 1.2.3.4 port 22");
        assert_eq!(e.action.as_deref(), Some("ssh_logout"));
        assert_eq!(e.user_name.as_deref(), Some("bob"));

        let e = p("Connection closed by 10.0.2.2 port 55462 [preauth]");
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        let e = p("Connection closed by 10.0.2.2");
        assert_eq!(e.outcome.as_deref(), Some("unknown"));

        let e = p("Connection from authenticating user bob 203.0.113.7 port 5 timed out [preauth]");
        assert_eq!(e.action.as_deref(), Some("ssh_preauth_disconnect"));
        assert_eq!(ip(&e).as_deref(), Some("203.0.113.7"));
        let e = p("fatal: Connection from 203.0.113.7 port 5 with IP opts:  83 07 04");
        assert_eq!(e.action.as_deref(), Some("ssh_bad_protocol"));

        let e = p(
            "PAM 5 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root",
        );
        assert_eq!(e.fields["ssh"]["failures"], 5);
        assert_eq!(e.user_name.as_deref(), Some("root"));
    }

    #[test]
    fn listener_lines_of_openssh_9_8_and_later() {
        let e = p(
            "drop connection #3 from [203.0.113.7]:40001 on [10.0.0.1]:22 penalty: failed authentication",
        );
        assert_eq!(e.action.as_deref(), Some("ssh_connection_dropped"));
        assert_eq!(ip(&e).as_deref(), Some("203.0.113.7"));
        assert_eq!(e.source_port, Some(40001));
        assert_eq!(e.destination_port, Some(22));
        assert_eq!(e.fields["ssh"]["reason"], "penalty: failed authentication");
        let e =
            p("drop connection #10 from [2001:db8::5]:46482 on [2001:db8::1]:22 past MaxStartups");
        assert_eq!(ip(&e).as_deref(), Some("2001:db8::5"));

        let e = p(
            "Timeout before authentication for connection from 203.0.113.7 to 10.0.0.1, pid = 41234",
        );
        assert_eq!(e.action.as_deref(), Some("ssh_auth_timeout"));
        assert_eq!(ip(&e).as_deref(), Some("203.0.113.7"));

        let e = p(
            "srclimit_penalise: ipv4: new 203.0.113.7/32 active penalty of 30.000 seconds for penalty: failed authentication",
        );
        assert_eq!(e.action.as_deref(), Some("ssh_penalty"));
        assert_eq!(ip(&e).as_deref(), Some("203.0.113.7"));
        assert_eq!(e.fields["ssh"]["penalty"]["network"], "203.0.113.7/32");
        let e = p("error: beginning MaxStartups throttling");
        assert_eq!(e.action.as_deref(), Some("ssh_penalty"));

        let e = p(
            "error: session process 41234 for connection from 203.0.113.7 to 10.0.0.1 killed by signal 11",
        );
        assert_eq!(e.action.as_deref(), Some("ssh_preauth_crash"));
        assert_eq!(ip(&e).as_deref(), Some("203.0.113.7"));
    }

    #[test]
    fn protocol_abuse() {
        for line in [
            "error: kex_exchange_identification: client sent invalid protocol identifier \"GET / HTTP/1.1\"",
            "Bad remote protocol version identification: 'SSH-x'",
            "scanned from 198.51.100.4 port 4000 with SSH-1.0-SSH_Version_Mapper.  Don't panic.",
            "Bad packet length 1349676916. [preauth]",
            "ssh_dispatch_run_fatal: Connection from authenticating user root 1.2.3.4 port 5: message authentication code incorrect [preauth]",
            "Disconnecting authenticating user bob 1.2.3.4 port 5: Packet corrupt [preauth]",
            "banner exchange: Connection from 198.51.100.4 port 5555: invalid format",
        ] {
            let e = p(line);
            assert_eq!(e.action.as_deref(), Some("ssh_bad_protocol"), "{line}");
            assert_eq!(e.outcome.as_deref(), Some("failure"), "{line}");
        }
        let e = p(
            "ssh_dispatch_run_fatal: Connection from authenticating user root 1.2.3.4 port 5: message authentication code incorrect [preauth]",
        );
        assert_eq!(ip(&e).as_deref(), Some("1.2.3.4"));
        let e = p("error: kex_exchange_identification: Connection closed by remote host");
        assert_eq!(e.action.as_deref(), Some("ssh_no_identification"));
        let e = p("fatal: Read from socket failed: Connection reset by peer [preauth]");
        assert_eq!(e.action.as_deref(), Some("ssh_connection_reset"));
        let e = p("fatal: no matching mac found: client hmac-x server hmac-y [preauth]");
        assert_eq!(e.action.as_deref(), Some("ssh_bad_keyexchange"));
        let e = p("reverse mapping checking getaddrinfo for host.example [62.219.145.234] failed.");
        assert_eq!(ip(&e).as_deref(), Some("62.219.145.234"));
        let e = p("Address 10.0.0.1 maps to bogon, but this does not map back to the address.");
        assert_eq!(ip(&e).as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn kernel_stamps_of_journal_forwarders_are_skipped() {
        let e = p(
            "kernel:[  970.699396]: Failed keyboard-interactive for x from 205.186.180.55 port 1 ssh2",
        );
        assert_eq!(ip(&e).as_deref(), Some("205.186.180.55"));
        let e =
            p("kernel: [  970.699397] Failed password for user admin from 192.0.2.10 port 4 ssh2");
        assert_eq!(e.user_name.as_deref(), Some("user admin"));
        let mut e = Event::default();
        assert!(!parse(
            "kernel: [x] Failed password for a from 1.2.3.4",
            &mut e
        ));
    }

    #[test]
    fn unknown_is_not_claimed() {
        let mut e = Event::default();
        assert!(!parse("Server listening on 0.0.0.0 port 22.", &mut e));
        assert!(!parse("", &mut e));
        assert!(!parse("Invalid", &mut e));
        assert!(!parse("in the middle", &mut e));
        assert!(!parse("no way", &mut e));
        assert!(e.dataset.is_none());
    }
}
