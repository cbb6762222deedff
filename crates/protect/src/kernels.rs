//! The protection kernels: each takes one Arrow array and returns the protected array.
//!
//! String arrays keep their physical type (`Utf8`, `LargeUtf8`, `Utf8View`); dictionary arrays
//! are protected once per distinct value and keep their keys. Nulls stay null.

use std::sync::Arc;

use arrow::array::builder::make_view;
use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, GenericStringArray, LargeStringBuilder, OffsetSizeTrait,
    StringBuilder, StringViewArray, StringViewBuilder, new_null_array,
};
use arrow::buffer::{Buffer, OffsetBuffer};
use arrow::compute::cast;
use arrow::datatypes::{
    ArrowTimestampType, DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow::error::ArrowError;
use chrono::{Datelike, NaiveDate};
use sha2::{Digest, Sha256};

use crate::keys::TokenKey;
use crate::token::{TOKEN_LEN, TokenHasher};

/// The prefix every token starts with.
pub const TOKEN_PREFIX: &str = "tok_";

/// How a masked column is rewritten. Masks are one-way and need no key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MaskKind {
    /// `alice@example.com` -> `***@example.com`
    Email,
    /// Every character but the last four becomes `*`; the length is kept.
    ShowLast4,
    /// Every character but the first four becomes `*`; the length is kept.
    ShowFirst4,
    /// Lower-case hex SHA-256 of the value's text. Unkeyed: guessable values can be confirmed
    /// by anyone, so use `tokenize` for low-entropy identifiers.
    Hash,
    /// Always null.
    Null,
    /// Replaced by a constant (`REDACTED` unless given).
    Redact(String),
    /// Dates and timestamps keep their year only (January 1st, midnight).
    YearOnly,
}

impl MaskKind {
    /// Every mask kind's name as written in policy files.
    pub const NAMES: &'static [&'static str] = &[
        "email",
        "show-last-4",
        "show-first-4",
        "hash",
        "null",
        "redact",
        "year-only",
    ];

    /// Parse a policy's `mask(<name>[, '<argument>'])`; only `redact` takes an argument.
    pub fn parse(name: &str, argument: Option<&str>) -> Result<Self, String> {
        let kind = match name {
            "email" => Self::Email,
            "show-last-4" => Self::ShowLast4,
            "show-first-4" => Self::ShowFirst4,
            "hash" => Self::Hash,
            "null" => Self::Null,
            "redact" => Self::Redact(argument.unwrap_or("REDACTED").to_string()),
            "year-only" => Self::YearOnly,
            other => {
                return Err(format!(
                    "unknown mask kind `{other}` (known: {})",
                    Self::NAMES.join(", ")
                ));
            }
        };
        if argument.is_some() && !matches!(kind, Self::Redact(_)) {
            return Err(format!("mask `{name}` takes no argument"));
        }
        Ok(kind)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::ShowLast4 => "show-last-4",
            Self::ShowFirst4 => "show-first-4",
            Self::Hash => "hash",
            Self::Null => "null",
            Self::Redact(_) => "redact",
            Self::YearOnly => "year-only",
        }
    }

    /// The type a masked column has, or why this mask cannot apply to `input`.
    pub fn output_type(&self, input: &DataType) -> Result<DataType, String> {
        match self {
            Self::Email | Self::ShowLast4 | Self::ShowFirst4 | Self::Redact(_) => {
                if is_string_like(input) {
                    Ok(input.clone())
                } else {
                    Err(format!(
                        "mask `{}` applies to string columns, not {input}",
                        self.name()
                    ))
                }
            }
            Self::Hash => Ok(if is_string_like(input) {
                input.clone()
            } else {
                DataType::Utf8
            }),
            Self::Null => Ok(input.clone()),
            Self::YearOnly => match input {
                DataType::Date32 | DataType::Timestamp(_, _) => Ok(input.clone()),
                other => Err(format!(
                    "mask `year-only` applies to DATE and TIMESTAMP columns, not {other}"
                )),
            },
        }
    }

    /// Apply the mask.
    pub fn apply(&self, array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
        match self {
            Self::Email => map_strings(array, |value, out| {
                out.push_str("***");
                if let Some(at) = value.rfind('@') {
                    out.push_str(&value[at..]);
                }
            }),
            Self::ShowLast4 => map_strings(array, |value, out| {
                let keep_from = value.chars().count().saturating_sub(4);
                for (i, c) in value.chars().enumerate() {
                    out.push(if i < keep_from { '*' } else { c });
                }
            }),
            Self::ShowFirst4 => map_strings(array, |value, out| {
                for (i, c) in value.chars().enumerate() {
                    out.push(if i < 4 { c } else { '*' });
                }
            }),
            Self::Redact(constant) => map_strings(array, |_, out| out.push_str(constant)),
            Self::Hash => {
                let array = to_text(array)?;
                map_strings(&array, |value, out| {
                    out.push_str(&hex::encode(Sha256::digest(value.as_bytes())));
                })
            }
            Self::Null => Ok(new_null_array(array.data_type(), array.len())),
            Self::YearOnly => year_only(array),
        }
    }
}

/// Keyed, deterministic tokenization: `tok_` + URL-safe base64 (no padding) of
/// HMAC-SHA256(domain key, value). Non-string values are tokenized by their Arrow text form.
pub fn tokenize(key: &TokenKey, array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    // The key's pad blocks are hashed once per batch, not per value (see token.rs).
    let hasher = TokenHasher::new(key.bytes());
    tokens_of(&hasher, &to_text(array)?)
}

/// Tokens of a string or dictionary-of-string array, keeping its type: every token is
/// written once, into the output's own values buffer.
fn tokens_of(hasher: &TokenHasher, array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    match array.data_type() {
        DataType::Utf8 => Ok(Arc::new(token_strings(hasher, array.as_string::<i32>())?)),
        DataType::LargeUtf8 => Ok(Arc::new(token_strings(hasher, array.as_string::<i64>())?)),
        DataType::Utf8View => {
            let input = array.as_string_view();
            let values = token_buffer(hasher, input.iter(), input.null_count())?;
            let mut at = 0usize;
            let mut views = Vec::with_capacity(input.len());
            for valid in input.iter().map(|v| v.is_some()) {
                views.push(match (valid, values.get(at..at + TOKEN_LEN)) {
                    (true, Some(token)) => {
                        let offset = u32::try_from(at).map_err(|_| too_large(input.len()))?;
                        at += TOKEN_LEN;
                        make_view(token, 0, offset)
                    }
                    _ => 0,
                });
            }
            Ok(Arc::new(StringViewArray::try_new(
                views.into(),
                vec![Buffer::from_vec(values)],
                input.nulls().cloned(),
            )?))
        }
        DataType::Dictionary(_, _) => {
            // One token per distinct value; the keys (row -> value) stay as they are.
            let dictionary = array.as_any_dictionary();
            Ok(dictionary.with_values(tokens_of(hasher, dictionary.values())?))
        }
        other => Err(ArrowError::InvalidArgumentError(format!(
            "expected a string column, found {other}"
        ))),
    }
}

fn token_strings<O: OffsetSizeTrait>(
    hasher: &TokenHasher,
    input: &GenericStringArray<O>,
) -> Result<GenericStringArray<O>, ArrowError> {
    let values = token_buffer(hasher, input.iter(), input.null_count())?;
    O::from_usize(values.len()).ok_or_else(|| too_large(input.len()))?;
    let mut end = 0usize;
    let mut offsets = Vec::with_capacity(input.len() + 1);
    offsets.push(O::usize_as(0));
    for valid in input.iter().map(|v| v.is_some()) {
        end += if valid { TOKEN_LEN } else { 0 };
        // At most `values.len()`, which fits `O`.
        offsets.push(O::usize_as(end));
    }
    GenericStringArray::try_new(
        OffsetBuffer::new(offsets.into()),
        Buffer::from_vec(values),
        input.nulls().cloned(),
    )
}

/// The tokens of the non-null `values`, one after another.
fn token_buffer<'a>(
    hasher: &TokenHasher,
    values: impl ExactSizeIterator<Item = Option<&'a str>>,
    nulls: usize,
) -> Result<Vec<u8>, ArrowError> {
    let count = values.len().saturating_sub(nulls);
    let total = count
        .checked_mul(TOKEN_LEN)
        .ok_or_else(|| too_large(count))?;
    let mut out = vec![0u8; total];
    hasher.tokens(values.flatten().map(str::as_bytes), &mut out);
    Ok(out)
}

fn too_large(values: usize) -> ArrowError {
    ArrowError::ComputeError(format!(
        "{values} values are too many to tokenize into one array; use smaller batches"
    ))
}

/// The type of a tokenized column.
pub fn tokenized_type(input: &DataType) -> DataType {
    if is_string_like(input) {
        input.clone()
    } else {
        DataType::Utf8
    }
}

fn is_string_like(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => matches!(
            **values,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        _ => false,
    }
}

/// Strings stay as they are; everything else becomes its Arrow text form (`Utf8`).
fn to_text(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    if is_string_like(array.data_type()) {
        Ok(Arc::clone(array))
    } else {
        cast(array, &DataType::Utf8)
    }
}

/// Rewrite every non-null string of a string or dictionary-of-string array, keeping its type.
fn map_strings(
    array: &ArrayRef,
    mut f: impl FnMut(&str, &mut String),
) -> Result<ArrayRef, ArrowError> {
    match array.data_type() {
        DataType::Utf8 => {
            let input = array.as_string::<i32>();
            let mut builder = StringBuilder::with_capacity(input.len(), input.value_data().len());
            map_values(input.iter(), &mut f, |v| builder.append_option(v));
            Ok(Arc::new(builder.finish()))
        }
        DataType::LargeUtf8 => {
            let input = array.as_string::<i64>();
            let mut builder =
                LargeStringBuilder::with_capacity(input.len(), input.value_data().len());
            map_values(input.iter(), &mut f, |v| builder.append_option(v));
            Ok(Arc::new(builder.finish()))
        }
        DataType::Utf8View => {
            let input = array.as_string_view();
            let mut builder = StringViewBuilder::with_capacity(input.len());
            map_values(input.iter(), &mut f, |v| builder.append_option(v));
            Ok(Arc::new(builder.finish()))
        }
        DataType::Dictionary(_, _) => {
            // Protect each distinct value once; the keys (row -> value) stay as they are.
            let dictionary = array.as_any_dictionary();
            let values = map_strings(dictionary.values(), f)?;
            Ok(dictionary.with_values(values))
        }
        other => Err(ArrowError::InvalidArgumentError(format!(
            "expected a string column, found {other}"
        ))),
    }
}

/// `f` over every value into one reused buffer, each result handed to `append` (which copies
/// it into the output): no allocation per value.
fn map_values<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    f: &mut impl FnMut(&str, &mut String),
    mut append: impl FnMut(Option<&str>),
) {
    let mut scratch = String::new();
    for value in values {
        match value {
            Some(v) => {
                scratch.clear();
                f(v, &mut scratch);
                append(Some(&scratch));
            }
            None => append(None),
        }
    }
}

fn year_only(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)
        .ok_or_else(|| ArrowError::ComputeError("epoch".into()))?;
    let jan_first = |date: NaiveDate| NaiveDate::from_ymd_opt(date.year(), 1, 1);
    match array.data_type() {
        DataType::Date32 => {
            let input = array.as_primitive::<arrow::datatypes::Date32Type>();
            let out: Date32Array = input.unary_opt(|days| {
                let date = epoch.checked_add_signed(chrono::Duration::days(i64::from(days)))?;
                i32::try_from(jan_first(date)?.signed_duration_since(epoch).num_days()).ok()
            });
            Ok(Arc::new(out))
        }
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => Ok(timestamp_year::<TimestampSecondType>(array, 1)),
            TimeUnit::Millisecond => Ok(timestamp_year::<TimestampMillisecondType>(array, 1_000)),
            TimeUnit::Microsecond => {
                Ok(timestamp_year::<TimestampMicrosecondType>(array, 1_000_000))
            }
            TimeUnit::Nanosecond => Ok(timestamp_year::<TimestampNanosecondType>(
                array,
                1_000_000_000,
            )),
        },
        other => Err(ArrowError::InvalidArgumentError(format!(
            "year-only needs a date or timestamp, found {other}"
        ))),
    }
}

/// Truncate timestamps (in UTC) to midnight of January 1st of their year.
fn timestamp_year<T: ArrowTimestampType>(array: &ArrayRef, per_second: i64) -> ArrayRef {
    let input = array.as_primitive::<T>();
    let out = input.unary_opt::<_, T>(|value| {
        let seconds = value.div_euclid(per_second);
        let date = chrono::DateTime::from_timestamp(seconds, 0)?.date_naive();
        let start = NaiveDate::from_ymd_opt(date.year(), 1, 1)?
            .and_hms_opt(0, 0, 0)?
            .and_utc();
        start.timestamp().checked_mul(per_second)
    });
    Arc::new(out.with_timezone_opt(input.timezone().map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        DictionaryArray, Int64Array, StringArray, StringViewArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::Int32Type;

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn texts(array: &ArrayRef) -> Vec<Option<String>> {
        let array = cast(array, &DataType::Utf8).unwrap();
        array
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn string_masks_follow_the_reference_definitions() {
        let emails = strings(&[
            Some("ops.17@northwind-holdings.example"),
            Some("no-at-sign"),
            None,
        ]);
        assert_eq!(
            texts(&MaskKind::Email.apply(&emails).unwrap()),
            vec![
                Some("***@northwind-holdings.example".into()),
                Some("***".into()),
                None
            ]
        );
        let cards = strings(&[Some("4111222233334444"), Some("123")]);
        assert_eq!(
            texts(&MaskKind::ShowLast4.apply(&cards).unwrap()),
            vec![Some("************4444".into()), Some("123".into())]
        );
        assert_eq!(
            texts(&MaskKind::ShowFirst4.apply(&cards).unwrap())[0].as_deref(),
            Some("4111************")
        );
        assert_eq!(
            texts(&MaskKind::Redact("n/a".into()).apply(&cards).unwrap())[1].as_deref(),
            Some("n/a")
        );
        let hashed = texts(&MaskKind::Hash.apply(&cards).unwrap());
        assert_eq!(
            hashed[1].as_deref(),
            Some("a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3")
        );
        assert_eq!(MaskKind::Null.apply(&cards).unwrap().null_count(), 2);
    }

    #[test]
    fn masks_keep_the_string_type() {
        let view: ArrayRef = Arc::new(StringViewArray::from(vec![Some("abcdefgh")]));
        let masked = MaskKind::ShowLast4.apply(&view).unwrap();
        assert_eq!(masked.data_type(), &DataType::Utf8View);
        assert_eq!(
            MaskKind::ShowLast4
                .output_type(&DataType::Utf8View)
                .unwrap(),
            DataType::Utf8View
        );
        assert!(MaskKind::Email.output_type(&DataType::Int64).is_err());
        assert!(MaskKind::YearOnly.output_type(&DataType::Utf8).is_err());
    }

    #[test]
    fn year_only_truncates_dates_and_timestamps() {
        // 2021-07-15 is day 18823; 2021-01-01 is day 18628.
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![Some(18823), None, Some(-1)]));
        let out = MaskKind::YearOnly.apply(&dates).unwrap();
        let out = out.as_primitive::<arrow::datatypes::Date32Type>();
        assert_eq!(out.value(0), 18628);
        assert!(out.is_null(1));
        assert_eq!(out.value(2), -365); // 1969-12-31 -> 1969-01-01
        let ts: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![1_626_307_200_000_000i64]).with_timezone("UTC"),
        );
        let out = MaskKind::YearOnly.apply(&ts).unwrap();
        assert_eq!(out.data_type(), ts.data_type());
        assert_eq!(
            out.as_primitive::<TimestampMicrosecondType>().value(0),
            1_609_459_200_000_000
        );
    }

    #[test]
    fn tokens_are_deterministic_keyed_and_never_the_clear_value() {
        let master = crate::MasterKey::demo();
        let values = strings(&[
            Some("12-3456789"),
            Some("12-3456789"),
            Some("98-7654321"),
            None,
        ]);
        let a = texts(&tokenize(&master.token_key("reference"), &values).unwrap());
        let b = texts(&tokenize(&master.token_key("payments"), &values).unwrap());
        assert_eq!(a[0], a[1]);
        assert_ne!(a[0], a[2]);
        assert_ne!(a[0], b[0], "different token domains must not link");
        assert_eq!(a[3], None);
        let token = a[0].clone().unwrap();
        assert!(
            token.starts_with(TOKEN_PREFIX) && token.len() == 4 + 43,
            "{token}"
        );
        assert!(!token.contains("3456789"));
    }

    /// Each string layout keeps its type and nulls and gives the same token per row, for
    /// short values (four lanes at a time), long ones (one by one) and nulls in between,
    /// including arrays sliced from a larger one.
    #[test]
    fn every_string_layout_gives_the_same_tokens_per_row() {
        use arrow::array::LargeStringArray;
        let long = "x".repeat(200);
        let values: Vec<Option<&str>> = (0..23)
            .map(|i| match i % 5 {
                0 => None,
                1 => Some(long.as_str()),
                2 => Some(""),
                _ => Some(["a", "bb", "ccc", "Customer#000000042"][i % 4]),
            })
            .collect();
        use base64::Engine;
        let key = crate::MasterKey::demo().token_key("layouts");
        let hasher = TokenHasher::new(key.bytes());
        let expected: Vec<Option<String>> = values
            .iter()
            .map(|v| {
                let mac = hasher.mac((*v)?.as_bytes());
                let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac);
                Some(format!("{TOKEN_PREFIX}{text}"))
            })
            .collect();
        let dictionary: DictionaryArray<Int32Type> = values.iter().copied().collect();
        let layouts: Vec<ArrayRef> = vec![
            strings(&values),
            Arc::new(LargeStringArray::from(values.clone())),
            Arc::new(StringViewArray::from(values.clone())),
            Arc::new(dictionary),
        ];
        for array in layouts {
            let out = tokenize(&key, &array).unwrap();
            assert_eq!(out.data_type(), array.data_type());
            assert_eq!(texts(&out), expected, "{}", array.data_type());
            let sliced = tokenize(&key, &array.slice(3, 11)).unwrap();
            assert_eq!(
                texts(&sliced),
                expected[3..14],
                "{} sliced",
                array.data_type()
            );
        }
    }

    #[test]
    fn dictionary_arrays_are_tokenized_per_distinct_value() {
        let master = crate::MasterKey::demo();
        let dict: DictionaryArray<Int32Type> = vec!["a", "b", "a", "a"].into_iter().collect();
        let dict: ArrayRef = Arc::new(dict);
        let out = tokenize(&master.token_key("x"), &dict).unwrap();
        assert_eq!(out.data_type(), dict.data_type());
        assert_eq!(
            out.as_any_dictionary().values().len(),
            2,
            "one token per distinct value"
        );
        let flat = texts(&out);
        assert_eq!(flat[0], flat[2]);
        assert_eq!(
            flat[0],
            texts(&tokenize(&master.token_key("x"), &strings(&[Some("a")])).unwrap())[0]
        );
    }

    #[test]
    fn numbers_tokenize_by_their_text() {
        let master = crate::MasterKey::demo();
        let numbers: ArrayRef = Arc::new(Int64Array::from(vec![42]));
        let as_text = strings(&[Some("42")]);
        let key = master.token_key("x");
        assert_eq!(
            texts(&tokenize(&key, &numbers).unwrap()),
            texts(&tokenize(&key, &as_text).unwrap())
        );
        assert_eq!(tokenized_type(&DataType::Int64), DataType::Utf8);
    }
}
