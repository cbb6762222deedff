//! Substrait plans as a client makes them: DataFusion's producer, planning the SQL over the
//! schemas the caller can see (or, for what it cannot, the raw files' schemas, as an
//! attacker would), and Flight SQL's Substrait commands sent by hand (the Rust client has no
//! method for them).

#![allow(dead_code)] // each test binary uses a different part

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    ActionCreatePreparedStatementResult, ActionCreatePreparedSubstraitPlanRequest, Any,
    CommandPreparedStatementQuery, CommandStatementSubstraitPlan, ProstMessageExt, SubstraitPlan,
};
use arrow_flight::{Action, FlightDescriptor, FlightInfo};
use datafusion::catalog::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_substrait::logical_plan::producer::to_substrait_plan;
use futures::TryStreamExt;
use meshgate::Session;
use prost::Message;
use tonic::IntoRequest;
use tonic::transport::Channel;

use super::flight;
use super::views::{Rows, raw_engine, rows};

/// The product tables and their raw tables in the views' engine.
const RAW: [(&str, &str, &str); 3] = [
    ("reference", "counterparties", "raw_counterparties"),
    ("payments", "transactions", "raw_transactions"),
    ("markets", "trades", "raw_trades"),
];

fn context() -> SessionContext {
    SessionContext::new_with_config(
        SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("mesh", "public"),
    )
}

fn register(ctx: &SessionContext, schema: &str, table: &str, arrow: SchemaRef) {
    let name = format!("mesh.{schema}.{table}");
    let catalog = ctx.catalog("mesh").expect("the mesh catalog");
    if catalog.schema(schema).is_none() {
        catalog
            .register_schema(
                schema,
                Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
            )
            .expect("a schema");
    }
    let empty = MemTable::try_new(arrow, vec![vec![]]).expect("an empty table");
    ctx.register_table(name.as_str(), Arc::new(empty))
        .expect("a table");
}

/// A producer's context with `session`'s visible tables (the mesh catalog's too) and, when
/// `raw`, the raw files' schemas for the products instead.
async fn producer(session: &Session, raw: bool) -> SessionContext {
    let ctx = context();
    for table in session.tables().await {
        register(&ctx, &table.schema, &table.name, table.arrow_schema.clone());
    }
    let engine = raw_engine().await;
    for (schema, table, raw_name) in RAW {
        let visible = ctx
            .table_exist(format!("mesh.{schema}.{table}").as_str())
            .unwrap_or(false);
        if raw || !visible {
            let provider = engine.table_provider(raw_name).await.expect("a raw table");
            let _ = ctx.deregister_table(format!("mesh.{schema}.{table}").as_str());
            register(&ctx, schema, table, provider.schema());
        }
    }
    ctx
}

/// The serialized Substrait plan of the query `sql` as a client of `session`'s principal
/// would make it: over what the principal sees, else over the raw schemas (naming a hidden
/// column or a denied product). `None` for statements other than queries (SHOW, EXPLAIN,
/// DDL: the producer would turn a SHOW into another query) and for queries the producer
/// cannot express (file tables...).
pub async fn produce(session: &Session, sql: &str) -> Option<Vec<u8>> {
    use datafusion::sql::parser::{DFParser, Statement as DFStatement};
    use datafusion::sql::sqlparser::ast::Statement;

    let statements = DFParser::parse_sql(sql).ok()?;
    if statements.len() != 1
        || !matches!(statements.front(), Some(DFStatement::Statement(s)) if matches!(s.as_ref(), Statement::Query(_)))
    {
        return None;
    }
    for raw in [false, true] {
        let ctx = producer(session, raw).await;
        let Ok(plan) = ctx.state().create_logical_plan(sql).await else {
            continue;
        };
        if let Ok(produced) = to_substrait_plan(&plan, &ctx.state()) {
            return Some(produced.encode_to_vec());
        }
        // The producer cannot write some subqueries (a correlated EXISTS); a client sends
        // the optimized plan then, where they are joins.
        let Ok(optimized) = ctx.state().optimize(&plan) else {
            continue;
        };
        if let Ok(produced) = to_substrait_plan(&optimized, &ctx.state()) {
            return Some(produced.encode_to_vec());
        }
    }
    None
}

/// [`produce`] from the optimized plan (unions flattened, subqueries decorrelated), over
/// the principal's visible schemas.
pub async fn produce_optimized(session: &Session, sql: &str) -> Option<Vec<u8>> {
    let ctx = producer(session, false).await;
    let plan = ctx.state().create_logical_plan(sql).await.ok()?;
    let plan = ctx.state().optimize(&plan).ok()?;
    to_substrait_plan(&plan, &ctx.state())
        .ok()
        .map(|p| p.encode_to_vec())
}

/// `GetFlightInfo` for a Substrait plan.
pub async fn execute(
    client: &mut FlightSqlServiceClient<Channel>,
    plan: Vec<u8>,
) -> Result<FlightInfo, FlightError> {
    let command = CommandStatementSubstraitPlan {
        plan: Some(SubstraitPlan {
            plan: plan.into(),
            version: String::new(),
        }),
        transaction_id: None,
    };
    let mut request = FlightDescriptor::new_cmd(command.as_any().encode_to_vec()).into_request();
    authorize(client, request.metadata_mut());
    Ok(client
        .inner_mut()
        .get_flight_info(request)
        .await?
        .into_inner())
}

/// `CreatePreparedSubstraitPlan`: the prepared statement's handle and schemas.
pub async fn prepare(
    client: &mut FlightSqlServiceClient<Channel>,
    plan: Vec<u8>,
) -> Result<ActionCreatePreparedStatementResult, FlightError> {
    let request = ActionCreatePreparedSubstraitPlanRequest {
        plan: Some(SubstraitPlan {
            plan: plan.into(),
            version: String::new(),
        }),
        transaction_id: None,
    };
    let mut results = client
        .do_action(Action {
            r#type: "CreatePreparedSubstraitPlan".into(),
            body: request.as_any().encode_to_vec().into(),
        })
        .await?;
    let result = results
        .try_next()
        .await?
        .ok_or_else(|| FlightError::protocol("no result"))?;
    let any = Any::decode(result.body).map_err(|e| FlightError::DecodeError(e.to_string()))?;
    any.unpack::<ActionCreatePreparedStatementResult>()?
        .ok_or_else(|| FlightError::protocol("not a prepared statement result"))
}

/// A plan run as a statement, in the form `views::run_reference` gives.
pub async fn run(
    client: &mut FlightSqlServiceClient<Channel>,
    plan: Vec<u8>,
) -> Result<Rows, String> {
    let info = execute(client, plan)
        .await
        .map_err(|e| flight::message(&e))?;
    fetch(client, info).await
}

/// A plan prepared, then its prepared statement run as a JDBC driver runs one.
pub async fn run_prepared(
    client: &mut FlightSqlServiceClient<Channel>,
    plan: Vec<u8>,
) -> Result<Rows, String> {
    let result = prepare(client, plan)
        .await
        .map_err(|e| flight::message(&e))?;
    assert!(
        !result.dataset_schema.is_empty(),
        "a query's prepared plan announces its result schema"
    );
    let command = CommandPreparedStatementQuery {
        prepared_statement_handle: result.prepared_statement_handle,
    };
    let mut request = FlightDescriptor::new_cmd(command.as_any().encode_to_vec()).into_request();
    authorize(client, request.metadata_mut());
    let info = client
        .inner_mut()
        .get_flight_info(request)
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    fetch(client, info).await
}

async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Rows, String> {
    let (_, batches) = flight::fetch(client, &info)
        .await
        .map_err(|e| flight::message(&e))?;
    Ok(rows(&batches))
}

fn authorize(
    client: &FlightSqlServiceClient<Channel>,
    metadata: &mut tonic::metadata::MetadataMap,
) {
    if let Some(token) = client.token() {
        metadata.insert(
            "authorization",
            format!("Bearer {token}").parse().expect("a header value"),
        );
    }
}
