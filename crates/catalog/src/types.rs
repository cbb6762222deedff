//! Column types: the manifest's SQL `physicalType` (checked against its ODCS `logicalType`)
//! mapped to the Arrow type the data is read as.

use arrow::datatypes::{DataType, TimeUnit};

/// Parse an ODCS `physicalType` such as `BIGINT`, `VARCHAR(64)`, `DECIMAL(18,2)` or
/// `TIMESTAMP WITH TIME ZONE` into an Arrow type. Timestamps are microseconds; a zoned
/// timestamp is normalised to UTC.
pub fn parse_physical_type(text: &str) -> Result<DataType, String> {
    let normalised = text.trim().to_ascii_uppercase();
    let (base, args) = match normalised.split_once('(') {
        Some((base, rest)) => {
            let args = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("unbalanced parentheses in type `{text}`"))?;
            (base.trim().to_string(), Some(args.to_string()))
        }
        None => (normalised.clone(), None),
    };
    let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
    let no_args = |dt: DataType| -> Result<DataType, String> {
        match &args {
            None => Ok(dt),
            // VARCHAR(n) and friends: the length is documentation only in Arrow.
            Some(_) if matches!(base.as_str(), "VARCHAR" | "CHAR" | "STRING" | "TEXT") => Ok(dt),
            Some(_) => Err(format!("type `{text}` takes no arguments")),
        }
    };
    match base.as_str() {
        "BOOLEAN" | "BOOL" => no_args(DataType::Boolean),
        "TINYINT" => no_args(DataType::Int8),
        "SMALLINT" => no_args(DataType::Int16),
        "INT" | "INTEGER" => no_args(DataType::Int32),
        "BIGINT" => no_args(DataType::Int64),
        "REAL" | "FLOAT" => no_args(DataType::Float32),
        "DOUBLE" | "DOUBLE PRECISION" => no_args(DataType::Float64),
        "VARCHAR" | "CHAR" | "STRING" | "TEXT" => no_args(DataType::Utf8),
        "BINARY" | "VARBINARY" | "BYTEA" => no_args(DataType::Binary),
        "DATE" => no_args(DataType::Date32),
        "TIMESTAMP" | "TIMESTAMP WITHOUT TIME ZONE" => {
            no_args(DataType::Timestamp(TimeUnit::Microsecond, None))
        }
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => no_args(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        )),
        "DECIMAL" | "NUMERIC" => {
            let args = args.ok_or_else(|| {
                format!("`{text}` needs a precision and scale, e.g. DECIMAL(18,2)")
            })?;
            let mut parts = args.split(',').map(str::trim);
            let precision: u8 = parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("bad precision in `{text}`"))?;
            let scale: i8 = match parts.next() {
                Some(s) => s.parse().map_err(|_| format!("bad scale in `{text}`"))?,
                None => 0,
            };
            if parts.next().is_some()
                || precision == 0
                || precision > 38
                || scale < 0
                || scale as u8 > precision
            {
                return Err(format!(
                    "`{text}`: precision must be 1..=38 and 0 <= scale <= precision"
                ));
            }
            Ok(DataType::Decimal128(precision, scale))
        }
        _ => Err(format!(
            "unknown physicalType `{text}` (known: BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, REAL, DOUBLE, \
             VARCHAR, BINARY, DATE, TIMESTAMP, TIMESTAMP WITH TIME ZONE, DECIMAL(p,s))"
        )),
    }
}

/// The ODCS `logicalType` an Arrow type is compatible with.
pub fn logical_type_of(dt: &DataType) -> &'static str {
    match dt {
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "integer",
        DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => "number",
        DataType::Date32 => "date",
        DataType::Timestamp(_, _) => "timestamp",
        _ => "string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_types_the_reference_mesh_uses() {
        assert_eq!(parse_physical_type("BIGINT"), Ok(DataType::Int64));
        assert_eq!(parse_physical_type("varchar(64)"), Ok(DataType::Utf8));
        assert_eq!(
            parse_physical_type("DECIMAL(18, 2)"),
            Ok(DataType::Decimal128(18, 2))
        );
        assert_eq!(parse_physical_type("DATE"), Ok(DataType::Date32));
        assert_eq!(
            parse_physical_type("TIMESTAMP WITH TIME ZONE"),
            Ok(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into())
            ))
        );
        assert_eq!(parse_physical_type("double"), Ok(DataType::Float64));
    }

    #[test]
    fn rejects_what_it_cannot_represent() {
        assert!(parse_physical_type("GEOMETRY").is_err());
        assert!(parse_physical_type("DECIMAL").is_err());
        assert!(parse_physical_type("DECIMAL(2,5)").is_err());
        assert!(parse_physical_type("BIGINT(3)").is_err());
        assert!(parse_physical_type("DECIMAL(18,2").is_err());
    }
}
