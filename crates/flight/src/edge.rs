//! What leaves the server: Arrow view types (`Utf8View`, `BinaryView`), which DataFusion
//! reads Parquet strings as, are cast to `Utf8` / `Binary` so that older JDBC, ODBC and
//! Python clients can read every result. The same mapping is applied to the schema that
//! `GetFlightInfo` announces and to every batch `DoGet` streams, so the two always agree.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
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

/// The parameter schema clients are told about: the edge schema, with timestamps in
/// milliseconds. The Arrow JDBC driver (18.x and 19.x) writes a `java.sql.Timestamp`'s
/// milliseconds into whatever timestamp vector the schema names, so a microsecond parameter
/// arrived a thousand times too early; told milliseconds, it binds the instant it was given.
/// Clients that send another unit are cast on the server as before.
pub fn edge_parameters(schema: &Schema) -> SchemaRef {
    let schema = edge_schema(schema);
    let fields: Fields = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Timestamp(_, tz) => Arc::new(
                field
                    .as_ref()
                    .clone()
                    .with_data_type(DataType::Timestamp(TimeUnit::Millisecond, tz.clone())),
            ),
            _ => Arc::clone(field),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
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
    fn timestamp_parameters_are_announced_in_milliseconds() {
        let utc = Some(Arc::from("UTC"));
        let schema = Schema::new(vec![
            Field::new(
                "$1",
                DataType::Timestamp(TimeUnit::Microsecond, utc.clone()),
                true,
            ),
            Field::new("$2", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("$3", DataType::Utf8View, true),
        ]);
        let announced = edge_parameters(&schema);
        let types: Vec<&DataType> = announced.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(
            types,
            [
                &DataType::Timestamp(TimeUnit::Millisecond, utc),
                &DataType::Timestamp(TimeUnit::Millisecond, None),
                &DataType::Utf8,
            ]
        );
    }

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
