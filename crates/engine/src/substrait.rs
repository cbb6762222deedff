//! Substrait plans, taken exactly as SQL is: converted to a DataFusion logical plan in the
//! caller's own planning state, so every table resolves through the secure catalog (policy
//! sealed, hidden columns absent, denied products refused) and every function through the
//! same read-only registry; then the plan takes the same checks as a SQL statement's
//! ([`crate::plan::plan_parsed`]).
//!
//! What SQL cannot say, a plan cannot do either: a read names a table (`NamedTable`) or gives
//! literal rows (`VirtualTable`); reads of files (`LocalFiles`) or of extension tables are
//! refused before anything is resolved.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::common::{DFSchema, TableReference, plan_err};
use datafusion::error::Result;
use datafusion::execution::{FunctionRegistry, SessionState};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion_substrait::extensions::Extensions;
use datafusion_substrait::logical_plan::consumer::{
    DefaultSubstraitConsumer, SubstraitConsumer, from_read_rel, from_substrait_plan_with_consumer,
};
use datafusion_substrait::substrait::proto::read_rel::ReadType;
use datafusion_substrait::substrait::proto::{Plan, ReadRel, Type};
use prost::Message;

use crate::error::GatewayError;
use crate::scope::QueryScope;

/// The Substrait version plans are read at (`major.minor.patch`).
pub fn substrait_version() -> String {
    let v = datafusion_substrait::substrait::version::version();
    format!("{}.{}.{}", v.major_number, v.minor_number, v.patch_number)
}

/// Decode a serialized `substrait.Plan` (prost bounds its nesting depth).
pub(crate) fn decode(bytes: &[u8]) -> Result<Plan, GatewayError> {
    Plan::decode(bytes).map_err(|e| {
        GatewayError::InvalidQuery(format!("the Substrait plan cannot be decoded: {e}"))
    })
}

/// The logical plan of `plan` as the scope's caller, in `state` (the caller's planning
/// state: its only catalog is the secure one).
pub(crate) async fn to_logical(
    scope: &Arc<QueryScope>,
    state: &SessionState,
    plan: &Plan,
) -> Result<LogicalPlan, GatewayError> {
    let extensions = Extensions::try_from(&plan.extensions).map_err(GatewayError::from_planning)?;
    if !extensions.type_variations.is_empty() {
        return Err(GatewayError::InvalidQuery(
            "Substrait type variations are not supported".into(),
        ));
    }
    let consumer = MeshConsumer {
        inner: DefaultSubstraitConsumer::new(&extensions, state),
        scope,
        refused: Mutex::new(None),
    };
    match from_substrait_plan_with_consumer(&consumer, plan).await {
        Ok(plan) => Ok(plan),
        Err(error) => Err(consumer
            .refused
            .lock()
            .ok()
            .and_then(|mut refused| refused.take())
            .unwrap_or_else(|| GatewayError::from_planning(error))),
    }
}

/// DataFusion's own consumer, with table names noted for the audit as they resolve, and
/// reads of anything but a named table or literal rows refused.
struct MeshConsumer<'a> {
    inner: DefaultSubstraitConsumer<'a>,
    scope: &'a Arc<QueryScope>,
    /// Why the plan was refused, when this consumer refused it (kept typed; DataFusion's
    /// error only carries text).
    refused: Mutex<Option<GatewayError>>,
}

#[async_trait]
impl SubstraitConsumer for MeshConsumer<'_> {
    async fn resolve_table_ref(
        &self,
        table_ref: &TableReference,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        // As for SQL: whatever happens next, the audit names the products the plan reads.
        self.scope.mention(std::slice::from_ref(table_ref));
        // Listings must include views, which plan asynchronously (as for SQL).
        if table_ref.schema() == Some("information_schema") {
            self.scope.prepare_listing().await;
        }
        self.inner.resolve_table_ref(table_ref).await
    }

    fn get_extensions(&self) -> &Extensions {
        self.inner.get_extensions()
    }

    fn get_function_registry(&self) -> &impl FunctionRegistry {
        self.inner.get_function_registry()
    }

    async fn consume_read(&self, rel: &ReadRel) -> Result<LogicalPlan> {
        let kind = match &rel.read_type {
            Some(ReadType::NamedTable(_) | ReadType::VirtualTable(_)) => {
                return from_read_rel(self, rel).await;
            }
            Some(ReadType::LocalFiles(_)) => "files (`LocalFiles`)",
            Some(ReadType::ExtensionTable(_)) => "an extension table",
            Some(ReadType::IcebergTable(_)) => "an Iceberg table",
            None => "nothing",
        };
        let message = format!(
            "a Substrait read of {kind} is not allowed: plans read products by name \
             (`NamedTable`), as SQL does"
        );
        if let Ok(mut refused) = self.refused.lock() {
            refused.get_or_insert(GatewayError::NotAllowed(message.clone()));
        }
        plan_err!("{message}")
    }

    fn push_outer_schema(&self, schema: Arc<DFSchema>) {
        self.inner.push_outer_schema(schema)
    }

    fn pop_outer_schema(&self) {
        self.inner.pop_outer_schema()
    }

    fn get_outer_schema(&self, steps_out: usize) -> Option<Arc<DFSchema>> {
        self.inner.get_outer_schema(steps_out)
    }

    fn push_lambda_parameters(
        &self,
        parameters: &[Type],
        input_schema: &DFSchema,
    ) -> Result<Vec<String>> {
        self.inner.push_lambda_parameters(parameters, input_schema)
    }

    fn pop_lambda_parameters(&self) {
        self.inner.pop_lambda_parameters()
    }

    fn lambda_variable(&self, steps_out: usize, field_idx: usize) -> Result<Expr> {
        self.inner.lambda_variable(steps_out, field_idx)
    }
}
