//! secmon's [`Event`] as the Sigma engine sees it, without copying it into
//! JSON: rule field names are secmon's dotted names (the field mapping has
//! already renamed Sigma's taxonomy to them when the rules were compiled),
//! resolved here straight to the struct's fields, `labels.*` and `fields.*`.

use std::borrow::Cow;
use std::fmt::Write as _;

use rsigma_eval::EventValue;
use serde_json::Value;

use crate::model::{Event, ip_text, push_ip_text};

/// A borrowed view of one event for rule evaluation.
pub struct SigmaEvent<'a>(pub &'a Event);

impl SigmaEvent<'_> {
    /// Appends the text of the field at `path` to `out` (see
    /// [`push_value`]); whether there was one. An address is written where
    /// it goes (through [`get_field`](rsigma_eval::Event::get_field), an
    /// allocation for every correlation window fed).
    pub fn push_text(&self, path: &str, out: &mut String) -> bool {
        let e = self.0;
        let ip = match Own::of(path) {
            Some(Own::HostIp) => e.host_ip,
            Some(Own::SourceIp) => e.source_ip,
            Some(Own::DestinationIp) => e.destination_ip,
            _ => {
                return rsigma_eval::Event::get_field(self, path)
                    .is_some_and(|v| push_value(v, out));
            }
        };
        ip.map(|ip| push_ip_text(out, ip)).is_some()
    }
}

/// Appends a string, number or boolean to `out` as group keys and counted
/// values show it; false for anything else.
pub fn push_value(v: EventValue, out: &mut String) -> bool {
    match v {
        EventValue::Str(s) => out.push_str(&s),
        EventValue::Int(n) => _ = write!(out, "{n}"),
        EventValue::Float(f) => _ = write!(out, "{f}"),
        EventValue::Bool(b) => _ = write!(out, "{b}"),
        _ => return false,
    }
    true
}

fn text(s: &str) -> Option<EventValue<'_>> {
    Some(EventValue::Str(Cow::Borrowed(s)))
}

fn opt<S: std::ops::Deref<Target = str>>(s: &Option<S>) -> Option<EventValue<'_>> {
    s.as_deref().and_then(text)
}

fn owned<'a>(s: String) -> Option<EventValue<'a>> {
    Some(EventValue::Str(Cow::Owned(s)))
}

fn json(value: &Value) -> EventValue<'_> {
    match value {
        Value::Null => EventValue::Null,
        Value::Bool(b) => EventValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => EventValue::Int(i),
            None => EventValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => EventValue::Str(Cow::Borrowed(s)),
        Value::Array(items) => EventValue::Array(items.iter().map(json).collect()),
        Value::Object(map) => EventValue::Map(
            map.iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), json(v)))
                .collect(),
        ),
    }
}

/// A dotted path in `fields`; through arrays every member is followed, and
/// several hits come back as an array (matched when any member matches).
/// Objects are entered without collecting hits until an array is met.
fn lookup<'a>(fields: &'a serde_json::Map<String, Value>, path: &str) -> Option<EventValue<'a>> {
    let (head, mut rest) = split_dot(path);
    let mut value = fields.get(head)?;
    while let (Value::Object(map), Some(path)) = (value, rest) {
        let (head, tail) = split_dot(path);
        value = map.get(head)?;
        rest = tail;
    }
    if rest.is_none() {
        return Some(json(value));
    }
    let mut hits = Vec::new();
    descend(value, rest, &mut hits);
    match hits.len() {
        0 => None,
        1 => hits.pop(),
        _ => Some(EventValue::Array(hits)),
    }
}

/// `path`'s first name and the rest after its dot (paths are short: a
/// byte scan beats `split_once`'s searcher).
fn split_dot(path: &str) -> (&str, Option<&str>) {
    match path.bytes().position(|b| b == b'.') {
        Some(dot) => (&path[..dot], Some(&path[dot + 1..])),
        None => (path, None),
    }
}

fn descend<'a>(value: &'a Value, rest: Option<&str>, hits: &mut Vec<EventValue<'a>>) {
    match (value, rest) {
        (Value::Array(items), Some(_)) => {
            for item in items {
                descend(item, rest, hits);
            }
        }
        (Value::Object(map), Some(rest)) => {
            let (head, tail) = split_dot(rest);
            if let Some(v) = map.get(head) {
                descend(v, tail, hits);
            }
        }
        (_, Some(_)) => {}
        (v, None) => hits.push(json(v)),
    }
}

/// Every string of the event (keyword detections search them), without
/// collecting them.
pub(crate) fn strings<'a>(e: &'a Event, visit: &mut dyn FnMut(&'a str)) {
    own_strings(e, visit);
    fn walk<'a>(v: &'a Value, visit: &mut dyn FnMut(&'a str)) {
        match v {
            Value::String(s) => visit(s),
            Value::Array(items) => items.iter().for_each(|i| walk(i, visit)),
            Value::Object(map) => map.values().for_each(|i| walk(i, visit)),
            _ => {}
        }
    }
    for v in e.fields.values() {
        walk(v, visit);
    }
}

/// [`strings`] but those of `fields`: the message, the original line, the
/// named string fields and the labels.
pub(crate) fn own_strings<'a>(e: &'a Event, visit: &mut dyn FnMut(&'a str)) {
    for s in [
        Some(&e.message),
        e.original.as_ref(),
        e.host_name.as_ref(),
        e.user_name.as_ref(),
        e.user_target_name.as_ref(),
        e.process_name.as_ref(),
        e.process_command_line.as_ref(),
        e.process_executable.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        visit(s);
    }
    for v in e.labels.values() {
        visit(v);
    }
}

/// A field the rules name, resolved once when they are loaded: evaluating
/// a rule then reads it without matching its name against every field of
/// the event (160 instructions a field read, a name at a time).
#[derive(Clone, Debug)]
pub enum Field {
    /// One of the event's own fields.
    Own(Own),
    /// A label (`labels.*`) or a path into `fields`.
    Other(Box<str>),
}

/// The event's own fields, by their names below.
#[derive(Clone, Copy, Debug)]
pub enum Own {
    Message,
    Original,
    HostName,
    HostIp,
    SourceIp,
    SourcePort,
    DestinationIp,
    DestinationPort,
    UserName,
    UserTargetName,
    ProcessName,
    ProcessPid,
    ProcessCommandLine,
    ProcessExecutable,
    Category,
    Action,
    Outcome,
    Severity,
    Dataset,
    Timestamp,
}

impl Own {
    fn of(path: &str) -> Option<Own> {
        Some(match path {
            "message" => Own::Message,
            "log.original" => Own::Original,
            "host.name" => Own::HostName,
            "host.ip" => Own::HostIp,
            "source.ip" => Own::SourceIp,
            "source.port" => Own::SourcePort,
            "destination.ip" => Own::DestinationIp,
            "destination.port" => Own::DestinationPort,
            "user.name" => Own::UserName,
            "user.target.name" => Own::UserTargetName,
            "process.name" => Own::ProcessName,
            "process.pid" => Own::ProcessPid,
            "process.command_line" => Own::ProcessCommandLine,
            "process.executable" => Own::ProcessExecutable,
            "event.category" => Own::Category,
            "event.action" => Own::Action,
            "event.outcome" => Own::Outcome,
            "event.severity" => Own::Severity,
            "event.dataset" => Own::Dataset,
            "@timestamp" | "timestamp" => Own::Timestamp,
            _ => return None,
        })
    }
}

impl Field {
    pub fn of(path: &str) -> Field {
        Own::of(path).map_or_else(|| Field::Other(path.into()), Field::Own)
    }
}

impl SigmaEvent<'_> {
    /// The value of `field` (what [`get_field`](rsigma_eval::Event::get_field)
    /// gives for its name).
    pub fn get(&self, field: &Field) -> Option<EventValue<'_>> {
        match field {
            Field::Own(own) => self.own(*own),
            Field::Other(path) => self.other(path),
        }
    }

    fn own(&self, field: Own) -> Option<EventValue<'_>> {
        let e = self.0;
        match field {
            Own::Message => text(&e.message),
            Own::Original => opt(&e.original),
            Own::HostName => opt(&e.host_name),
            Own::HostIp => e.host_ip.and_then(|ip| owned(ip_text(ip))),
            Own::SourceIp => e.source_ip.and_then(|ip| owned(ip_text(ip))),
            Own::SourcePort => e.source_port.map(|p| EventValue::Int(p.into())),
            Own::DestinationIp => e.destination_ip.and_then(|ip| owned(ip_text(ip))),
            Own::DestinationPort => e.destination_port.map(|p| EventValue::Int(p.into())),
            Own::UserName => opt(&e.user_name),
            Own::UserTargetName => opt(&e.user_target_name),
            Own::ProcessName => opt(&e.process_name),
            Own::ProcessPid => e.process_pid.map(|p| EventValue::Int(p.into())),
            Own::ProcessCommandLine => opt(&e.process_command_line),
            Own::ProcessExecutable => opt(&e.process_executable),
            Own::Category => opt(&e.category),
            Own::Action => opt(&e.action),
            Own::Outcome => opt(&e.outcome),
            Own::Severity => e.severity.map(|s| EventValue::Int(s.into())),
            Own::Dataset => opt(&e.dataset),
            // Seconds: what the correlation windows count in.
            Own::Timestamp => Some(EventValue::Int(e.timestamp.timestamp())),
        }
    }

    /// A label (`labels.*`) or a path into `fields` (`fields.` optional).
    fn other(&self, path: &str) -> Option<EventValue<'_>> {
        let e = self.0;
        if let Some(label) = path.strip_prefix("labels.") {
            return e.labels.get(label).and_then(|v| text(v));
        }
        lookup(&e.fields, path.strip_prefix("fields.").unwrap_or(path))
    }
}

impl rsigma_eval::Event for SigmaEvent<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        match Own::of(path) {
            Some(own) => self.own(own),
            None => self.other(path),
        }
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        let mut found = false;
        self.visit_string_values(&mut |s| found = found || pred(s));
        found
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        let mut out = Vec::new();
        strings(self.0, &mut |s| out.push(Cow::Borrowed(s)));
        out
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        strings(self.0, visit);
    }

    /// The roots of the fields this event has: the engine's candidate index
    /// then skips rules about fields the event cannot have. Visited without
    /// collecting them (the engine asks for every event).
    fn visit_top_level_keys(&self, visit: &mut dyn FnMut(&str)) -> bool {
        let e = self.0;
        for key in ["message", "event", "@timestamp", "timestamp", "fields"] {
            visit(key);
        }
        for (root, present) in [
            ("log", e.original.is_some()),
            ("host", e.host_name.is_some() || e.host_ip.is_some()),
            ("source", e.source_ip.is_some() || e.source_port.is_some()),
            (
                "destination",
                e.destination_ip.is_some() || e.destination_port.is_some(),
            ),
            (
                "user",
                e.user_name.is_some() || e.user_target_name.is_some(),
            ),
            (
                "process",
                e.process_name.is_some()
                    || e.process_pid.is_some()
                    || e.process_command_line.is_some()
                    || e.process_executable.is_some(),
            ),
            ("labels", !e.labels.is_empty()),
        ] {
            if present {
                visit(root);
            }
        }
        for key in e.fields.keys() {
            visit(key);
        }
        true
    }

    fn to_json(&self) -> Value {
        serde_json::to_value(self.0).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use rsigma_eval::Event as _;

    use super::*;

    /// Paths into `fields`: through objects, through arrays (every member,
    /// several hits as an array), and the ways a path can miss.
    #[test]
    fn fields_are_found_by_dotted_path() {
        let event = Event {
            fields: serde_json::json!({
                "log": {"syslog": {"appname": "sshd", "facility": {"code": 4}}},
                "hosts": [{"name": "a"}, {"name": "b"}, {"other": 1}],
                "one": [{"name": "only"}],
                "tags": ["x", "y"],
                "flag": true,
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
            ..Event::default()
        };
        let view = SigmaEvent(&event);
        let text = |s: &'static str| Some(EventValue::Str(Cow::Borrowed(s)));
        assert_eq!(view.get_field("log.syslog.appname"), text("sshd"));
        assert_eq!(view.get_field("fields.log.syslog.appname"), text("sshd"));
        assert_eq!(
            view.get_field("log.syslog.facility.code"),
            Some(EventValue::Int(4))
        );
        assert_eq!(view.get_field("flag"), Some(EventValue::Bool(true)));
        assert_eq!(
            view.get_field("hosts.name"),
            Some(EventValue::Array(vec![
                EventValue::Str("a".into()),
                EventValue::Str("b".into())
            ]))
        );
        assert_eq!(view.get_field("one.name"), text("only"));
        assert_eq!(
            view.get_field("tags"),
            Some(EventValue::Array(vec![
                EventValue::Str("x".into()),
                EventValue::Str("y".into())
            ]))
        );
        assert_eq!(
            view.get_field("log.syslog.facility"),
            Some(EventValue::Map(vec![("code".into(), EventValue::Int(4))]))
        );
        for missing in [
            "log.syslog.procid",
            "log.syslog.appname.more",
            "flag.more",
            "hosts.missing",
            "nothing",
            "log..syslog",
        ] {
            assert_eq!(view.get_field(missing), None, "{missing}");
        }
    }
}
