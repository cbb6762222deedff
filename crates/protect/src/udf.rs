//! The kernels as DataFusion scalar functions, so the engine can place them in a plan.
//!
//! These functions are never registered in a consumer's session: a consumer who could call
//! `tokenize` would compute tokens of guessed values and reverse any low-entropy column.
//! The engine builds expressions from them directly. Their names and `Debug` output carry the
//! mask kind or token domain, never key material.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, exec_datafusion_err, plan_datafusion_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::kernels::{MaskKind, tokenize, tokenized_type};
use crate::keys::TokenKey;

/// `mask_<kind>(column)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MaskUdf {
    kind: MaskKind,
    name: String,
    signature: Signature,
}

impl MaskUdf {
    pub fn new(kind: MaskKind) -> Self {
        let name = format!("mask_{}", kind.name().replace('-', "_"));
        Self {
            kind,
            name,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    pub fn udf(kind: MaskKind) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(Self::new(kind)))
    }

    pub fn kind(&self) -> &MaskKind {
        &self.kind
    }
}

impl ScalarUDFImpl for MaskUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let input = single(arg_types)?;
        self.kind
            .output_type(input)
            .map_err(|m| plan_datafusion_err!("{m}"))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let input = single(args.arg_fields)?;
        let data_type = self.return_type(&[input.data_type().clone()])?;
        let nullable = input.is_nullable() || self.kind == MaskKind::Null;
        Ok(Arc::new(Field::new(self.name(), data_type, nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [array] = ColumnarValue::values_to_arrays(&args.args)?
            .try_into()
            .map_err(|_| exec_datafusion_err!("{} takes one argument", self.name))?;
        Ok(ColumnarValue::Array(self.kind.apply(&array)?))
    }
}

/// `tokenize_<domain>(column)`: keyed with the domain's key.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TokenizeUdf {
    key: TokenKey,
    name: String,
    signature: Signature,
}

impl TokenizeUdf {
    pub fn new(key: TokenKey) -> Self {
        let name = format!("tokenize_{}", key.domain());
        Self {
            key,
            name,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    pub fn udf(key: TokenKey) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(Self::new(key)))
    }

    /// The token domain (never the key: a plan sent to a worker names the domain, and the
    /// worker derives the key from its own master key).
    pub fn domain(&self) -> &str {
        self.key.domain()
    }
}

impl ScalarUDFImpl for TokenizeUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(tokenized_type(single(arg_types)?))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let input = single(args.arg_fields)?;
        Ok(Arc::new(Field::new(
            self.name(),
            tokenized_type(input.data_type()),
            input.is_nullable(),
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [array] = ColumnarValue::values_to_arrays(&args.args)?
            .try_into()
            .map_err(|_| exec_datafusion_err!("{} takes one argument", self.name))?;
        Ok(ColumnarValue::Array(tokenize(&self.key, &array)?))
    }
}

fn single<T>(args: &[T]) -> Result<&T> {
    match args {
        [one] => Ok(one),
        _ => Err(plan_datafusion_err!(
            "protection functions take exactly one argument"
        )),
    }
}
