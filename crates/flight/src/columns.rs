//! Column metadata for JDBC `ResultSetMetaData`, ODBC `SQLColAttribute` and ADBC
//! `get_objects`: each result or table column carries its catalog, schema, table, SQL type
//! name, precision, scale and remarks as `ARROW:FLIGHT:SQL:*` field metadata.
//!
//! One function describes both what `GetFlightInfo` announces and what `DoGet` sends, so the
//! two schemas are always equal; the same SQL type names are listed by `GetXdbcTypeInfo`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow_flight::sql::XdbcDataType;
use meshgate_catalog::Catalog;
use meshgate_engine::{CATALOG, Column};

use crate::edge::edge_schema;

const CATALOG_NAME: &str = "ARROW:FLIGHT:SQL:CATALOG_NAME";
const SCHEMA_NAME: &str = "ARROW:FLIGHT:SQL:SCHEMA_NAME";
const TABLE_NAME: &str = "ARROW:FLIGHT:SQL:TABLE_NAME";
const TYPE_NAME: &str = "ARROW:FLIGHT:SQL:TYPE_NAME";
const PRECISION: &str = "ARROW:FLIGHT:SQL:PRECISION";
const SCALE: &str = "ARROW:FLIGHT:SQL:SCALE";
const IS_AUTO_INCREMENT: &str = "ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT";
const IS_CASE_SENSITIVE: &str = "ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE";
const IS_READ_ONLY: &str = "ARROW:FLIGHT:SQL:IS_READ_ONLY";
const IS_SEARCHABLE: &str = "ARROW:FLIGHT:SQL:IS_SEARCHABLE";
const REMARKS: &str = "ARROW:FLIGHT:SQL:REMARKS";

/// How a column's Arrow type is presented as SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqlType {
    pub(crate) name: &'static str,
    pub(crate) xdbc: XdbcDataType,
    /// Digits for numbers, fractional-second digits for times (JDBC's `getPrecision`).
    pub(crate) precision: Option<i32>,
    pub(crate) scale: Option<i32>,
}

fn sql(
    name: &'static str,
    xdbc: XdbcDataType,
    precision: Option<i32>,
    scale: Option<i32>,
) -> SqlType {
    SqlType {
        name,
        xdbc,
        precision,
        scale,
    }
}

/// The SQL type of an Arrow type (after the edge mapping: no view types).
pub(crate) fn sql_type(data_type: &DataType) -> SqlType {
    use XdbcDataType as X;
    match data_type {
        DataType::Null => sql("NULL", X::XdbcUnknownType, None, None),
        DataType::Boolean => sql("BOOLEAN", X::XdbcBit, Some(1), None),
        DataType::Int8 => sql("TINYINT", X::XdbcTinyint, Some(3), Some(0)),
        DataType::Int16 | DataType::UInt8 => sql("SMALLINT", X::XdbcSmallint, Some(5), Some(0)),
        DataType::Int32 | DataType::UInt16 => sql("INTEGER", X::XdbcInteger, Some(10), Some(0)),
        DataType::Int64 | DataType::UInt32 => sql("BIGINT", X::XdbcBigint, Some(19), Some(0)),
        DataType::UInt64 => sql("DECIMAL", X::XdbcDecimal, Some(20), Some(0)),
        DataType::Float16 | DataType::Float32 => sql("REAL", X::XdbcReal, Some(24), None),
        DataType::Float64 => sql("DOUBLE", X::XdbcDouble, Some(53), None),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => sql(
            "DECIMAL",
            X::XdbcDecimal,
            Some(i32::from(*p)),
            Some(i32::from(*s)),
        ),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            sql("VARCHAR", X::XdbcVarchar, None, None)
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => sql("VARBINARY", X::XdbcVarbinary, None, None),
        DataType::Date32 | DataType::Date64 => sql("DATE", X::XdbcDate, Some(10), None),
        DataType::Time32(unit) | DataType::Time64(unit) => {
            sql("TIME", X::XdbcTime, None, Some(fraction_digits(unit)))
        }
        DataType::Timestamp(unit, None) => sql(
            "TIMESTAMP",
            X::XdbcTimestamp,
            None,
            Some(fraction_digits(unit)),
        ),
        DataType::Timestamp(unit, Some(_)) => sql(
            "TIMESTAMP WITH TIME ZONE",
            X::XdbcTimestamp,
            None,
            Some(fraction_digits(unit)),
        ),
        DataType::Interval(_) | DataType::Duration(_) => {
            sql("INTERVAL", X::XdbcInterval, None, None)
        }
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::FixedSizeList(_, _) => sql("ARRAY", X::XdbcUnknownType, None, None),
        DataType::Struct(_) => sql("STRUCT", X::XdbcUnknownType, None, None),
        DataType::Map(_, _) => sql("MAP", X::XdbcUnknownType, None, None),
        DataType::Dictionary(_, value) => sql_type(value),
        DataType::RunEndEncoded(_, value) => sql_type(value.data_type()),
        DataType::Union(_, _) => sql("UNION", X::XdbcUnknownType, None, None),
    }
}

fn fraction_digits(unit: &TimeUnit) -> i32 {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    }
}

fn flag(value: bool) -> String {
    // Flight SQL encodes booleans in column metadata as "1" / "0".
    (if value { "1" } else { "0" }).to_string()
}

/// Where a column comes from, when it is a table's column passed through.
pub(crate) struct Origin<'a> {
    pub(crate) schema: &'a str,
    pub(crate) table: &'a str,
}

fn describe_field(field: &Field, origin: Option<&Origin<'_>>, remarks: Option<&str>) -> Field {
    let mut metadata: HashMap<String, String> = field.metadata().clone();
    let sql = sql_type(field.data_type());
    metadata.insert(TYPE_NAME.into(), sql.name.into());
    if let Some(precision) = sql.precision {
        metadata.insert(PRECISION.into(), precision.to_string());
    }
    if let Some(scale) = sql.scale {
        metadata.insert(SCALE.into(), scale.to_string());
    }
    if let Some(origin) = origin {
        metadata.insert(CATALOG_NAME.into(), CATALOG.into());
        metadata.insert(SCHEMA_NAME.into(), origin.schema.into());
        metadata.insert(TABLE_NAME.into(), origin.table.into());
    }
    metadata.insert(IS_AUTO_INCREMENT.into(), flag(false));
    metadata.insert(
        IS_CASE_SENSITIVE.into(),
        flag(matches!(sql.xdbc, XdbcDataType::XdbcVarchar)),
    );
    metadata.insert(IS_READ_ONLY.into(), flag(true));
    metadata.insert(IS_SEARCHABLE.into(), flag(true));
    if let Some(remarks) = remarks.filter(|r| !r.is_empty()) {
        metadata.insert(REMARKS.into(), remarks.into());
    }
    field.clone().with_metadata(metadata)
}

fn column_description(catalog: &Catalog, origin: &Origin<'_>, column: &str) -> Option<String> {
    let (_, table) = catalog.table(origin.schema, origin.table)?;
    table
        .columns
        .iter()
        .find(|c| c.name == column)
        .map(|c| c.description.clone())
}

/// The schema of a statement's result as clients see it: edge types plus column metadata
/// (remarks only in [`table_schema`]), and the query's warnings (a deprecated product it reads) under
/// [`meshgate_engine::WARNINGS_METADATA_KEY`].
pub(crate) fn result_schema(columns: &[Column], warnings: &[String]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|column| {
            let origin = column.table.as_ref().map(|(schema, table)| Origin {
                schema: schema.as_str(),
                table: table.as_str(),
            });
            // No remarks here: the JDBC driver shows a result column's remarks as its label
            // (DBeaver's grid headers would read the descriptions). Tables carry them.
            describe_field(&column.field, origin.as_ref(), None)
        })
        .collect();
    let mut schema = Schema::new(fields);
    if !warnings.is_empty() {
        schema = schema.with_metadata(
            [(
                meshgate_engine::WARNINGS_METADATA_KEY.to_string(),
                warnings.join("\n"),
            )]
            .into(),
        );
    }
    edge_schema(&schema)
}

/// A table's schema as `GetTables` (with `include_schema`) presents it.
pub(crate) fn table_schema(schema: &Schema, origin: &Origin<'_>, catalog: &Catalog) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let remarks = column_description(catalog, origin, field.name());
            describe_field(field, Some(origin), remarks.as_deref())
        })
        .collect();
    edge_schema(&Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_carry_precision_and_scale() {
        let field = describe_field(
            &Field::new("amount", DataType::Decimal128(18, 2), true),
            Some(&Origin {
                schema: "payments",
                table: "transfers",
            }),
            Some("in EUR"),
        );
        let m = field.metadata();
        assert_eq!(m[TYPE_NAME], "DECIMAL");
        assert_eq!(m[PRECISION], "18");
        assert_eq!(m[SCALE], "2");
        assert_eq!(m[CATALOG_NAME], "mesh");
        assert_eq!(m[SCHEMA_NAME], "payments");
        assert_eq!(m[TABLE_NAME], "transfers");
        assert_eq!(m[REMARKS], "in EUR");
        assert_eq!(m[IS_READ_ONLY], "1");
    }

    #[test]
    fn computed_columns_have_a_type_but_no_table() {
        let field = describe_field(&Field::new("n", DataType::Int64, false), None, None);
        assert_eq!(field.metadata()[TYPE_NAME], "BIGINT");
        assert!(!field.metadata().contains_key(TABLE_NAME));
        assert_eq!(sql_type(&DataType::Utf8View).name, "VARCHAR");
    }
}
