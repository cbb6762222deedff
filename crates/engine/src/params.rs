//! Statement parameters (`$1`, `$2`, ... and `?`): the one rule every front door applies
//! (as many values as parameters, or none at all only for a statement without any), binding
//! values to a plan, and the parameter schema a prepared statement reports.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;

use crate::error::GatewayError;

/// Whether `values` (a count, `None` when nothing was bound) fit a statement with
/// `parameters` parameters. Every front door asks this, so every caller gets the same answer.
pub fn check_parameters(parameters: usize, values: Option<usize>) -> Result<(), GatewayError> {
    match values {
        None if parameters > 0 => Err(GatewayError::InvalidQuery(format!(
            "the statement has {parameters} parameter(s) but no values were bound: bind values \
             (a prepared statement) or write them into the SQL"
        ))),
        Some(values) if values != parameters => Err(GatewayError::InvalidQuery(format!(
            "the statement has {parameters} parameter(s) but {values} value(s) were bound"
        ))),
        _ => Ok(()),
    }
}

/// A plan's parameters in order, typed where the plan determines their type (`Null`
/// otherwise).
pub(crate) fn parameter_schema(plan: &LogicalPlan) -> Result<SchemaRef, GatewayError> {
    let types = plan
        .get_parameter_types()
        .map_err(GatewayError::from_planning)?;
    let mut names: Vec<&String> = types.keys().collect();
    names.sort_by_key(|name| {
        name.trim_start_matches('$')
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    let fields: Vec<Field> = names
        .into_iter()
        .map(|name| {
            let data_type = types.get(name).cloned().flatten().unwrap_or(DataType::Null);
            Field::new(name, data_type, true)
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// Bind parameter values (`$1`, `$2`, ... in order), each cast to the type the plan expects
/// where the plan knows it (clients send `str` for `lob = ?`, the column is a string view).
pub(crate) fn bind(plan: LogicalPlan, params: &[ScalarValue]) -> Result<LogicalPlan, GatewayError> {
    let types = plan
        .get_parameter_types()
        .map_err(GatewayError::from_planning)?;
    check_parameters(types.len(), Some(params.len()))?;
    let mut values = Vec::with_capacity(params.len());
    for (i, value) in params.iter().enumerate() {
        let name = format!("${}", i + 1);
        let value = match types.get(&name) {
            Some(Some(expected)) if value.data_type() != *expected => {
                value.cast_to(expected).map_err(|_| {
                    GatewayError::InvalidQuery(format!(
                        "parameter {name}: a {} value cannot be used as {expected}",
                        value.data_type()
                    ))
                })?
            }
            _ => value.clone(),
        };
        values.push(value);
    }
    plan.with_param_values(values)
        .map_err(GatewayError::from_planning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_front_door_gets_one_answer_about_parameters() {
        assert!(check_parameters(0, None).is_ok());
        assert!(check_parameters(2, Some(2)).is_ok());
        let unbound = check_parameters(2, None).map_err(|e| e.to_string());
        assert!(unbound.is_err_and(|m| m.contains("2 parameter(s) but no values were bound")));
        let short = check_parameters(2, Some(1)).map_err(|e| e.to_string());
        assert!(short.is_err_and(|m| m.contains("2 parameter(s) but 1 value(s) were bound")));
        assert!(check_parameters(0, Some(1)).is_err());
    }
}
