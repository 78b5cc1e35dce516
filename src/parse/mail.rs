//! Mail servers: Postfix (`smtpd.c`, `smtpd_sasl_glue.c`, `postscreen*.c`),
//! Dovecot (`login-common/client-common.c`, `auth/passdb-*.c`) and Exim
//! (`smtp_in.c`, `acl.c`, `log.c`). Password guessing against SMTP AUTH,
//! IMAP and POP3 is as common as against SSH; rejected relaying and protocol
//! abuse are how spam bots show themselves.
//!
//! Dataset `mail`; `process.name` says which server (`postfix/smtpd`,
//! `dovecot`, `imap-login`, `exim`, ...):
//!
//! | action | category | outcome | lines |
//! |---|---|---|---|
//! | `mail_login` | authentication | success/failure | Postfix `warning: NAME[IP]: SASL LOGIN authentication failed: why` (`Connection lost to authentication server` is the server's failure: `unknown`), `client=NAME[IP], sasl_method=M, sasl_username=U`; Dovecot `imap-login: Aborted login (auth failed, N attempts): user=<u>, rip=IP`, `Login: user=<u>, ..., rip=IP`, passdb lines `pam(user,IP): unknown user` / `Password mismatch` / `pam_authenticate() failed: ...`; Exim `M authenticator failed for NAME (HELO) [IP]: 535 ...(set_id=U)` |
//! | `mail_reject` | email | failure | Postfix `reject: RCPT from NAME[IP]: 554 ...`, `milter-reject:`; Exim `H=... [IP] ... rejected RCPT`, `sender verify fail`, `closed by DROP in ACL`, `dropped by 'connect' ACL` |
//! | `mail_protocol_error` | network | failure | Postfix `improper command pipelining`, `too many errors`, postscreen `PREGREET`, `COMMAND TIME/COUNT LIMIT`, rate limits; Exim `SMTP protocol error`, `SMTP protocol synchronization error`, `dropped: too many ...` |
//! | `mail_disconnect` | network | unknown | Postfix `lost connection after X from`, `disconnect from`, postscreen `HANGUP`; Dovecot `Disconnected (no auth attempts)`; Exim `no MAIL in SMTP connection` |
//! | `mail_connection` | network | unknown | Postfix `connect from NAME[IP]` |
//! | `mail_dns_mismatch` | network | unknown | Postfix `hostname X does not resolve to address IP`; Exim `no host name found for IP address IP`, `no IP address found for host` |
//!
//! The client address is the one the server puts in its own place in the
//! line, never one from the text a client controls (a user name, a HELO
//! name, a quoted SMTP command): Postfix's `NAME[IP]` after ` from ` (or in
//! its `warning: NAME[IP]:` prefix), Dovecot's last `rip=`, Exim's `[IP]`
//! after the last `H=` or `failed for` (its HELO names cannot hold spaces,
//! so the first word in brackets is the address).

use serde_json::Value;

use super::{parse_ip, set_field, set_source_host};
use crate::model::Event;

/// Parses one message of mail program `program` into `event`.
pub fn parse(program: &str, msg: &str, event: &mut Event) -> bool {
    let msg = msg.trim();
    if program.starts_with("postfix") {
        postfix(msg, event)
    } else if program.starts_with("exim") {
        exim(msg, event)
    } else {
        dovecot(msg, event)
    }
}

// ---------------------------------------------------------------- Postfix

fn postfix(msg: &str, event: &mut Event) -> bool {
    // `QUEUEID: ` or `NOQUEUE: ` before what happened.
    let m = match msg.split_once(": ") {
        Some((id, rest)) if is_queue_id(id) => rest,
        _ => msg,
    };
    if let Some(rest) = m.strip_prefix("warning: ") {
        return postfix_warning(rest, event);
    }
    if m.starts_with("reject: ") || m.starts_with("milter-reject: ") {
        from_client(m, event);
        return done(event, "email", "mail_reject", "failure");
    }
    if let Some(rest) = m.strip_prefix("client=") {
        client_name_ip(rest, event);
        if let Some(user) = kv_comma(rest, "sasl_username") {
            event.user_name = Some(user.to_owned());
            return done(event, "authentication", "mail_login", "success");
        }
        return done(event, "email", "mail_accepted", "success");
    }
    let protocol_abuse = [
        "improper command pipelining after ",
        "too many errors after ",
        "PREGREET ",
        "COMMAND TIME LIMIT ",
        "COMMAND COUNT LIMIT ",
        "COMMAND PIPELINING ",
        "BARE NEWLINE ",
        "NON-SMTP COMMAND ",
    ];
    if protocol_abuse.iter().any(|p| m.starts_with(p)) {
        from_client(m, event);
        return done(event, "network", "mail_protocol_error", "failure");
    }
    if m.starts_with("lost connection after ")
        || m.starts_with("disconnect from ")
        || m.starts_with("HANGUP ")
        || m.starts_with("timeout after ")
    {
        from_client(m, event);
        return done(event, "network", "mail_disconnect", "unknown");
    }
    if let Some(rest) = m
        .strip_prefix("connect from ")
        .or_else(|| m.strip_prefix("CONNECT from "))
    {
        client_name_ip(rest, event);
        return done(event, "network", "mail_connection", "unknown");
    }
    false
}

/// `warning: ...`: SASL failures, rate limits, DNS mismatches.
fn postfix_warning(m: &str, event: &mut Event) -> bool {
    if let Some(rest) = m.strip_prefix("hostname ")
        && let Some((_, ip)) = rest.split_once(" does not resolve to address ")
    {
        let ip = ip.split_once(": ").map_or(ip, |(ip, _)| ip);
        event.source_ip = parse_ip(ip.trim());
        return done(event, "network", "mail_dns_mismatch", "unknown");
    }
    if m.contains(" rate limit exceeded: ") {
        from_client(m, event);
        return done(event, "network", "mail_protocol_error", "failure");
    }
    // `NAME[IP](:port)?: SASL MECH authentication failed: why`
    let Some(close) = m.find(']') else {
        return false;
    };
    let (client, text) = (&m[..=close], &m[close + 1..]);
    let Some(why) = text
        .split_once(": SASL ")
        .and_then(|(_, t)| t.split_once(" authentication failed"))
        .map(|(_, why)| why.trim_start_matches(':').trim())
    else {
        return false;
    };
    client_name_ip(client, event);
    if let Some((_, user)) = why.split_once("sasl_username=") {
        event.user_name = Some(user.trim().to_owned());
    }
    set_field(event, "mail.reason", Value::from(why));
    // Postfix could not reach its SASL server: no guess was made.
    let outcome = if why.starts_with("Connection lost to authentication server") {
        "unknown"
    } else {
        "failure"
    };
    done(event, "authentication", "mail_login", outcome)
}

/// Postfix queue ids: hex (`00ADB3C0899`) or long ids (`44JCRG5tYPzCqt2`).
fn is_queue_id(s: &str) -> bool {
    s == "NOQUEUE"
        || ((5..=20).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric())
            && s.bytes().any(|b| b.is_ascii_digit()))
}

/// The client after the first ` from `: `NAME[IP]` or postscreen's
/// `[IP]:port`.
fn from_client(m: &str, event: &mut Event) {
    if let Some((_, rest)) = m.split_once(" from ") {
        client_name_ip(rest, event);
    }
}

/// `NAME[IP]...` or `[IP]:port...`: the address, and the name when it is
/// one (`unknown` is none).
fn client_name_ip(s: &str, event: &mut Event) {
    let Some((name, rest)) = s.split_once('[') else {
        return;
    };
    let Some((ip, _)) = rest.split_once(']') else {
        return;
    };
    if let Some(ip) = parse_ip(ip) {
        event.source_ip = Some(ip);
        if !name.is_empty() && name != "unknown" {
            set_field(event, "source.domain", Value::from(name));
        }
    }
}

/// `key=value` in a `, `-separated list.
fn kv_comma<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    s.split(", ")
        .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

// ---------------------------------------------------------------- Dovecot

/// A Dovecot message: a `*-login:` line of a finished or aborted login, or
/// an authentication process's passdb verdict.
pub fn dovecot(msg: &str, event: &mut Event) -> bool {
    let mut m = msg.trim();
    // `dovecot: imap-login: ...` when written under the daemon's name, and
    // `Info: ` levels.
    for _ in 0..3 {
        if let Some(rest) = m
            .strip_prefix("Info: ")
            .or_else(|| m.strip_prefix("dovecot: "))
        {
            m = rest;
        }
    }
    if let Some((service, rest)) = m.split_once("-login: ")
        && !service.contains(' ')
    {
        return login(rest.strip_prefix("Info: ").unwrap_or(rest), event);
    }
    if login_shape(m) {
        return login(m, event);
    }
    passdb(m, event)
}

/// The reasons a login process gives (`client_get_extra_disconnect_reason`
/// in `login-common/client-common.c`) for a login the client tried and did
/// not get. Left out, as not the client's failure: `(no auth attempts ...)`,
/// a client that went away mid-authentication (`(aborted authentication)`,
/// `(client didn't finish SASL auth ...)`, `(disconnected while ...)`), and
/// the server's own trouble (`(auth service reported temporary failure)`,
/// `(auth process communication failure)`, `(internal failure, ...)`).
const LOGIN_FAILED: [&str; 10] = [
    "(auth failed",
    "(auth_failed)",
    "(authorization failed",
    "(tried to use ",
    "(user disabled)",
    "(password expired)",
    "(sent invalid base64",
    "(login disabled)",
    "(proxy dest auth failed)",
    "(cert required",
];

/// A login process's own line, once the `imap-login:` tag is gone.
fn login_shape(m: &str) -> bool {
    [
        "Aborted login",
        "Disconnected",
        "Login",
        "Client has quit",
        "Remote closed",
    ]
    .iter()
    .any(|p| m.starts_with(p))
}

/// `Aborted login (auth failed, 1 attempts): user=<u>, method=M, rip=IP, ...`,
/// `Login: user=<u>, ..., rip=IP`.
fn login(m: &str, event: &mut Event) -> bool {
    // What the server says comes before the first `: user=` / `: rip=` /
    // `: method=`; what follows holds the client's user name.
    let cut = [
        "): user=",
        "): rip=",
        "): method=",
        ": user=",
        ": rip=",
        ": method=",
    ]
    .iter()
    .filter_map(|k| m.find(k).map(|i| i + k.find(':').unwrap_or(0)))
    .min();
    let Some(cut) = cut else {
        return false;
    };
    let (head, tail) = (&m[..cut], &m[cut + 1..]);
    // The address is the last `rip=`: a user name before it cannot move it.
    if let Some(at) = tail.rfind(" rip=") {
        let ip = tail[at + 5..].split([',', ' ']).next().unwrap_or("");
        event.source_ip = parse_ip(ip);
    }
    if let Some(user) = tail
        .trim_start()
        .strip_prefix("user=<")
        .and_then(|u| u.split_once(">, ").map(|(u, _)| u).or(u.strip_suffix('>')))
        .filter(|u| !u.is_empty())
    {
        event.user_name = Some(user.to_owned());
    }
    if head == "Login" {
        return done(event, "authentication", "mail_login", "success");
    }
    if LOGIN_FAILED.iter().any(|reason| head.contains(reason)) {
        set_field(event, "mail.reason", Value::from(head));
        return done(event, "authentication", "mail_login", "failure");
    }
    if head.starts_with("Disconnected") || head.starts_with("Login aborted") {
        set_field(event, "mail.reason", Value::from(head));
        return done(event, "network", "mail_disconnect", "unknown");
    }
    false
}

/// Passdb verdicts: `auth-worker(304): pam(user,IP): unknown user`,
/// `auth: sql(user,IP,<session>): Password mismatch`, `ldap(user,IP,):
/// invalid credentials`, Dovecot 2.4's `auth(user,IP,sasl:login)<id>:
/// Info: sql: Password mismatch`.
fn passdb(m: &str, event: &mut Event) -> bool {
    const PASSDBS: [&str; 9] = [
        "pam(",
        "passwd-file(",
        "sql(",
        "ldap(",
        "passwd(",
        "shadow(",
        "checkpassword(",
        "bsdauth(",
        "lua(",
    ];
    // The passdb's `name(` must start a word (after `: ` or at the start);
    // Dovecot 2.4's `auth(` tag only when no passdb follows it.
    let starts_word = |i: usize| i == 0 || m[..i].ends_with(' ');
    let find = |db: &str| {
        let mut from = 0;
        while let Some(i) = m[from..].find(db).map(|i| from + i) {
            if starts_word(i) {
                return Some(i);
            }
            from = i + db.len();
        }
        None
    };
    let Some((start, db)) = PASSDBS
        .iter()
        .filter_map(|db| find(db).map(|i| (i, *db)))
        .min_by_key(|(i, _)| *i)
        .or_else(|| find("auth(").map(|i| (i, "auth(")))
    else {
        return false;
    };
    let after = &m[start + db.len()..];
    // `user,IP[,session]): verdict`: the verdict follows the LAST `): `
    // (a user name may hold one), or 2.4's `)<session>: Info: db: verdict`.
    let (args, verdict) = match after.rfind("): ") {
        Some(i) => (&after[..i], &after[i + 3..]),
        None => match after
            .split_once(")<")
            .and_then(|(a, r)| Some((a, r.split_once(">: ")?.1)))
        {
            Some(split) => split,
            None => return false,
        },
    };
    let verdict = verdict.trim();
    let verdict = verdict.strip_prefix("Info: ").unwrap_or(verdict);
    let verdict = match verdict.split_once(": ") {
        Some((db, rest)) if PASSDBS.iter().any(|p| p.trim_end_matches('(') == db) => rest,
        _ => verdict,
    };
    let fields: Vec<&str> = args.split(',').collect();
    let Some(ip_at) = fields.iter().rposition(|f| parse_ip(f).is_some()) else {
        return false;
    };
    let lower = verdict.to_ascii_lowercase();
    let failure = lower.starts_with("unknown user")
        || lower.starts_with("password mismatch")
        || lower.starts_with("pam_authenticate() failed")
        || lower.starts_with("invalid credentials")
        || lower.starts_with("user not known");
    if !failure {
        return false;
    }
    event.source_ip = parse_ip(fields[ip_at]);
    let user = fields[..ip_at].join(",");
    if !user.is_empty() {
        event.user_name = Some(user);
    }
    set_field(event, "mail.reason", Value::from(verdict));
    let action = if lower.starts_with("unknown user") || lower.contains("user not known") {
        "mail_invalid_user"
    } else {
        "mail_login"
    };
    done(event, "authentication", action, "failure")
}

// ------------------------------------------------------------------- Exim

/// An Exim main-log message (after its own date and `[pid]` / message id
/// when it is written to a file; as is under syslog).
pub fn exim(msg: &str, event: &mut Event) -> bool {
    let m = strip_exim_prefix(msg.trim());
    if let Some(i) = m.find(" authenticator failed for ") {
        let rest = &m[i + " authenticator failed for ".len()..];
        bracket_ip(rest, event);
        if let Some((_, id)) = rest.rsplit_once("(set_id=") {
            let user = id.split(')').next().unwrap_or(id);
            if !user.is_empty() {
                event.user_name = Some(user.to_owned());
            }
        }
        return done(event, "authentication", "mail_login", "failure");
    }
    if let Some(rest) = m.strip_prefix("no host name found for IP address ") {
        event.source_ip = parse_ip(rest.trim());
        return done(event, "network", "mail_dns_mismatch", "unknown");
    }
    if m.starts_with("no IP address found for host ") {
        if let Some((_, rest)) = m.split_once(" connection from ") {
            bracket_ip(rest, event);
        }
        return done(event, "network", "mail_dns_mismatch", "unknown");
    }
    if let Some(rest) = m.strip_prefix("no MAIL in SMTP connection from ") {
        bracket_ip(rest, event);
        return done(event, "network", "mail_disconnect", "unknown");
    }
    if m.starts_with("SMTP protocol error in \"") {
        // The quoted command is the client's: the host is after its LAST
        // `" H=`.
        if let Some(i) = m.rfind("\" H=") {
            bracket_ip(&m[i + 4..], event);
        }
        return done(event, "network", "mail_protocol_error", "failure");
    }
    if m.starts_with("SMTP protocol synchronization error") {
        if let Some(i) = m.find(" H=") {
            bracket_ip(&m[i + 3..], event);
        }
        return done(event, "network", "mail_protocol_error", "failure");
    }
    if let Some(rest) = m.strip_prefix("SMTP call from ")
        && rest.contains(" dropped: too many ")
    {
        bracket_ip(rest, event);
        return done(event, "network", "mail_protocol_error", "failure");
    }
    if let Some(rest) = m.strip_prefix("SMTP connection from ")
        && rest.contains(" closed by DROP in ACL")
    {
        bracket_ip(rest, event);
        return done(event, "email", "mail_reject", "failure");
    }
    if let Some(rest) = m.strip_prefix("H=") {
        let rejected = rest.contains(" rejected ")
            || rest.contains(" sender verify fail")
            || rest.contains(" dropped by ")
            || rest.contains(" refused");
        if rejected {
            bracket_ip(rest, event);
            return done(event, "email", "mail_reject", "failure");
        }
    }
    false
}

/// `[pid] ` and a message id (`1ahr79-0006jK-G9 `) before the message,
/// and the date of a main-log line read through the journal.
fn strip_exim_prefix(m: &str) -> &str {
    let mut m = m;
    let b = m.as_bytes();
    if b.len() > 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && (b[4], b[10], b[13], b[16], b[19]) == (b'-', b' ', b':', b':', b' ')
    {
        m = &m[20..];
    }
    if let Some(rest) = m.strip_prefix('[')
        && let Some((pid, rest)) = rest.split_once("] ")
        && pid.bytes().all(|b| b.is_ascii_digit())
    {
        m = rest;
    }
    match m.split_once(' ') {
        Some((id, rest)) if is_exim_id(id) => rest,
        _ => m,
    }
}

/// `1ahr79-0006jK-G9` (6-6-2) or Exim 4.97's `1rnBwI-000000006pK-2Xkw`.
fn is_exim_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && parts[0].len() == 6
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The first word that is `[IP]` or `[IP]:port`: Exim writes the client as
/// `NAME (HELO) [IP]`, and a HELO name holds no space.
fn bracket_ip(s: &str, event: &mut Event) {
    for word in s.split(' ') {
        let Some(inner) = word.strip_prefix('[') else {
            continue;
        };
        if let Some((ip, _)) = inner.split_once(']')
            && let Some(ip) = parse_ip(ip)
        {
            event.source_ip = Some(ip);
            return;
        }
    }
    // `H=name` alone names a host, not an address.
    if let Some(name) = s.split(' ').next() {
        set_source_host(event, name.trim_start_matches("H="));
    }
}

done_in!("mail");

#[cfg(test)]
mod tests {
    use super::*;

    fn run(program: &str, msg: &str) -> Event {
        let mut e = Event::default();
        assert!(parse(program, msg, &mut e), "not recognised: {msg}");
        e
    }

    #[test]
    fn postfix_sasl_failures_and_rejects() {
        let e = run(
            "postfix/submission/smtpd",
            "warning: unknown[192.0.2.237]:55729: SASL LOGIN authentication failed: authentication failure",
        );
        assert_eq!(e.action.as_deref(), Some("mail_login"));
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.source_ip, "192.0.2.237".parse().ok());
        let e = run(
            "postfix/smtpd",
            "warning: unknown[1.1.1.1]: SASL LOGIN authentication failed: Connection lost to authentication server",
        );
        assert_eq!(e.outcome.as_deref(), Some("unknown"));
        let e = run(
            "postfix/smtpd",
            "NOQUEUE: reject: RCPT from foo[192.51.100.43]: 554 5.7.1 <foo@bad.domain>: Sender address rejected; from=<a@[6.6.6.6]>",
        );
        assert_eq!(e.action.as_deref(), Some("mail_reject"));
        assert_eq!(e.source_ip, "192.51.100.43".parse().ok());
        let e = run(
            "postfix/smtpd",
            "1A2B3C4D5E: client=mail.example.com[192.0.2.9], sasl_method=PLAIN, sasl_username=alice",
        );
        assert_eq!(
            (e.outcome.as_deref(), e.user_name.as_deref()),
            (Some("success"), Some("alice"))
        );
    }

    #[test]
    fn dovecot_logins_take_the_last_rip() {
        let e = run(
            "dovecot",
            "imap-login: Aborted login (auth failed, 1 attempts): user=<x, rip=6.6.6.6>, method=PLAIN, rip=192.0.2.1, lip=10.0.0.1",
        );
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.source_ip, "192.0.2.1".parse().ok());
        assert_eq!(e.user_name.as_deref(), Some("x, rip=6.6.6.6"));
        let e = run(
            "dovecot",
            "pop3-login: Disconnected (no auth attempts): rip=121.44.24.254, lip=113.212.99.194, TLS: Disconnected",
        );
        assert_eq!(e.outcome.as_deref(), Some("unknown"));
        let e = run(
            "dovecot",
            "auth-worker(304): pam(user,with,commas,1.2.3.4): pam_authenticate() failed: Authentication failure (password mismatch?)",
        );
        assert_eq!(e.source_ip, "1.2.3.4".parse().ok());
        assert_eq!(e.user_name.as_deref(), Some("user,with,commas"));
    }

    #[test]
    fn exim_takes_the_address_exim_wrote() {
        let e = run(
            "exim",
            "2014-12-02 03:00:23 auth_plain authenticator failed for (rom182) [193.254.202.35]:41556 I=[10.0.0.1]:25: 535 Incorrect authentication data (set_id=webmaster)",
        );
        assert_eq!(e.source_ip, "193.254.202.35".parse().ok());
        assert_eq!(e.user_name.as_deref(), Some("webmaster"));
        let e = run(
            "exim",
            "SMTP protocol error in \"aUtH lOgIn\" H=(test) [8.8.8.8]\" H=(roxzgj) [192.0.2.6] AUTH command used when not advertised",
        );
        assert_eq!(e.source_ip, "192.0.2.6".parse().ok());
        // A date-like start cut inside a character is no date.
        let mut e = Event::default();
        assert!(!exim("2013-01-04 17:03:4é H=x", &mut e));
    }
}
