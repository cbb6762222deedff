//! How the client commands print what they get: a table for people, JSON or CSV for scripts
//! (`--output`). Times are ISO 8601 in UTC in every format, and every string is made safe
//! for a terminal first (see [`crate::terminal`]), whatever the format.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::Value;

use crate::terminal;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns (records one field per line where a row is too wide to read).
    Table,
    /// One JSON array of objects (an object per record).
    Json,
    /// Comma-separated values with a header line.
    Csv,
}

/// Rows as `format`: what a listing prints.
pub fn rows(batches: &[RecordBatch], format: Output) -> Result<String, String> {
    let batches = terminal::safe_batches(batches)?;
    match format {
        Output::Table => {
            if batches.iter().all(|b| b.num_rows() == 0) {
                return Ok("(none)".into());
            }
            let table =
                arrow::util::pretty::pretty_format_batches(&batches).map_err(|e| e.to_string())?;
            Ok(table.to_string())
        }
        Output::Json => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::json::ArrayWriter::new(&mut out);
                for batch in &batches {
                    writer.write(batch).map_err(|e| e.to_string())?;
                }
                writer.finish().map_err(|e| e.to_string())?;
            }
            if out.is_empty() {
                return Ok("[]".into());
            }
            String::from_utf8(out).map_err(|e| e.to_string())
        }
        Output::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.3fZ".into())
                    .build(&mut out);
                for batch in &batches {
                    writer.write(batch).map_err(|e| e.to_string())?;
                }
            }
            Ok(String::from_utf8(out)
                .map_err(|e| e.to_string())?
                .trim_end()
                .to_string())
        }
    }
}

/// Each row as `name | value` lines, one block per row (`psql`'s expanded display): for a
/// record with long values, such as one product.
pub fn vertical(batches: &[RecordBatch]) -> Result<String, String> {
    let batches = terminal::safe_batches(batches)?;
    let options = FormatOptions::default().with_null("");
    let mut blocks = Vec::new();
    for batch in &batches {
        let schema = batch.schema();
        let width = schema
            .fields()
            .iter()
            .map(|f| f.name().len())
            .max()
            .unwrap_or(0);
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            let lines: Vec<String> = schema
                .fields()
                .iter()
                .zip(&formatters)
                .map(|(field, value)| format!("{:width$} | {}", field.name(), value.value(row)))
                .collect();
            blocks.push(lines.join("\n"));
        }
    }
    if blocks.is_empty() {
        return Ok("(none)".into());
    }
    Ok(blocks.join("\n\n"))
}

/// Times in a governance record (epoch milliseconds in the API) as ISO 8601, for people and
/// scripts alike.
pub fn iso_times(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                let is_time = name.ends_with("_at") || name == "valid_until";
                match field.as_i64() {
                    Some(millis) if is_time => {
                        *field = Value::String(meshgate::api::iso8601(millis))
                    }
                    _ => iso_times(field),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(iso_times),
        _ => {}
    }
}

/// A governance record (an action's reply) as `format`: `field | value` lines for people
/// (as [`vertical`] shows a row), the JSON object for scripts, one CSV row under its header.
/// Nested fields are named with dots (`grant.valid_until`).
pub fn record(mut value: Value, format: Output) -> Result<String, String> {
    iso_times(&mut value);
    if format == Output::Json {
        return Ok(terminal::safe_json(
            &serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?,
        ));
    }
    let mut fields = Vec::new();
    flatten("", &value, &mut fields);
    let (names, values): (Vec<_>, Vec<_>) = fields.into_iter().unzip();
    let schema = Schema::new(
        names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    );
    let columns = values
        .into_iter()
        .map(|v| Arc::new(StringArray::from(vec![v])) as ArrayRef)
        .collect();
    let row = RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| e.to_string())?;
    match format {
        Output::Csv => rows(&[row], Output::Csv),
        _ => vertical(&[row]),
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(&key, field, out);
            }
        }
        Value::Null => out.push((prefix.to_string(), String::new())),
        Value::String(text) => out.push((prefix.to_string(), text.clone())),
        Value::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push((prefix.to_string(), items.join(", ")));
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::{Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::TimeUnit;

    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("purpose", DataType::Utf8, true),
            Field::new(
                "created_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![
                    Some("say \"hi\", then\nleave\u{1b}[2J"),
                    None,
                ])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![1_795_953_805_123, 0])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap()
    }

    #[test]
    fn json_parses_with_iso_times_and_no_control_characters() {
        let text = rows(&[batch()], Output::Json).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0]["id"], 1);
        assert_eq!(
            parsed[0]["created_at"].as_str().unwrap(),
            "2026-11-29T12:03:25.123Z"
        );
        assert!(parsed[0]["purpose"].as_str().unwrap().contains("\\u{1b}"));
        assert!(parsed[1].get("purpose").is_none() || parsed[1]["purpose"].is_null());
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert_eq!(rows(&[], Output::Json).unwrap(), "[]");
    }

    #[test]
    fn csv_quotes_and_keeps_one_line_per_row() {
        let text = rows(&[batch()], Output::Csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "id,purpose,created_at");
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[1].starts_with("1,\"say \"\"hi\"\", then\\u{a}leave"),
            "{text}"
        );
        assert!(lines[1].ends_with(",2026-11-29T12:03:25.123Z"), "{text}");
    }

    #[test]
    fn records_show_iso_times_in_every_format() {
        let reply = serde_json::json!({"request": {"id": "req-1", "created_at": 0, "columns": ["a", "b"]},
                                       "grant": {"valid_until": 1_795_953_805_123_i64, "row_filter": null}});
        let table = record(reply.clone(), Output::Table).unwrap();
        assert!(
            table.contains("request.created_at | 1970-01-01T00:00:00.000Z"),
            "{table}"
        );
        assert!(table.contains("request.columns    | a, b"), "{table}");
        let json: Value =
            serde_json::from_str(&record(reply.clone(), Output::Json).unwrap()).unwrap();
        assert_eq!(json["grant"]["valid_until"], "2026-11-29T12:03:25.123Z");
        let csv = record(reply, Output::Csv).unwrap();
        assert_eq!(csv.lines().count(), 2, "{csv}");
    }

    #[test]
    fn vertical_shows_one_field_per_line() {
        let text = vertical(&[batch()]).unwrap();
        assert!(
            text.starts_with("id         | 1\npurpose    | say"),
            "{text}"
        );
        assert!(text.contains("\n\nid         | 2"), "{text}");
    }
}
