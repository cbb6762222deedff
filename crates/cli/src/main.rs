//! The `meshgate` command: `demo` serves the reference mesh, `serve` a configured mesh,
//! `check` validates a configuration without serving it; the client commands (`sql`,
//! `products`, `access`, `flows`) talk to a running gateway as a principal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use arrow::array::RecordBatch;
use clap::{CommandFactory, Parser, Subcommand};
use client::{Client, Credentials, Target, literal};
use meshgate::config::ServeConfig;
use meshgate::flight::FlightConfig;
use meshgate::{Gateway, GatewayConfig};
use meshgate_reference::{self as reference, Generated};
use output::Output;

mod client;
mod output;
mod publish;
mod quality;
mod terminal;

const EXAMPLES: &str = "\
Examples:
  meshgate demo                                   serve the reference mesh on 127.0.0.1:50051
  meshgate keygen --out secrets/master.key        a master key for tokenization
  meshgate check meshgate.toml                    validate a configuration, then exit
  meshgate serve --config meshgate.toml           serve it
  export MESHGATE_USER=cib-reporting MESHGATE_PASSWORD=cib-reporting-pw
  meshgate sql 'SELECT lob, count(*) FROM reference.counterparties GROUP BY lob'
  meshgate products search trades --output json
  meshgate access request payments.transactions --purpose 'fraud model' --days 30
  meshgate completions bash > ~/.local/share/bash-completion/completions/meshgate";

#[derive(Parser)]
#[command(
    name = "meshgate",
    version,
    about = "A query gateway for a data mesh, speaking Arrow Flight SQL",
    long_about = "A query gateway for a data mesh, speaking Arrow Flight SQL. Each data product \
                  is read in place from its own bucket; its owner's row filters, masks, tokens \
                  and hidden columns are enforced beneath every query.",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How the gateway logs to standard error: `text` for people, `json` (one object per
    /// line) for log pipelines. Neither carries a row value, a filter literal or key material.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Send traces over OTLP/gRPC to this collector (e.g. http://otel-collector:4317): a
    /// span per RPC continuing the caller's W3C `traceparent`, with the query's planning,
    /// audit write and execution as children. Spans carry no statement, value or key.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT"
    )]
    otlp_endpoint: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the reference mesh (on first run) and serve it over Flight SQL.
    #[command(after_help = "Example:\n  meshgate demo --listen 0.0.0.0:50051 --data-dir /tmp/mesh")]
    Demo {
        /// Address to serve Flight SQL on (host:port; port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: String,
        /// Where the generated mesh lives (default: $MESHGATE_DATA_DIR or ~/.local/share/meshgate/reference-mesh).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Append OpenLineage events (one per query start and end) to this file.
        #[arg(long, value_name = "FILE")]
        lineage_file: Option<PathBuf>,
        /// POST OpenLineage events to this URL (e.g. Marquez's http://localhost:5000/api/v1/lineage).
        #[arg(long, value_name = "URL")]
        lineage_url: Option<String>,
        /// Serve /metrics, /healthz and /readyz over HTTP here (`off`: not at all).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
        http: String,
    },
    /// Serve the mesh described by a configuration file (see docs/configuration.md).
    #[command(
        after_help = "Example:\n  meshgate serve --config /etc/meshgate/meshgate.toml\n\nSIGHUP reloads the policy directory; SIGTERM drains running queries, then stops."
    )]
    Serve {
        /// The configuration file (meshgate.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Address to serve Flight SQL on (overrides the file's `listen`).
        #[arg(long)]
        listen: Option<String>,
        /// Serve /metrics, /healthz and /readyz over HTTP here (overrides `[http] listen`;
        /// `off`: not at all).
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
    },
    /// Run stages of large queries for the gateways of a mesh (its `[distributed]` section:
    /// the same products, policies, storage and master key as its gateways).
    #[command(
        after_help = "Example:\n  meshgate worker --config /etc/meshgate/meshgate.toml --listen 0.0.0.0:50061\n\nThe worker runs only stages its gateways signed; SIGHUP reloads the policy directory (gateways and workers must hold the same version); SIGTERM stops."
    )]
    Worker {
        /// The configuration file (meshgate.toml, with a [distributed] section).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Address to serve workers' gRPC on (overrides `[distributed] listen`).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Validate a configuration as `serve` would (file, users, manifests, policies, storage,
    /// each product's files), report what would start but serve less than meant, and exit.
    #[command(
        after_help = "Exit status: 0 when it would serve (warnings allowed unless --strict), 1 otherwise.\n\nExample:\n  meshgate check meshgate.toml --strict"
    )]
    Check {
        /// The configuration file (meshgate.toml).
        config: PathBuf,
        /// Fail on warnings too (for CI).
        #[arg(long)]
        strict: bool,
    },
    /// Check every contract and policy of a mesh directory against the global rules and each
    /// other: each finding with file, line, check id and the fix.
    #[command(
        after_help = "Exit status: 0 with no error (warnings allowed unless --strict), 1 otherwise.\n\nExample:\n  meshgate lint . --strict\n  meshgate lint . --base /tmp/main      # also: a breaking change needs a new major version"
    )]
    Lint {
        /// The mesh directory: `products/` (contracts) and `policies/`.
        mesh: PathBuf,
        /// The same directory before the change (for the breaking-change check).
        #[arg(long)]
        base: Option<PathBuf>,
        /// Fail on warnings too (for CI).
        #[arg(long)]
        strict: bool,
        /// `text` (for people) or `json` (for tools).
        #[arg(long, default_value = "text")]
        format: LintFormat,
    },
    /// Test a mesh's policies (its `products/` and `policies/` folders) before they are live.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Generate a master key (the secret tokens are derived from).
    #[command(
        after_help = "Example:\n  meshgate keygen --out secrets/master.key\n  then in meshgate.toml: master_key_file = \"secrets/master.key\"\n\nTokens depend on the key: keep it secret, back it up, and never change it for a running mesh."
    )]
    Keygen {
        /// Write the key to this file (readable by its owner only) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Run one SQL query on a gateway as the logged-in principal.
    #[command(
        after_help = "Examples:\n  meshgate sql 'SELECT * FROM reference.counterparties LIMIT 5'\n  echo 'SELECT 1' | meshgate sql - --output csv"
    )]
    Sql {
        /// The query (`-` or nothing: read it from standard input).
        query: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Find data products (name, description, tags, columns) on a running gateway; start a
    /// new one (`product init`).
    #[command(visible_alias = "product")]
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
    /// Products' quality: each rule of their contracts and their freshness SLO, with the
    /// latest check; `--check` (owners) measures your products now.
    #[command(
        after_help = "Examples:\n  meshgate quality\n  meshgate quality payments.transactions --check"
    )]
    Quality {
        /// Only this product.
        product: Option<String>,
        /// Measure now (the product's owners and delegates; every product you decide
        /// without a product) instead of showing the latest scheduled results.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Hash a password for a users file (reads the password from stdin).
    #[command(after_help = "Example:\n  printf '%s' \"$PASSWORD\" | meshgate hash-password")]
    HashPassword,
    /// Upload the reference mesh's data into its three buckets on an S3-compatible server
    /// (credentials from $MESHGATE_SEED_ACCESS_KEY_ID and $MESHGATE_SEED_SECRET_ACCESS_KEY).
    SeedReference {
        /// The S3 endpoint, e.g. http://minio:9000.
        #[arg(long)]
        endpoint: String,
    },
    /// Exit 0 if a gateway answers Flight calls at an address, 1 if not (for health checks).
    #[command(after_help = "Example:\n  meshgate health --server 127.0.0.1:50051")]
    Health {
        #[command(flatten)]
        address: Address,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  meshgate completions bash > ~/.local/share/bash-completion/completions/meshgate"
    )]
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Write man pages (meshgate.1 and one per subcommand) into a directory.
    Man {
        /// The directory to write the pages into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Where a gateway is and how to trust it.
#[derive(clap::Args)]
struct Address {
    /// The gateway: host:port, grpc://host:port or grpc+tls://host:port.
    #[arg(long, env = "MESHGATE_SERVER", default_value = "127.0.0.1:50051")]
    server: String,
    /// Connect with TLS (implied by grpc+tls:// and https:// addresses).
    #[arg(long)]
    tls: bool,
    /// The CA certificate (PEM) that signed the gateway's certificate (default: the system's roots).
    #[arg(long, env = "MESHGATE_CA", value_name = "PEM")]
    ca: Option<PathBuf>,
}

impl Address {
    /// Where to connect, presenting `identity` (a certificate and its key) if given.
    fn target(&self, identity: Option<(PathBuf, PathBuf)>) -> Target {
        Target {
            server: self.server.clone(),
            tls: self.tls,
            ca: self.ca.clone(),
            identity,
        }
    }
}

/// How the client commands reach a gateway and who they act as.
#[derive(clap::Args)]
struct Connection {
    #[command(flatten)]
    address: Address,
    /// A client certificate (PEM) for mutual TLS; it names the principal unless a user or token is given.
    #[arg(long, requires = "key", value_name = "PEM")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert", value_name = "PEM")]
    key: Option<PathBuf>,
    /// The principal to act as, with its password.
    #[arg(long, env = "MESHGATE_USER")]
    user: Option<String>,
    /// The user's password (better: set $MESHGATE_PASSWORD, which no process list shows).
    #[arg(long, env = "MESHGATE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// A bearer token instead of a user and password, e.g. your identity provider's JWT
    /// (better: set $MESHGATE_TOKEN).
    #[arg(long, env = "MESHGATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How to print results: a table for people, json or csv for scripts.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
}

impl Connection {
    async fn client(&self) -> Result<Client, String> {
        let target = self.address.target(self.cert.clone().zip(self.key.clone()));
        // A token wins over a password; a certificate alone names the principal.
        let credentials = match (&self.token, &self.user, &self.password) {
            (Some(token), _, _) => Credentials::Token(token.clone()),
            (None, Some(user), Some(password)) => Credentials::Password {
                user: user.clone(),
                password: password.clone(),
            },
            (None, Some(user), None) => {
                return Err(format!(
                    "no password for `{user}`: set $MESHGATE_PASSWORD (or --password)"
                ));
            }
            (None, None, _) if target.identity.is_some() => Credentials::Certificate,
            (None, None, _) => {
                return Err(
                    "say who you are: --user with $MESHGATE_PASSWORD, --token (or $MESHGATE_TOKEN), \
                     or a client certificate (--cert and --key)"
                        .into(),
                );
            }
        };
        Client::connect(&target, &credentials).await
    }
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check golden decision files (what each caller must see of each table) against the
    /// policies, like `opa test`: exit 1 on any decision made otherwise than written.
    #[command(
        after_help = "Example:\n  meshgate policy test .                      # policies/tests/*.toml\n  meshgate policy test . --write              # write down what the policies decide now"
    )]
    Test {
        /// The mesh directory: `products/` (manifests) and `policies/` (access.conf,
        /// access.csv, products/*.toml, users.toml and tests/*.toml).
        mesh: PathBuf,
        /// Golden files (default: every `policies/tests/*.toml`).
        files: Vec<PathBuf>,
        /// Rewrite each file's decisions with what the policies decide now; with no file yet,
        /// write `policies/tests/decisions.toml` for every user and table.
        #[arg(long)]
        write: bool,
    },
    /// Does a change widen access? Every caller the files can tell apart, every table: rows,
    /// columns and treatments before and after. Exit 0 when nothing widens, 2 when access
    /// widens (or may: what cannot be proven narrower counts), unless `--approved-by` says
    /// who approved it; 1 on errors.
    #[command(
        after_help = "Example:\n  git worktree add /tmp/main main\n  meshgate policy diff /tmp/main . --format markdown > diff.md"
    )]
    Diff {
        /// The mesh directory before the change (`products/`, `policies/`).
        before: PathBuf,
        /// The mesh directory after the change.
        after: PathBuf,
        /// `markdown` (for a pull request) or `json` (for tools).
        #[arg(long, default_value = "markdown")]
        format: DiffFormat,
        /// Who approved a widening: the report names them and the exit code is 0.
        #[arg(long)]
        approved_by: Option<String>,
        /// Count, over the lakes of the mesh this configuration serves, the rows each change
        /// of rows adds and removes (a change the predicates cannot decide widens if it adds
        /// rows of today's data); and layer the grants in force in its governance store
        /// (read only) on both versions, so that every grant holder is compared and each
        /// change names the grants it reaches.
        #[arg(long, value_name = "MESHGATE_TOML")]
        data: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LintFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DiffFormat {
    Markdown,
    Json,
}

#[derive(Subcommand)]
enum ProductsCommand {
    /// Products whose id, name, description, tags or columns mention TEXT.
    #[command(after_help = "Example:\n  meshgate products search counterparty --output json")]
    Search {
        /// Text to look for (case-insensitive).
        text: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// One product: owner, SLOs, freshness, your access, its columns as you see them.
    #[command(after_help = "Example:\n  meshgate products show reference.counterparties")]
    Show {
        /// The product id (`<domain>.<name>`).
        product: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Start a new product in a mesh directory: its contract, a policy that lets nobody read
    /// yet, its bucket's read-only key and a CI job for its decisions.
    #[command(
        after_help = "Example:\n  meshgate product init payments.refunds --team payments-core --support '#payments'"
    )]
    Init {
        /// The product id (`<domain>.<name>`).
        product: String,
        /// The mesh directory (`products/`, `policies/`).
        #[arg(long, default_value = ".", value_name = "DIR")]
        mesh: PathBuf,
        /// The owning team (default: `<domain>-data`).
        #[arg(long)]
        team: Option<String>,
        /// Where consumers ask for help (default: `#<domain>-data`).
        #[arg(long)]
        support: Option<String>,
    },
    /// Write a product as an ODPS product file plus one ODCS v3.1 contract per table.
    Export {
        /// The product id (`<domain>.<name>`).
        product: String,
        /// The directory of product manifests.
        #[arg(long, default_value = "products", value_name = "DIR")]
        products_dir: PathBuf,
        /// Where to write the files.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Read ODPS product files and ODCS contracts (any fields kept) into product manifests.
    Import {
        /// `.odps.yaml` and `.odcs.yaml` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The directory of product manifests to write `<product>.yaml` into.
        #[arg(long, default_value = "products", value_name = "DIR")]
        products_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum AccessCommand {
    /// Ask a product's owner for access.
    #[command(
        after_help = "Example:\n  meshgate access request payments.transactions --purpose 'fraud model' --columns amount,lob --days 30"
    )]
    Request {
        /// The product id (`<domain>.<name>`).
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
        /// The request's id (from `meshgate access list`).
        request_id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Owners: approve a request, optionally narrower than asked.
    #[command(
        after_help = "Example:\n  meshgate access approve req-0193... --row-filter \"lob = 'CIB'\" --days 30"
    )]
    Approve {
        /// The request's id (from `meshgate access list`).
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
        /// A note for the requester.
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Owners: reject a request.
    Reject {
        /// The request's id (from `meshgate access list`).
        request_id: String,
        /// Why, for the requester.
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Owners: end a grant (refused from the next query on).
    Revoke {
        /// The grant's id (from `meshgate access list`).
        grant_id: String,
        /// Why, for the grantee and the audit.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Owners: pause a grant.
    Suspend {
        /// The grant's id (from `meshgate access list`).
        grant_id: String,
        /// Why, for the grantee (their denials quote it) and the audit.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Owners: resume a paused grant.
    Resume {
        /// The grant's id (from `meshgate access list`).
        grant_id: String,
        /// Why, for the audit.
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

fn print(text: &str) {
    println!("{}", terminal::safe(text));
}

/// A listing as `format`.
fn print_rows(batches: &[RecordBatch], format: Output) -> Result<(), String> {
    print(&output::rows(batches, format)?);
    Ok(())
}

/// Several listings as one JSON object for scripts, or one after another under titles.
fn print_sections(sections: &[(&str, Vec<RecordBatch>)], format: Output) -> Result<(), String> {
    if format == Output::Json {
        let mut object = serde_json::Map::new();
        for (name, batches) in sections {
            let rows: serde_json::Value =
                serde_json::from_str(&output::rows(batches, Output::Json)?)
                    .map_err(|e| e.to_string())?;
            object.insert(name.to_string(), rows);
        }
        let text = serde_json::to_string_pretty(&object).map_err(|e| e.to_string())?;
        print(&terminal::safe_json(&text));
        return Ok(());
    }
    for (index, (name, batches)) in sections.iter().enumerate() {
        if index > 0 {
            println!();
        }
        println!("{name}:");
        print_rows(batches, format)?;
    }
    Ok(())
}

/// A progress line for a long step, on stderr.
/// Set once, from `--log-format`: with JSON logs, what the gateway says on standard error
/// goes through the log as JSON too, so every line a log pipeline reads parses.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[derive(Clone, Copy)]
enum Level {
    Info,
    Warn,
    Error,
}

/// Tell the operator something on standard error: a line of text, or a JSON log event.
fn say(level: Level, message: &str) {
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        match level {
            Level::Info => tracing::info!("{message}"),
            Level::Warn => tracing::warn!("{message}"),
            Level::Error => tracing::error!("{message}"),
        }
    } else {
        match level {
            Level::Info => eprintln!("{message}"),
            Level::Warn => eprintln!("warning: {message}"),
            Level::Error => eprintln!("error: {message}"),
        }
    }
}

fn progress(start: Instant) -> impl Fn(&str) + Sync {
    move |step: &str| {
        say(
            Level::Info,
            &format!("  [{:>5.1}s] {step}", start.elapsed().as_secs_f64()),
        )
    }
}

async fn products(command: ProductsCommand) -> Result<(), String> {
    match command {
        ProductsCommand::Init {
            product,
            mesh,
            team,
            support,
        } => {
            let blueprint = meshgate::blueprint::Blueprint {
                product,
                team,
                support_channel: support,
            };
            let files = blueprint.files().map_err(|e| e.to_string())?;
            // Nothing is written if anything would be replaced.
            for file in &files {
                let path = mesh.join(&file.path);
                if path.exists() {
                    return Err(format!(
                        "{} exists: `product init` never replaces a file (is `{}` already a product?)",
                        path.display(),
                        blueprint.product
                    ));
                }
            }
            for file in &files {
                let path = mesh.join(&file.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                std::fs::write(&path, &file.text)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                println!("wrote {}", path.display());
            }
            println!(
                "next: edit the contract's columns and the policy's readers, then `meshgate policy test {} --write`",
                mesh.display()
            );
            Ok(())
        }
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
            let found = connection.client().await?.query(&sql).await?;
            print_rows(&found, connection.output)
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
            let columns = client
                .query(&format!(
                    "SELECT table_name, column_name, data_type, classification, tags, your_treatment \
                     FROM mesh_catalog.columns WHERE product_id = {id} \
                     ORDER BY table_name, ordinal_position"
                ))
                .await?;
            match connection.output {
                // One record, too wide for a row: a field per line, then the columns.
                Output::Table => {
                    print(&output::vertical(&about)?);
                    println!();
                    print_rows(&columns, Output::Table)
                }
                format => print_sections(&[("product", about), ("columns", columns)], format),
            }
        }
    }
}

async fn access(command: AccessCommand) -> Result<(), String> {
    use meshgate::api::*;
    // Each arm runs one typed action of the API contract and prints its reply.
    async fn run<A: MeshAction>(connection: Connection, body: A) -> Result<(), String> {
        let reply = connection.client().await?.action(&body).await?;
        let value = serde_json::to_value(reply).map_err(|e| e.to_string())?;
        print(&output::record(value, connection.output)?);
        Ok(())
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
            let requests = client
                .query(
                    "SELECT request_id, requester, product_id, state, columns, purpose, created_at, decided_by \
                     FROM mesh_catalog.access_requests ORDER BY created_at",
                )
                .await?;
            let grants = client
                .query(
                    "SELECT grant_id, principal, product_id, state, columns, row_filter, valid_until, approved_by \
                     FROM mesh_catalog.grants ORDER BY created_at",
                )
                .await?;
            print_sections(
                &[("requests", requests), ("grants", grants)],
                connection.output,
            )
        }
    }
}

fn main() -> ExitCode {
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
    // The OTLP exporter's gRPC client runs on this runtime.
    let entered = runtime.enter();
    let tracer = match cli
        .otlp_endpoint
        .as_deref()
        .map(tracer_provider)
        .transpose()
    {
        Ok(tracer) => tracer,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = VALUE_CARRYING_TARGETS.iter().fold(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,datafusion=warn".into()),
        |filter, target| match format!("{target}=warn").parse() {
            Ok(cap) => filter.add_directive(cap),
            Err(_) => filter,
        },
    );
    JSON_LOGS.store(
        cli.log_format == LogFormat::Json,
        std::sync::atomic::Ordering::Relaxed,
    );
    {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let logs = match cli.log_format {
            LogFormat::Text => logs.boxed(),
            LogFormat::Json => logs
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .boxed(),
        };
        let traces = tracer.as_ref().map(|provider| {
            use opentelemetry::trace::TracerProvider;
            tracing_opentelemetry::layer().with_tracer(provider.tracer("meshgate"))
        });
        tracing_subscriber::registry()
            .with(filter)
            .with(logs)
            .with(traces)
            .init();
    }
    drop(entered);
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(message) => {
            say(Level::Error, &terminal::safe(&message));
            ExitCode::FAILURE
        }
    };
    if let Some(provider) = tracer {
        // Send the spans still queued before the process ends.
        let _ = runtime
            .block_on(async { tokio::task::spawn_blocking(move || provider.shutdown()).await });
    }
    code
}

/// Libraries whose debug logs print statements, plans or values (the SQL parser logs every
/// token, literals included; DataFusion logs plans with their literals). They log at `warn`
/// at most, whatever `RUST_LOG` says: a log line or a span event would otherwise carry what
/// only the caller may see.
const VALUE_CARRYING_TARGETS: &[&str] = &[
    "sqlparser",
    "datafusion",
    "datafusion_sql",
    "datafusion_expr",
    "datafusion_optimizer",
    "datafusion_physical_optimizer",
    "datafusion_physical_plan",
    "datafusion_physical_expr",
    "datafusion_execution",
    "datafusion_datasource",
    "datafusion_datasource_parquet",
    "datafusion_pruning",
    "datafusion_common",
    "parquet",
    "arrow",
    "arrow_flight",
];

/// The OTLP trace pipeline: batches of spans to `endpoint` over gRPC, and the W3C trace
/// context read from callers' headers.
fn tracer_provider(endpoint: &str) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("meshgate")
                .build(),
        )
        .build())
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Demo {
            listen,
            data_dir,
            lineage_file,
            lineage_url,
            http,
        } => {
            // The port first: a port in use fails now, not after the data is generated.
            let listener = meshgate::flight::bind(&listen)
                .await
                .map_err(|e| e.to_string())?;
            // The operations port is a convenience here: taken, the demo runs without it.
            let ops = match http.as_str() {
                "off" => None,
                addr => match meshgate::flight::bind(addr).await {
                    Ok(l) => Some(l),
                    Err(e) => {
                        say(
                            Level::Warn,
                            &format!("no /metrics for this demo: {e} (use --http ADDR)"),
                        );
                        None
                    }
                },
            };
            let data_dir = data_dir.unwrap_or_else(reference::default_data_dir);
            let start = Instant::now();
            say(
                Level::Info,
                &format!(
                    "meshgate demo: preparing the reference mesh in {} (the first run generates it, a few seconds)",
                    data_dir.display()
                ),
            );
            let demo = reference::demo_with(&data_dir, &progress(start))
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
            let listeners = Listeners {
                flight: listener,
                ops,
            };
            serve(
                config,
                FlightConfig::default(),
                listeners,
                true,
                None,
                Some(meshgate::config::DEFAULT_QUALITY_INTERVAL),
                Some(meshgate::console::ConsoleConfig::default()),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            config,
            listen,
            http,
        } => {
            let loaded = ServeConfig::load(&config).map_err(|e| e.to_string())?;
            let listen = listen
                .or(loaded.listen)
                .unwrap_or_else(|| "127.0.0.1:50051".to_string());
            let listener = meshgate::flight::bind(&listen)
                .await
                .map_err(|e| e.to_string())?;
            let ops = match http.or(loaded.http).filter(|a| a != "off") {
                Some(addr) => Some(
                    meshgate::flight::bind(&addr)
                        .await
                        .map_err(|e| format!("the operations listener: {e}"))?,
                ),
                None => None,
            };
            let mesh_dirs = Some(publish::MeshDirs {
                products: loaded.products_dir,
                policies: loaded.policies_dir,
                watch: loaded.watch,
            });
            let listeners = Listeners {
                flight: listener,
                ops,
            };
            if let Some(settings) = &loaded.distributed
                && let Some(network) = &settings.network
            {
                network.start_probing(settings.probe_interval).await;
                let live = meshgate::engine::WorkerNetwork::live(network.as_ref());
                say(
                    Level::Info,
                    &format!(
                        "distributing large queries over {} of {} workers that answer",
                        live.len(),
                        meshgate::engine::WorkerNetwork::configured(network.as_ref()).len()
                    ),
                );
            }
            serve(
                loaded.gateway,
                loaded.flight,
                listeners,
                false,
                mesh_dirs,
                loaded.quality_interval,
                loaded.console,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { config, listen } => {
            worker(&config, listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, strict } => check(&config, strict).await,
        Command::Lint {
            mesh,
            base,
            strict,
            format,
        } => lint(&mesh, base.as_deref(), strict, format).await,
        Command::Policy {
            command: PolicyCommand::Test { mesh, files, write },
        } => policy_test(&mesh, files, write).await,
        Command::Policy {
            command:
                PolicyCommand::Diff {
                    before,
                    after,
                    format,
                    approved_by,
                    data,
                },
        } => policy_diff(&before, &after, format, approved_by, data.as_deref()).await,
        Command::Keygen { out, force } => {
            keygen(out, force)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sql { query, connection } => {
            let query = match query.as_deref() {
                None | Some("-") => {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                        .map_err(|e| format!("cannot read the query from standard input: {e}"))?;
                    text
                }
                Some(text) => text.to_string(),
            };
            if query.trim().is_empty() {
                return Err("no query: give one as an argument or on standard input".into());
            }
            let batches = connection.client().await?.query(&query).await?;
            print_rows(&batches, connection.output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Products { command } => products(command).await.map(|()| ExitCode::SUCCESS),
        Command::Access { command } => access(command).await.map(|()| ExitCode::SUCCESS),
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
            let flows = connection.client().await?.query(&sql).await?;
            print_rows(&flows, connection.output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Quality {
            product,
            check,
            connection,
        } => {
            let mut client = connection.client().await?;
            if check {
                let body = meshgate::api::CheckQuality {
                    product: product.clone(),
                };
                client.action(&body).await?;
            }
            let filter = product
                .map(|p| format!(" WHERE product_id = {}", literal(&p)))
                .unwrap_or_default();
            let sql = format!(
                "SELECT product_id, rule_id, expectation, status, measured, detail, checked_at \
                 FROM mesh_catalog.quality{filter}"
            );
            let rows = client.query(&sql).await?;
            print_rows(&rows, connection.output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SeedReference { endpoint } => {
            let var = |name: &str| std::env::var(name).map_err(|_| format!("set ${name}"));
            let (key, secret) = (
                var("MESHGATE_SEED_ACCESS_KEY_ID")?,
                var("MESHGATE_SEED_SECRET_ACCESS_KEY")?,
            );
            let generated = reference::upload_with(
                |bucket| reference::s3_store(&endpoint, bucket, &key, &secret),
                &progress(Instant::now()),
            )
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
            Ok(ExitCode::SUCCESS)
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
            Ok(ExitCode::SUCCESS)
        }
        Command::Health { address } => {
            let target = address.target(None);
            Client::probe(&target).await?;
            println!("ok: a gateway answers at {}", target.server);
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "meshgate",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out } => {
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let written = man_pages(Cli::command(), "meshgate", &out)?;
            println!("wrote {written} man pages into {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Write `command`'s page and its subcommands' (`meshgate-access-request.1`); how many.
fn man_pages(command: clap::Command, name: &str, out: &std::path::Path) -> Result<usize, String> {
    let mut written = 0;
    for sub in command.get_subcommands().filter(|c| c.get_name() != "help") {
        let sub_name = format!("{name}-{}", sub.get_name());
        written += man_pages(sub.clone(), &sub_name, out)?;
    }
    let path = out.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .title(name.to_uppercase())
        .render(&mut page)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::write(&path, page).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(written + 1)
}

/// `meshgate keygen`: a new master key, printed or written to a file only its owner reads.
fn keygen(out: Option<PathBuf>, force: bool) -> Result<(), String> {
    let key = meshgate::protect::MasterKey::generate_hex();
    let Some(path) = out else {
        println!("{}", key.as_str());
        return Ok(());
    };
    if path.exists() && !force {
        return Err(format!(
            "{} exists; a new key changes every token: pass --force to replace it",
            path.display()
        ));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{}\n", key.as_str()).as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!(
        "wrote a new master key to {} (readable by you only)\n  in meshgate.toml: master_key_file = \"{}\"\n  keep it secret and backed up: tokens are derived from it",
        path.display(),
        path.display()
    );
    Ok(())
}

/// Point `config` at a throwaway governance store in a fresh temporary directory (returned,
/// for the caller to remove): tools that open a gateway to read, never to serve.
fn scratch_store(config: &mut GatewayConfig, purpose: &str) -> Result<PathBuf, String> {
    let scratch = std::env::temp_dir().join(format!("meshgate-{purpose}-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    config.governance = meshgate::Governance::Sqlite(scratch.join(format!("{purpose}.db")));
    Ok(scratch)
}

/// `meshgate check`: load and open everything `serve` would, with a throwaway governance
/// store (the configured one is neither created nor migrated), report, and exit.
async fn check(path: &std::path::Path, strict: bool) -> Result<ExitCode, String> {
    let loaded = ServeConfig::load(path).map_err(|e| e.to_string())?;
    let mut config = loaded.gateway;
    let products = config.catalog.products().count();
    let scratch = scratch_store(&mut config, "check")?;
    let workers = match (&loaded.distributed, &config.distribution) {
        (Some(settings), Some(distribution)) => match &settings.network {
            Some(network) => meshgate::check::worker_warnings(network, distribution).await,
            None => Vec::new(),
        },
        _ => Vec::new(),
    };
    let unpublished = meshgate::check::storage_warnings(&config.catalog, &config.storage);
    let opened = Gateway::open(config).await;
    let mut warnings = match &opened {
        Ok(gateway) => meshgate::check::warnings(gateway, &gateway.lake_status().await),
        Err(_) => Vec::new(),
    };
    warnings.extend(workers);
    warnings.extend(unpublished);
    let _ = std::fs::remove_dir_all(&scratch);
    let gateway = opened.map_err(|e| format!("{}: {e}", path.display()))?;
    for warning in &warnings {
        eprintln!("warning: {}", terminal::safe(&warning.to_string()));
    }
    let policies = gateway.policies();
    println!(
        "{}: {products} products, {} with a product policy, policy version {}; {} warning(s)",
        path.display(),
        policies.product_policies().count(),
        policies.fingerprint(),
        warnings.len()
    );
    if strict && !warnings.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A mesh directory as the policy commands read it: `products/` (manifests), `policies/`
/// (access rules, product policies) and, when present, `policies/users.toml`.
struct MeshDir {
    catalog: meshgate::catalog::Catalog,
    policies: meshgate::policy::PolicySet,
    users: Option<meshgate::policy::UserDirectory>,
}

impl MeshDir {
    async fn load(mesh: &Path) -> Result<Self, String> {
        let catalog = meshgate::catalog::Catalog::load_dir(&mesh.join("products"))
            .map_err(|e| e.to_string())?;
        let policies_dir = mesh.join("policies");
        let sources =
            meshgate::policy::PolicySources::from_dir(&policies_dir).map_err(|e| e.to_string())?;
        let policies = meshgate::policy::PolicySet::load(&catalog, &sources)
            .await
            .map_err(|e| e.to_string())?;
        let users_file = policies_dir.join("users.toml");
        let users = match std::fs::read_to_string(&users_file) {
            Ok(text) => Some(
                meshgate::policy::UserDirectory::parse(&users_file.display().to_string(), &text)
                    .map_err(|e| e.to_string())?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", users_file.display())),
        };
        Ok(Self {
            catalog,
            policies,
            users,
        })
    }

    fn as_diff_side(&self) -> meshgate::policy::diff::Mesh<'_> {
        meshgate::policy::diff::Mesh {
            catalog: &self.catalog,
            policies: &self.policies,
            users: self.users.as_ref(),
        }
    }
}

/// `meshgate policy diff`: what a change of a mesh's files does to what anyone sees.
async fn policy_diff(
    before: &Path,
    after: &Path,
    format: DiffFormat,
    approved_by: Option<String>,
    data: Option<&Path>,
) -> Result<ExitCode, String> {
    let (mut was, mut is) = (MeshDir::load(before).await?, MeshDir::load(after).await?);
    if let Some(config) = data {
        match grants_in_force(config).await {
            Ok(grants) => {
                let now = meshgate::api::now_millis();
                for side in [&mut was, &mut is] {
                    side.policies = side
                        .policies
                        .with_grants(&side.catalog, grants.clone(), 0, now)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            Err(e) => say(
                Level::Warn,
                &terminal::safe(&format!(
                    "the grants in force are not consulted (their holders are compared as the \
                     files alone decide): {e}"
                )),
            ),
        }
    }
    let mut report = meshgate::policy::diff::diff(was.as_diff_side(), is.as_diff_side());
    if let Some(config) = data {
        count_over_the_data(&mut report, config).await?;
    }
    let widens = report.widens();
    match format {
        DiffFormat::Markdown => {
            let mut text = report.markdown();
            if widens && let Some(who) = &approved_by {
                text.push_str(&format!("\nThe widening is approved by {who}.\n"));
            }
            print!("{}", terminal::safe(&text));
        }
        DiffFormat::Json => {
            let mut value = serde_json::to_value(&report).map_err(|e| e.to_string())?;
            if let Some(map) = value.as_object_mut() {
                map.insert("widens".into(), serde_json::Value::Bool(widens));
                map.insert(
                    "approved_by".into(),
                    approved_by
                        .clone()
                        .map_or(serde_json::Value::Null, serde_json::Value::String),
                );
            }
            println!("{value}");
        }
    }
    Ok(if widens && approved_by.is_none() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The grants in force in the governance store `config` names, read without writing to it.
async fn grants_in_force(config: &Path) -> Result<Vec<meshgate::api::Grant>, String> {
    let governance = ServeConfig::load(config)
        .map_err(|e| e.to_string())?
        .gateway
        .governance;
    let store = governance
        .open_read_only()
        .await
        .map_err(|e| e.to_string())?;
    store
        .grants_in_force(meshgate::api::now_millis())
        .await
        .map_err(|e| format!("cannot read the grants: {e}"))
}

/// Count, over the lakes of the mesh `config` serves, the rows each change of rows or access
/// adds and removes (see [`meshgate::policy::diff::Report::count_rows`]).
async fn count_over_the_data(
    report: &mut meshgate::policy::diff::Report,
    config: &Path,
) -> Result<(), String> {
    use meshgate::policy::diff::Counted;
    let mut gateway_config = ServeConfig::load(config)
        .map_err(|e| e.to_string())?
        .gateway;
    let scratch = scratch_store(&mut gateway_config, "diff")?;
    let opened = Gateway::open(gateway_config).await;
    let mut counted = std::collections::HashMap::new();
    if let Ok(gateway) = &opened {
        for change in &report.changes {
            let Some((before, after)) = change.predicates() else {
                continue;
            };
            let key = (change.table.clone(), before.to_string(), after.to_string());
            if counted.contains_key(&key) {
                continue;
            }
            let Some((domain, table)) = change.table.split_once('.') else {
                continue;
            };
            match gateway
                .count_row_changes(domain, table, before, after)
                .await
            {
                Ok((gained, lost)) => {
                    counted.insert(key, Counted { gained, lost });
                }
                Err(e) => say(
                    Level::Warn,
                    &terminal::safe(&format!("rows of {} not counted: {e}", change.table)),
                ),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    opened.map_err(|e| {
        format!(
            "cannot open the mesh of {} to count rows: {e}",
            config.display()
        )
    })?;
    report.count_rows(|table, before, after| {
        counted
            .get(&(table.to_string(), before.to_string(), after.to_string()))
            .copied()
    });
    Ok(())
}

/// `meshgate lint`: every finding, then a summary; exit 1 on an error (or a warning, with
/// `--strict`).
async fn lint(
    mesh: &Path,
    base: Option<&Path>,
    strict: bool,
    format: LintFormat,
) -> Result<ExitCode, String> {
    let report = meshgate::lint::lint(mesh, base).await;
    match format {
        LintFormat::Text => {
            for finding in &report.findings {
                println!("{}", terminal::safe(&finding.to_string()));
            }
            println!(
                "{} contract(s), {} product policy file(s): {} error(s), {} warning(s)",
                report.contracts,
                report.policies,
                report.errors(),
                report.warnings()
            );
        }
        LintFormat::Json => {
            println!(
                "{}",
                serde_json::to_string(&report).map_err(|e| e.to_string())?
            );
        }
    }
    let failed = report.errors() > 0 || (strict && report.warnings() > 0);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `meshgate policy test`: golden decision files against a mesh directory's policies.
async fn policy_test(mesh: &Path, files: Vec<PathBuf>, write: bool) -> Result<ExitCode, String> {
    use meshgate::policy::golden::{Caller, GoldenFile};
    let MeshDir {
        catalog,
        policies,
        users,
    } = MeshDir::load(mesh).await?;
    let tests_dir = mesh.join("policies").join("tests");
    let files = if files.is_empty() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&tests_dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    } else {
        files
    };
    if files.is_empty() {
        if !write {
            return Err(format!(
                "no golden decision files in {} (`meshgate policy test {} --write` writes one \
                 with what the policies decide now, to review and commit)",
                tests_dir.display(),
                mesh.display()
            ));
        }
        let mut cases = Vec::new();
        for user in users.iter().flat_map(|u| u.names()) {
            for product in catalog.products() {
                for table in product.tables.iter().filter(|t| !t.is_view()) {
                    let caller = Caller::User(user.to_string());
                    let name = format!("{}.{}", product.domain, table.name);
                    let outcome = meshgate::policy::golden::outcome(
                        &policies,
                        &catalog,
                        users.as_ref(),
                        &caller,
                        &name,
                    )?;
                    cases.push((caller, name, outcome));
                }
            }
        }
        let path = tests_dir.join("decisions.toml");
        std::fs::create_dir_all(&tests_dir).map_err(|e| format!("{}: {e}", tests_dir.display()))?;
        let text = meshgate::policy::golden::render(GOLDEN_HEADER, &cases);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {} decisions to {}", cases.len(), path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = 0usize;
    let mut checked = 0usize;
    for file in &files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: {e}"))?;
        let golden = GoldenFile::parse(&name, &text).map_err(|e| e.to_string())?;
        if write {
            let header: String = text
                .lines()
                .take_while(|l| l.starts_with('#') || l.trim().is_empty())
                .map(|l| format!("{l}\n"))
                .collect();
            let rewritten =
                golden.rewrite(header.trim_end(), &policies, &catalog, users.as_ref())?;
            std::fs::write(file, rewritten).map_err(|e| format!("{name}: {e}"))?;
            println!("{name}: rewrote {} decisions", golden.decisions.len());
            continue;
        }
        checked += golden.decisions.len();
        for mismatch in golden.check(&policies, &catalog, users.as_ref()) {
            failed += 1;
            println!("FAIL {}", terminal::safe(&mismatch.to_string()));
        }
    }
    if write {
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{checked} decisions in {} file(s) under policy version {}: {} passed, {failed} failed",
        files.len(),
        policies.fingerprint(),
        checked - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

const GOLDEN_HEADER: &str = "# What each caller sees of each table: golden decisions for `meshgate policy test`.\n\
# Written by `meshgate policy test --write`; review every line before committing it.";

/// Where `serve` answers: Flight SQL, and optionally the operations endpoints.
struct Listeners {
    flight: tokio::net::TcpListener,
    ops: Option<tokio::net::TcpListener>,
}

async fn serve(
    config: GatewayConfig,
    flight: FlightConfig,
    listeners: Listeners,
    demo: bool,
    mesh_dirs: Option<publish::MeshDirs>,
    quality_interval: Option<std::time::Duration>,
    console: Option<meshgate::console::ConsoleConfig>,
) -> Result<(), String> {
    let Listeners {
        flight: listener,
        ops,
    } = listeners;
    if let Some(dirs) = &mesh_dirs {
        dirs.lint().await.map_err(|e| {
            format!("the mesh directory does not pass lint, so it is not served: {e}")
        })?;
    }
    let gateway = Gateway::open(config).await.map_err(|e| e.to_string())?;
    let published = std::sync::Arc::new(tokio::sync::Notify::new());
    if let Some(dirs) = mesh_dirs {
        tokio::spawn(publish::publish_on_change(
            publish::Target::Gateway(gateway.clone()),
            dirs,
            std::sync::Arc::clone(&published),
        ));
    }
    if let Some(every) = quality_interval {
        tokio::spawn(quality::check_on_schedule(
            gateway.clone(),
            every,
            published,
        ));
    }
    // Listed once: the lines below and the warnings after them.
    let lakes = gateway.lake_status().await;
    for lake in &lakes {
        if lake.error.is_none() && lake.files > 0 {
            println!(
                "  {}: {} files, {} bytes in bucket {}{}",
                lake.product,
                lake.files,
                lake.bytes,
                lake.bucket,
                lake.last_modified
                    .map(|t| format!(", newest {}", t.format("%Y-%m-%dT%H:%M:%SZ")))
                    .unwrap_or_default()
            );
        }
    }
    for warning in meshgate::check::warnings(&gateway, &lakes) {
        say(Level::Warn, &terminal::safe(&warning.to_string()));
    }
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
        println!(
            "  or: MESHGATE_USER=cib-reporting MESHGATE_PASSWORD=cib-reporting-pw meshgate sql --server {addr} 'SELECT * FROM reference.counterparties LIMIT 5'"
        );
    }
    let (stop_ops, ops_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(ops) = ops {
        let ops_addr = ops.local_addr().map_err(|e| e.to_string())?;
        let scheme = if flight.tls.is_some() {
            "grpc+tls"
        } else {
            "grpc"
        };
        let console = match console {
            Some(settings) => {
                let router = meshgate::console::router(
                    gateway.clone(),
                    &meshgate::console::ConsoleConfig {
                        jwt: flight.jwt.clone(),
                        flight_url: format!("{scheme}://{addr}"),
                        ..settings
                    },
                )?;
                println!("console on http://{ops_addr}/ (sign in as a user of the mesh)");
                router
            }
            None => Default::default(),
        };
        println!("operations on http://{ops_addr} (/metrics, /healthz, /readyz)");
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let stopped = async {
                let _ = ops_stopped.await;
            };
            if let Err(e) = meshgate::flight::serve_http(gateway, ops, console, stopped).await {
                tracing::error!(error = %e, "the operations listener stopped");
            }
        });
    }
    // Tests and scripts wait for this line.
    println!("listening on {addr}");
    let shutdown = async {
        shutdown_signal().await;
        say(Level::Info, "shutting down: finishing running queries");
    };
    let _stop_ops = stop_ops; // dropped when serving ends: the operations listener stops too
    meshgate::flight::serve(gateway, listener, flight, shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// `meshgate worker`: the stages of large queries, for the gateways of the configuration's
/// mesh.
async fn worker(config: &Path, listen: Option<String>) -> Result<(), String> {
    let loaded = ServeConfig::load_worker(config).map_err(|e| e.to_string())?;
    let Some(settings) = loaded.distributed else {
        return Err(format!(
            "{}: a worker needs a [distributed] section (see docs/configuration.md)",
            config.display()
        ));
    };
    let listen = listen.unwrap_or(settings.listen);
    let listener = meshgate::flight::bind(&listen)
        .await
        .map_err(|e| e.to_string())?;
    let dirs = publish::MeshDirs {
        products: loaded.products_dir,
        policies: loaded.policies_dir,
        watch: loaded.watch,
    };
    dirs.lint()
        .await
        .map_err(|e| format!("the mesh directory does not pass lint, so it is not served: {e}"))?;
    let node = std::sync::Arc::new(
        meshgate::engine::WorkerNode::open(loaded.gateway)
            .await
            .map_err(|e| e.to_string())?,
    );
    // Like a gateway, a worker publishes its changed mesh directories (on a change or
    // SIGHUP): its gateways' stages run only while both hold the same version.
    tokio::spawn(publish::publish_on_change(
        publish::Target::Worker(std::sync::Arc::clone(&node)),
        dirs,
        std::sync::Arc::new(tokio::sync::Notify::new()),
    ));
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    say(
        Level::Info,
        &format!(
            "worker holding policy version {}{}",
            node.policy_version(),
            if settings.server_tls.is_some() {
                ", TLS"
            } else {
                ""
            }
        ),
    );
    // Tests and scripts wait for this line.
    println!("worker listening on {addr}");
    let server = meshgate::distributed::WorkerServer {
        node,
        signer: settings.signer,
        tls: settings.server_tls,
        peers_tls: settings.client_tls,
        refused: std::sync::Arc::default(),
        stages: std::sync::Arc::default(),
        sent: std::sync::Arc::default(),
    };
    server
        .serve(listener, shutdown_signal())
        .await
        .map_err(|e| format!("the worker stopped: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `--help` explains every argument, positional ones included, of every command.
    #[test]
    fn every_argument_of_every_command_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let command = Cli::command();
        command.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&command, "meshgate", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
        assert!(
            command
                .get_after_help()
                .is_some_and(|h| h.to_string().contains("meshgate sql")),
            "the top-level help shows examples"
        );
    }
}
