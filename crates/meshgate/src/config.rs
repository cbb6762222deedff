//! `meshgate.toml`: how `meshgate serve` finds its products, policies, users, storage and
//! master key. Relative paths are relative to the file. Any string value may use `${VAR}`
//! to take an environment variable's value (a missing variable is an error); credentials
//! themselves are only ever named (see [`meshgate_storage::config`]).
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! products = "products"                 # directory of product manifests (ODCS YAML)
//! policies = "policies"                 # access.conf, access.csv, global.toml, products/*.toml
//! watch = "2s"                           # publish changed files this often ("0s": on SIGHUP only)
//! quality_interval = "1h"                # measure products' quality rules this often ("0s": on demand only)
//! users = "policies/users.toml"         # optional: static users for password logins
//! master_key_file = "secrets/master.key" # optional: else $MESHGATE_MASTER_KEY
//! memory_limit = "2GiB"                  # optional: all queries together; beyond it they spill
//! spill_dir = "/var/tmp/meshgate"        # optional
//! parquet_pushdown = true                # optional: filter inside the Parquet decoder (default false)
//! statistics_behind_row_filters = false  # optional: plan row-filtered callers without statistics (default true)
//!
//! [limits]                               # optional, per query
//! max_concurrent = 8                     # running at once (default: 2 x cores)
//! max_queued = 64                        # waiting for a slot; more are refused
//! max_concurrent_per_principal = 4       # one principal's share (default: half, at least 1)
//! max_queued_per_principal = 16          # one principal's waiting (default: a quarter, >= 1)
//! timeout = "15m"                        # default 15m; "0s" for none
//! memory = "512MiB"
//!
//! [flight]                               # optional
//! token_ttl = "12h"                      # session tokens from the handshake
//! max_message = "64MiB"                  # largest gRPC message, both directions
//! keepalive = "30s"                      # HTTP/2 and TCP keep-alive
//! drain_timeout = "30s"                  # on shutdown, running queries get this long
//!
//! [tls]                                  # optional: serve TLS (rustls)
//! cert = "tls/server.pem"
//! key = "tls/server.key"
//! client_ca = "tls/clients-ca.pem"       # optional: mutual TLS; the certificate's CN
//! client_cert_required = false           #   names the principal (a user of `users`)
//!
//! [[auth.jwt]]                           # optional, repeatable: identity providers
//! issuer = "https://idp.example.com"
//! audience = "meshgate"
//! algorithm = "RS256"                    # HS256, RS256 or ES256
//! public_key = "keys/idp.pem"            # RS256/ES256: the issuer's public key (PEM)
//! # secret_env = "MESHGATE_JWT_SECRET"   # HS256: the variable holding the shared secret
//! principal_claim = "sub"                # default `sub`
//! roles_claim = "roles"                  # optional
//! attributes = { lob = "lob" }           # principal attribute = claim
//! leeway = "30s"                         # clock skew on exp/nbf
//! principal_prefix = "idp."              # required, or a mapping: the principals this
//! # [auth.jwt.principals]                #   issuer may assert (ids starting with the
//! # "00u1abc" = "cib-reporting"          #   prefix, or claim value = principal id); a
//! roles = ["lob-system"]                 #   token outside is refused. `roles`: optional
//!
//! [storage.default]
//! kind = "s3"
//! endpoint = "${MESHGATE_S3_ENDPOINT}"
//! path_style = true
//! allow_http = true
//! access_key_id_env = "MESHGATE_S3_{PRODUCT}_ACCESS_KEY_ID"
//! secret_access_key_env = "MESHGATE_S3_{PRODUCT}_SECRET_ACCESS_KEY"
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use meshgate_catalog::Catalog;
use meshgate_distributed::{ClientTls, Network, ServerTls, StageSigner};
use meshgate_engine::QueryLimits;
use meshgate_engine::{
    AuditSettings, Distribution, GatewayConfig, Governance, LineageConfig, OnWorkerDown,
};
use meshgate_flight::{FlightConfig, JwtConfig, JwtKey, PrincipalNamespace, TlsConfig};
use meshgate_governance::PostgresOptions;
use meshgate_policy::{PolicySources, UserDirectory};
use meshgate_protect::MasterKey;
use meshgate_storage::{StorageConfig, StorageKind, units};
use serde::Deserialize;
use zeroize::Zeroizing;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    listen: Option<String>,
    products: PathBuf,
    policies: PathBuf,
    /// How often `serve` looks at `products` and `policies` for a change to publish.
    #[serde(default, deserialize_with = "units::optional_duration")]
    watch: Option<std::time::Duration>,
    /// How often `serve` measures every product's quality rules.
    #[serde(default, deserialize_with = "units::optional_duration")]
    quality_interval: Option<std::time::Duration>,
    #[serde(default)]
    users: Option<PathBuf>,
    #[serde(default)]
    master_key_file: Option<PathBuf>,
    #[serde(default)]
    storage: StorageConfig,
    #[serde(default)]
    target_partitions: Option<usize>,
    #[serde(default, deserialize_with = "units::optional_size")]
    memory_limit: Option<usize>,
    #[serde(default)]
    spill_dir: Option<PathBuf>,
    #[serde(default)]
    parquet_pushdown: bool,
    #[serde(default = "yes")]
    statistics_behind_row_filters: bool,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    flight: FlightSection,
    #[serde(default)]
    tls: Option<TlsSection>,
    #[serde(default)]
    auth: AuthSection,
    /// The governance store (access requests, grants, audit): a SQLite file, or a
    /// `postgres://` URL (without its password: see `[store]`).
    #[serde(default = "default_state")]
    state: String,
    /// `[store]`: how a PostgreSQL store is reached.
    #[serde(default)]
    store: StoreSection,
    /// This gateway's name on its audit records (default: the host name and listen port).
    #[serde(default)]
    replica: Option<String>,
    /// `[http]`: the operations endpoints.
    #[serde(default)]
    http: HttpSection,
    /// `[audit]`: what the audit log keeps (the engine's own settings type).
    #[serde(default)]
    audit: AuditSettings,
    /// `[lineage]`: OpenLineage events per query, off unless `file` or `url` is set (the
    /// lineage crate's own type; `file` is relative to this file).
    #[serde(default)]
    lineage: LineageConfig,
    /// `[distributed]`: workers for large queries (a gateway's) and where a worker listens.
    #[serde(default)]
    distributed: Option<DistributedSection>,
}

/// `[distributed]`: how gateways hand large queries to workers, and how workers serve.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DistributedSection {
    /// The workers' addresses (`http://host:port`, or `https://` with `ca`).
    #[serde(default)]
    workers: Vec<String>,
    /// Queries whose sealed scans read at least this much go to workers (default 64MiB).
    #[serde(default, deserialize_with = "units::optional_size")]
    min_scan_bytes: Option<usize>,
    /// Parquet bytes one partition of a task reads (default 16MiB).
    #[serde(default, deserialize_with = "units::optional_size")]
    bytes_per_partition: Option<usize>,
    /// `skip` (default) or `local`.
    #[serde(default)]
    on_worker_down: Option<String>,
    /// How often the gateway asks each worker whether it answers (default 5s).
    #[serde(default, deserialize_with = "units::optional_duration")]
    probe_interval: Option<Duration>,
    /// How long a signed stage plan stays valid (default 60s).
    #[serde(default, deserialize_with = "units::optional_duration")]
    stage_ttl: Option<Duration>,
    /// `meshgate worker`: where it listens (default 127.0.0.1:50061).
    #[serde(default)]
    listen: Option<String>,
    /// TLS between gateways and workers: the mesh's CA (PEM)...
    #[serde(default)]
    ca: Option<PathBuf>,
    /// ...this node's certificate and key, presented to workers by a gateway and to gateways
    /// by a worker; with `ca` set, a worker accepts only certificates the CA signed.
    #[serde(default)]
    cert: Option<PathBuf>,
    #[serde(default)]
    key: Option<PathBuf>,
    /// The name in the workers' certificates, when it is not the host of their address.
    #[serde(default)]
    domain: Option<String>,
}

/// A loaded `[distributed]` section.
#[derive(Debug)]
pub struct DistributedSettings {
    /// The network to the workers (a gateway probes it while it serves).
    pub network: Option<Arc<Network>>,
    /// `meshgate worker`: where it listens, how it checks and how it reaches its peers.
    pub listen: String,
    pub signer: Arc<StageSigner>,
    pub server_tls: Option<ServerTls>,
    pub client_tls: Option<ClientTls>,
    pub probe_interval: Duration,
}

fn distributed(
    section: &DistributedSection,
    master_key: &MasterKey,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<(DistributedSettings, Option<Distribution>), String> {
    let signer = Arc::new(
        StageSigner::new(
            master_key,
            section
                .stage_ttl
                .unwrap_or(meshgate_distributed::DEFAULT_TTL),
        )
        .map_err(|e| format!("[distributed]: {e}"))?,
    );
    let ca = section
        .ca
        .as_deref()
        .map(|p| read(&resolve(p)))
        .transpose()?;
    let identity = match (&section.cert, &section.key) {
        (Some(cert), Some(key)) => Some((read(&resolve(cert))?, read(&resolve(key))?)),
        (None, None) => None,
        _ => return Err("[distributed]: set both `cert` and `key`, or neither".into()),
    };
    let client_tls = ca.clone().map(|ca_pem| ClientTls {
        ca_pem,
        identity: identity.clone(),
        domain: section.domain.clone(),
    });
    let server_tls = match (&identity, &ca) {
        (Some((cert_pem, key_pem)), ca) => Some(ServerTls {
            cert_pem: cert_pem.clone(),
            key_pem: key_pem.clone(),
            client_ca_pem: ca.clone(),
        }),
        (None, Some(_)) => None,
        (None, None) => None,
    };
    let mut workers = Vec::with_capacity(section.workers.len());
    for worker in &section.workers {
        let url = url::Url::parse(worker)
            .map_err(|e| format!("[distributed] workers: `{worker}` is not an address: {e}"))?;
        if url.scheme() == "https" && client_tls.is_none() {
            return Err(format!(
                "[distributed] workers: `{worker}` is https, which needs `ca`"
            ));
        }
        workers.push(url);
    }
    let on_worker_down = match section.on_worker_down.as_deref() {
        None | Some("skip") => OnWorkerDown::Skip,
        Some("local") => OnWorkerDown::Local,
        Some(other) => {
            return Err(format!(
                "[distributed] on_worker_down: `{other}` is not `skip` or `local`"
            ));
        }
    };
    let network = (!workers.is_empty())
        .then(|| Network::new(workers, Arc::clone(&signer), client_tls.clone()));
    let distribution = network.as_ref().map(|network| Distribution {
        network: Arc::clone(network) as Arc<dyn meshgate_engine::WorkerNetwork>,
        min_scan_bytes: section.min_scan_bytes.unwrap_or(64 << 20) as u64,
        bytes_per_partition: section.bytes_per_partition.unwrap_or(16 << 20),
        on_worker_down,
    });
    Ok((
        DistributedSettings {
            network,
            listen: section
                .listen
                .clone()
                .unwrap_or_else(|| "127.0.0.1:50061".into()),
            signer,
            server_tls,
            client_tls,
            probe_interval: section.probe_interval.unwrap_or(Duration::from_secs(5)),
        },
        distribution,
    ))
}

fn default_state() -> String {
    "state/meshgate.db".to_string()
}

/// `[http]`: where the console, `/metrics`, `/healthz` and `/readyz` answer (off unless set).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    #[serde(default)]
    listen: Option<String>,
    /// Serve the console there too.
    #[serde(default = "yes")]
    console: bool,
    /// Mark the console's session cookie `Secure` (reached over HTTPS through a proxy).
    #[serde(default)]
    secure_cookie: bool,
    #[serde(default, deserialize_with = "units::optional_duration")]
    session_ttl: Option<Duration>,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: None,
            console: true,
            secure_cookie: false,
            session_ttl: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// `[store]`: a PostgreSQL store's password (named, never written) and pool.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    /// The variable holding the password...
    #[serde(default)]
    password_env: Option<String>,
    /// ...or a file holding it (a mounted secret).
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    max_connections: Option<u32>,
    /// How long a query waits for a store connection before it is refused.
    #[serde(default, deserialize_with = "units::optional_duration")]
    acquire_timeout: Option<Duration>,
}

/// Where governance lives: a PostgreSQL URL with its password read from where `[store]`
/// names, or a SQLite file relative to the configuration.
fn governance(
    parsed: &FileConfig,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<Governance, String> {
    let store = &parsed.store;
    if !PostgresOptions::is_postgres_url(&parsed.state) {
        if store.password_env.is_some() || store.password_file.is_some() {
            return Err(format!(
                "[store] sets a password, but `state` ({}) is a SQLite file: use a postgres:// URL \
                 or remove the password",
                parsed.state
            ));
        }
        return Ok(Governance::Sqlite(resolve(Path::new(&parsed.state))));
    }
    if url_has_password(&parsed.state) {
        return Err(
            "`state` holds a password: write the URL without it and name where the password is \
             with [store] password_env or password_file"
                .into(),
        );
    }
    let mut options = PostgresOptions::new(parsed.state.clone());
    options.password = match (&store.password_env, &store.password_file) {
        (Some(_), Some(_)) => {
            return Err("[store]: set password_env or password_file, not both".into());
        }
        (Some(variable), None) => Some(
            std::env::var(variable)
                .map_err(|_| format!("[store] password_env names `{variable}`, which is not set"))?
                .into(),
        ),
        (None, Some(file)) => {
            let file = resolve(file);
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&file)
                    .map_err(|e| format!("[store] password_file {}: {e}", file.display()))?,
            );
            Some(text.trim_end_matches(['\n', '\r']).to_string().into())
        }
        (None, None) => None,
    };
    if let Some(n) = store.max_connections {
        options.max_connections = n;
    }
    if let Some(t) = store.acquire_timeout {
        options.acquire_timeout = t;
    }
    Ok(Governance::Postgres(options))
}

/// `postgres://user:password@host/...` or `?password=`: a secret written in the file.
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
    userinfo.is_some_and(|u| u.contains(':'))
        || rest
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("password=")))
}

/// The default replica name: this host's name and the port the gateway listens on, which
/// tells apart replicas on one host as well as on many.
fn default_replica(listen: Option<&str>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "meshgate".into());
    match listen
        .and_then(|l| l.rsplit_once(':'))
        .map(|(_, port)| port)
    {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// `[flight]`: the server's protocol settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlightSection {
    #[serde(default, deserialize_with = "units::optional_duration")]
    token_ttl: Option<Duration>,
    #[serde(default, deserialize_with = "units::optional_size")]
    max_message: Option<usize>,
    #[serde(default, deserialize_with = "units::optional_duration")]
    keepalive: Option<Duration>,
    #[serde(default, deserialize_with = "units::optional_duration")]
    drain_timeout: Option<Duration>,
}

/// `[tls]`: certificate files (PEM).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert: PathBuf,
    key: PathBuf,
    #[serde(default)]
    client_ca: Option<PathBuf>,
    #[serde(default)]
    client_cert_required: bool,
}

/// `[auth]`: token issuers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    #[serde(default)]
    jwt: Vec<JwtSection>,
}

/// One `[[auth.jwt]]` issuer. Secrets are never written in the file: an HS256 secret is
/// read from the variable `secret_env` names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtSection {
    issuer: String,
    audience: String,
    algorithm: String,
    #[serde(default)]
    public_key: Option<PathBuf>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    principal_claim: Option<String>,
    #[serde(default)]
    roles_claim: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "units::optional_duration")]
    leeway: Option<Duration>,
    /// The principals this issuer may assert: ids starting with this prefix...
    #[serde(default)]
    principal_prefix: Option<String>,
    /// ...or exactly these (principal claim value -> principal id).
    #[serde(default)]
    principals: Option<BTreeMap<String, String>>,
    /// The roles this issuer may assert (default: any).
    #[serde(default)]
    roles: Option<Vec<String>>,
}

/// `[limits]`: what each query may take.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsConfig {
    max_concurrent: Option<usize>,
    max_queued: Option<usize>,
    max_concurrent_per_principal: Option<usize>,
    max_queued_per_principal: Option<usize>,
    /// `0s` for none.
    #[serde(default, deserialize_with = "units::optional_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "units::optional_size")]
    memory: Option<usize>,
}

/// Who reads a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Gateway,
    Worker,
}

/// How often `serve` looks for a changed mesh directory when `watch` is not set.
pub const DEFAULT_WATCH: std::time::Duration = std::time::Duration::from_secs(2);

/// How often `serve` and `demo` measure products' quality rules when `quality_interval` is
/// not set (each check scans the tables its rules measure).
pub const DEFAULT_QUALITY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// A loaded configuration file.
#[derive(Debug)]
pub struct ServeConfig {
    pub listen: Option<String>,
    /// Where the operations endpoints answer (`[http] listen`; `None`: not served).
    pub http: Option<String>,
    /// The console on that listener (`None`: `[http] console = false`). Its token issuers
    /// and Flight address are the server's, filled in when it starts.
    pub console: Option<meshgate_console::ConsoleConfig>,
    pub gateway: GatewayConfig,
    pub flight: FlightConfig,
    /// The policy directory, re-read on every reload (SIGHUP).
    pub policies_dir: PathBuf,
    /// The product manifests' directory, re-read on every publish.
    pub products_dir: PathBuf,
    /// How often `serve` looks for a changed mesh directory to publish (`None`: only on
    /// SIGHUP).
    pub watch: Option<std::time::Duration>,
    /// How often `serve` measures quality (`None`: on demand only).
    pub quality_interval: Option<std::time::Duration>,
    /// `[distributed]`, when present.
    pub distributed: Option<DistributedSettings>,
}

/// A configuration file that cannot be used: the file, where known the line and column
/// (1-based) and that line's text, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The line as written in the file (never with a `${VAR}` value substituted, which
    /// could be a secret).
    pub source_line: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let (Some(line), Some(text)) = (self.line, &self.source_line) {
            write!(f, "\n{line:>5} | {text}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn at(file: &str, text: &str, offset: Option<usize>, message: String) -> Self {
        let (line, column, source_line) = match offset {
            Some(offset) => {
                let before = &text[..offset.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                let source_line = text.lines().nth(line - 1).map(str::to_string);
                (Some(line), Some(column), source_line)
            }
            None => (None, None, None),
        };
        Self {
            file: file.to_string(),
            line,
            column,
            source_line,
            message,
        }
    }
}

/// Parse `text` (the file `file`) into its sections, with `${VAR}` references replaced by
/// the environment's values. The references are substituted inside the parsed string values
/// (never spliced into the TOML text, where a quote in a value could change the file's
/// meaning) and the result is parsed again, so an error points at the line and column
/// as written.
fn parse_file(file: &str, text: &str) -> Result<FileConfig, ConfigError> {
    let toml_error = |e: toml::de::Error, text: &str| {
        let offset = e.span().map(|s| s.start);
        ConfigError::at(file, text, offset, e.message().trim_end().to_string())
    };
    let document = toml::de::DeTable::parse(text).map_err(|e| toml_error(e, text))?;
    let mut edits = Vec::new();
    for (_, value) in document.get_ref() {
        interpolate_spanned(value, &mut edits)
            .map_err(|(offset, message)| ConfigError::at(file, text, Some(offset), message))?;
    }
    let mut rewritten = text.to_string();
    edits.sort_by_key(|(range, _): &(std::ops::Range<usize>, String)| {
        std::cmp::Reverse(range.start)
    });
    for (range, replacement) in edits {
        rewritten.replace_range(range, &replacement);
    }
    // The substituted values are single-line basic strings, so lines keep their numbers;
    // the line shown is the original's.
    toml::from_str::<FileConfig>(&rewritten).map_err(|e| {
        let mut error = toml_error(e, &rewritten);
        if let Some(line) = error.line {
            error.source_line = text.lines().nth(line - 1).map(str::to_string);
        }
        error
    })
}

/// The edits that replace each string value holding `${VAR}` with a basic string of its
/// substituted value; `Err((offset, why))` for a reference that cannot be substituted.
fn interpolate_spanned(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    edits: &mut Vec<(std::ops::Range<usize>, String)>,
) -> Result<(), (usize, String)> {
    match value.get_ref() {
        toml::de::DeValue::String(text) if text.contains("${") => {
            let substituted = substitute(text, &mut |name| {
                std::env::var(name).map_err(|_| format!("environment variable `{name}` is not set"))
            })
            .map_err(|e| (value.span().start, e))?;
            edits.push((value.span(), basic_string(&substituted)));
        }
        toml::de::DeValue::Array(items) => {
            for item in items {
                interpolate_spanned(item, edits)?;
            }
        }
        toml::de::DeValue::Table(table) => {
            for (_, item) in table {
                interpolate_spanned(item, edits)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `text` as a TOML basic string on one line.
fn basic_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl ServeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_as(path, Role::Gateway)
    }

    /// The configuration as `meshgate worker` reads it: the same file, without what only a
    /// gateway opens (a worker reads no governance store, so it needs no store password).
    pub fn load_worker(path: &Path) -> Result<Self, ConfigError> {
        Self::load_as(path, Role::Worker)
    }

    fn load_as(path: &Path, role: Role) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let err = |message: String| ConfigError::at(&file, "", None, message);
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut parsed = parse_file(&file, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let resolve_str = |p: &str| resolve(Path::new(p)).display().to_string();

        let products_dir = resolve(&parsed.products);
        let catalog = Catalog::load_dir(&products_dir).map_err(|e| err(e.to_string()))?;
        let watch = match parsed.watch {
            None => Some(DEFAULT_WATCH),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        };
        let quality_interval = match parsed.quality_interval {
            None => Some(DEFAULT_QUALITY_INTERVAL),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        };
        let policies_dir = resolve(&parsed.policies);
        let policies = PolicySources::from_dir(&policies_dir).map_err(|e| err(e.to_string()))?;
        let users = match &parsed.users {
            Some(p) => {
                let p = resolve(p);
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| err(format!("{}: {e}", p.display())))?;
                Some(
                    UserDirectory::parse(&p.display().to_string(), &text)
                        .map_err(|e| err(e.to_string()))?,
                )
            }
            None => None,
        };
        let master_key = match &parsed.master_key_file {
            Some(p) => MasterKey::from_file(&resolve(p)).map_err(|e| err(e.to_string()))?,
            None => MasterKey::from_env()
                .map_err(|e| err(e.to_string()))?
                .ok_or_else(|| err(meshgate_protect::KeyError::Missing.to_string()))?,
        };
        let mut storage = std::mem::take(&mut parsed.storage);
        for settings in std::iter::once(&mut storage.default).chain(storage.products.values_mut()) {
            if settings.kind == Some(StorageKind::Local)
                && let Some(p) = &settings.path
            {
                settings.path = Some(resolve_str(p));
            }
            if let Some(p) = &settings.credentials_file {
                settings.credentials_file = Some(resolve_str(p));
            }
        }
        let limits = limits(&parsed.limits);
        let flight = flight(&parsed, &resolve).map_err(&err)?;
        let (distributed, distribution) = match &parsed.distributed {
            Some(section) => {
                let (settings, distribution) =
                    distributed(section, &master_key, &resolve).map_err(&err)?;
                (Some(settings), distribution)
            }
            None => (None, None),
        };
        Ok(Self {
            distributed,
            listen: parsed.listen.clone(),
            http: parsed.http.listen.clone(),
            console: parsed.http.console.then(|| {
                let defaults = meshgate_console::ConsoleConfig::default();
                meshgate_console::ConsoleConfig {
                    secure_cookie: parsed.http.secure_cookie,
                    session_ttl: parsed.http.session_ttl.unwrap_or(defaults.session_ttl),
                    ..defaults
                }
            }),
            policies_dir,
            products_dir,
            watch,
            quality_interval,
            flight,
            gateway: GatewayConfig {
                catalog,
                policies,
                users,
                storage,
                master_key,
                target_partitions: parsed.target_partitions,
                memory_limit: parsed.memory_limit,
                spill_dir: parsed.spill_dir.as_deref().map(resolve),
                limits,
                parquet_pushdown: parsed.parquet_pushdown,
                statistics_behind_row_filters: parsed.statistics_behind_row_filters,
                governance: match role {
                    Role::Gateway => governance(&parsed, &resolve).map_err(&err)?,
                    // Never opened: a worker's engine (`WorkerNode`) has no store.
                    Role::Worker => Governance::Sqlite(PathBuf::new()),
                },
                audit: parsed.audit.clone(),
                replica: Some(
                    parsed
                        .replica
                        .clone()
                        .unwrap_or_else(|| default_replica(parsed.listen.as_deref())),
                ),
                lineage: LineageConfig {
                    file: parsed.lineage.file.as_deref().map(resolve),
                    ..parsed.lineage.clone()
                },
                distribution,
            },
        })
    }
}

fn limits(section: &LimitsConfig) -> QueryLimits {
    let defaults = QueryLimits::default();
    let slots = QueryLimits::with_slots(
        section.max_concurrent.unwrap_or(defaults.max_concurrent),
        section.max_queued.unwrap_or(defaults.max_queued),
    );
    let timeout = match section.timeout {
        Some(Duration::ZERO) => None,
        Some(limit) => Some(limit),
        None => slots.timeout,
    };
    QueryLimits {
        max_concurrent_per_principal: section
            .max_concurrent_per_principal
            .unwrap_or(slots.max_concurrent_per_principal)
            .clamp(1, slots.max_concurrent),
        max_queued_per_principal: section
            .max_queued_per_principal
            .unwrap_or(slots.max_queued_per_principal)
            .max(1),
        timeout,
        memory: section.memory,
        ..slots
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn flight(parsed: &FileConfig, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<FlightConfig, String> {
    let defaults = FlightConfig::default();
    let section = &parsed.flight;
    let tls = match &parsed.tls {
        None => None,
        Some(tls) => {
            if tls.client_cert_required && tls.client_ca.is_none() {
                return Err("[tls] client_cert_required needs client_ca".into());
            }
            Some(TlsConfig {
                cert_pem: read(&resolve(&tls.cert))?,
                key_pem: Zeroizing::new(read(&resolve(&tls.key))?),
                client_ca_pem: tls
                    .client_ca
                    .as_deref()
                    .map(|p| read(&resolve(p)))
                    .transpose()?,
                client_cert_required: tls.client_cert_required,
            })
        }
    };
    let jwt = parsed
        .auth
        .jwt
        .iter()
        .map(|issuer| jwt(issuer, resolve))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FlightConfig {
        tls,
        jwt,
        token_ttl: section.token_ttl.unwrap_or(defaults.token_ttl),
        max_message_bytes: section.max_message.unwrap_or(defaults.max_message_bytes),
        keepalive: section.keepalive.unwrap_or(defaults.keepalive),
        drain_timeout: section.drain_timeout.unwrap_or(defaults.drain_timeout),
    })
}

fn jwt(section: &JwtSection, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<JwtConfig, String> {
    let which = format!("[[auth.jwt]] issuer `{}`", section.issuer);
    let public_key = || -> Result<String, String> {
        let path = section
            .public_key
            .as_deref()
            .ok_or_else(|| format!("{which}: {} needs `public_key`", section.algorithm))?;
        String::from_utf8(read(&resolve(path))?)
            .map_err(|_| format!("{which}: the public key is not PEM text"))
    };
    let key = match section.algorithm.as_str() {
        "HS256" => {
            let variable = section.secret_env.as_deref().ok_or_else(|| {
                format!("{which}: HS256 needs `secret_env` (the variable holding the secret)")
            })?;
            let secret = std::env::var(variable)
                .map_err(|_| format!("{which}: environment variable `{variable}` is not set"))?;
            JwtKey::Hs256(Zeroizing::new(secret.into_bytes()))
        }
        "RS256" => JwtKey::Rs256(public_key()?),
        "ES256" => JwtKey::Es256(public_key()?),
        other => {
            return Err(format!(
                "{which}: algorithm `{other}` is not one of HS256, RS256, ES256"
            ));
        }
    };
    // Fail closed: an issuer that may assert any principal could assert a static user or an
    // owner, so each one says which principals are its own.
    let principals = match (&section.principal_prefix, &section.principals) {
        (Some(prefix), None) => PrincipalNamespace::Prefix(prefix.clone()),
        (None, Some(mapping)) => PrincipalNamespace::Mapping(mapping.clone()),
        _ => {
            return Err(format!(
                "{which}: say which principals the issuer may assert, with exactly one of \
                 `principal_prefix` (ids starting with it, e.g. \"okta.\") or `[auth.jwt.principals]` \
                 (claim value = principal id)"
            ));
        }
    };
    Ok(JwtConfig {
        principals,
        roles: section.roles.as_ref().map(|r| r.iter().cloned().collect()),
        issuer: section.issuer.clone(),
        audience: section.audience.clone(),
        key,
        principal_claim: section
            .principal_claim
            .clone()
            .unwrap_or_else(|| "sub".into()),
        roles_claim: section.roles_claim.clone(),
        attribute_claims: section.attributes.clone(),
        leeway: section.leeway.unwrap_or(Duration::from_secs(30)),
    })
}

/// Every environment variable a configuration file needs, given the products it serves as
/// `(product id, bucket)`: its `${VAR}` references, each product's credential variables, the
/// store's password variable, and the master key's when no key file is configured. For
/// deployment checks.
pub fn required_environment(
    text: &str,
    products: &[(String, String)],
) -> Result<std::collections::BTreeSet<String>, String> {
    let value: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut names = std::collections::BTreeSet::new();
    collect_references(&value, &mut names);
    let storage: StorageConfig = match value.get("storage") {
        Some(storage) => storage
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?,
        None => StorageConfig::default(),
    };
    for (product, bucket) in products {
        let settings = match storage.products.get(product) {
            Some(own) => own.over(&storage.default),
            None => storage.default.clone(),
        };
        for template in [
            &settings.access_key_id_env,
            &settings.secret_access_key_env,
            &settings.session_token_env,
        ]
        .into_iter()
        .flatten()
        {
            names.insert(meshgate_storage::config::expand_template(
                template, product, bucket,
            ));
        }
    }
    if let Some(variable) = value
        .get("store")
        .and_then(|s| s.get("password_env"))
        .and_then(|v| v.as_str())
    {
        names.insert(variable.to_string());
    }
    if let Some(issuers) = value
        .get("auth")
        .and_then(|a| a.get("jwt"))
        .and_then(|j| j.as_array())
    {
        for issuer in issuers {
            if let Some(variable) = issuer.get("secret_env").and_then(|v| v.as_str()) {
                names.insert(variable.to_string());
            }
        }
    }
    if value.get("master_key_file").is_none() {
        names.insert(meshgate_protect::MASTER_KEY_ENV.to_string());
    }
    Ok(names)
}

fn collect_references(value: &toml::Value, names: &mut std::collections::BTreeSet<String>) {
    match value {
        toml::Value::String(text) => {
            // Only the names are wanted: an unterminated reference is the loader's to report.
            let _ = substitute(text, &mut |name| {
                names.insert(name.to_string());
                Ok(String::new())
            });
        }
        toml::Value::Array(items) => items.iter().for_each(|v| collect_references(v, names)),
        toml::Value::Table(table) => table.values().for_each(|v| collect_references(v, names)),
        _ => {}
    }
}

/// `text` with each `${NAME}` replaced by `value(NAME)`: the one reader of references, for
/// loading a file and for listing what it needs.
fn substitute(
    text: &str,
    value: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in `{text}`"))?;
        out.push_str(&value(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_section_reads_its_durations_and_sizes_with_one_parser_and_names_a_bad_key() {
        let base = "products = \"p\"\npolicies = \"q\"\n";
        for (section, bad) in [
            ("[flight]\ntoken_ttl = \"soon\"", "token_ttl"),
            ("[flight]\nmax_message = \"16MB\"", "max_message"),
            ("[limits]\ntimeout = \"90\"", "timeout"),
            ("[limits]\nmemory = \"lots\"", "memory"),
            ("memory_limit = \"1TB\"", "memory_limit"),
        ] {
            let text = format!("{base}{section}\n");
            let error = toml::from_str::<FileConfig>(&text).unwrap_err().to_string();
            assert!(error.contains(bad), "{section}: {error}");
        }
    }

    #[test]
    fn a_postgres_state_takes_its_password_only_by_reference() {
        let dir = tempfile::tempdir().unwrap();
        let resolve = |p: &Path| dir.path().join(p);
        let store = |text: &str| {
            let parsed: FileConfig =
                toml::from_str(&format!("products = \"p\"\npolicies = \"q\"\n{text}\n")).unwrap();
            governance(&parsed, &resolve)
        };
        let Ok(Governance::Sqlite(path)) = store("state = \"s/m.db\"") else {
            panic!("a path is a SQLite file")
        };
        assert_eq!(path, dir.path().join("s/m.db"));
        for written in [
            "state = \"postgres://meshgate:hunter2@db/m\"",
            "state = \"postgresql://meshgate@db/m?sslmode=require&password=hunter2\"",
        ] {
            let error = store(written).unwrap_err();
            assert!(
                error.contains("holds a password") && !error.contains("hunter2"),
                "{error}"
            );
        }
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let Ok(Governance::Postgres(options)) = store(
            "state = \"postgres://meshgate@db:5432/m\"\n[store]\npassword_file = \"pw\"\nmax_connections = 3",
        ) else {
            panic!("a postgres:// URL is a PostgreSQL store")
        };
        assert_eq!(
            options.password.as_deref().map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(options.max_connections, 3);
        assert!(
            !format!("{options:?}").contains("s3cret"),
            "Debug never shows it"
        );
        let missing = store(
            "state = \"postgres://meshgate@db/m\"\n[store]\npassword_env = \"MESHGATE_TEST_NOT_SET_ANYWHERE\"",
        )
        .unwrap_err();
        assert!(
            missing.contains("MESHGATE_TEST_NOT_SET_ANYWHERE"),
            "{missing}"
        );
        let sqlite_with_password =
            store("state = \"m.db\"\n[store]\npassword_env = \"X\"").unwrap_err();
        assert!(
            sqlite_with_password.contains("SQLite"),
            "{sqlite_with_password}"
        );
    }

    #[test]
    fn audit_and_lineage_sections_are_the_engines_own_types() {
        let base = "products = \"p\"\npolicies = \"q\"\n";
        let parsed: FileConfig = toml::from_str(&format!(
            "{base}[audit]\nkeep_statements = true\n[lineage]\nfile = \"events.jsonl\"\nnamespace = \"ns\"\n"
        ))
        .unwrap();
        assert!(parsed.audit.keep_statements);
        assert_eq!(
            parsed.lineage.file.as_deref(),
            Some(Path::new("events.jsonl"))
        );
        assert_eq!(parsed.lineage.namespace.as_deref(), Some("ns"));
        assert_eq!(parsed.lineage.url, None);
        let defaults: FileConfig = toml::from_str(base).unwrap();
        assert!(!defaults.audit.keep_statements && !defaults.lineage.is_enabled());
        for misspelt in ["[audit]\nkeep_statement = true", "[lineage]\nuri = \"x\""] {
            assert!(
                toml::from_str::<FileConfig>(&format!("{base}{misspelt}\n")).is_err(),
                "{misspelt}"
            );
        }
    }

    #[test]
    fn listing_and_loading_read_variable_references_the_same_way() {
        let text = "products = \"${A}/p\"\npolicies = \"x${B}y${A}\"\n";
        let needed = required_environment(text, &[]).unwrap();
        assert!(needed.contains("A") && needed.contains("B"), "{needed:?}");
        let mut seen = Vec::new();
        let out = substitute("x${B}y${A}", &mut |name| {
            seen.push(name.to_string());
            Ok(name.to_lowercase())
        })
        .unwrap();
        assert_eq!(
            (out.as_str(), seen),
            ("xbya", vec!["B".to_string(), "A".to_string()])
        );
        assert!(substitute("x${B", &mut |_| Ok(String::new())).is_err());
    }

    #[test]
    fn interpolation_is_per_value_and_errors_point_at_line_and_column() {
        let path = std::env::var("PATH").unwrap();
        let parsed = parse_file(
            "m.toml",
            "products = \"x${PATH}y\"\npolicies = \"${PATH}\"\n",
        )
        .unwrap();
        assert_eq!(parsed.products, PathBuf::from(format!("x{path}y")));
        // A value with quotes, backslashes and line breaks stays one string: it cannot add keys.
        let tricky = "a\" \nlisten = \"0.0.0.0:1\\";
        let document: toml::Table =
            toml::from_str(&format!("a = {}", basic_string(tricky))).unwrap();
        assert_eq!(document.len(), 1);
        assert_eq!(document["a"].as_str(), Some(tricky));
        // An unset variable: refused at the place of its reference.
        let unset = parse_file(
            "m.toml",
            "products = \"p\"\npolicies = \"${MESHGATE_SURELY_UNSET_VARIABLE}\"\n",
        )
        .unwrap_err();
        assert_eq!((unset.line, unset.column), (Some(2), Some(12)), "{unset}");
        assert!(
            unset.message.contains("MESHGATE_SURELY_UNSET_VARIABLE"),
            "{unset}"
        );
        // A type error after a substituted value: its own line and column, the line as written.
        let error = parse_file(
            "m.toml",
            "products = \"${PATH}\"\npolicies = \"p\"\n[limits]\nmax_concurrent = \"eight\"\n",
        )
        .unwrap_err();
        assert_eq!((error.line, error.column), (Some(4), Some(18)), "{error}");
        let shown = error.to_string();
        assert!(shown.starts_with("m.toml:4:18: "), "{shown}");
        assert!(shown.contains("max_concurrent = \"eight\""), "{shown}");
        // A misspelt key, and a syntax error.
        let error = parse_file(
            "m.toml",
            "products = \"p\"\npolicies = \"p\"\nlisen = \"x\"\n",
        )
        .unwrap_err();
        assert_eq!(error.line, Some(3), "{error}");
        assert!(error.message.contains("lisen"), "{error}");
        let error = parse_file("m.toml", "products = \"p\"\npolicies = = 1\n").unwrap_err();
        assert_eq!(error.line, Some(2), "{error}");
    }

    /// The fields the code accepts in one section, as serde names them when it refuses an
    /// unknown key there (`expected one of `a`, `b``).
    fn fields_of(section: &str) -> BTreeSet<String> {
        let probe = match section {
            "" => "products = \"p\"\npolicies = \"p\"\nzz_probe = 1\n".to_string(),
            "auth.jwt" => {
                "products = \"p\"\npolicies = \"p\"\n[[auth.jwt]]\nzz_probe = 1\n".to_string()
            }
            other => format!("products = \"p\"\npolicies = \"p\"\n[{other}]\nzz_probe = 1\n"),
        };
        let error = toml::from_str::<FileConfig>(&probe).unwrap_err();
        let message = error.message();
        let expected = message
            .split_once("expected")
            .unwrap_or_else(|| panic!("[{section}]: {message}"))
            .1;
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_reference_documents_every_key() {
        let doc = include_str!("../../../docs/configuration.md");
        let sections = [
            ("## Top level", ""),
            ("## `[limits]`", "limits"),
            ("## `[flight]`", "flight"),
            ("## `[tls]`", "tls"),
            ("## `[[auth.jwt]]`", "auth.jwt"),
            ("## `[storage]`", "storage"),
            ("## `[storage.default]`", "storage.default"),
            ("## `[http]`", "http"),
            ("## `[store]`", "store"),
            ("## `[audit]`", "audit"),
            ("## `[lineage]`", "lineage"),
            ("## `[distributed]`", "distributed"),
        ];
        for (heading, section) in sections {
            let start = doc
                .find(heading)
                .unwrap_or_else(|| panic!("docs/configuration.md has no `{heading}`"));
            let body = &doc[start + heading.len()..];
            let body = &body[..body.find("\n## ").unwrap_or(body.len())];
            let documented: BTreeSet<String> = body
                .lines()
                .filter_map(|l| l.strip_prefix("| `"))
                .filter_map(|l| l.split_once('`'))
                .map(|(key, _)| key.to_string())
                .collect();
            assert_eq!(
                documented,
                fields_of(section),
                "docs/configuration.md, {heading}: the documented keys differ from the code's"
            );
        }
        let example = doc
            .split("## A complete example")
            .nth(1)
            .and_then(|e| e.split("```toml\n").nth(1))
            .and_then(|e| e.split("\n```").next())
            .expect("the complete example");
        let parsed: FileConfig = toml::from_str(example).unwrap();
        assert_eq!(parsed.auth.jwt.len(), 2);
        assert_eq!(parsed.storage.products.len(), 3);
    }

    const SECTIONS: &str = r#"
products = "products"
policies = "policies"

[limits]
max_concurrent = 3
max_queued = 0
timeout = "90s"
memory = "256MiB"

[flight]
token_ttl = "1h"
max_message = "16MiB"
keepalive = "10s"
drain_timeout = "5s"

[tls]
cert = "server.pem"
key = "server.key"
client_ca = "clients-ca.pem"
client_cert_required = true

[[auth.jwt]]
issuer = "https://idp.test"
audience = "meshgate"
algorithm = "ES256"
public_key = "idp.pem"
roles_claim = "groups"
attributes = { lob = "business_line" }
principal_prefix = "idp."
roles = ["lob-system"]

[[auth.jwt]]
issuer = "https://hs.test"
audience = "meshgate"
algorithm = "HS256"
secret_env = "PATH"
leeway = "0s"
[auth.jwt.principals]
"00u1abc" = "svc-batch"
"#;

    #[test]
    fn statistics_behind_row_filters_are_on_unless_turned_off() {
        let parsed: FileConfig = toml::from_str(SECTIONS).unwrap();
        assert!(parsed.statistics_behind_row_filters);
        let off = format!("statistics_behind_row_filters = false\n{SECTIONS}");
        let parsed: FileConfig = toml::from_str(&off).unwrap();
        assert!(!parsed.statistics_behind_row_filters);
    }

    #[test]
    fn limits_flight_tls_and_identity_providers_are_read_from_their_sections() {
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in [
            ("server.pem", "server certificate"),
            ("server.key", "server key"),
            ("clients-ca.pem", "client CA"),
            ("idp.pem", "idp public key"),
        ] {
            std::fs::write(dir.path().join(file), text).unwrap();
        }
        let resolve = |p: &Path| dir.path().join(p);
        let parsed: FileConfig = toml::from_str(SECTIONS).unwrap();

        let limits = limits(&parsed.limits);
        assert_eq!(
            (limits.max_concurrent, limits.max_queued),
            (3, 0),
            "{limits:?}"
        );
        assert_eq!(limits.timeout, Some(Duration::from_secs(90)));
        assert_eq!(limits.memory, Some(256 << 20));

        let flight = flight(&parsed, &resolve).unwrap();
        assert_eq!(flight.token_ttl, Duration::from_secs(3600));
        assert_eq!(flight.max_message_bytes, 16 << 20);
        assert_eq!(flight.keepalive, Duration::from_secs(10));
        assert_eq!(flight.drain_timeout, Duration::from_secs(5));
        let tls = flight.tls.unwrap();
        assert_eq!(tls.cert_pem, b"server certificate");
        assert_eq!(tls.key_pem.as_slice(), b"server key");
        assert_eq!(tls.client_ca_pem.as_deref(), Some(&b"client CA"[..]));
        assert!(tls.client_cert_required);

        let [es, hs] = flight.jwt.as_slice() else {
            panic!("two issuers: {:?}", flight.jwt);
        };
        assert_eq!(es.issuer, "https://idp.test");
        assert!(matches!(&es.key, JwtKey::Es256(pem) if pem == "idp public key"));
        assert_eq!(es.principal_claim, "sub");
        assert_eq!(es.roles_claim.as_deref(), Some("groups"));
        assert_eq!(
            es.attribute_claims.get("lob").map(String::as_str),
            Some("business_line")
        );
        assert_eq!(es.leeway, Duration::from_secs(30));
        let path = std::env::var("PATH").unwrap();
        assert!(matches!(&hs.key, JwtKey::Hs256(secret) if secret.as_slice() == path.as_bytes()));
        assert_eq!(hs.leeway, Duration::ZERO);
        assert_eq!(es.principals, PrincipalNamespace::Prefix("idp.".into()));
        assert_eq!(es.roles, Some(["lob-system".to_string()].into()));
        assert_eq!(
            hs.principals,
            PrincipalNamespace::Mapping([("00u1abc".to_string(), "svc-batch".to_string())].into())
        );
        assert_eq!(hs.roles, None);
    }

    #[test]
    fn flight_sections_refuse_what_cannot_work() {
        let dir = tempfile::tempdir().unwrap();
        let resolve = |p: &Path| dir.path().join(p);
        let error = |text: &str| {
            let parsed: FileConfig = toml::from_str(text).unwrap();
            flight(&parsed, &resolve).unwrap_err()
        };
        let base = "products = \"p\"\npolicies = \"q\"\n";
        assert!(
            error(&format!(
                "{base}[tls]\ncert = \"a\"\nkey = \"b\"\nclient_cert_required = true\n"
            ))
            .contains("client_cert_required needs client_ca")
        );
        assert!(
            error(&format!(
                "{base}[tls]\ncert = \"missing.pem\"\nkey = \"b\"\n"
            ))
            .contains("missing.pem")
        );
        let jwt = "[[auth.jwt]]\nissuer = \"i\"\naudience = \"a\"\n";
        assert!(
            error(&format!(
                "{base}{jwt}algorithm = \"HS256\"\nsecret_env = \"MESHGATE_SURELY_UNSET_VARIABLE\"\n"
            ))
            .contains("`MESHGATE_SURELY_UNSET_VARIABLE` is not set")
        );
        assert!(error(&format!("{base}{jwt}algorithm = \"HS256\"\n")).contains("secret_env"));
        assert!(error(&format!("{base}{jwt}algorithm = \"RS256\"\n")).contains("public_key"));
        assert!(
            error(&format!("{base}{jwt}algorithm = \"none\"\n")).contains("HS256, RS256, ES256")
        );
        // An issuer must say which principals it may assert.
        let rs = format!("{base}{jwt}algorithm = \"RS256\"\npublic_key = \"k.pem\"\n");
        std::fs::write(dir.path().join("k.pem"), "key").unwrap();
        assert!(error(&rs).contains("principal_prefix"), "{}", error(&rs));
        // A bad size is refused where the section is read, naming its key.
        assert!(
            toml::from_str::<FileConfig>(&format!("{base}[flight]\nmax_message = \"lots\"\n"))
                .unwrap_err()
                .to_string()
                .contains("max_message")
        );
        assert!(
            toml::from_str::<FileConfig>(&format!("{base}[flight]\nmax_mesage = \"1MiB\"\n"))
                .is_err(),
            "a misspelt key is an error, not a silent default"
        );
    }
}
