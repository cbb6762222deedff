//! The `meshgate` command: `demo` serves the reference mesh, `serve` a configured mesh.

use std::path::PathBuf;
use std::process::ExitCode;

use arrow::array::RecordBatch;
use clap::{Parser, Subcommand};
use client::{Client, literal};
use meshgate::config::ServeConfig;
use meshgate::flight::FlightConfig;
use meshgate::{Gateway, GatewayConfig};
use meshgate_reference::{self as reference, Generated};

mod client;
mod terminal;

#[derive(Parser)]
#[command(
    name = "meshgate",
    version,
    about = "A query gateway for a data mesh, speaking Arrow Flight SQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the reference mesh (on first run) and serve it over Flight SQL.
    Demo {
        /// Address to serve Flight SQL on.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: String,
        /// Where the generated mesh lives (default: $MESHGATE_DATA_DIR or ~/.local/share/meshgate/reference-mesh).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Append OpenLineage events (one per query start and end) to this file.
        #[arg(long)]
        lineage_file: Option<PathBuf>,
        /// POST OpenLineage events to this URL (e.g. Marquez's http://localhost:5000/api/v1/lineage).
        #[arg(long)]
        lineage_url: Option<String>,
    },
    /// Serve the mesh described by a configuration file.
    Serve {
        /// The configuration file (meshgate.toml).
        #[arg(long)]
        config: PathBuf,
        /// Address to serve Flight SQL on (overrides the file's `listen`).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Find data products (name, description, tags, columns) on a running gateway.
    Products {
        #[command(subcommand)]
        command: ProductsCommand,
    },
    /// Request access to a product, and (owners) decide requests and manage grants.
    Access {
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// Where products' data flows: product -> consumer app, as the logged-in principal may see.
    Flows {
        #[command(flatten)]
        connection: Connection,
        /// Only flows of this product.
        #[arg(long)]
        product: Option<String>,
    },
    /// Hash a password for a users file (reads the password from stdin).
    HashPassword,
    /// Upload the reference mesh's data into its three buckets on an S3-compatible server
    /// (credentials from $MESHGATE_SEED_ACCESS_KEY_ID and $MESHGATE_SEED_SECRET_ACCESS_KEY).
    SeedReference {
        /// The S3 endpoint, e.g. http://minio:9000.
        #[arg(long)]
        endpoint: String,
    },
}

/// How the client commands reach a gateway and who they act as.
#[derive(clap::Args)]
struct Connection {
    /// The gateway's Flight SQL address.
    #[arg(
        long,
        env = "MESHGATE_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// The principal to act as.
    #[arg(long, env = "MESHGATE_USER")]
    user: String,
    /// Its password (better: set $MESHGATE_PASSWORD).
    #[arg(long, env = "MESHGATE_PASSWORD", hide_env_values = true)]
    password: String,
}

impl Connection {
    async fn client(&self) -> Result<Client, String> {
        Client::connect(&self.server, &self.user, &self.password).await
    }
}

#[derive(Subcommand)]
enum ProductsCommand {
    /// Products whose id, name, description, tags or columns mention TEXT.
    Search {
        text: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// One product: owner, SLOs, freshness, your access, its columns.
    Show {
        product: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Write a product as an ODPS product file plus one ODCS v3.1 contract per table.
    Export {
        product: String,
        /// The directory of product manifests.
        #[arg(long, default_value = "products")]
        products_dir: PathBuf,
        /// Where to write the files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Read ODPS product files and ODCS contracts (any fields kept) into product manifests.
    Import {
        /// `.odps.yaml` and `.odcs.yaml` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The directory of product manifests to write `<product>.yaml` into.
        #[arg(long, default_value = "products")]
        products_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum AccessCommand {
    /// Ask a product's owner for access.
    Request {
        product: String,
        /// What the access is for.
        #[arg(long)]
        purpose: String,
        /// Only these columns (comma-separated; default: the whole product).
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// For how many days (default 90, at most 365).
        #[arg(long)]
        days: Option<u32>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Withdraw your pending request.
    Cancel {
        request_id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Owners: approve a request, optionally narrower than asked.
    Approve {
        request_id: String,
        /// Only these of the requested columns.
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// Only rows matching this SQL condition.
        #[arg(long)]
        row_filter: Option<String>,
        /// Fewer days than requested.
        #[arg(long)]
        days: Option<u32>,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Owners: reject a request.
    Reject {
        request_id: String,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Owners: end a grant (refused from the next query on).
    Revoke {
        grant_id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Owners: pause a grant.
    Suspend {
        grant_id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Owners: resume a paused grant.
    Resume {
        grant_id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Requests and grants you may see (yours, and your products' if you own any).
    List {
        #[command(flatten)]
        connection: Connection,
    },
}

fn print_batches(batches: &[RecordBatch]) -> Result<(), String> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        println!("(none)");
        return Ok(());
    }
    // Cells hold other people's text (purposes, comments): shown, never obeyed.
    let batches = terminal::safe_batches(batches)?;
    let table = arrow::util::pretty::pretty_format_batches(&batches).map_err(|e| e.to_string())?;
    println!("{}", terminal::safe(&table.to_string()));
    Ok(())
}

fn print_json(value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{}", terminal::safe(&text));
    Ok(())
}

async fn products(command: ProductsCommand) -> Result<(), String> {
    match command {
        ProductsCommand::Export {
            product,
            products_dir,
            out,
        } => {
            let catalog =
                meshgate::catalog::Catalog::load_dir(&products_dir).map_err(|e| e.to_string())?;
            let found = catalog
                .product(&product)
                .ok_or_else(|| format!("no product `{product}` in {}", products_dir.display()))?;
            let text = std::fs::read_to_string(&found.source)
                .map_err(|e| format!("{}: {e}", found.source))?;
            let files =
                meshgate::catalog::odcs::export(&found.source, &text).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            for (name, text) in files {
                let path = out.join(name);
                std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        ProductsCommand::Import {
            files,
            products_dir,
        } => {
            let mut inputs = Vec::new();
            for path in files {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                inputs.push((path.display().to_string(), text));
            }
            let manifests = meshgate::catalog::odcs::import(&inputs).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(&products_dir)
                .map_err(|e| format!("{}: {e}", products_dir.display()))?;
            for (product, text) in manifests {
                let path = products_dir.join(format!("{product}.yaml"));
                std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
                println!("wrote {} (restart the gateway to serve it)", path.display());
            }
            Ok(())
        }
        ProductsCommand::Search { text, connection } => {
            let pattern = literal(&format!("%{}%", text.to_lowercase()));
            let sql = format!(
                "SELECT product_id, owner_team, has_access, description FROM mesh_catalog.products \
                 WHERE lower(product_id) LIKE {pattern} OR lower(name) LIKE {pattern} \
                 OR lower(description) LIKE {pattern} OR lower(tags) LIKE {pattern} \
                 OR product_id IN (SELECT product_id FROM mesh_catalog.columns \
                   WHERE lower(column_name) LIKE {pattern} OR lower(description) LIKE {pattern} \
                   OR lower(tags) LIKE {pattern}) \
                 ORDER BY product_id"
            );
            print_batches(&connection.client().await?.query(&sql).await?)
        }
        ProductsCommand::Show {
            product,
            connection,
        } => {
            let mut client = connection.client().await?;
            let id = literal(&product);
            let about = client
                .query(&format!(
                    "SELECT product_id, name, version, status, owner_team, owners, tags, slos, \
                     bucket, last_modified, has_access, how_to_request, description \
                     FROM mesh_catalog.products WHERE product_id = {id}"
                ))
                .await?;
            if about.iter().all(|b| b.num_rows() == 0) {
                return Err(format!(
                    "no data product `{product}`; try `meshgate products search <text>`"
                ));
            }
            print_batches(&about)?;
            let columns = client
                .query(&format!(
                    "SELECT table_name, column_name, data_type, classification, tags, your_treatment \
                     FROM mesh_catalog.columns WHERE product_id = {id} \
                     ORDER BY table_name, ordinal_position"
                ))
                .await?;
            print_batches(&columns)
        }
    }
}

async fn access(command: AccessCommand) -> Result<(), String> {
    use meshgate::api::*;
    // Each arm runs one typed action of the API contract and prints its reply.
    async fn run<A: MeshAction>(connection: Connection, body: A) -> Result<(), String> {
        let reply = connection.client().await?.action(&body).await?;
        print_json(&serde_json::to_value(reply).map_err(|e| e.to_string())?)
    }
    let change = |grant_id, reason| GrantChange { grant_id, reason };
    match command {
        AccessCommand::Request {
            product,
            purpose,
            columns,
            days,
            connection,
        } => {
            let body = RequestAccess {
                product,
                purpose,
                columns,
                valid_days: days,
            };
            run(connection, body).await
        }
        AccessCommand::Cancel {
            request_id,
            connection,
        } => run(connection, CancelRequest { request_id }).await,
        AccessCommand::Approve {
            request_id,
            columns,
            row_filter,
            days,
            comment,
            connection,
        } => {
            let body = ApproveRequest {
                request_id,
                columns,
                row_filter,
                valid_days: days,
                comment,
            };
            run(connection, body).await
        }
        AccessCommand::Reject {
            request_id,
            comment,
            connection,
        } => {
            run(
                connection,
                RejectRequest {
                    request_id,
                    comment,
                },
            )
            .await
        }
        AccessCommand::Revoke {
            grant_id,
            reason,
            connection,
        } => run(connection, RevokeGrant(change(grant_id, reason))).await,
        AccessCommand::Suspend {
            grant_id,
            reason,
            connection,
        } => run(connection, SuspendGrant(change(grant_id, reason))).await,
        AccessCommand::Resume {
            grant_id,
            reason,
            connection,
        } => run(connection, ResumeGrant(change(grant_id, reason))).await,
        AccessCommand::List { connection } => {
            let mut client = connection.client().await?;
            println!("Access requests:");
            print_batches(
                &client
                    .query(
                        "SELECT request_id, requester, product_id, state, columns, purpose, created_at, decided_by \
                         FROM mesh_catalog.access_requests ORDER BY created_at",
                    )
                    .await?,
            )?;
            println!("Grants:");
            print_batches(
                &client
                    .query(
                        "SELECT grant_id, principal, product_id, state, columns, row_filter, valid_until, approved_by \
                         FROM mesh_catalog.grants ORDER BY created_at",
                    )
                    .await?,
            )
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,datafusion=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {}", terminal::safe(&message));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Demo {
            listen,
            data_dir,
            lineage_file,
            lineage_url,
        } => {
            let data_dir = data_dir.unwrap_or_else(reference::default_data_dir);
            let demo = reference::demo(&data_dir)
                .await
                .map_err(|e| e.to_string())?;
            let how = match demo.generated {
                Generated::Created => "generated and uploaded",
                Generated::Reused => "reused",
            };
            println!(
                "meshgate demo: the reference mesh ({how}), in {}",
                data_dir.display()
            );
            println!(
                "  lakes: an in-process S3 server at {} with one bucket and one read-only key per product",
                demo.lake.endpoint()
            );
            println!(
                "  tokens use the public demo master key: fine for the demo, never for real data"
            );
            let _lake = demo.lake; // served for as long as the gateway runs
            let mut config = demo.config;
            config.lineage.file = lineage_file;
            config.lineage.url = lineage_url;
            serve(config, FlightConfig::default(), &listen, true, None).await
        }
        Command::Serve { config, listen } => {
            let loaded = ServeConfig::load(&config).map_err(|e| e.to_string())?;
            let listen = listen
                .or(loaded.listen)
                .unwrap_or_else(|| "127.0.0.1:50051".to_string());
            let policies = Some(loaded.policies_dir);
            serve(loaded.gateway, loaded.flight, &listen, false, policies).await
        }
        Command::Products { command } => products(command).await,
        Command::Access { command } => access(command).await,
        Command::Flows {
            connection,
            product,
        } => {
            let filter = product
                .map(|p| format!(" WHERE product_id = {}", literal(&p)))
                .unwrap_or_default();
            let sql = format!(
                "SELECT product_id, consumer_app, principals, queries, rows, columns, treatments, \
                 first_access, last_access FROM mesh_catalog.flows{filter} \
                 ORDER BY product_id, consumer_app"
            );
            print_batches(&connection.client().await?.query(&sql).await?)
        }
        Command::SeedReference { endpoint } => {
            let var = |name: &str| std::env::var(name).map_err(|_| format!("set ${name}"));
            let (key, secret) = (
                var("MESHGATE_SEED_ACCESS_KEY_ID")?,
                var("MESHGATE_SEED_SECRET_ACCESS_KEY")?,
            );
            let generated =
                reference::upload(|bucket| reference::s3_store(&endpoint, bucket, &key, &secret))
                    .await
                    .map_err(|e| e.to_string())?;
            println!(
                "reference data {}",
                if generated == Generated::Created {
                    "uploaded"
                } else {
                    "already in place"
                }
            );
            Ok(())
        }
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .map_err(|e| format!("cannot read the password: {e}"))?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err("empty password".into());
            }
            println!("{}", meshgate::policy::hash_password(password)?);
            Ok(())
        }
    }
}

async fn serve(
    config: GatewayConfig,
    flight: FlightConfig,
    listen: &str,
    demo: bool,
    policies_dir: Option<PathBuf>,
) -> Result<(), String> {
    let gateway = Gateway::open(config).await.map_err(|e| e.to_string())?;
    if let Some(dir) = policies_dir {
        tokio::spawn(reload_on_hangup(gateway.clone(), dir));
    }
    for lake in gateway.lake_status().await {
        match &lake.error {
            Some(error) => eprintln!("  warning: {}", terminal::safe(error)),
            None => println!(
                "  {}: {} files, {} bytes in bucket {}{}",
                lake.product,
                lake.files,
                lake.bytes,
                lake.bucket,
                lake.last_modified
                    .map(|t| format!(", newest {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
                    .unwrap_or_default()
            ),
        }
        for (file, reason) in &lake.refused_files {
            eprintln!(
                "  warning: {}: file `{file}` is not served: {reason}",
                lake.product
            );
        }
    }
    let listener = meshgate::flight::bind(listen)
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if demo {
        println!(
            "  users: {} (password: <user>-pw)",
            reference::PRINCIPALS.join(", ")
        );
        println!("  connect: grpc://{addr}, e.g. from Python:");
        println!("    import adbc_driver_flightsql.dbapi as flightsql");
        println!(
            "    conn = flightsql.connect(\"grpc://{addr}\", db_kwargs={{\"username\": \"cib-reporting\", \"password\": \"cib-reporting-pw\"}})"
        );
        println!(
            "    cur = conn.cursor(); cur.execute(\"SELECT * FROM reference.counterparties\"); print(cur.fetch_arrow_table())"
        );
    }
    // Tests and scripts wait for this line.
    println!("listening on {addr}");
    let shutdown = async {
        shutdown_signal().await;
        eprintln!("shutting down: finishing running queries");
    };
    meshgate::flight::serve(gateway, listener, flight, shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// On SIGHUP, re-read the policy directory and reload it whole. A directory that cannot be
/// read or a policy that does not load changes nothing: the last good version stays in force.
async fn reload_on_hangup(gateway: Gateway, dir: PathBuf) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            eprintln!("warning: cannot listen for SIGHUP; policies reload only on restart");
            return;
        };
        while hangup.recv().await.is_some() {
            let current = gateway.policies().fingerprint().to_string();
            let loaded = match meshgate::policy::PolicySources::from_dir(&dir) {
                Ok(sources) => gateway
                    .reload_policies(&sources)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match loaded {
                Ok(version) => eprintln!(
                    "policies reloaded from {}: version {version}",
                    dir.display()
                ),
                Err(e) => eprintln!(
                    "error: policy reload from {} failed; still enforcing version {current}: {e}",
                    dir.display()
                ),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (gateway, dir);
    }
}

/// Ctrl-C, or SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
