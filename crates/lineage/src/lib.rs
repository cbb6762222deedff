//! # meshgate-lineage
//!
//! Owners and auditors see flows in the mesh catalog; the rest of an organisation's lineage
//! tooling (Marquez, DataHub, OpenMetadata, Dataplex, ...) speaks OpenLineage. This crate
//! turns each query's audit record into OpenLineage `RunEvent`s: the **job** is the consumer
//! application (a stable node), the **run** is the query (run id = query id), the
//! **inputs** are the product tables read, named physically (`s3://<bucket>`, key prefix)
//! with a symlink to the product, and the **output** is the consumer app's dataset, whose
//! column lineage marks every column read under a mask or token with `masking: true`.
//!
//! Emission never blocks or fails a query: events go through a bounded queue to a
//! background task that appends them to a file (JSON lines) and/or POSTs them to an HTTP
//! endpoint (Marquez-compatible, `.../api/v1/lineage`). When the queue is full or the
//! endpoint is down, events are dropped and counted. The audit log, not lineage, is the
//! durable record.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshgate_catalog::Catalog;
use meshgate_governance::{AuditOutcome, AuditRecord, QueryStatus};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Where events go (`[lineage]` in `meshgate.toml`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LineageConfig {
    /// Append events to this file, one JSON object per line.
    pub file: Option<PathBuf>,
    /// POST events to this URL (e.g. `http://marquez:5000/api/v1/lineage`).
    pub url: Option<String>,
    /// The job namespace consumer apps are named in (default `mesh.consumers`).
    pub namespace: Option<String>,
}

impl LineageConfig {
    pub fn is_enabled(&self) -> bool {
        self.file.is_some() || self.url.is_some()
    }
}

const PRODUCER: &str = concat!(
    "https://github.com/meshgate/meshgate/tree/v",
    env!("CARGO_PKG_VERSION")
);
const SPEC: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// Events waiting to be written; beyond this they are dropped (and counted).
const QUEUE: usize = 10_000;

fn facet(schema: &str, body: Value) -> Value {
    let mut body = body;
    if let Value::Object(map) = &mut body {
        map.insert("_producer".into(), PRODUCER.into());
        map.insert(
            "_schemaURL".into(),
            format!("https://openlineage.io/spec/facets/{schema}").into(),
        );
    }
    body
}

fn time(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Sends each query's events; cheap to clone.
#[derive(Debug, Clone)]
pub struct Lineage {
    tx: mpsc::Sender<Value>,
    dropped: Arc<AtomicU64>,
    /// The catalog in force (a publish swaps it): where each product's files live.
    catalog: Arc<arc_swap::ArcSwap<Catalog>>,
    namespace: String,
}

impl Lineage {
    /// Start the background writer (call inside a tokio runtime).
    pub fn start(config: &LineageConfig, catalog: Arc<Catalog>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_events(
            rx,
            config.file.clone(),
            config.url.clone(),
            Arc::clone(&dropped),
        ));
        Self {
            tx,
            dropped,
            catalog: Arc::new(arc_swap::ArcSwap::new(catalog)),
            namespace: config
                .namespace
                .clone()
                .unwrap_or_else(|| "mesh.consumers".into()),
        }
    }

    /// The catalog a newly published mesh version brings.
    pub fn set_catalog(&self, catalog: Arc<Catalog>) {
        self.catalog.store(catalog);
    }

    /// Events dropped so far (queue full, or the endpoint refused them).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, event: Value) {
        if self.tx.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "lineage queue full or closed; events dropped");
            }
        }
    }

    /// The query started sending results.
    pub fn started(&self, record: &AuditRecord) {
        self.send(self.event("START", record, record.started_at, None));
    }

    /// The query ended.
    pub fn finished(&self, record: &AuditRecord, outcome: &AuditOutcome, at: i64) {
        let kind = match outcome.status {
            QueryStatus::Ok => "COMPLETE",
            QueryStatus::Cancelled => "ABORT",
            _ => "FAIL",
        };
        self.send(self.event(kind, record, at, Some(outcome)));
    }

    /// One RunEvent for `record`.
    pub fn event(
        &self,
        kind: &str,
        record: &AuditRecord,
        at: i64,
        outcome: Option<&AuditOutcome>,
    ) -> Value {
        let app = record.consumer_app();
        let mut inputs = Vec::new();
        let mut lineage = serde_json::Map::new();
        // Inputs are the tables whose data the query read (not those it only described).
        let catalog = self.catalog.load();
        for read in record
            .tables
            .iter()
            .filter(|t| t.access == meshgate_governance::TableAccess::Read)
        {
            // The audit names a table as SQL does, which picks the product version read.
            let Some((product, table)) = catalog
                .product(&read.product)
                .and_then(|p| catalog.table(&p.domain, &read.table))
                .filter(|(p, _)| p.id == read.product)
            else {
                continue;
            };
            let namespace = format!("s3://{}", product.location.bucket);
            let name = product.location.table_prefix(table);
            let name = name.trim_end_matches('/').to_string();
            let fields: Vec<Value> = read
                .columns
                .iter()
                .filter_map(|c| table.column(&c.name))
                .map(|c| json!({"name": c.name, "type": c.logical_type, "description": c.description}))
                .collect();
            inputs.push(json!({
                "namespace": namespace,
                "name": name,
                "facets": {
                    "symlinks": facet("1-0-1/SymlinksDatasetFacet.json#/$defs/SymlinksDatasetFacet", json!({
                        "identifiers": [{
                            "namespace": format!("mesh://{}", product.domain),
                            "name": format!("{}.{}@{}", product.id, table.name, product.version),
                            "type": "DATA_PRODUCT_TABLE",
                        }]
                    })),
                    "schema": facet("1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet", json!({"fields": fields})),
                }
            }));
            for column in &read.columns {
                let protected = column.treatment != "clear";
                lineage.insert(
                    format!("{}.{}.{}", product.domain, table.name, column.name),
                    json!({"inputFields": [{
                        "namespace": namespace,
                        "name": name,
                        "field": column.name,
                        "transformations": [{
                            "type": "DIRECT",
                            "subtype": if protected { "TRANSFORMATION" } else { "IDENTITY" },
                            "description": column.treatment,
                            "masking": protected,
                        }],
                    }]}),
                );
            }
        }
        let mut output = json!({
            "namespace": format!("app://{app}"),
            "name": "adhoc",
            "facets": {
                "columnLineage": facet(
                    "1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet",
                    json!({"fields": lineage}),
                ),
            },
        });
        let mut run_facets = json!({
            "processing_engine": facet(
                "1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet",
                json!({"name": "meshgate", "version": env!("CARGO_PKG_VERSION")}),
            ),
        });
        if let Some(outcome) = outcome {
            output["outputFacets"] = json!({
                "outputStatistics": facet(
                    "1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet",
                    json!({"rowCount": outcome.rows_returned, "size": outcome.bytes_returned}),
                ),
            });
            if let Some(error) = &outcome.error {
                run_facets["errorMessage"] = facet(
                    "1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                    json!({"message": error, "programmingLanguage": "SQL"}),
                );
            }
        }
        json!({
            "eventType": kind,
            "eventTime": time(at),
            "producer": PRODUCER,
            "schemaURL": SPEC,
            "run": {"runId": record.query_id, "facets": run_facets},
            "job": {
                "namespace": self.namespace,
                "name": app,
                "facets": {
                    "jobType": facet(
                        "2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
                        json!({"processingType": "BATCH", "integration": "MESHGATE", "jobType": "QUERY"}),
                    ),
                },
            },
            "inputs": inputs,
            "outputs": [output],
        })
    }
}

async fn write_events(
    mut rx: mpsc::Receiver<Value>,
    file: Option<PathBuf>,
    url: Option<String>,
    dropped: Arc<AtomicU64>,
) {
    let client = url.as_ref().and_then(|_| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| tracing::error!(error = %e, "lineage HTTP client"))
            .ok()
    });
    let mut out = None;
    if let Some(path) = &file {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
        {
            Ok(f) => out = Some(f),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot open the lineage file")
            }
        }
    }
    while let Some(event) = rx.recv().await {
        if let Some(f) = &mut out {
            let mut line = event.to_string();
            line.push('\n');
            if let Err(e) = f.write_all(line.as_bytes()).await {
                dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot write a lineage event");
            }
            let _ = f.flush().await;
        }
        if let (Some(client), Some(url)) = (&client, &url) {
            let sent = client.post(url).json(&event).send().await;
            if let Err(e) = sent.and_then(|r| r.error_for_status()) {
                dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%url, error = %e, "lineage endpoint refused an event");
            }
        }
    }
}
