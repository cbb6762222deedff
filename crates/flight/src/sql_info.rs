//! What the server tells clients about itself: `GetSqlInfo` and `GetXdbcTypeInfo`.
//!
//! JDBC reads every SqlInfo on the first `DatabaseMetaData` call and Tableau dereferences
//! some of them without checking; ODBC refuses info types it does not get. So every id the
//! Flight SQL spec defines is answered, with values true of meshgate: read-only, no
//! transactions, Substrait plans, DataFusion's SQL dialect and functions.

use std::collections::BTreeMap;

use arrow::compute::can_cast_types;
use arrow::datatypes::{DataType, IntervalUnit, TimeUnit};
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedGroupBy, SqlSupportedResultSetType,
    SqlSupportedSubqueries, SqlSupportedTransaction, SqlSupportedUnions, SqlSupportsConvert,
    SupportedSqlGrammar, XdbcDataType, XdbcDatetimeSubcode,
};
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use meshgate_engine::{Gateway, MAX_STATEMENT_BYTES};

use crate::columns::sql_type;

fn bits(values: &[i32]) -> i32 {
    values.iter().fold(0, |mask, bit| mask | (1 << bit))
}

/// Which functions of DataFusion's documentation sections go in which JDBC list.
fn function_lists(functions: &[(String, String)]) -> [Vec<String>; 4] {
    let mut numeric = Vec::new();
    let mut string = Vec::new();
    let mut datetime = Vec::new();
    let mut system = Vec::new();
    for (name, section) in functions {
        let list = match section.as_str() {
            "Math Functions" => &mut numeric,
            "String Functions" | "Regular Expression Functions" | "Binary String Functions" => {
                &mut string
            }
            "Time and Date Functions" => &mut datetime,
            _ => &mut system,
        };
        list.push(name.to_uppercase());
    }
    [numeric, string, datetime, system]
}

/// SQL type -> the Arrow type meshgate holds it as, for the supports-convert map.
fn convert_types() -> Vec<(SqlSupportsConvert, DataType)> {
    use SqlSupportsConvert as C;
    vec![
        (C::SqlConvertBigint, DataType::Int64),
        (C::SqlConvertBinary, DataType::Binary),
        (C::SqlConvertBit, DataType::Boolean),
        (C::SqlConvertChar, DataType::Utf8),
        (C::SqlConvertDate, DataType::Date32),
        (C::SqlConvertDecimal, DataType::Decimal128(38, 10)),
        (C::SqlConvertFloat, DataType::Float32),
        (C::SqlConvertInteger, DataType::Int32),
        (
            C::SqlConvertIntervalDayTime,
            DataType::Interval(IntervalUnit::DayTime),
        ),
        (
            C::SqlConvertIntervalYearMonth,
            DataType::Interval(IntervalUnit::YearMonth),
        ),
        (C::SqlConvertLongvarbinary, DataType::LargeBinary),
        (C::SqlConvertLongvarchar, DataType::LargeUtf8),
        (C::SqlConvertNumeric, DataType::Decimal128(38, 10)),
        (C::SqlConvertReal, DataType::Float32),
        (C::SqlConvertSmallint, DataType::Int16),
        (C::SqlConvertTime, DataType::Time64(TimeUnit::Microsecond)),
        (
            C::SqlConvertTimestamp,
            DataType::Timestamp(TimeUnit::Microsecond, None),
        ),
        (C::SqlConvertTinyint, DataType::Int8),
        (C::SqlConvertVarbinary, DataType::Binary),
        (C::SqlConvertVarchar, DataType::Utf8),
    ]
}

/// `CAST(x AS t)` support, from the casts Arrow (and so DataFusion) implements.
fn supports_convert() -> BTreeMap<i32, Vec<i32>> {
    let types = convert_types();
    types
        .iter()
        .map(|(from, from_type)| {
            let to: Vec<i32> = types
                .iter()
                .filter(|(_, to_type)| can_cast_types(from_type, to_type))
                .map(|(to, _)| *to as i32)
                .collect();
            (*from as i32, to)
        })
        .collect()
}

/// The full SqlInfo set.
pub(crate) fn sql_info(gateway: &Gateway) -> Result<SqlInfoData, FlightError> {
    let mut info = SqlInfoDataBuilder::new();
    // Server
    info.append(SqlInfo::FlightSqlServerName, "meshgate");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, "59.3.0");
    info.append(SqlInfo::FlightSqlServerReadOnly, true);
    info.append(SqlInfo::FlightSqlServerSql, true);
    // Substrait plans are accepted at the version DataFusion's consumer reads.
    let substrait = meshgate_engine::substrait_version();
    info.append(SqlInfo::FlightSqlServerSubstrait, true);
    info.append(
        SqlInfo::FlightSqlServerSubstraitMinVersion,
        substrait.as_str(),
    );
    info.append(
        SqlInfo::FlightSqlServerSubstraitMaxVersion,
        substrait.as_str(),
    );
    info.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    info.append(SqlInfo::FlightSqlServerCancel, true);
    info.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    info.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    // Handles are stateless and never time out; queries do, per the gateway's limits.
    let timeout_ms = gateway
        .limits()
        .timeout
        .map(|t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX))
        .unwrap_or(0);
    info.append(SqlInfo::FlightSqlServerStatementTimeout, timeout_ms);
    info.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);

    // DDL: none, the gateway is read-only.
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, false);
    info.append(SqlInfo::SqlDdlTable, false);
    // DataFusion folds unquoted identifiers to lower case and keeps quoted ones as written.
    info.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    // Every table a caller is shown, the caller may select from (listings are per caller).
    info.append(SqlInfo::SqlAllTablesAreSelectable, true);
    info.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    let keywords: Vec<String> = ALL_KEYWORDS.iter().map(|k| k.to_string()).collect();
    info.append(SqlInfo::SqlKeywords, keywords);
    let [numeric, string, datetime, system] = function_lists(&gateway.sql_functions());
    info.append(SqlInfo::SqlNumericFunctions, numeric);
    info.append(SqlInfo::SqlStringFunctions, string);
    info.append(SqlInfo::SqlSystemFunctions, system);
    info.append(SqlInfo::SqlDatetimeFunctions, datetime);
    info.append(SqlInfo::SqlSearchStringEscape, "\\");
    info.append(SqlInfo::SqlExtraNameCharacters, "");
    info.append(SqlInfo::SqlSupportsColumnAliasing, true);
    info.append(SqlInfo::SqlNullPlusNullIsNull, true);
    info.append(SqlInfo::SqlSupportsConvert, supports_convert());
    info.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    info.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    info.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    info.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    info.append(
        SqlInfo::SqlSupportedGroupBy,
        bits(&[SqlSupportedGroupBy::SqlGroupByUnrelated as i32]),
    );
    info.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    info.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    info.append(
        SqlInfo::SqlSupportedGrammar,
        bits(&[
            SupportedSqlGrammar::SqlMinimumGrammar as i32,
            SupportedSqlGrammar::SqlCoreGrammar as i32,
        ]),
    );
    info.append(
        SqlInfo::SqlAnsi92SupportedLevel,
        // SupportedAnsi92SqlGrammarLevel::Ansi92EntrySql (not exported by arrow-rs).
        bits(&[0]),
    );
    info.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    info.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    info.append(SqlInfo::SqlSchemaTerm, "schema");
    info.append(SqlInfo::SqlProcedureTerm, "procedure");
    info.append(SqlInfo::SqlCatalogTerm, "catalog");
    info.append(SqlInfo::SqlCatalogAtStart, true);
    info.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    info.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    info.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    info.append(SqlInfo::SqlSelectForUpdateSupported, false);
    info.append(SqlInfo::SqlStoredProceduresSupported, false);
    info.append(
        SqlInfo::SqlSupportedSubqueries,
        bits(&[
            SqlSupportedSubqueries::SqlSubqueriesInComparisons as i32,
            SqlSupportedSubqueries::SqlSubqueriesInExists as i32,
            SqlSupportedSubqueries::SqlSubqueriesInIns as i32,
        ]),
    );
    info.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    info.append(
        SqlInfo::SqlSupportedUnions,
        bits(&[
            SqlSupportedUnions::SqlUnion as i32,
            SqlSupportedUnions::SqlUnionAll as i32,
        ]),
    );
    // Limits: 0 means "no fixed limit"; the statement length is the one we enforce.
    for id in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        info.append(id, 0i64);
    }
    info.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, true);
    info.append(SqlInfo::SqlMaxStatementLength, MAX_STATEMENT_BYTES as i64);
    // Transactions: none (SqlTransactionIsolationLevel::SqlTransactionNone = 0).
    // An int64 in the spec; JDBC casts it to Long and failed on the int32 once sent here.
    info.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
    info.append(SqlInfo::SqlTransactionsSupported, false);
    info.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    info.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    info.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
    info.append(
        SqlInfo::SqlSupportedResultSetTypes,
        bits(&[SqlSupportedResultSetType::SqlResultSetTypeForwardOnly as i32]),
    );
    // Read-only result sets (SqlSupportedResultSetConcurrency::ReadOnly = 1).
    for id in [
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
    ] {
        info.append(id, bits(&[1]));
    }
    info.append(SqlInfo::SqlBatchUpdatesSupported, false);
    info.append(SqlInfo::SqlSavepointsSupported, false);
    info.append(SqlInfo::SqlNamedParametersSupported, false);
    info.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    info.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    info.build()
}

/// One XDBC type row for a SQL type meshgate returns.
fn xdbc(data_type: DataType, column_size: Option<i32>, prefix: Option<&str>) -> XdbcTypeInfo {
    let sql = sql_type(&data_type);
    let is_number = matches!(
        sql.xdbc,
        XdbcDataType::XdbcTinyint
            | XdbcDataType::XdbcSmallint
            | XdbcDataType::XdbcInteger
            | XdbcDataType::XdbcBigint
            | XdbcDataType::XdbcReal
            | XdbcDataType::XdbcDouble
            | XdbcDataType::XdbcDecimal
    );
    let datetime_subcode = match sql.xdbc {
        XdbcDataType::XdbcTime => Some(XdbcDatetimeSubcode::XdbcSubcodeTime),
        XdbcDataType::XdbcTimestamp => Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        _ => None,
    };
    let sql_data_type = match sql.xdbc {
        // ODBC's verbose type for all date/time types is SQL_DATETIME.
        XdbcDataType::XdbcDate | XdbcDataType::XdbcTime | XdbcDataType::XdbcTimestamp => {
            XdbcDataType::XdbcDatetime
        }
        other => other,
    };
    let quoted = prefix.map(|p| p.to_string());
    XdbcTypeInfo {
        type_name: sql.name.to_string(),
        data_type: sql.xdbc,
        column_size: column_size.or(sql.precision),
        literal_prefix: quoted.clone(),
        literal_suffix: quoted.map(|_| "'".to_string()),
        create_params: matches!(sql.xdbc, XdbcDataType::XdbcDecimal)
            .then(|| vec!["precision".to_string(), "scale".to_string()]),
        nullable: Nullable::NullabilityNullable,
        case_sensitive: matches!(sql.xdbc, XdbcDataType::XdbcVarchar),
        searchable: Searchable::Full,
        unsigned_attribute: is_number.then_some(false),
        fixed_prec_scale: false,
        auto_increment: is_number.then_some(false),
        local_type_name: Some(sql.name.to_string()),
        minimum_scale: sql.scale.map(|_| 0),
        maximum_scale: match sql.xdbc {
            XdbcDataType::XdbcDecimal => Some(38),
            XdbcDataType::XdbcTime | XdbcDataType::XdbcTimestamp => Some(9),
            _ => sql.scale,
        },
        sql_data_type,
        datetime_subcode,
        num_prec_radix: is_number.then_some(10),
        interval_precision: None,
    }
}

/// The SQL types meshgate returns, for ODBC `SQLGetTypeInfo` and Power BI.
pub(crate) fn xdbc_type_info() -> Result<XdbcTypeInfoData, FlightError> {
    let mut builder = XdbcTypeInfoDataBuilder::new();
    for info in [
        xdbc(DataType::Boolean, Some(1), None),
        xdbc(DataType::Int8, None, None),
        xdbc(DataType::Int16, None, None),
        xdbc(DataType::Int32, None, None),
        xdbc(DataType::Int64, None, None),
        xdbc(DataType::Float32, None, None),
        xdbc(DataType::Float64, None, None),
        xdbc(DataType::Decimal128(38, 0), Some(38), None),
        xdbc(DataType::Utf8, Some(i32::MAX), Some("'")),
        xdbc(DataType::Binary, Some(i32::MAX), Some("X'")),
        xdbc(DataType::Date32, None, Some("DATE '")),
        xdbc(
            DataType::Time64(TimeUnit::Nanosecond),
            Some(18),
            Some("TIME '"),
        ),
        xdbc(
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            Some(29),
            Some("TIMESTAMP '"),
        ),
        xdbc(
            DataType::Interval(IntervalUnit::MonthDayNano),
            None,
            Some("INTERVAL '"),
        ),
    ] {
        builder.append(info);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_are_what_arrow_implements() {
        let map = supports_convert();
        let varchar = SqlSupportsConvert::SqlConvertVarchar as i32;
        let bigint = SqlSupportsConvert::SqlConvertBigint as i32;
        let date = SqlSupportsConvert::SqlConvertDate as i32;
        assert!(map[&bigint].contains(&varchar));
        assert!(map[&varchar].contains(&date));
        assert_eq!(map.len(), 20);
    }

    #[test]
    fn every_xdbc_type_is_listed_once() {
        let data = xdbc_type_info().unwrap();
        let batch = data.record_batch(None).unwrap();
        assert_eq!(batch.num_rows(), 14);
        let varchar = data
            .record_batch(Some(XdbcDataType::XdbcVarchar as i32))
            .unwrap();
        assert_eq!(varchar.num_rows(), 1);
    }
}
