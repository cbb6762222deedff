//! Flight session options: `SetSessionOptions`, `GetSessionOptions` and `CloseSession`.
//!
//! The JDBC driver sets `catalog` when it connects (and fails the connection if the server
//! refuses), ADBC maps `adbc.connection.catalog` / `db_schema` to `catalog` / `schema`, and
//! both send `CloseSession` when they close. arrow-rs 59 does not define these messages, so
//! they are declared here from `Flight.proto`; action bodies and results are the plain
//! encoded messages (not `Any`-wrapped).
//!
//! Options change name resolution only: `schema` is where unqualified table names resolve.
//! Every query is still planned and authorized as the caller.

use std::collections::HashMap;

use meshgate_engine::CATALOG;

pub(crate) const SET_SESSION_OPTIONS: &str = "SetSessionOptions";
pub(crate) const GET_SESSION_OPTIONS: &str = "GetSessionOptions";
pub(crate) const CLOSE_SESSION: &str = "CloseSession";

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionOptionValue {
    #[prost(oneof = "OptionValue", tags = "1, 2, 3, 4, 5")]
    pub option_value: Option<OptionValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StringListValue {
    #[prost(string, repeated, tag = "1")]
    pub values: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum OptionValue {
    #[prost(string, tag = "1")]
    StringValue(String),
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    #[prost(sfixed64, tag = "3")]
    Int64Value(i64),
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    #[prost(message, tag = "5")]
    StringListValue(StringListValue),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsRequest {
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum SetSessionOptionsErrorValue {
    Unspecified = 0,
    InvalidName = 1,
    InvalidValue = 2,
    Error = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsError {
    #[prost(enumeration = "SetSessionOptionsErrorValue", tag = "1")]
    pub value: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub errors: HashMap<String, SetSessionOptionsError>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSessionOptionsRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CloseSessionRequest {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum CloseSessionStatus {
    Unspecified = 0,
    Closed = 1,
    Closing = 2,
    NotCloseable = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CloseSessionResult {
    #[prost(enumeration = "CloseSessionStatus", tag = "1")]
    pub status: i32,
}

/// Settings of one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionOptions {
    /// Unqualified table names resolve in this schema (a domain).
    pub(crate) schema: Option<String>,
}

fn string(value: &str) -> SessionOptionValue {
    SessionOptionValue {
        option_value: Some(OptionValue::StringValue(value.to_string())),
    }
}

impl SessionOptions {
    /// The options as `GetSessionOptions` reports them. `catalog` is always `mesh`;
    /// `schema` is reported without a value when none is set.
    pub(crate) fn report(&self) -> GetSessionOptionsResult {
        let mut options = HashMap::new();
        options.insert("catalog".to_string(), string(CATALOG));
        options.insert(
            "schema".to_string(),
            match &self.schema {
                Some(schema) => string(schema),
                None => SessionOptionValue { option_value: None },
            },
        );
        GetSessionOptionsResult {
            session_options: options,
        }
    }

    /// Apply a request. `schemas` are the schemas the caller can see; other values are
    /// refused as invalid (the same answer whether the schema is hidden or does not exist).
    /// Unknown option names are refused; nothing is applied partially per option.
    pub(crate) fn apply(
        &mut self,
        request: &SetSessionOptionsRequest,
        schemas: &[String],
    ) -> SetSessionOptionsResult {
        let mut errors = HashMap::new();
        let mut error = |name: &str, value: SetSessionOptionsErrorValue| {
            errors.insert(
                name.to_string(),
                SetSessionOptionsError {
                    value: value as i32,
                },
            );
        };
        for (name, value) in &request.session_options {
            let text = match &value.option_value {
                None => None,
                Some(OptionValue::StringValue(text)) => Some(text.as_str()),
                Some(_) => {
                    error(name, SetSessionOptionsErrorValue::InvalidValue);
                    continue;
                }
            };
            match name.as_str() {
                // One catalog: setting it to `mesh` (or clearing it) is accepted, as JDBC
                // requires; anything else is not a catalog here.
                "catalog" => {
                    if text.is_some_and(|c| c != CATALOG && !c.is_empty()) {
                        error(name, SetSessionOptionsErrorValue::InvalidValue);
                    }
                }
                "schema" => match text {
                    None | Some("") => self.schema = None,
                    Some(schema) if schemas.iter().any(|s| s == schema) => {
                        self.schema = Some(schema.to_string());
                    }
                    Some(_) => error(name, SetSessionOptionsErrorValue::InvalidValue),
                },
                _ => error(name, SetSessionOptionsErrorValue::InvalidName),
            }
        }
        SetSessionOptionsResult { errors }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn request(pairs: &[(&str, SessionOptionValue)]) -> SetSessionOptionsRequest {
        SetSessionOptionsRequest {
            session_options: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn catalog_and_schema() {
        let schemas = vec!["reference".to_string(), "payments".to_string()];
        let mut options = SessionOptions::default();
        let result = options.apply(
            &request(&[("catalog", string("mesh")), ("schema", string("payments"))]),
            &schemas,
        );
        assert!(result.errors.is_empty());
        assert_eq!(options.schema.as_deref(), Some("payments"));
        let result = options.apply(
            &request(&[
                ("catalog", string("other")),
                ("schema", string("hr")),
                ("colour", string("blue")),
            ]),
            &schemas,
        );
        assert_eq!(
            result.errors["catalog"].value,
            SetSessionOptionsErrorValue::InvalidValue as i32
        );
        assert_eq!(
            result.errors["schema"].value,
            SetSessionOptionsErrorValue::InvalidValue as i32
        );
        assert_eq!(
            result.errors["colour"].value,
            SetSessionOptionsErrorValue::InvalidName as i32
        );
        assert_eq!(options.schema.as_deref(), Some("payments"));
        options.apply(
            &request(&[("schema", SessionOptionValue { option_value: None })]),
            &schemas,
        );
        assert_eq!(options.schema, None);
    }

    #[test]
    fn messages_round_trip_on_the_wire() {
        let report = SessionOptions {
            schema: Some("reference".into()),
        }
        .report();
        let decoded = GetSessionOptionsResult::decode(report.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, report);
        // sfixed64 and string lists, as other implementations send them.
        let value = SessionOptionValue {
            option_value: Some(OptionValue::Int64Value(-3)),
        };
        assert_eq!(
            SessionOptionValue::decode(value.encode_to_vec().as_slice()).unwrap(),
            value
        );
    }
}
