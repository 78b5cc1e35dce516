//! The normalised, ECS-inspired event (DESIGN.md, "The event").

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ulid::Ulid;

use super::Labels;

/// A normalised security event.
///
/// `seq` and `id` are assigned by the store when the event is committed; before
/// that they are zero / nil.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Event {
    pub seq: u64,
    pub id: Ulid,
    pub timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_target_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_command_line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_executable: Option<String>,
    /// `event.category`; like `action`, `outcome` and `dataset` a static
    /// string when a parser sets it (no allocation per event), owned when
    /// submitted or read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Cow<'static, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Cow<'static, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Cow<'static, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<Cow<'static, str>>,
    /// The raw line as received (`log.original`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Anything else, searchable by path.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
    /// Provenance: the source that received it is configured `trusted`
    /// (TLS with client certificates, an allow-list of private networks,
    /// local files, journald, authenticated HTTP). Set by the source only:
    /// [`Event::from_json`] never sets it, so a submitted document cannot
    /// claim it. Stored only when true; events stored before it existed
    /// read back as untrusted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub trusted: bool,
}

/// `ip` as text, exactly as its `Display` writes it. An IPv4 address is
/// written digit by digit into one allocation: through `to_string` it cost
/// about 1 400 instructions, asked for per event by the indexer and by the
/// rules and correlations on `source.ip`.
pub fn ip_text(ip: IpAddr) -> String {
    let mut s = String::with_capacity(15);
    push_ip_text(&mut s, ip);
    s
}

/// [`ip_text`], appended to `out` (an IPv4 address digit by digit: the
/// formatter, or checking a buffer of digits as UTF-8, cost more than the
/// digits).
pub fn push_ip_text(out: &mut String, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        let _ = write!(out, "{ip}");
        return;
    };
    out.reserve(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why a submitted JSON document could not become an event.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventInputError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("an event must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("field `{field}`: {reason}")]
    Field { field: String, reason: String },
}

fn field_err(field: &str, reason: impl Into<String>) -> EventInputError {
    EventInputError::Field {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

impl Event {
    /// Builds an event from one submitted JSON document.
    ///
    /// Known fields may be given dotted (`"host.name"`) or nested
    /// (`{"host": {"name": ..}}`); `@timestamp` or `timestamp` sets the event
    /// time (else the receive time; `@timestamp` when both are given);
    /// unknown keys go to `fields`. The first bad known field is the error.
    pub fn from_json(value: Value, received_at: DateTime<Utc>) -> Result<Event, EventInputError> {
        let Value::Object(object) = value else {
            return Err(EventInputError::NotAnObject(json_kind(&value)));
        };
        let mut submitted = Submitted::new(received_at);
        for (key, value) in object {
            submitted.entry(Cow::Owned(key), value);
        }
        submitted.finish()
    }

    /// [`Event::from_json`] on the document's bytes, read straight into the
    /// event: no map of the whole document is built and keys are not copied
    /// unless they go to `fields`. What HTTP ingest and JSON lines use.
    pub fn from_json_slice(
        bytes: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<Event, EventInputError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        SubmittedSeed(received_at)
            .deserialize(&mut de)
            .and_then(|event| de.end().map(|()| event))
            .map_err(|e| EventInputError::Json(e.to_string()))?
    }

    /// A JSON array of documents, each read as [`Event::from_json_slice`]
    /// reads one: an error for the whole array when it is not valid JSON,
    /// else one result per element.
    pub fn from_json_array(
        bytes: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<Vec<Result<Event, EventInputError>>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let events = de.deserialize_seq(SubmittedArray(received_at))?;
        de.end()?;
        Ok(events)
    }

    /// The event as a flat JSON object under its DESIGN.md names
    /// (`host.name`, `source.ip`, `log.original`, ...), what the export
    /// sinks send: `@timestamp`, `event.ingested` (received), `event.id`
    /// and `event.sequence` (the node's seq), the fields it has, `labels`
    /// and `fields` as objects, `secmon.trusted` when true.
    pub fn to_export_json(&self) -> Value {
        let mut out = Map::new();
        let mut put = |key: &str, value: Value| {
            out.insert(key.to_owned(), value);
        };
        put("@timestamp", json_time(self.timestamp));
        put("event.ingested", json_time(self.received_at));
        put("event.id", Value::String(self.id.to_string()));
        put("event.sequence", self.seq.into());
        let texts = [
            ("host.name", self.host_name.as_deref()),
            ("user.name", self.user_name.as_deref()),
            ("user.target.name", self.user_target_name.as_deref()),
            ("process.name", self.process_name.as_deref()),
            ("process.command_line", self.process_command_line.as_deref()),
            ("process.executable", self.process_executable.as_deref()),
            ("event.category", self.category.as_deref()),
            ("event.action", self.action.as_deref()),
            ("event.outcome", self.outcome.as_deref()),
            ("event.dataset", self.dataset.as_deref()),
            ("log.original", self.original.as_deref()),
        ];
        for (key, value) in texts {
            if let Some(value) = value {
                put(key, Value::from(value));
            }
        }
        let ips = [
            ("host.ip", self.host_ip),
            ("source.ip", self.source_ip),
            ("destination.ip", self.destination_ip),
        ];
        for (key, ip) in ips {
            if let Some(ip) = ip {
                put(key, Value::String(ip_text(ip)));
            }
        }
        let numbers = [
            ("source.port", self.source_port.map(u64::from)),
            ("destination.port", self.destination_port.map(u64::from)),
            ("process.pid", self.process_pid.map(u64::from)),
            ("event.severity", self.severity.map(u64::from)),
        ];
        for (key, number) in numbers {
            if let Some(number) = number {
                put(key, number.into());
            }
        }
        put("message", Value::String(self.message.clone()));
        if !self.labels.is_empty() {
            put(
                "labels",
                Value::Object(
                    self.labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                        .collect(),
                ),
            );
        }
        if !self.fields.is_empty() {
            put("fields", Value::Object(self.fields.clone()));
        }
        if self.trusted {
            put("secmon.trusted", Value::Bool(true));
        }
        Value::Object(out)
    }

    /// Whether the original line ends with the (non-empty) message, as a
    /// syslog line does after its header: the message then says nothing the
    /// line does not.
    pub fn message_ends_original(&self) -> bool {
        !self.message.is_empty()
            && self
                .original
                .as_deref()
                .is_some_and(|o| o.ends_with(self.message.as_str()))
    }

    /// Roughly how many bytes it holds in memory: its strings, labels and
    /// fields (their objects' nodes included) plus the fixed part. What the
    /// write queue's byte bound counts.
    pub fn approx_bytes(&self) -> usize {
        let opt = |s: Option<&str>| s.map_or(0, str::len);
        std::mem::size_of::<Event>()
            + self.message.len()
            + opt(self.original.as_deref())
            + opt(self.host_name.as_deref())
            + opt(self.user_name.as_deref())
            + opt(self.user_target_name.as_deref())
            + opt(self.process_name.as_deref())
            + opt(self.process_command_line.as_deref())
            + opt(self.process_executable.as_deref())
            + opt(self.category.as_deref())
            + opt(self.action.as_deref())
            + opt(self.outcome.as_deref())
            + opt(self.dataset.as_deref())
            + self
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len() + std::mem::size_of::<(Cow<str>, Cow<str>)>())
                .sum::<usize>()
            + fields_bytes(&self.fields)
    }

    fn set_known(&mut self, key: &str, value: Value) -> Result<(), EventInputError> {
        if value.is_null() {
            return Ok(());
        }
        match key {
            "@timestamp" | "timestamp" => self.timestamp = parse_time(key, &value)?,
            "message" => self.message = text(key, value)?,
            "host.name" => self.host_name = Some(text(key, value)?),
            "host.ip" => self.host_ip = Some(ip(key, &value)?),
            "source.ip" => self.source_ip = Some(ip(key, &value)?),
            "source.port" => self.source_port = Some(int(key, &value)?),
            "destination.ip" => self.destination_ip = Some(ip(key, &value)?),
            "destination.port" => self.destination_port = Some(int(key, &value)?),
            "user.name" => self.user_name = Some(text(key, value)?),
            "user.target.name" => self.user_target_name = Some(text(key, value)?),
            "process.name" => self.process_name = Some(text(key, value)?),
            "process.pid" => self.process_pid = Some(int(key, &value)?),
            "process.command_line" => self.process_command_line = Some(text(key, value)?),
            "process.executable" => self.process_executable = Some(text(key, value)?),
            "event.category" => self.category = Some(text(key, value)?.into()),
            "event.action" => self.action = Some(text(key, value)?.into()),
            "event.outcome" => self.outcome = Some(text(key, value)?.into()),
            "event.severity" => self.severity = Some(int(key, &value)?),
            "event.dataset" => self.dataset = Some(text(key, value)?.into()),
            "log.original" => self.original = Some(text(key, value)?),
            "labels" => {
                let Value::Object(map) = value else {
                    return Err(field_err(key, "must be an object of strings"));
                };
                self.labels.extend(map.into_iter().filter_map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        Value::Null => return None,
                        other => other.to_string(),
                    };
                    Some((k.into(), v.into()))
                }));
            }
            // `flatten_known` yields only KNOWN_FIELDS keys.
            _ => {}
        }
        Ok(())
    }
}

/// A submitted document read entry by entry into an event.
struct Submitted {
    event: Event,
    /// Known fields given nested (`{"host": {"name": ..}}`) by their dotted
    /// keys, set when the document ends.
    nested: Map<String, Value>,
    /// `@timestamp` was given: a `timestamp` does not override it.
    stamped: bool,
    error: Option<EventInputError>,
}

impl Submitted {
    fn new(received_at: DateTime<Utc>) -> Submitted {
        Submitted {
            event: Event {
                timestamp: received_at,
                received_at,
                ..Event::default()
            },
            nested: Map::new(),
            stamped: false,
            error: None,
        }
    }

    fn entry(&mut self, key: Cow<'_, str>, value: Value) {
        if KNOWN_FIELDS.contains(&key.as_ref()) && (key == "labels" || !value.is_object()) {
            self.set(&key, value);
        } else {
            flatten_known(
                key.into_owned(),
                value,
                &mut self.nested,
                &mut self.event.fields,
            );
        }
    }

    fn set(&mut self, key: &str, value: Value) {
        if self.error.is_some() || (key == "timestamp" && self.stamped) {
            return;
        }
        self.stamped |= key == "@timestamp" && !value.is_null();
        if let Err(e) = self.event.set_known(key, value) {
            self.error = Some(e);
        }
    }

    fn finish(mut self) -> Result<Event, EventInputError> {
        for (key, value) in std::mem::take(&mut self.nested) {
            self.set(&key, value);
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.event),
        }
    }
}

/// Reads one submitted document as [`Submitted`]; anything but an object
/// is read through (the input stays in step) and refused.
struct SubmittedSeed(DateTime<Utc>);

impl<'de> DeserializeSeed<'de> for SubmittedSeed {
    type Value = Result<Event, EventInputError>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SubmittedSeed {
    type Value = Result<Event, EventInputError>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut submitted = Submitted::new(self.0);
        while let Some(Key(key)) = map.next_key()? {
            submitted.entry(key, map.next_value()?);
        }
        Ok(submitted.finish())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(EventInputError::NotAnObject("an array")))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err(EventInputError::NotAnObject("null")))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(EventInputError::NotAnObject("a boolean")))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(EventInputError::NotAnObject("a number")))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(EventInputError::NotAnObject("a number")))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(EventInputError::NotAnObject("a number")))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(EventInputError::NotAnObject("a string")))
    }
}

/// A JSON array of submitted documents, one result each.
struct SubmittedArray(DateTime<Utc>);

impl<'de> Visitor<'de> for SubmittedArray {
    type Value = Vec<Result<Event, EventInputError>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut events = Vec::new();
        while let Some(event) = seq.next_element_seed(SubmittedSeed(self.0))? {
            events.push(event);
        }
        Ok(events)
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string key")
            }

            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }

            fn visit_string<E>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        de.deserialize_str(KeyVisitor)
    }
}

/// Every dotted key [`Event::set_known`] accepts: the event's own fields by
/// their DESIGN.md names.
pub const KNOWN_FIELDS: &[&str] = &[
    "@timestamp",
    "timestamp",
    "message",
    "host.name",
    "host.ip",
    "source.ip",
    "source.port",
    "destination.ip",
    "destination.port",
    "user.name",
    "user.target.name",
    "process.name",
    "process.pid",
    "process.command_line",
    "process.executable",
    "event.category",
    "event.action",
    "event.outcome",
    "event.severity",
    "event.dataset",
    "log.original",
    "labels",
];

/// True when `prefix` is a known key or the start of one (`host`, `user.target`).
fn is_known_prefix(prefix: &str) -> bool {
    KNOWN_FIELDS.iter().any(|k| {
        k.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

/// Splits a submitted key/value into known dotted keys (`flat`) and the rest
/// (`fields`), descending into nested objects under known prefixes.
fn flatten_known(
    key: String,
    value: Value,
    flat: &mut Map<String, Value>,
    fields: &mut Map<String, Value>,
) {
    if KNOWN_FIELDS.contains(&key.as_str()) && (key == "labels" || !value.is_object()) {
        flat.insert(key, value);
        return;
    }
    match value {
        Value::Object(inner) if is_known_prefix(&key) => {
            let mut rest = Map::new();
            for (k, v) in inner {
                let dotted = format!("{key}.{k}");
                if is_known_prefix(&dotted) {
                    flatten_known(dotted, v, flat, fields);
                } else {
                    rest.insert(k, v);
                }
            }
            if !rest.is_empty() {
                fields.insert(key, Value::Object(rest));
            }
        }
        value => {
            fields.insert(key, value);
        }
    }
}

/// Roughly the memory `fields` holds: their keys and strings, a fixed
/// cost per value and the nodes of every object. One walk without
/// recursion, which keeps only the objects and arrays still to open (a
/// stack of every value, grown from one, cost five allocations for an
/// event's `log.syslog`).
fn fields_bytes(fields: &Map<String, Value>) -> usize {
    let mut open = Vec::new();
    let mut total = map_nodes_bytes(fields);
    for (k, v) in fields {
        total += k.len() + value_bytes(v, &mut open);
    }
    while let Some(container) = open.pop() {
        match container {
            Value::Array(items) => {
                for v in items {
                    total += value_bytes(v, &mut open);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    total += k.len() + value_bytes(v, &mut open);
                }
            }
            _ => {}
        }
    }
    total
}

/// A value's own bytes; an object or array is left in `open` for its
/// members.
fn value_bytes<'a>(value: &'a Value, open: &mut Vec<&'a Value>) -> usize {
    const VALUE: usize = std::mem::size_of::<Value>();
    match value {
        Value::String(s) => VALUE + s.len(),
        Value::Object(map) => {
            open.push(value);
            VALUE + map_nodes_bytes(map)
        }
        Value::Array(_) => {
            open.push(value);
            VALUE
        }
        _ => VALUE,
    }
}

/// The nodes of an object's `BTreeMap`: eleven keys and values each
/// (about 640 bytes as malloc rounds them) however few it holds, at least
/// half full past one. Counted, a line of small objects (`{"a":{"b":1}}`,
/// 13 bytes) can no longer hold ten times the memory the write queue's
/// bound allows.
fn map_nodes_bytes(map: &Map<String, Value>) -> usize {
    const NODE: usize = 640;
    const HALF_FULL: usize = 6;
    map.len().div_ceil(HALF_FULL) * NODE
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn text(key: &str, value: Value) -> Result<String, EventInputError> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(field_err(
            key,
            format!("expected a string, got {}", json_kind(&other)),
        )),
    }
}

fn ip(key: &str, value: &Value) -> Result<IpAddr, EventInputError> {
    let Value::String(s) = value else {
        return Err(field_err(
            key,
            format!("expected an IP address string, got {}", json_kind(value)),
        ));
    };
    s.parse()
        .map_err(|_| field_err(key, format!("`{s}` is not an IPv4 or IPv6 address")))
}

fn int<T: TryFrom<u64>>(key: &str, value: &Value) -> Result<T, EventInputError> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    n.and_then(|n| T::try_from(n).ok()).ok_or_else(|| {
        field_err(
            key,
            format!("expected a non-negative integer in range, got {value}"),
        )
    })
}

fn parse_time(key: &str, value: &Value) -> Result<DateTime<Utc>, EventInputError> {
    match value {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| field_err(key, format!("`{s}` is not an RFC 3339 time ({e})"))),
        // Epoch milliseconds, as many shippers send.
        Value::Number(n) => n
            .as_i64()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| field_err(key, format!("{n} is not a time in epoch milliseconds"))),
        other => Err(field_err(
            key,
            format!("expected a time, got {}", json_kind(other)),
        )),
    }
}

/// RFC 3339 in UTC with microseconds (what the store keeps).
fn json_time(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ip_text_writes_what_display_writes() {
        // Every octet value in every position, and IPv6 as Display has it.
        for n in 0..=255u8 {
            for octets in [
                [n, 0, 0, 0],
                [1, n, 2, 3],
                [10, 9, n, 99],
                [255, 100, 10, n],
            ] {
                let ip = IpAddr::from(octets);
                assert_eq!(ip_text(ip), ip.to_string());
                let mut appended = String::from("key:");
                push_ip_text(&mut appended, ip);
                assert_eq!(appended, format!("key:{ip}"));
            }
        }
        for v6 in [
            "::1",
            "2001:db8::8:800:200c:417a",
            "::ffff:1.2.3.4",
            "fe80::",
        ] {
            let ip: IpAddr = v6.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn the_export_json_uses_the_design_names_and_reads_back() {
        let submitted = json!({"@timestamp": "2026-01-02T03:04:05.123456Z", "host.name": "web1",
            "source.ip": "10.0.0.1", "source.port": 22, "user.name": "root", "process.pid": 7,
            "event.outcome": "failure", "event.dataset": "sshd", "log.original": "raw",
            "message": "m", "labels": {"site": "a"}, "kube": {"pod": "p"}});
        let mut event = Event::from_json(submitted, now()).unwrap();
        event.seq = 42;
        let json = event.to_export_json();
        assert_eq!(json["@timestamp"], "2026-01-02T03:04:05.123456Z");
        assert_eq!(json["event.ingested"], "2026-01-02T03:04:05.000000Z");
        assert_eq!(json["event.sequence"], 42);
        assert_eq!(json["source.port"], 22);
        assert_eq!(json["labels"], json!({"site": "a"}));
        assert_eq!(json["fields"], json!({"kube": {"pod": "p"}}));
        assert!(json.get("secmon.trusted").is_none());
        let back = Event::from_json(json, now()).unwrap();
        assert_eq!(
            (
                back.timestamp,
                &back.host_name,
                back.source_ip,
                back.process_pid
            ),
            (
                event.timestamp,
                &event.host_name,
                event.source_ip,
                event.process_pid
            )
        );
        assert_eq!(
            (&back.original, &back.message, &back.labels),
            (&event.original, &event.message, &event.labels)
        );
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn plain_message_is_enough() {
        let e = Event::from_json(json!({"message": "hello"}), now()).unwrap();
        assert_eq!(e.message, "hello");
        assert_eq!(e.timestamp, now());
        assert!(e.fields.is_empty());
    }

    #[test]
    fn dotted_and_nested_forms_agree() {
        let dotted = json!({"host.name": "web1", "source.ip": "10.0.0.1", "source.port": 22,
            "user.target.name": "root", "event.outcome": "failure", "message": "x"});
        let nested = json!({"host": {"name": "web1"}, "source": {"ip": "10.0.0.1", "port": "22"},
            "user": {"target": {"name": "root"}}, "event": {"outcome": "failure"}, "message": "x"});
        let a = Event::from_json(dotted, now()).unwrap();
        let b = Event::from_json(nested, now()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.host_name.as_deref(), Some("web1"));
        assert_eq!(a.source_port, Some(22));
        assert_eq!(a.user_target_name.as_deref(), Some("root"));
    }

    #[test]
    fn unknown_keys_go_to_fields_including_unknown_children_of_known_prefixes() {
        let e = Event::from_json(
            json!({"message": "m", "kube": {"pod": "a"}, "host": {"name": "h", "os": "linux"}}),
            now(),
        )
        .unwrap();
        assert_eq!(e.fields["kube"], json!({"pod": "a"}));
        assert_eq!(e.fields["host"], json!({"os": "linux"}));
        assert_eq!(e.host_name.as_deref(), Some("h"));
    }

    #[test]
    fn timestamps_in_rfc3339_and_epoch_millis() {
        let e =
            Event::from_json(json!({"@timestamp": "2025-05-06T07:08:09.5+02:00"}), now()).unwrap();
        assert_eq!(e.timestamp.to_rfc3339(), "2025-05-06T05:08:09.500+00:00");
        assert_eq!(e.received_at, now());
        let e = Event::from_json(json!({"timestamp": 1_000}), now()).unwrap();
        assert_eq!(e.timestamp.timestamp_millis(), 1_000);
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (json!("str"), "an event must be a JSON object, got a string"),
            (
                json!({"source.ip": "999.1.1.1"}),
                "field `source.ip`: `999.1.1.1` is not an IPv4 or IPv6 address",
            ),
            (
                json!({"source.port": 70000}),
                "field `source.port`: expected a non-negative integer in range, got 70000",
            ),
            (
                json!({"@timestamp": "yesterday"}),
                "field `@timestamp`: `yesterday` is not an RFC 3339 time (premature end of input)",
            ),
            (
                json!({"message": ["a"]}),
                "field `message`: expected a string, got an array",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Event::from_json(input, now()).unwrap_err().to_string(),
                expected
            );
        }
    }

    /// Documents read from their bytes and from a parsed value: the same
    /// event or the same error.
    #[test]
    fn bytes_and_values_read_alike() {
        let documents = [
            r#"{"message": "m", "host.name": "h", "source.ip": "10.0.0.1", "source.port": 22}"#,
            r#"{"host": {"name": "h", "os": "linux"}, "user": {"target": {"name": "r"}}, "x": [1, {"y": null}]}"#,
            r#"{"labels": {"env": "prod", "tier": 2, "gone": null}, "event.severity": "3"}"#,
            r#"{"message": null, "process.pid": 7, "kube": {"pod": "p"}, "kube.ns": "n"}"#,
            r#"{"host.name": "escaped key", "message": "été"}"#,
            r#"{"@timestamp": 1700000000000, "event.dataset": "sshd", "log.original": "raw"}"#,
            r#"{"source.ip": "999.1.1.1"}"#,
            r#"{"message": ["a"]}"#,
            r#"{"labels": "flat"}"#,
            r#"{"source.port": -1}"#,
            r#"{}"#,
            r#"[1, 2]"#,
            r#""str""#,
            "5",
            "-5.5",
            "true",
            "null",
        ];
        for doc in documents {
            let value: Value = serde_json::from_str(doc).unwrap();
            let from_value = Event::from_json(value, now()).map_err(|e| e.to_string());
            let from_bytes =
                Event::from_json_slice(doc.as_bytes(), now()).map_err(|e| e.to_string());
            assert_eq!(from_bytes, from_value, "{doc}");
        }
    }

    #[test]
    fn bad_bytes_are_invalid_json_and_deep_ones_do_not_recurse() {
        for doc in [
            &b"{\"message\": \"m\"} trailing"[..],
            b"{\"message\": \"m\"",
            b"{\"message\": \"\xff\"}",
            b"",
            b"{\"a\": 1,}",
        ] {
            let e = Event::from_json_slice(doc, now()).unwrap_err();
            assert!(matches!(e, EventInputError::Json(_)), "{e:?}");
            assert!(e.to_string().starts_with("invalid JSON: "), "{e}");
        }
        // Under a key it would be kept: refused at serde_json's depth limit.
        let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep = format!("{{\"x\": {nested}}}");
        let e = Event::from_json_slice(deep.as_bytes(), now()).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
        // Alone it is read through without being built, and refused.
        let e = Event::from_json_slice(nested.as_bytes(), now()).unwrap_err();
        assert_eq!(e, EventInputError::NotAnObject("an array"));
        let events = Event::from_json_array(format!("[{nested}, {deep}]").as_bytes(), now());
        assert!(events.is_err(), "the element under a key is too deep");
    }

    #[test]
    fn at_timestamp_wins_over_timestamp_in_any_order() {
        for doc in [
            r#"{"timestamp": 1000, "@timestamp": 2000}"#,
            r#"{"@timestamp": 2000, "timestamp": 1000}"#,
        ] {
            let e = Event::from_json_slice(doc.as_bytes(), now()).unwrap();
            assert_eq!(e.timestamp.timestamp_millis(), 2000, "{doc}");
            let value = serde_json::from_str(doc).unwrap();
            assert_eq!(Event::from_json(value, now()).unwrap(), e);
        }
        let e = Event::from_json_slice(br#"{"@timestamp": null, "timestamp": 1000}"#, now());
        assert_eq!(e.unwrap().timestamp.timestamp_millis(), 1000);
    }

    #[test]
    fn an_array_reads_each_element() {
        let events =
            Event::from_json_array(br#"[{"message": "a"}, 5, {"source.ip": "x"}]"#, now()).unwrap();
        let results: Vec<_> = events
            .into_iter()
            .map(|r| r.map(|e| e.message).map_err(|e| e.to_string()))
            .collect();
        assert_eq!(
            results,
            [
                Ok("a".to_owned()),
                Err("an event must be a JSON object, got a number".to_owned()),
                Err("field `source.ip`: `x` is not an IPv4 or IPv6 address".to_owned()),
            ]
        );
        assert!(Event::from_json_array(br#"[{"message": "a"},"#, now()).is_err());
        assert!(Event::from_json_array(br#"{"message": "a"}"#, now()).is_err());
    }

    #[test]
    fn a_document_cannot_claim_trust() {
        for doc in [
            json!({"message": "m", "trusted": true}),
            json!({"message": "m", "event": {"trusted": true}, "labels": {"trusted": "true"}}),
        ] {
            let e = Event::from_json(doc, now()).unwrap();
            assert!(!e.trusted, "{e:?}");
        }
        let e = Event::from_json(json!({"message": "m", "trusted": true}), now()).unwrap();
        assert_eq!(e.fields["trusted"], json!(true), "kept as a plain field");
    }

    #[test]
    fn trust_is_stored_and_old_events_read_as_untrusted() {
        let mut e = Event::from_json(json!({"message": "m"}), now()).unwrap();
        let old = serde_json::to_string(&e).unwrap();
        assert!(!old.contains("trusted"), "not written when false: {old}");
        assert!(!serde_json::from_str::<Event>(&old).unwrap().trusted);
        e.trusted = true;
        let new = serde_json::to_string(&e).unwrap();
        assert!(serde_json::from_str::<Event>(&new).unwrap().trusted);
    }

    #[test]
    fn approx_bytes_grows_with_what_it_holds() {
        let small = Event::from_json(json!({"message": "m"}), now()).unwrap();
        let big = Event::from_json(
            json!({"message": "m".repeat(10_000), "kube": {"pod": "p".repeat(5_000)}}),
            now(),
        )
        .unwrap();
        assert!(small.approx_bytes() < 1_000);
        assert!(big.approx_bytes() > 15_000 && big.approx_bytes() < 17_000);
    }

    #[test]
    fn fields_bytes_counts_every_key_string_and_value_once() {
        let Value::Object(fields) = json!({"a": "xy", "b": [1, {"c": "d"}]}) else {
            unreachable!()
        };
        // The node of `fields`; "a": 1 + 32 + 2; "b": 1 + 32, then 1: 32,
        // {..}: 32 and its node, "c": 1 + 32 + 1.
        assert_eq!(fields_bytes(&fields), 640 + 35 + 33 + 32 + 32 + 640 + 34);
        let mut deep = json!("leaf");
        for _ in 0..1_000 {
            deep = json!({ "k": [deep] });
        }
        let Value::Object(fields) = deep else {
            unreachable!()
        };
        // Each level's node, "k" and array, the 999 objects inside, the
        // leaf.
        assert_eq!(
            fields_bytes(&fields),
            1_000 * (640 + 1 + 32) + 999 * 32 + (32 + 4)
        );
        // Small objects are counted as the memory they hold, not as their
        // text: a node each.
        let Value::Object(fields) = json!({"a": {"b": 1}, "c": {"d": 1}}) else {
            unreachable!()
        };
        assert!(fields_bytes(&fields) > 3 * 640);
    }

    #[test]
    fn labels_are_stringified() {
        let e = Event::from_json(json!({"labels": {"env": "prod", "tier": 2}}), now()).unwrap();
        assert_eq!(e.labels["env"], "prod");
        assert_eq!(e.labels["tier"], "2");
    }
}
