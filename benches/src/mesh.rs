//! The engines under test, set up on the same TPC-H files: embedded DataFusion (raw, or with
//! a policy's hand-written twin views), the `datafusion-flight-sql-server` peer, and
//! meshgate (local files or the in-process S3 server; in process or over Flight SQL).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use meshgate::catalog::Catalog;
use meshgate::engine::{AuditSettings, LineageConfig, QueryLimits};
use meshgate::policy::{PolicySources, Source, UserDirectory};
use meshgate::protect::{MaskKind, MaskUdf, MasterKey, TokenizeUdf};
use meshgate::storage::{ProductStorage, StaticCredentials, StorageConfig};
use meshgate::{Gateway, GatewayConfig, Governance};
use meshgate_lake_server::{KeyGrant, LakeServer};
use meshgate_reference as reference;
use object_store::ObjectStoreExt;
use tokio::sync::oneshot;

use crate::BenchError;
use crate::tpch::{self, TABLES, TpchData};

/// The password of every benchmark principal is `<name>-pw`.
pub fn password(user: &str) -> String {
    format!("{user}-pw")
}

/// Embedded DataFusion over the raw files: tables `tpch.<table>`, default settings (the
/// gateway's, too: it changes none that matters to a scan).
pub async fn datafusion(data: &TpchData) -> Result<SessionContext, BenchError> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
    register_schema(&ctx, "tpch", data).await?;
    Ok(ctx)
}

/// Embedded DataFusion that does not read file statistics (row counts, min/max): what the
/// planner knows of meshgate's sealed scans. A diagnostic: the gap between this and
/// [`datafusion`] is what statistics buy the engine.
pub async fn datafusion_without_statistics(data: &TpchData) -> Result<SessionContext, BenchError> {
    let mut config = SessionConfig::new().with_information_schema(true);
    config.options_mut().execution.collect_statistics = false;
    let ctx = SessionContext::new_with_config(config);
    register_schema(&ctx, "tpch", data).await?;
    Ok(ctx)
}

/// Embedded DataFusion with `principal`'s policy written by hand: raw tables in schema
/// `raw`, and in `tpch` a view for every table the policy changes (the raw table for the
/// rest). meshgate's own mask and token functions (same kernels, same key) are registered,
/// so the answers are identical to the gateway's.
pub async fn twin(
    data: &TpchData,
    principal: &str,
    master_key: &MasterKey,
) -> Result<SessionContext, BenchError> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
    ctx.register_udf(MaskUdf::udf(MaskKind::ShowLast4).as_ref().clone());
    ctx.register_udf(
        TokenizeUdf::udf(master_key.token_key(tpch::DOMAIN))
            .as_ref()
            .clone(),
    );
    register_schema(&ctx, "raw", data).await?;
    let views = tpch::twin_views(principal);
    add_schema(&ctx, "tpch")?;
    for table in TABLES {
        let name = format!("tpch.{table}");
        match views.iter().find(|(t, _)| *t == table) {
            Some((_, sql)) => {
                let view = ctx
                    .sql(sql)
                    .await
                    .map_err(|e| BenchError::setup("twin view")(format!("{table}: {e}")))?
                    .into_view();
                ctx.register_table(name.as_str(), view)
                    .map_err(|e| BenchError::setup("twin view")(e.to_string()))?;
            }
            None => {
                let raw = ctx
                    .table_provider(format!("raw.{table}").as_str())
                    .await
                    .map_err(|e| BenchError::setup("twin")(e.to_string()))?;
                ctx.register_table(name.as_str(), raw)
                    .map_err(|e| BenchError::setup("twin")(e.to_string()))?;
            }
        }
    }
    Ok(ctx)
}

fn add_schema(ctx: &SessionContext, schema: &str) -> Result<(), BenchError> {
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| BenchError::setup("DataFusion")("no default catalog".into()))?;
    catalog
        .register_schema(schema, Arc::new(MemorySchemaProvider::new()))
        .map_err(|e| BenchError::setup("DataFusion")(e.to_string()))?;
    Ok(())
}

pub async fn register_schema(
    ctx: &SessionContext,
    schema: &str,
    data: &TpchData,
) -> Result<(), BenchError> {
    add_schema(ctx, schema)?;
    for table in TABLES {
        let dir = format!("{}/", data.table_dir(table).display());
        ctx.register_parquet(
            format!("{schema}.{table}").as_str(),
            &dir,
            ParquetReadOptions::default(),
        )
        .await
        .map_err(|e| BenchError::setup("DataFusion")(format!("{table}: {e}")))?;
    }
    Ok(())
}

/// A running `datafusion-flight-sql-server` over the raw files (no authentication, no
/// policy): the Flight SQL peer.
pub async fn peer(data: &TpchData) -> Result<SocketAddr, BenchError> {
    let ctx = datafusion(data).await?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BenchError::setup("the Flight SQL peer")(e.to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| BenchError::setup("the Flight SQL peer")(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::setup("the Flight SQL peer")(e.to_string()))?;
    let service = datafusion_flight_sql_server::service::FlightSqlService::new(ctx.state());
    tokio::spawn(async move {
        if let Err(e) = service.serve_with_listener(listener).await {
            eprintln!("the Flight SQL peer stopped: {e}");
        }
    });
    Ok(addr)
}

/// Where meshgate reads TPC-H from.
pub enum Lake {
    /// The files on local disk (`StorageConfig::local`).
    Local,
    /// The in-process S3 server (s3s, SigV4 verified) serving the same files, read with a
    /// key allowed to read the `tpch` bucket only.
    S3(Arc<LakeServer>),
}

/// The S3 server's read-only key for the `tpch` bucket (the gateway's and the raw-read
/// limit's).
pub const READER_KEY: &str = "bench-reader";
pub const READER_SECRET: &str = "bench-reader-secret";

/// Start the S3 server over the files. The first time, every file is uploaded through the
/// S3 API (onto itself: same bytes, same path), as a product pipeline would: s3s-fs then
/// knows each object's ETag instead of hashing the whole file on every ranged GET, which
/// would measure the emulator rather than the gateway.
pub async fn s3_lake(data: &TpchData) -> Result<Arc<LakeServer>, BenchError> {
    let writer = KeyGrant {
        access_key: "bench-writer".into(),
        secret_key: "bench-writer-secret".into(),
        buckets: vec![tpch::BUCKET.into()],
        write: true,
    };
    let server = LakeServer::start(
        data.lake.clone(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        vec![
            KeyGrant {
                access_key: READER_KEY.into(),
                secret_key: READER_SECRET.into(),
                buckets: vec![tpch::BUCKET.into()],
                write: false,
            },
            writer.clone(),
        ],
    )
    .await
    .map_err(|e| BenchError::setup("the S3 server")(e.to_string()))?;
    let marker = data.uploaded_marker();
    if !marker.exists() {
        let store = reference::s3_store(
            &server.endpoint(),
            tpch::BUCKET,
            &writer.access_key,
            &writer.secret_key,
        )
        .map_err(|e| BenchError::setup("the S3 server")(e.to_string()))?;
        for table in TABLES {
            let file = data.table_dir(table).join("part-00000.parquet");
            let bytes = std::fs::read(&file).map_err(BenchError::io(&file))?;
            store
                .put(
                    &object_store::path::Path::from(format!("data/{table}/part-00000.parquet")),
                    object_store::PutPayload::from(bytes),
                )
                .await
                .map_err(|e| BenchError::setup("uploading to the S3 server")(e.to_string()))?;
        }
        std::fs::write(&marker, "uploaded").map_err(BenchError::io(&marker))?;
    }
    Ok(Arc::new(server))
}

/// A meshgate gateway over TPC-H with the benchmark policies (see [`tpch::PRINCIPALS`]);
/// its audit log lives under `state_dir`. `pushdown_user_predicates` is the product's
/// timing setting (see [`tpch::product_policy`]).
pub async fn gateway(
    data: &TpchData,
    lake: &Lake,
    state_dir: &Path,
    pushdown_user_predicates: bool,
) -> Result<Gateway, BenchError> {
    let config = gateway_config(data, lake, state_dir, pushdown_user_predicates)?;
    Gateway::open(config)
        .await
        .map_err(|e| BenchError::setup("meshgate")(e.to_string()))
}

/// The configuration [`gateway`] opens (workers open the same).
pub fn gateway_config(
    data: &TpchData,
    lake: &Lake,
    state_dir: &Path,
    pushdown_user_predicates: bool,
) -> Result<GatewayConfig, BenchError> {
    let manifest = tpch::manifest(data)?;
    let catalog = Catalog::from_sources([("products/tpch.benchmark.yaml", manifest.as_str())])
        .map_err(|e| BenchError::setup("the TPC-H product")(e.to_string()))?;
    let policies = PolicySources {
        access_model: reference::policy_sources().access_model,
        access_rules: Source::new("policies/access.csv", tpch::access_rules()),
        products: vec![Source::new(
            "policies/products/tpch.benchmark.toml",
            tpch::product_policy(pushdown_user_predicates),
        )],
        global: None,
    };
    let mut users = String::new();
    for user in tpch::all_principals() {
        let hash = meshgate::policy::hash_password(&password(&user))
            .map_err(BenchError::setup("benchmark users"))?;
        users.push_str(&format!(
            "[[user]]\nname = \"{user}\"\npassword = \"{hash}\"\nroles = []\n\n"
        ));
    }
    let users = UserDirectory::parse("users.toml", &users)
        .map_err(|e| BenchError::setup("benchmark users")(e.to_string()))?;
    let storage = match lake {
        Lake::Local => StorageConfig::local(&data.lake),
        Lake::S3(server) => {
            let mut storage = StorageConfig::s3_endpoint(&server.endpoint());
            storage.products.insert(
                tpch::PRODUCT.into(),
                ProductStorage {
                    static_credentials: Some(StaticCredentials {
                        access_key_id: READER_KEY.into(),
                        secret_access_key: READER_SECRET.into(),
                    }),
                    ..ProductStorage::default()
                },
            );
            storage
        }
    };
    std::fs::create_dir_all(state_dir).map_err(BenchError::io(state_dir))?;
    Ok(plain_config(
        catalog,
        policies,
        Some(users),
        storage,
        state_dir,
    ))
}

/// A gateway over `catalog` with the engine's defaults: the demo key, no limits beyond the
/// default ones, its SQLite store under `state_dir` (which must exist).
pub fn plain_config(
    catalog: Catalog,
    policies: PolicySources,
    users: Option<UserDirectory>,
    storage: StorageConfig,
    state_dir: &Path,
) -> GatewayConfig {
    GatewayConfig {
        catalog,
        policies,
        users,
        storage,
        master_key: MasterKey::demo(),
        target_partitions: None,
        memory_limit: None,
        spill_dir: None,
        limits: QueryLimits::default(),
        parquet_pushdown: false,
        statistics_behind_row_filters: true,
        governance: Governance::Sqlite(state_dir.join("meshgate.db")),
        audit: AuditSettings::default(),
        replica: None,
        lineage: LineageConfig::default(),
        distribution: None,
    }
}

/// Serve `gateway` over Flight SQL on a free port until the returned sender is dropped.
pub async fn serve(gateway: &Gateway) -> Result<(SocketAddr, oneshot::Sender<()>), BenchError> {
    let listener = meshgate::flight::bind("127.0.0.1:0")
        .await
        .map_err(|e| BenchError::setup("meshgate Flight SQL")(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::setup("meshgate Flight SQL")(e.to_string()))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let gateway = gateway.clone();
    tokio::spawn(async move {
        let served = meshgate::flight::serve(
            gateway,
            listener,
            meshgate::flight::FlightConfig::default(),
            async {
                let _ = stopped.await;
            },
        )
        .await;
        if let Err(e) = served {
            eprintln!("meshgate Flight SQL stopped: {e}");
        }
    });
    Ok((addr, stop))
}
