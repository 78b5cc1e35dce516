//! The Parquet archive (`ARCHIVE_URL`): events as Parquet files in object
//! storage, partitioned Hive-style by node and event date:
//!
//! `<prefix>/events/node=<node id>/date=<YYYY-MM-DD>/<first seq>-<last seq>.parquet`
//!
//! A batch is written when `export.archive_max_rows` events wait or the
//! oldest has waited `export.archive_flush_seconds`; its events go to one
//! file per date (UTC, of `@timestamp`). Batches are fixed before they are
//! written ([`super::Sink::FIXED_BATCHES`]), so a batch a crash cut short is
//! written again as the same files under the same names: each upload
//! replaces the object whole, and no row is written twice or missed.
//!
//! One column per event field (docs/ARCHIVE.md lists them), `labels` and
//! `fields` as JSON text, zstd-compressed, one row group per file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStoreExt, PutPayload};
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DataType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::parser::parse_message_type;

use super::{Batching, Failed};
use crate::config::{Export, S3};
use crate::model::Event;
use crate::objects::Location;

/// The files' schema, in column order.
pub const SCHEMA: &str = "message event {
    required int64 seq (INTEGER(64, false));
    required binary id (STRING);
    required int64 timestamp (TIMESTAMP(MICROS, true));
    required int64 received_at (TIMESTAMP(MICROS, true));
    optional binary host_name (STRING);
    optional binary host_ip (STRING);
    optional binary source_ip (STRING);
    optional int32 source_port (INTEGER(16, false));
    optional binary destination_ip (STRING);
    optional int32 destination_port (INTEGER(16, false));
    optional binary user_name (STRING);
    optional binary user_target_name (STRING);
    optional binary process_name (STRING);
    optional int64 process_pid;
    optional binary process_command_line (STRING);
    optional binary process_executable (STRING);
    optional binary category (STRING);
    optional binary action (STRING);
    optional binary outcome (STRING);
    optional int32 severity (INTEGER(8, false));
    optional binary dataset (STRING);
    optional binary original (STRING);
    required binary message (STRING);
    optional binary labels (STRING);
    optional binary fields (STRING);
    required boolean trusted;
}";

/// The archive sink.
pub struct Archive {
    location: Location,
    node: String,
    batching: Batching,
}

impl Archive {
    pub fn new(
        url: &str,
        cfg: &Export,
        s3: &S3,
        node: ulid::Ulid,
    ) -> Result<Archive, super::Error> {
        Ok(Archive {
            location: Location::open(url, s3).map_err(super::Error::ArchiveUrl)?,
            node: node.to_string(),
            batching: Batching {
                max_events: cfg.archive_max_rows,
                max_wait: Duration::from_secs(cfg.archive_flush_seconds),
            },
        })
    }

    /// The object each of `events`' dates goes to, with its events.
    fn files<'a>(&self, events: &'a [Event]) -> Vec<(String, Vec<&'a Event>)> {
        let mut by_date: BTreeMap<chrono::NaiveDate, Vec<&Event>> = BTreeMap::new();
        for event in events {
            by_date
                .entry(event.timestamp.date_naive())
                .or_default()
                .push(event);
        }
        by_date
            .into_iter()
            .map(|(date, events)| {
                let (first, last) = (events[0].seq, events[events.len() - 1].seq);
                let name = format!(
                    "events/node={}/date={}/{first}-{last}.parquet",
                    self.node,
                    date.format("%Y-%m-%d")
                );
                (name, events)
            })
            .collect()
    }
}

impl super::Sink for Archive {
    const NAME: &'static str = "archive";
    const FIXED_BATCHES: bool = true;

    fn batching(&self) -> Batching {
        self.batching
    }

    async fn send(&mut self, events: &[Event]) -> Result<(), Failed> {
        for (name, events) in self.files(events) {
            let bytes = off_the_runtime(|| parquet_file(&events))
                .map_err(|e| Failed::nothing(format!("archive: writing {name}: {e}")))?;
            let path = self.location.path(&name);
            self.location
                .store
                .put(&path, PutPayload::from(bytes))
                .await
                .map_err(|e| {
                    Failed::nothing(format!(
                        "archive: uploading {name} to {}: {e}",
                        self.location.url
                    ))
                })?;
        }
        Ok(())
    }
}

/// Runs CPU-bound `f` (encoding a file) without holding up the other
/// tasks of a multi-threaded runtime.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// `events` as one Parquet file.
pub fn parquet_file(events: &[&Event]) -> parquet::errors::Result<Vec<u8>> {
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_created_by(format!("secmon {}", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, props)?;
    let mut group = writer.next_row_group()?;
    let mut columns = Columns(&mut group, events);
    columns.required::<Int64Type>(|e| e.seq as i64)?;
    columns.required::<ByteArrayType>(|e| e.id.to_string().into_bytes().into())?;
    columns.required::<Int64Type>(|e| e.timestamp.timestamp_micros())?;
    columns.required::<Int64Type>(|e| e.received_at.timestamp_micros())?;
    columns.text(|e| e.host_name.clone())?;
    columns.text(|e| e.host_ip.map(crate::model::ip_text))?;
    columns.text(|e| e.source_ip.map(crate::model::ip_text))?;
    columns.optional::<Int32Type>(|e| e.source_port.map(i32::from))?;
    columns.text(|e| e.destination_ip.map(crate::model::ip_text))?;
    columns.optional::<Int32Type>(|e| e.destination_port.map(i32::from))?;
    columns.text(|e| e.user_name.clone())?;
    columns.text(|e| e.user_target_name.clone())?;
    columns.text(|e| e.process_name.clone())?;
    columns.optional::<Int64Type>(|e| e.process_pid.map(i64::from))?;
    columns.text(|e| e.process_command_line.clone())?;
    columns.text(|e| e.process_executable.clone())?;
    columns.text(|e| e.category.as_deref().map(str::to_owned))?;
    columns.text(|e| e.action.as_deref().map(str::to_owned))?;
    columns.text(|e| e.outcome.as_deref().map(str::to_owned))?;
    columns.optional::<Int32Type>(|e| e.severity.map(i32::from))?;
    columns.text(|e| e.dataset.as_deref().map(str::to_owned))?;
    columns.text(|e| e.original.clone())?;
    columns.required::<ByteArrayType>(|e| e.message.as_str().into())?;
    columns.text(|e| {
        (!e.labels.is_empty()).then(|| serde_json::to_string(&e.labels).unwrap_or_default())
    })?;
    columns.text(|e| {
        (!e.fields.is_empty()).then(|| serde_json::to_string(&e.fields).unwrap_or_default())
    })?;
    columns.required::<BoolType>(|e| e.trusted)?;
    group.close()?;
    writer.close()?;
    Ok(out)
}

/// Writes a row group's columns in schema order.
struct Columns<'g, 'a, W: std::io::Write + Send>(
    &'g mut parquet::file::writer::SerializedRowGroupWriter<'a, W>,
    &'g [&'g Event],
);

impl<W: std::io::Write + Send> Columns<'_, '_, W> {
    fn next(&mut self) -> parquet::errors::Result<SerializedColumnWriter<'_>> {
        self.0.next_column()?.ok_or_else(|| {
            parquet::errors::ParquetError::General("more values than columns".into())
        })
    }

    fn required<T: DataType>(
        &mut self,
        value: impl Fn(&Event) -> T::T,
    ) -> parquet::errors::Result<()> {
        let values: Vec<T::T> = self.1.iter().map(|e| value(e)).collect();
        let mut column = self.next()?;
        column.typed::<T>().write_batch(&values, None, None)?;
        column.close()
    }

    fn optional<T: DataType>(
        &mut self,
        value: impl Fn(&Event) -> Option<T::T>,
    ) -> parquet::errors::Result<()> {
        let mut values = Vec::with_capacity(self.1.len());
        let levels: Vec<i16> = self
            .1
            .iter()
            .map(|e| match value(e) {
                Some(v) => {
                    values.push(v);
                    1
                }
                None => 0,
            })
            .collect();
        let mut column = self.next()?;
        column
            .typed::<T>()
            .write_batch(&values, Some(&levels), None)?;
        column.close()
    }

    fn text(&mut self, value: impl Fn(&Event) -> Option<String>) -> parquet::errors::Result<()> {
        self.optional::<ByteArrayType>(|e| value(e).map(|s| ByteArray::from(s.into_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn a_file_holds_one_row_per_event_with_every_column() {
        let events: Vec<Event> = (1..=3)
            .map(|seq| Event {
                seq,
                message: format!("m{seq}"),
                user_name: (seq != 2).then(|| "root".to_owned()),
                source_port: Some(22),
                labels: [("site".into(), "a".into())].into(),
                ..Event::default()
            })
            .collect();
        let bytes = parquet_file(&events.iter().collect::<Vec<_>>()).unwrap();
        let file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &file, &bytes).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 3);
        let names: Vec<String> = meta
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        assert_eq!(names.len(), 26);
        assert_eq!(&names[..3], ["seq", "id", "timestamp"]);
        let rows: Vec<String> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| row.unwrap().to_string())
            .collect();
        assert!(rows[0].contains("user_name: \"root\""), "{}", rows[0]);
        assert!(rows[1].contains("user_name: null"), "{}", rows[1]);
        assert!(rows[2].contains(r#"labels: "{"site":"a"}""#), "{}", rows[2]);
    }
}
