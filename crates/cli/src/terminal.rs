//! What the CLI prints is safe for a terminal. Request purposes, comments, product
//! descriptions and error messages are other people's text; a control character in them
//! (an escape sequence above all) could move the cursor, clear the screen or rewrite the
//! line an owner reads before approving. Every control character but a line break in our
//! own output is shown as its escape (`\u{1b}`), and inside table cells line breaks too.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};

/// `text` with every control character except `\n` escaped.
pub fn safe(text: &str) -> String {
    escape(text, |c| c == '\n')
}

/// `text` with every control character escaped, line breaks included (a table cell).
pub fn safe_cell(text: &str) -> String {
    escape(text, |_| false)
}

/// JSON text (from a serializer, which escapes C0 controls already) with the characters a
/// terminal acts on escaped the JSON way (`\u009b`), so it stays JSON.
pub fn safe_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && dangerous(c, |_| false) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn dangerous(c: char, keep: impl Fn(char) -> bool) -> bool {
    // C0, DEL and the C1 controls (U+0080-U+009F, which some terminals act on alone),
    // and the bidirectional overrides that reorder what is shown.
    (c.is_control() && !keep(c))
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if dangerous(c, &keep) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// `batches` with every string cell made safe (see [`safe_cell`]).
pub fn safe_batches(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, String> {
    batches
        .iter()
        .map(|batch| {
            let mut fields = Vec::with_capacity(batch.num_columns());
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                if matches!(
                    field.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) {
                    let text = cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
                    let text = text
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or("a text column that is not text")?;
                    let escaped: StringArray = text.iter().map(|v| v.map(safe_cell)).collect();
                    fields.push(Field::new(
                        field.name(),
                        DataType::Utf8,
                        field.is_nullable(),
                    ));
                    columns.push(Arc::new(escaped));
                } else {
                    fields.push(field.as_ref().clone());
                    columns.push(Arc::clone(column));
                }
            }
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        let purpose = "audit\u{1b}[2J\u{1b}[1;1Happroved by cfo\u{9b}31m\r\u{7}";
        let shown = safe(purpose);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown}");
        assert_eq!(safe("two\nlines"), "two\nlines");
        assert_eq!(safe_cell("two\nlines"), "two\\u{a}lines");
        assert_eq!(
            safe("right-to-left \u{202e}txt.exe"),
            "right-to-left \\u{202e}txt.exe"
        );
        assert_eq!(safe("plain ünïcode"), "plain ünïcode");
        let json = safe_json("{\"a\": \"x\u{9b}31m\u{202e}y\"}");
        assert_eq!(json, "{\"a\": \"x\\u009b31m\\u202ey\"}");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["a"], "x\u{9b}31m\u{202e}y");
    }
}
