//! Bound parameters of prepared statements: read from a `DoPut` stream, carried inside the
//! signed handle as Arrow IPC, and turned into one list of values per parameter row.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::{IpcMessage, SchemaAsIpc};
use datafusion::common::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use tonic::Status;

use crate::status::{flight_status, internal, invalid};

/// Parameter rows one bind may carry; each row runs the statement once.
pub(crate) const MAX_PARAMETER_ROWS: usize = 10_000;

/// Bytes of bound values one handle may carry.
pub(crate) const MAX_PARAMETER_BYTES: usize = 8 * 1024 * 1024;

/// The parameter batches a client sent with `DoPut`.
pub(crate) async fn read(stream: PeekableFlightDataStream) -> Result<Vec<RecordBatch>, Status> {
    let mut batches = FlightRecordBatchStream::new_from_flight_data(
        stream.map_err(|status| FlightError::Tonic(Box::new(status))),
    );
    let mut out = Vec::new();
    let mut rows = 0usize;
    let mut bytes = 0usize;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(flight_status)?;
        rows += batch.num_rows();
        bytes += batch.get_array_memory_size();
        if rows > MAX_PARAMETER_ROWS || bytes > MAX_PARAMETER_BYTES {
            return Err(invalid(format!(
                "too many parameter values: at most {MAX_PARAMETER_ROWS} rows and {} MiB per bind",
                MAX_PARAMETER_BYTES >> 20
            )));
        }
        out.push(batch);
    }
    Ok(out)
}

/// Batches as an Arrow IPC stream (empty for none).
pub(crate) fn encode(batches: &[RecordBatch]) -> Result<Vec<u8>, Status> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let mut writer = StreamWriter::try_new(Vec::new(), &first.schema())
        .map_err(|e| internal("encoding parameters", e))?;
    for batch in batches {
        writer.write(batch).map_err(|e| {
            invalid(format!(
                "the parameter batches do not share one schema: {e}"
            ))
        })?;
    }
    writer
        .into_inner()
        .map_err(|e| internal("encoding parameters", e))
}

/// One list of values per parameter row, from [`encode`]'s bytes.
pub(crate) fn rows(bytes: &[u8]) -> Result<Vec<Vec<ScalarValue>>, Status> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let reader = StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(|e| internal("decoding parameters", e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| internal("decoding parameters", e))?;
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|column| ScalarValue::try_from_array(column, row))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("a parameter value cannot be read: {e}")))?;
            rows.push(values);
        }
    }
    Ok(rows)
}

/// A schema as IPC bytes, the form Flight SQL carries schemas in.
pub(crate) fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let message: Result<IpcMessage, _> =
        SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into();
    message
        .map(|IpcMessage(bytes)| bytes)
        .map_err(|e| internal("encoding a schema", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use std::sync::Arc;

    #[test]
    fn rows_survive_the_handle() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Utf8, true),
            Field::new("$2", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("CIB"), None])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let bytes = encode(&[batch.clone(), batch]).unwrap();
        let rows = rows(&bytes).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[0],
            vec![ScalarValue::from("CIB"), ScalarValue::Int64(Some(1))]
        );
        assert_eq!(rows[1][0], ScalarValue::Utf8(None));
        assert!(encode(&[]).unwrap().is_empty());
        assert!(super::rows(&[]).unwrap().is_empty());
    }
}
