//! What leaves the server: Arrow view types (`Utf8View`, `BinaryView`), which DataFusion
//! reads Parquet strings as, are cast to `Utf8` / `Binary` so that older JDBC, ODBC and
//! Python clients can read every result. The same mapping is applied to the schema that
//! `GetFlightInfo` announces and to every batch `DoGet` streams, so the two always agree.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, GenericByteViewArray, RecordBatch, StringArray,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::cast;
use arrow::datatypes::{
    ByteViewType, DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit,
};
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
                edge_column(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// `column` as `to`. Every string an export returns passes here, so top-level views are
/// copied out in one pass over their views (Arrow's cast appends value by value through a
/// builder, null bit by null bit); nested ones go through the cast.
fn edge_column(column: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    match (column.data_type(), to) {
        (DataType::Utf8View, DataType::Utf8) => {
            let views = column.as_string_view();
            let (offsets, values) = plain(views)?;
            Ok(Arc::new(StringArray::try_new(
                offsets,
                values,
                views.nulls().cloned(),
            )?))
        }
        (DataType::BinaryView, DataType::Binary) => {
            let views = column.as_binary_view();
            let (offsets, values) = plain(views)?;
            Ok(Arc::new(BinaryArray::try_new(
                offsets,
                values,
                views.nulls().cloned(),
            )?))
        }
        _ => cast(column, to),
    }
}

/// The offsets and bytes of a view array's values, null slots empty.
fn plain<T: ByteViewType + ?Sized>(
    array: &GenericByteViewArray<T>,
) -> Result<(OffsetBuffer<i32>, Buffer), ArrowError> {
    let views = array.views();
    let length = |view: u128| (view as u32) as usize;
    let valid = |i: usize| array.is_valid(i);
    let total: usize = views
        .iter()
        .enumerate()
        .filter(|(i, _)| valid(*i))
        .map(|(_, v)| length(*v))
        .sum();
    if i32::try_from(total).is_err() {
        return Err(ArrowError::ComputeError(format!(
            "a result column holds {total} bytes of text in one batch, more than a Flight \
             client's 32-bit offsets address: select fewer rows or narrower columns"
        )));
    }
    let buffers = array.data_buffers();
    let mut offsets = Vec::with_capacity(views.len() + 1);
    let mut values = Vec::with_capacity(total);
    offsets.push(0i32);
    for (i, &view) in views.iter().enumerate() {
        if valid(i) {
            let len = length(view);
            if len <= 12 {
                // Short values live in the view itself, after its 4-byte length.
                values.extend_from_slice(&view.to_le_bytes()[4..4 + len]);
            } else {
                // Longer ones: a 4-byte prefix, then the buffer's index and the offset in it.
                let (buffer, start) = ((view >> 64) as u32 as usize, (view >> 96) as usize);
                let bytes = buffers
                    .get(buffer)
                    .and_then(|b| b.get(start..start + len))
                    .ok_or_else(|| {
                        ArrowError::InvalidArgumentError(
                            "a string view points outside its buffers".into(),
                        )
                    })?;
                values.extend_from_slice(bytes);
            }
        }
        // At most `total`, which fits (checked above).
        offsets.push(values.len() as i32);
    }
    Ok((
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(values),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BinaryViewArray, Int64Array, StringViewArray};

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

    #[test]
    fn views_are_copied_out_as_arrow_casts_them() {
        let long = "a value longer than twelve bytes";
        let values: Vec<Option<&str>> = (0..300)
            .map(|i| match i % 5 {
                0 => None,
                1 => Some(""),
                2 => Some("short"),
                3 => Some("exactly12byt"),
                _ => Some(long),
            })
            .collect();
        let strings: ArrayRef = Arc::new(StringViewArray::from(values.clone()));
        let binary: ArrayRef = Arc::new(BinaryViewArray::from(
            values
                .iter()
                .map(|v| v.map(str::as_bytes))
                .collect::<Vec<_>>(),
        ));
        for (array, to) in [(strings, DataType::Utf8), (binary, DataType::Binary)] {
            // Whole, sliced (views from the middle of the buffers) and empty.
            for (offset, len) in [(0, 300), (7, 101), (300, 0)] {
                let slice = array.slice(offset, len);
                let ours = edge_column(&slice, &to).unwrap();
                assert_eq!(ours.to_data(), cast(&slice, &to).unwrap().to_data());
                assert_eq!(ours.null_count(), slice.null_count());
            }
        }
    }
}
