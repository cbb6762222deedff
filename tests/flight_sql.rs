//! Every Flight SQL command a client may send, through arrow-flight's own
//! `FlightSqlServiceClient`, against the reference mesh: the call sequence the Arrow Flight
//! SQL JDBC driver makes, every metadata command, statements, prepared statements with both
//! placeholder styles and several parameter rows, session options, cancellation, and the
//! refusals of a read-only server.

use crate::support::flight as support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::array_value_to_string;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, Any, CommandGetCrossReference, CommandGetDbSchemas,
    CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandStatementIngest,
    CommandStatementSubstraitPlan, ProstMessageExt, SqlInfo, SubstraitPlan,
};
use arrow_flight::{Action, CancelStatus, FlightDescriptor, FlightInfo};
use futures::TryStreamExt;
use meshgate::flight::{
    CloseSessionRequest, CloseSessionResult, CloseSessionStatus, GetSessionOptionsRequest,
    GetSessionOptionsResult, OptionValue, SessionOptionValue, SetSessionOptionsErrorValue,
    SetSessionOptionsRequest, SetSessionOptionsResult,
};
use prost::Message;
use support::{
    ENDLESS, cancel, code, default_server, fetch, fetch_in_background, login, message, row_count,
};
use tonic::Code;
use tonic::transport::Channel;

type Client = FlightSqlServiceClient<Channel>;

async fn try_action<R: Message + Default>(
    client: &mut Client,
    kind: &str,
    body: Vec<u8>,
) -> Result<R, FlightError> {
    let mut results = client
        .do_action(Action {
            r#type: kind.to_string(),
            body: body.into(),
        })
        .await?;
    let result = results.try_next().await?.expect("one result");
    Ok(R::decode(result.body.as_ref()).unwrap())
}

async fn action<R: Message + Default>(client: &mut Client, kind: &str, body: Vec<u8>) -> R {
    try_action(client, kind, body).await.unwrap()
}

/// GetFlightInfo for any command, with the client's token.
async fn info_for(
    client: &mut Client,
    command: impl ProstMessageExt,
) -> Result<FlightInfo, FlightError> {
    let token = client.token().cloned().expect("logged in");
    let mut request =
        tonic::Request::new(FlightDescriptor::new_cmd(command.as_any().encode_to_vec()));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    Ok(client
        .inner_mut()
        .get_flight_info(request)
        .await?
        .into_inner())
}

fn text(value: &str) -> SessionOptionValue {
    SessionOptionValue {
        option_value: Some(OptionValue::StringValue(value.to_string())),
    }
}

async fn set_options(client: &mut Client, options: &[(&str, &str)]) -> SetSessionOptionsResult {
    let request = SetSessionOptionsRequest {
        session_options: options
            .iter()
            .map(|(k, v)| (k.to_string(), text(v)))
            .collect(),
    };
    action(client, "SetSessionOptions", request.encode_to_vec()).await
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<String> {
    let array = batch.column_by_name(column).unwrap();
    (0..array.len())
        .map(|i| array_value_to_string(array, i).unwrap())
        .collect()
}

async fn query(client: &mut Client, sql: &str) -> (Arc<Schema>, Vec<RecordBatch>) {
    let info = client.execute(sql.to_string(), None).await.unwrap();
    let announced = Arc::new(info.clone().try_decode_schema().unwrap());
    let (streamed, batches) = fetch(client, &info).await.unwrap();
    assert_eq!(
        announced, streamed,
        "GetFlightInfo and DoGet agree on the schema"
    );
    (streamed, batches)
}

fn single_i64(batches: &[RecordBatch]) -> i64 {
    assert_eq!(row_count(batches), 1);
    let batch = batches.iter().find(|b| b.num_rows() == 1).unwrap();
    batch
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0)
}

/// The calls the Arrow Flight SQL JDBC driver makes when a tool connects with
/// `catalog=mesh`, browses (DatabaseMetaData), runs `getColumns`, runs a statement (always
/// as a prepared statement) and closes the connection.
#[tokio::test]
async fn the_jdbc_drivers_call_sequence() {
    let server = default_server().await;
    let mut client = login(server.addr, "cib-reporting").await;

    // Connect: the `catalog` property becomes SetSessionOptions; a refusal fails the connection.
    let set = set_options(&mut client, &[("catalog", "mesh")]).await;
    assert!(set.errors.is_empty(), "{:?}", set.errors);

    // First DatabaseMetaData call: every SqlInfo at once.
    let info = client.get_sql_info(vec![]).await.unwrap();
    let (_, batches) = fetch(&mut client, &info).await.unwrap();
    let mut infos = BTreeMap::new();
    for batch in &batches {
        let names = batch
            .column(0)
            .as_primitive::<arrow::datatypes::UInt32Type>();
        for row in 0..batch.num_rows() {
            infos.insert(
                names.value(row),
                array_value_to_string(batch.column(1), row).unwrap(),
            );
        }
    }
    let spec: Vec<u32> = (0..=11).chain(100..=101).chain(500..=576).collect();
    let missing: Vec<u32> = spec
        .iter()
        .copied()
        .filter(|id| !infos.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "SqlInfo ids without an answer: {missing:?}"
    );
    assert!(infos[&0].contains("meshgate"));
    assert!(infos[&(SqlInfo::FlightSqlServerReadOnly as u32)].contains("true"));
    assert!(infos[&(SqlInfo::SqlIdentifierQuoteChar as u32)].contains('"'));
    assert!(infos[&(SqlInfo::FlightSqlServerTransaction as u32)].contains('0'));
    assert!(infos[&(SqlInfo::SqlTransactionsSupported as u32)].contains("false"));
    assert!(infos[&(SqlInfo::SqlKeywords as u32)].contains("SELECT"));
    assert!(infos[&(SqlInfo::SqlNumericFunctions as u32)].contains("ABS"));
    assert!(infos[&(SqlInfo::SqlStringFunctions as u32)].contains("UPPER"));
    assert!(infos[&(SqlInfo::SqlDatetimeFunctions as u32)].contains("DATE_TRUNC"));
    assert!(infos[&(SqlInfo::SqlSupportsConvert as u32)].contains('['));
    // Only the ids asked for, when some are named.
    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::SqlDdlTable])
        .await
        .unwrap();
    assert_eq!(row_count(&fetch(&mut client, &info).await.unwrap().1), 2);

    // getCatalogs, getSchemas, getTables: the caller's view only.
    let info = client.get_catalogs().await.unwrap();
    let (_, batches) = fetch(&mut client, &info).await.unwrap();
    assert_eq!(strings(&batches[0], "catalog_name"), ["mesh"]);
    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("mesh".into()),
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let (_, batches) = fetch(&mut client, &info).await.unwrap();
    assert_eq!(
        strings(&batches[0], "db_schema_name"),
        ["markets", "mesh_catalog", "reference"]
    );
    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("%".into()),
            table_name_filter_pattern: Some("%".into()),
            table_types: vec![],
            include_schema: false,
        })
        .await
        .unwrap();
    let (schema, batches) = fetch(&mut client, &info).await.unwrap();
    assert!(schema.field_with_name("table_schema").is_err());
    // The caller's product tables, and the mesh catalog's own tables (for everyone).
    let system = [
        "access_requests",
        "audit",
        "audit_columns",
        "audit_tables",
        "columns",
        "flows",
        "grants",
        "products",
        "quality",
        "tables",
    ];
    let expected: Vec<&str> = std::iter::once("trades")
        .chain(system)
        .chain(["counterparties"])
        .collect();
    assert_eq!(strings(&batches[0], "table_name"), expected);
    let types: Vec<&str> = std::iter::once("TABLE")
        .chain(system.map(|_| "SYSTEM TABLE"))
        .chain(["TABLE"])
        .collect();
    assert_eq!(strings(&batches[0], "table_type"), types);

    // getColumns(null, "ref%", "counter%", "%"): tables with their schemas.
    let info = client
        .get_tables(CommandGetTables {
            catalog: Some("mesh".into()),
            db_schema_filter_pattern: Some("ref%".into()),
            table_name_filter_pattern: Some("counter%".into()),
            table_types: vec!["TABLE".into(), "VIEW".into()],
            include_schema: true,
        })
        .await
        .unwrap();
    let (_, batches) = fetch(&mut client, &info).await.unwrap();
    assert_eq!(row_count(&batches), 1);
    let encoded = batches[0]
        .column_by_name("table_schema")
        .unwrap()
        .as_binary::<i32>();
    let columns = arrow::ipc::convert::try_schema_from_ipc_buffer(encoded.value(0)).unwrap();
    let names: Vec<&str> = columns.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "counterparty_id",
            "legal_name",
            "lob",
            "country",
            "tax_id",
            "contact_email",
            "onboarded_on"
        ],
        "internal_rating is hidden from cib-reporting"
    );
    let id = columns
        .field_with_name("counterparty_id")
        .unwrap()
        .metadata();
    assert_eq!(id["ARROW:FLIGHT:SQL:TYPE_NAME"], "BIGINT");
    assert_eq!(id["ARROW:FLIGHT:SQL:TABLE_NAME"], "counterparties");
    assert_eq!(id["ARROW:FLIGHT:SQL:SCHEMA_NAME"], "reference");
    assert_eq!(id["ARROW:FLIGHT:SQL:CATALOG_NAME"], "mesh");
    assert!(
        !id["ARROW:FLIGHT:SQL:REMARKS"].is_empty(),
        "column descriptions are remarks"
    );
    assert_eq!(
        columns.field_with_name("onboarded_on").unwrap().metadata()["ARROW:FLIGHT:SQL:TYPE_NAME"],
        "DATE"
    );
    assert_eq!(
        columns.field_with_name("legal_name").unwrap().data_type(),
        &DataType::Utf8,
        "view types are cast for older drivers"
    );

    // Statement.executeQuery: CreatePreparedStatement, GetFlightInfo, DoGet, Close.
    let sql = "SELECT * FROM reference.counterparties WHERE counterparty_id < 100";
    let mut prepared = client.prepare(sql.to_string(), None).await.unwrap();
    let dataset = prepared.dataset_schema().unwrap().clone();
    assert_eq!(
        dataset.fields().len(),
        7,
        "a query's dataset schema is never empty"
    );
    assert!(prepared.parameter_schema().unwrap().fields().is_empty());
    let info = prepared.execute().await.unwrap();
    assert_eq!(info.clone().try_decode_schema().unwrap(), dataset);
    let (streamed, batches) = fetch(&mut client, &info).await.unwrap();
    assert_eq!(*streamed, dataset);
    assert_eq!(row_count(&batches), 49, "ids 1..99 with id % 10 in 0..=4");
    for batch in &batches {
        assert!(strings(batch, "lob").iter().all(|l| l == "CIB"));
        assert!(
            strings(batch, "contact_email")
                .iter()
                .all(|e| e.starts_with("***@"))
        );
    }
    let legal = dataset.field_with_name("legal_name").unwrap().metadata();
    assert_eq!(legal["ARROW:FLIGHT:SQL:TYPE_NAME"], "VARCHAR");
    assert_eq!(legal["ARROW:FLIGHT:SQL:TABLE_NAME"], "counterparties");
    prepared.close().await.unwrap();

    // Connection.close: CloseSession ends the session and its token.
    let closed: CloseSessionResult = action(
        &mut client,
        "CloseSession",
        CloseSessionRequest {}.encode_to_vec(),
    )
    .await;
    assert_eq!(closed.status, CloseSessionStatus::Closed as i32);
    let after = client.get_catalogs().await.unwrap_err();
    assert_eq!(code(&after), Code::Unauthenticated);
}

#[tokio::test]
async fn session_options_set_the_schema_and_refuse_what_is_not_there() {
    let server = default_server().await;
    let mut client = login(server.addr, "cib-reporting").await;
    let get = |client: &mut Client| {
        let mut client = client.clone();
        async move {
            action::<GetSessionOptionsResult>(
                &mut client,
                "GetSessionOptions",
                GetSessionOptionsRequest {}.encode_to_vec(),
            )
            .await
        }
    };
    let options = get(&mut client).await;
    assert_eq!(options.session_options["catalog"], text("mesh"));
    assert_eq!(options.session_options["schema"].option_value, None);

    let set = set_options(&mut client, &[("schema", "reference")]).await;
    assert!(set.errors.is_empty());
    assert_eq!(
        get(&mut client).await.session_options["schema"],
        text("reference")
    );
    let (_, batches) = query(&mut client, "SELECT count(*) FROM counterparties").await;
    assert_eq!(
        single_i64(&batches),
        15_000,
        "unqualified names resolve in the schema"
    );
    // The option changes name resolution only: qualified names and policies are unchanged.
    let denied = client
        .execute("SELECT count(*) FROM payments.transactions".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&denied), Code::PermissionDenied);

    // A schema the caller cannot see is refused exactly like one that does not exist.
    let set = set_options(
        &mut client,
        &[
            ("schema", "payments"),
            ("catalog", "elsewhere"),
            ("colour", "blue"),
        ],
    )
    .await;
    let error = |name: &str| set.errors[name].value;
    assert_eq!(
        error("schema"),
        SetSessionOptionsErrorValue::InvalidValue as i32
    );
    assert_eq!(
        error("catalog"),
        SetSessionOptionsErrorValue::InvalidValue as i32
    );
    assert_eq!(
        error("colour"),
        SetSessionOptionsErrorValue::InvalidName as i32
    );
    let set = set_options(&mut client, &[("schema", "nonexistent")]).await;
    assert_eq!(
        set.errors["schema"].value,
        SetSessionOptionsErrorValue::InvalidValue as i32
    );
    assert_eq!(
        get(&mut client).await.session_options["schema"],
        text("reference")
    );

    // Options belong to the session: another login starts without them.
    let mut other = login(server.addr, "cib-reporting").await;
    assert_eq!(
        get(&mut other).await.session_options["schema"].option_value,
        None
    );
    let unknown = other
        .execute("SELECT count(*) FROM counterparties".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&unknown), Code::NotFound, "{}", message(&unknown));
}

#[tokio::test]
async fn prepared_statements_bind_both_placeholder_styles_and_several_rows() {
    let server = default_server().await;
    let mut risk = login(server.addr, "risk-officer").await;
    let mut cib = login(server.addr, "cib-reporting").await;

    // `?` (JDBC, ODBC) with three parameter rows: one result per row, concatenated.
    let sql = "SELECT counterparty_id, lob FROM reference.counterparties WHERE counterparty_id = ?";
    let ids = |values: Vec<i64>| {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from(values))],
        )
        .unwrap()
    };
    let mut prepared = risk.prepare(sql.to_string(), None).await.unwrap();
    let parameters = prepared.parameter_schema().unwrap().clone();
    assert_eq!(parameters.fields().len(), 1);
    assert_eq!(parameters.field(0).data_type(), &DataType::Int64);
    prepared.set_parameters(ids(vec![10, 15, 18])).unwrap();
    let info = prepared.execute().await.unwrap();
    let (_, batches) = fetch(&mut risk, &info).await.unwrap();
    let lobs: Vec<String> = batches.iter().flat_map(|b| strings(b, "lob")).collect();
    assert_eq!(lobs, ["CIB", "CCB", "AWM"]);

    // The same binding as cib-reporting: only its own LOB's row.
    let mut prepared = cib.prepare(sql.to_string(), None).await.unwrap();
    prepared.set_parameters(ids(vec![10, 15, 18])).unwrap();
    let info = prepared.execute().await.unwrap();
    assert_eq!(row_count(&fetch(&mut cib, &info).await.unwrap().1), 1);

    // `$1` with string values, which the server casts to the column's type.
    let sql = "SELECT count(*) AS n FROM reference.counterparties WHERE lob = $1";
    let lobs = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, true)])),
        vec![Arc::new(StringArray::from(vec!["CIB", "CCB"]))],
    )
    .unwrap();
    let mut counts = Vec::new();
    for client in [&mut risk, &mut cib] {
        let mut prepared = client.prepare(sql.to_string(), None).await.unwrap();
        prepared.set_parameters(lobs.clone()).unwrap();
        let info = prepared.execute().await.unwrap();
        let (_, batches) = fetch(client, &info).await.unwrap();
        counts.push(
            batches
                .iter()
                .flat_map(|b| strings(b, "n"))
                .collect::<Vec<_>>(),
        );
        prepared.close().await.unwrap();
    }
    assert_eq!(counts, [vec!["15000", "9000"], vec!["15000", "0"]]);

    // Errors: values missing, the wrong number of them, both placeholder styles at once.
    let mut prepared = risk.prepare(sql.to_string(), None).await.unwrap();
    let unbound = prepared.execute().await.unwrap_err();
    assert_eq!(code(&unbound), Code::InvalidArgument);
    assert!(
        message(&unbound).contains("bind values"),
        "{}",
        message(&unbound)
    );
    let two = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Utf8, true),
            Field::new("$2", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["CIB"])),
            Arc::new(StringArray::from(vec!["CCB"])),
        ],
    )
    .unwrap();
    prepared.set_parameters(two).unwrap();
    let wrong = prepared.execute().await.unwrap_err();
    assert_eq!(code(&wrong), Code::InvalidArgument);
    let mixed = risk
        .prepare(
            "SELECT * FROM reference.counterparties WHERE lob = ? AND country = $2".into(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&mixed), Code::InvalidArgument);
    // A statement with parameters cannot run as a plain statement.
    let plain = risk.execute(sql.to_string(), None).await.unwrap_err();
    assert_eq!(code(&plain), Code::InvalidArgument);
}

#[tokio::test]
async fn prepared_statement_handles_belong_to_their_principal() {
    let server = default_server().await;
    let mut risk = login(server.addr, "risk-officer").await;
    let mut cib = login(server.addr, "cib-reporting").await;
    let sql = "SELECT card_number FROM payments.transactions WHERE txn_id = $1";
    let prepared = risk.prepare(sql.to_string(), None).await.unwrap();
    // The handle, as a client would see it on the wire, replayed by another principal.
    let handle = support::prepared_handle(&mut risk, sql).await;
    let command = CommandPreparedStatementQuery {
        prepared_statement_handle: handle.clone(),
    };
    let stolen = info_for(&mut cib, command.clone()).await.unwrap_err();
    assert_eq!(code(&stolen), Code::PermissionDenied);
    let ticket = arrow_flight::Ticket::new(command.as_any().encode_to_vec());
    let stolen = match cib.do_get(ticket).await {
        Ok(stream) => stream.try_collect::<Vec<_>>().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(code(&stolen), Code::PermissionDenied);
    let close = cib
        .do_action(Action {
            r#type: "ClosePreparedStatement".into(),
            body: ActionClosePreparedStatementRequest {
                prepared_statement_handle: handle,
            }
            .as_any()
            .encode_to_vec()
            .into(),
        })
        .await
        .unwrap_err();
    assert_eq!(code(&close), Code::PermissionDenied);
    prepared.close().await.unwrap();
}

#[tokio::test]
async fn every_metadata_command_answers_with_its_shape() {
    let server = default_server().await;
    let mut client = login(server.addr, "risk-officer").await;

    let info = client.get_table_types().await.unwrap();
    let (_, batches) = fetch(&mut client, &info).await.unwrap();
    assert_eq!(
        strings(&batches[0], "table_type"),
        ["SYSTEM TABLE", "TABLE", "VIEW"]
    );

    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("reference".into()),
            table: "counterparties".into(),
        })
        .await
        .unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    let (schema, batches) = fetch(&mut client, &info).await.unwrap();
    assert_eq!(*schema, announced);
    assert_eq!(strings(&batches[0], "column_name"), ["counterparty_id"]);
    assert_eq!(strings(&batches[0], "key_sequence"), ["1"]);
    assert!(
        !schema
            .field_with_name("key_sequence")
            .unwrap()
            .is_nullable()
    );

    // No product declares foreign keys: empty results of the right shape, not UNIMPLEMENTED.
    let fk_infos = [
        client
            .get_imported_keys(CommandGetImportedKeys {
                catalog: None,
                db_schema: None,
                table: "transactions".into(),
            })
            .await
            .unwrap(),
        client
            .get_exported_keys(CommandGetExportedKeys {
                catalog: None,
                db_schema: None,
                table: "counterparties".into(),
            })
            .await
            .unwrap(),
        client
            .get_cross_reference(CommandGetCrossReference {
                pk_catalog: None,
                pk_db_schema: None,
                pk_table: "counterparties".into(),
                fk_catalog: None,
                fk_db_schema: None,
                fk_table: "transactions".into(),
            })
            .await
            .unwrap(),
    ];
    for info in &fk_infos {
        let (schema, batches) = fetch(&mut client, info).await.unwrap();
        assert_eq!(row_count(&batches), 0);
        assert_eq!(schema.fields().len(), 13);
        assert_eq!(schema.field(12).name(), "delete_rule");
    }

    // ODBC SQLGetTypeInfo / Power BI: every type meshgate returns, filterable by type.
    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let (_, batches) = fetch(&mut client, &info).await.unwrap();
    let names: Vec<String> = batches
        .iter()
        .flat_map(|b| strings(b, "type_name"))
        .collect();
    for expected in [
        "BIGINT",
        "VARCHAR",
        "DATE",
        "TIMESTAMP",
        "DECIMAL",
        "DOUBLE",
        "BOOLEAN",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "GetXdbcTypeInfo lacks {expected}: {names:?}"
        );
    }
    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo {
            data_type: Some(12), // VARCHAR
        })
        .await
        .unwrap();
    let (_, batches) = fetch(&mut client, &info).await.unwrap();
    assert_eq!(
        batches
            .iter()
            .flat_map(|b| strings(b, "type_name"))
            .collect::<Vec<_>>(),
        ["VARCHAR"]
    );

    // Statement results carry column metadata too; computed columns have no table.
    let (schema, _) = query(
        &mut client,
        "SELECT amount, amount * 2 AS doubled FROM payments.transactions LIMIT 1",
    )
    .await;
    let amount = schema.field_with_name("amount").unwrap().metadata();
    assert_eq!(amount["ARROW:FLIGHT:SQL:TYPE_NAME"], "DECIMAL");
    assert_eq!(amount["ARROW:FLIGHT:SQL:PRECISION"], "18");
    assert_eq!(amount["ARROW:FLIGHT:SQL:SCALE"], "2");
    assert_eq!(amount["ARROW:FLIGHT:SQL:TABLE_NAME"], "transactions");
    let doubled = schema.field_with_name("doubled").unwrap().metadata();
    assert!(!doubled.contains_key("ARROW:FLIGHT:SQL:TABLE_NAME"));
}

#[tokio::test]
async fn writes_transactions_and_malformed_plans_are_refused_clearly() {
    let server = default_server().await;
    let mut client = login(server.addr, "risk-officer").await;

    let update = client
        .execute_update("DELETE FROM reference.counterparties".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&update), Code::InvalidArgument);
    assert!(
        message(&update).contains("read-only"),
        "{}",
        message(&update)
    );

    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .unwrap();
    let ingest = client
        .execute_ingest(
            CommandStatementIngest {
                table_definition_options: None,
                table: "counterparties".into(),
                schema: Some("reference".into()),
                catalog: None,
                temporary: false,
                transaction_id: None,
                options: Default::default(),
            },
            futures::stream::iter([Ok(batch)]),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&ingest), Code::InvalidArgument);
    assert!(
        message(&ingest).contains("read-only"),
        "{}",
        message(&ingest)
    );

    let substrait = info_for(
        &mut client,
        CommandStatementSubstraitPlan {
            plan: Some(SubstraitPlan {
                plan: vec![1, 2, 3].into(),
                version: "0.50.0".into(),
            }),
            transaction_id: None,
        },
    )
    .await
    .unwrap_err();
    // Plans are accepted (tests/substrait.rs); these bytes are none.
    assert_eq!(code(&substrait), Code::InvalidArgument);
    assert!(
        message(&substrait).contains("the Substrait plan cannot be decoded"),
        "{}",
        message(&substrait)
    );

    let transaction = client.begin_transaction().await.unwrap_err();
    assert_eq!(code(&transaction), Code::Unimplemented);
    assert!(message(&transaction).contains("no transactions"));
    let in_transaction = client
        .execute("SELECT 1".into(), Some(vec![1u8].into()))
        .await
        .unwrap_err();
    assert_eq!(code(&in_transaction), Code::Unimplemented);

    let unknown = client
        .do_action(Action {
            r#type: "DropEverything".into(),
            body: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(code(&unknown), Code::InvalidArgument);
}

#[tokio::test]
async fn cancel_flight_info_stops_a_running_query_for_its_owner_only() {
    let server = default_server().await;
    let mut risk = login(server.addr, "risk-officer").await;
    let mut other = login(server.addr, "risk-officer").await;
    let mut cib = login(server.addr, "cib-reporting").await;

    let info = risk.execute(ENDLESS.into(), None).await.unwrap();
    let running = fetch_in_background(&risk, &info);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!running.is_finished());

    // Another principal cannot cancel it.
    let refused = cancel(&mut cib, &info).await.unwrap_err();
    assert_eq!(code(&refused), Code::PermissionDenied);

    // The same principal can, from another connection.
    assert_eq!(
        cancel(&mut other, &info).await.unwrap(),
        CancelStatus::Cancelled
    );
    let stopped = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the query stops")
        .unwrap()
        .unwrap_err();
    assert_eq!(code(&stopped), Code::Cancelled, "{stopped:?}");

    // A ticket cancelled before it is redeemed stays cancelled.
    let info = risk.execute("SELECT 1".into(), None).await.unwrap();
    assert_eq!(
        cancel(&mut risk, &info).await.unwrap(),
        CancelStatus::Cancelled
    );
    assert_eq!(
        code(&fetch(&mut risk, &info).await.unwrap_err()),
        Code::Cancelled
    );

    // Metadata answers at once: nothing to cancel.
    let catalogs = risk.get_catalogs().await.unwrap();
    assert_eq!(
        cancel(&mut risk, &catalogs).await.unwrap(),
        CancelStatus::NotCancellable
    );

    // The older CancelQuery action works the same way.
    let info = risk.execute("SELECT 2".into(), None).await.unwrap();
    let body = arrow_flight::sql::ActionCancelQueryRequest {
        info: info.encode_to_vec().into(),
    };
    let mut results = risk
        .do_action(Action {
            r#type: "CancelQuery".into(),
            body: body.as_any().encode_to_vec().into(),
        })
        .await
        .unwrap();
    let result = results.try_next().await.unwrap().unwrap();
    let result: arrow_flight::sql::ActionCancelQueryResult = Any::decode(result.body.as_ref())
        .unwrap()
        .unpack()
        .unwrap()
        .unwrap();
    assert_eq!(result.result, 1, "CANCEL_RESULT_CANCELLED");
    assert_eq!(
        code(&fetch(&mut risk, &info).await.unwrap_err()),
        Code::Cancelled
    );
}

/// Every row of `column` over all batches.
fn column_values(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches.iter().flat_map(|b| strings(b, column)).collect()
}

/// One principal's view of the mesh as each front door reports it: `schema.table` ->
/// (kind, [(column, type)]).
type Seen = BTreeMap<String, (String, Vec<(String, String)>)>;

/// For every principal of the reference mesh, Flight SQL metadata (GetDbSchemas, GetTables
/// with schemas), SQL's `information_schema`, `mesh_catalog`'s discovery tables and the
/// tables' own answers (`SELECT * ... LIMIT 0`) list the same schemas, tables, kinds,
/// columns and types: one listing feeds them all.
#[tokio::test]
async fn every_front_door_lists_what_the_caller_sees_the_same_way() {
    let server = default_server().await;
    let mut seen_by = BTreeMap::new();
    for &principal in meshgate_reference::PRINCIPALS {
        let mut client = login(server.addr, principal).await;

        // Flight SQL metadata.
        let info = client
            .get_db_schemas(CommandGetDbSchemas {
                catalog: Some("mesh".into()),
                db_schema_filter_pattern: None,
            })
            .await
            .unwrap();
        let (_, batches) = fetch(&mut client, &info).await.unwrap();
        let flight_schemas = column_values(&batches, "db_schema_name");
        let info = client
            .get_tables(CommandGetTables {
                catalog: Some("mesh".into()),
                db_schema_filter_pattern: None,
                table_name_filter_pattern: None,
                table_types: Vec::new(),
                include_schema: true,
            })
            .await
            .unwrap();
        let (_, batches) = fetch(&mut client, &info).await.unwrap();
        let kinds = column_values(&batches, "table_type");
        let flight: Seen = support::table_schemas(&batches)
            .into_iter()
            .zip(kinds)
            .map(|((name, schema), kind)| {
                let columns = schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), f.data_type().to_string()))
                    .collect();
                (name, (kind, columns))
            })
            .collect();

        // SQL's information_schema.
        let (_, batches) = query(
            &mut client,
            "SELECT schema_name FROM information_schema.schemata \
             WHERE catalog_name = 'mesh' AND schema_name <> 'information_schema' ORDER BY 1",
        )
        .await;
        let sql_schemas = column_values(&batches, "schema_name");
        let (_, batches) = query(
            &mut client,
            "SELECT table_schema || '.' || table_name AS t, table_type FROM information_schema.tables \
             WHERE table_catalog = 'mesh' AND table_schema <> 'information_schema'",
        )
        .await;
        let sql_tables: BTreeMap<String, String> = column_values(&batches, "t")
            .into_iter()
            .zip(column_values(&batches, "table_type"))
            .collect();
        let (_, batches) = query(
            &mut client,
            "SELECT table_schema || '.' || table_name AS t, column_name, data_type \
             FROM information_schema.columns WHERE table_catalog = 'mesh' \
             AND table_schema <> 'information_schema' ORDER BY t, ordinal_position",
        )
        .await;
        let mut sql_columns: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for ((table, column), data_type) in column_values(&batches, "t")
            .into_iter()
            .zip(column_values(&batches, "column_name"))
            .zip(column_values(&batches, "data_type"))
        {
            // Flight SQL sends view types as their plain types (see `edge.rs`); the engine,
            // and so information_schema, keeps the view types.
            let sent = match data_type.as_str() {
                "Utf8View" => "Utf8".to_string(),
                "BinaryView" => "Binary".to_string(),
                _ => data_type,
            };
            sql_columns.entry(table).or_default().push((column, sent));
        }

        // mesh_catalog: the columns of what the caller may read, with their treatment.
        let (_, batches) = query(
            &mut client,
            "SELECT table_schema || '.' || table_name AS t, column_name FROM mesh_catalog.columns \
             WHERE your_treatment <> 'no access' ORDER BY t, ordinal_position",
        )
        .await;
        let mut discovered: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (table, column) in column_values(&batches, "t")
            .into_iter()
            .zip(column_values(&batches, "column_name"))
        {
            discovered.entry(table).or_default().push(column);
        }

        assert_eq!(flight_schemas, sql_schemas, "{principal}: schemas");
        assert_eq!(
            flight.keys().collect::<Vec<_>>(),
            sql_tables.keys().collect::<Vec<_>>(),
            "{principal}: tables"
        );
        for (table, (kind, columns)) in &flight {
            let sql_kind = &sql_tables[table];
            let expected_kind = match kind.as_str() {
                "VIEW" => "VIEW",
                "TABLE" | "SYSTEM TABLE" => "BASE TABLE",
                other => panic!("{principal}: unknown table type {other}"),
            };
            assert_eq!(sql_kind, expected_kind, "{principal}: kind of {table}");
            assert_eq!(
                &sql_columns[table], columns,
                "{principal}: columns of {table} in GetTables and information_schema"
            );
            // The table's own answer has exactly these columns and types.
            let (schema, _) = query(&mut client, &format!("SELECT * FROM {table} LIMIT 0")).await;
            let answered: Vec<(String, String)> = schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().to_string()))
                .collect();
            assert_eq!(&answered, columns, "{principal}: the answer of {table}");
            if kind != "SYSTEM TABLE" {
                let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
                assert_eq!(
                    discovered.get(table),
                    Some(&names),
                    "{principal}: mesh_catalog.columns of {table}"
                );
            }
        }
        let product_tables: Vec<&String> = flight
            .iter()
            .filter(|(_, (kind, _))| kind != "SYSTEM TABLE")
            .map(|(t, _)| t)
            .collect();
        assert_eq!(
            discovered.keys().collect::<Vec<_>>(),
            product_tables,
            "{principal}: mesh_catalog.columns lists what the caller may read"
        );
        seen_by.insert(principal, flight);
    }
    // The principals see different things, so the comparison above compared something.
    let count = |p: &str| {
        seen_by[p]
            .values()
            .filter(|(kind, _)| kind != "SYSTEM TABLE")
            .map(|(_, columns)| columns.len())
            .sum::<usize>()
    };
    assert_eq!(count("intern"), 0, "the intern reads nothing");
    for reader in ["cib-reporting", "ccb-fraud", "risk-officer", "ref-owner"] {
        assert!(count(reader) > 0, "{reader} reads something");
    }
    assert_ne!(seen_by["cib-reporting"], seen_by["ccb-fraud"]);
    // A column hidden from one reader and shown to another is listed accordingly.
    let has_rating = |p: &str| {
        seen_by[p]["reference.counterparties"]
            .1
            .iter()
            .any(|(name, _)| name == "internal_rating")
    };
    assert!(has_rating("risk-officer"));
    assert!(!has_rating("cib-reporting"));
}
