//! The `meshgate` command: `demo` serves the reference mesh, `serve` a configured mesh.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meshgate::config::ServeConfig;
use meshgate::flight::FlightConfig;
use meshgate::reference::{self, Generated};
use meshgate::{Gateway, GatewayConfig};

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
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Demo { listen, data_dir } => {
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
            serve(demo.config, FlightConfig::default(), &listen, true, None).await
        }
        Command::Serve { config, listen } => {
            let loaded = ServeConfig::load(&config).map_err(|e| e.to_string())?;
            let listen = listen
                .or(loaded.listen)
                .unwrap_or_else(|| "127.0.0.1:50051".to_string());
            let policies = Some(loaded.policies_dir);
            serve(loaded.gateway, loaded.flight, &listen, false, policies).await
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
            Some(error) => eprintln!("  warning: {error}"),
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
