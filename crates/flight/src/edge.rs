//! What leaves the server: Arrow view types (`Utf8View`, `BinaryView`), which DataFusion
//! reads Parquet strings as, are cast to `Utf8` / `Binary` so that older JDBC, ODBC and
//! Python clients can read every result. The same mapping is applied to the schema that
//! `GetFlightInfo` announces and to every batch `DoGet` streams, so the two always agree.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;

fn edge_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(edge_field(f)),
        DataType::LargeList(f) => DataType::LargeList(edge_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(edge_field(f), *n),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(edge_field).collect::<Fields>())
        }
        DataType::Map(f, sorted) => DataType::Map(edge_field(f), *sorted),
        DataType::Dictionary(k, v) => DataType::Dictionary(k.clone(), Box::new(edge_type(v))),
        other => other.clone(),
    }
}

fn edge_field(field: &FieldRef) -> FieldRef {
    Arc::new(
        Field::new(
            field.name(),
            edge_type(field.data_type()),
            field.is_nullable(),
        )
        .with_metadata(field.metadata().clone()),
    )
}

/// The schema clients are told about and receive.
pub fn edge_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema.fields().iter().map(edge_field).collect::<Fields>(),
        schema.metadata().clone(),
    ))
}

/// A batch in the edge schema.
pub fn to_edge(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch
        .schema()
        .fields()
        .iter()
        .zip(schema.fields())
        .all(|(a, b)| a.data_type() == b.data_type())
    {
        return batch.with_schema(Arc::clone(schema));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringViewArray};

    #[test]
    fn view_types_become_plain_types_in_schema_and_data() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, false),
            Field::new("n", DataType::Int64, true),
            Field::new(
                "l",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8View, true))),
                true,
            ),
        ]));
        let edge = edge_schema(&schema);
        assert_eq!(edge.field(0).data_type(), &DataType::Utf8);
        assert_eq!(edge.field(1).data_type(), &DataType::Int64);
        assert_eq!(
            edge.field(2).data_type(),
            &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                schema.field(0).clone(),
                schema.field(1).clone(),
            ])),
            vec![
                Arc::new(StringViewArray::from(vec!["a"])),
                Arc::new(Int64Array::from(vec![1])),
            ],
        )
        .unwrap();
        let edge = edge_schema(&batch.schema());
        let out = to_edge(batch, &edge).unwrap();
        assert_eq!(out.schema(), edge);
        assert_eq!(out.column(0).data_type(), &DataType::Utf8);
    }
}
