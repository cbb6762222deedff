//! Mesh scale: how meshgate's own costs grow with the mesh. A generated mesh of `n`
//! products (one table each, in ten domains), `10 n` consumers and `100 n` access grants
//! (ten per consumer), measured at two sizes so that each cost's growth can be named.
//!
//! Measured: opening the gateway (catalog and policies validated, every lake opened),
//! reloading the policies, the memory the open gateway holds, building the grant layer
//! from the grants in force (what the first query after a grant change does), resolving one
//! table for a consumer a grant admits (first time, nothing remembered), planning a
//! one-table query, and listing the tables of a principal who sees half the mesh (what
//! Flight SQL's GetTables answers from).

use std::path::Path;
use std::time::{Duration, Instant};

use meshgate::GatewayConfig;
use meshgate::api::{Grant, GrantState};
use meshgate::catalog::Catalog;
use meshgate::policy::{PolicySet, PolicySources, Principal, Source, UserDirectory};
use meshgate::storage::StorageConfig;
use meshgate_reference as reference;
use serde::Serialize;

use crate::BenchError;
use crate::micro::{per_call, per_call_async};

/// Domains the generated products are spread over.
const DOMAINS: usize = 10;
/// Consumers per product, and grants per consumer.
const CONSUMERS_PER_PRODUCT: usize = 10;
const GRANTS_PER_CONSUMER: usize = 10;
/// The principal the files admit to every other product (half the mesh).
pub const WIDE: &str = "scale-wide";

/// One size of the generated mesh, measured.
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    pub products: usize,
    pub principals: usize,
    pub grants: usize,
    pub startup_ms: f64,
    pub reload_ms: f64,
    /// Resident memory the open gateway added to a process that already holds a gateway of
    /// one product, less what a second gateway of one product adds (the pools and state every
    /// gateway has), so that what grows with the mesh is what is named.
    pub memory_mb: f64,
    /// What a second gateway of one product adds.
    pub base_memory_mb: f64,
    pub grant_layer_ms: f64,
    pub resolve_us: f64,
    /// The same resolution as the policy set remembers it (every later query).
    pub remembered_us: f64,
    pub plan_ms: f64,
    /// Tables the wide principal sees, and the time to list them.
    pub listed: usize,
    pub listing_ms: f64,
    /// The same listing as a Flight SQL client sees it: `GetTables` (its FlightInfo and the
    /// `DoGet` of its ticket) by the wide principal, signed in with a password; rows answered.
    pub get_tables_rows: usize,
    pub get_tables_ms: f64,
}

/// How one measurement grows from the smaller mesh to the larger.
#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    pub name: String,
    pub small: f64,
    pub large: f64,
    /// `log(large / small) / log(products ratio)`: 0 constant, 1 linear.
    pub exponent: f64,
    pub shape: String,
}

/// Name the growth of `small` at `n_small` to `large` at `n_large`.
pub fn growth(name: &str, n_small: usize, small: f64, n_large: usize, large: f64) -> Growth {
    let exponent = if small > 0.0 && large > 0.0 && n_large > n_small {
        (large / small).ln() / (n_large as f64 / n_small as f64).ln()
    } else {
        f64::NAN
    };
    let shape = match exponent {
        e if e.is_nan() => "not measured",
        e if e < 0.25 => "constant",
        e if e < 0.8 => "sublinear",
        e if e <= 1.25 => "linear",
        _ => "worse than linear",
    };
    Growth {
        name: name.into(),
        small,
        large,
        exponent,
        shape: shape.into(),
    }
}

fn domain(i: usize) -> String {
    format!("dom{}", i % DOMAINS)
}

fn product(i: usize) -> String {
    format!("{}.p{i:05}", domain(i))
}

fn table(i: usize) -> String {
    format!("t{i:05}")
}

/// One product's contract: one table of three columns, one of them restricted, in a
/// bucket of its own.
fn manifest(i: usize) -> String {
    let (d, p, t) = (domain(i), product(i), table(i));
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: {p}\nname: Product {i}\nversion: 1.0.0\n\
         status: active\ndomain: {d}\ndataProduct: {p}\ndescription:\n  purpose: Generated for the \
         scale benchmark.\nservers:\n  - server: product-lake\n    type: s3\n    location: \
         s3://scale-p{i:05}/{{model}}/\n    format: parquet\nschema:\n  - name: {t}\n    \
         physicalType: table\n    description: Generated.\n    properties:\n      - name: id\n        \
         logicalType: integer\n        physicalType: BIGINT\n        required: true\n        \
         classification: internal\n        description: Key.\n      - name: lob\n        \
         logicalType: string\n        physicalType: VARCHAR\n        required: true\n        \
         classification: internal\n        description: Line of business.\n      - name: owner_name\n        \
         logicalType: string\n        physicalType: VARCHAR\n        required: true\n        \
         classification: restricted\n        description: A person's name.\nteam:\n  name: team-{i}\n  \
         members:\n    - username: owner-{i}\n      role: owner\nsupport:\n  - channel: \"#p{i}\"\n    \
         tool: slack\n"
    )
}

/// One product's policy: every reader sees the rows of their line of business, the name
/// masked; its owner sees everything.
fn product_policy(i: usize) -> String {
    let (p, t) = (product(i), table(i));
    format!(
        "[policy]\nproduct = \"{p}\"\nversion = 1\ndescription = \"Generated.\"\n\n\
         [[row_filter]]\nid = \"all-{i}\"\ntable = \"{t}\"\nkind = \"grant\"\nto = [\"*\"]\nwhere = \"true\"\n\n\
         [[column]]\nid = \"name-{i}\"\ntable = \"{t}\"\ncolumn = \"owner_name\"\nto = [\"*\"]\n\
         treatment = \"mask(show-last-4)\"\n"
    )
}

/// The files' access lines: each product's owner role, the wide principal on every other
/// product, and the auditors' deny line.
fn access_rules(n: usize) -> String {
    let mut out = String::from("# Generated for the scale benchmark.\n");
    for i in 0..n {
        out.push_str(&format!(
            "p, role:owner-{i}, {}, {}, read, allow\n",
            domain(i),
            product(i)
        ));
        if i % 2 == 0 {
            out.push_str(&format!(
                "p, {WIDE}, {}, {}, read, allow\n",
                domain(i),
                product(i)
            ));
        }
    }
    out.push_str("p, role:auditor, *, *, read, deny\n");
    out
}

/// The generated mesh of `n` products: catalog and policy sources.
pub fn mesh(n: usize) -> Result<(Catalog, PolicySources), BenchError> {
    let manifests: Vec<(String, String)> = (0..n)
        .map(|i| (format!("products/{}.yaml", product(i)), manifest(i)))
        .collect();
    let catalog = Catalog::from_sources(manifests.iter().map(|(a, b)| (a.as_str(), b.as_str())))
        .map_err(|e| BenchError::setup("the generated mesh")(e.to_string()))?;
    let sources = PolicySources {
        access_model: reference::policy_sources().access_model,
        access_rules: Source::new("policies/access.csv", access_rules(n)),
        products: (0..n)
            .map(|i| {
                Source::new(
                    format!("policies/products/{}.toml", product(i)),
                    product_policy(i),
                )
            })
            .collect(),
        global: None,
    };
    Ok((catalog, sources))
}

/// `10 n` consumers with ten grants each, spread over the products.
pub fn grants(n: usize) -> Vec<Grant> {
    let now = meshgate::governance::now_millis();
    let consumers = n * CONSUMERS_PER_PRODUCT;
    (0..consumers)
        .flat_map(|c| (0..GRANTS_PER_CONSUMER).map(move |k| (c, k)))
        .map(|(c, k)| {
            let i = (c * 7 + k * 131) % n;
            Grant {
                id: format!("g-{c}-{k}"),
                request_id: None,
                principal: format!("consumer-{c}"),
                product: product(i),
                domain: domain(i),
                columns: None,
                row_filter: Some("lob = 'CCB'".into()),
                purpose: "scale benchmark".into(),
                state: GrantState::Active,
                approved_by: format!("owner-{i}"),
                created_at: now,
                valid_until: now + 86_400_000,
                changed_at: now,
                changed_by: format!("owner-{i}"),
                change_reason: None,
            }
        })
        .collect()
}

fn resident_bytes() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The gateway configuration of the generated mesh of `n` products, its state under `dir`.
fn config(n: usize, dir: &Path) -> Result<(GatewayConfig, Catalog, PolicySources), BenchError> {
    let (catalog, sources) = mesh(n)?;
    // Every product its own bucket (here a directory, empty: nothing is read).
    let lake = dir.join("lake");
    for i in 0..n {
        let bucket = lake.join(format!("scale-p{i:05}"));
        std::fs::create_dir_all(&bucket).map_err(BenchError::io(&bucket))?;
    }
    let state = dir.join(format!("state-{n}"));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).map_err(BenchError::io(&state))?;
    // The wide principal signs in over Flight SQL for `GetTables`. Hashed once per process:
    // Argon2's 19 MiB working buffer, freed into the allocator's arena by a second hash,
    // would stay resident and count as the gateway's memory.
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = match HASH.get() {
        Some(hash) => hash.clone(),
        None => {
            let hash = meshgate::policy::hash_password(&crate::mesh::password(WIDE))
                .map_err(BenchError::setup("the generated mesh's user"))?;
            HASH.get_or_init(|| hash).clone()
        }
    };
    let users = UserDirectory::parse(
        "users.toml",
        &format!("[[user]]\nname = \"{WIDE}\"\npassword = \"{hash}\"\nroles = []\n"),
    )
    .map_err(|e| BenchError::setup("the generated mesh's user")(e.to_string()))?;
    let config = crate::mesh::plain_config(
        catalog.clone(),
        sources.clone(),
        Some(users),
        StorageConfig::local(&lake),
        &state,
    );
    Ok((config, catalog, sources))
}

/// A gateway on a generated mesh, its failure named as the mesh's.
async fn open(config: GatewayConfig) -> Result<meshgate::Gateway, BenchError> {
    meshgate::Gateway::open(config)
        .await
        .map_err(|e| BenchError::setup("the generated mesh")(e.to_string()))
}

/// In a process of its own (this binary with `--scale-open n`): open the generated mesh of
/// `n` products and print the resident memory the open gateway added, in bytes. Alone, so
/// that no memory freed by earlier measurements is reused.
pub async fn open_and_report(n: usize, dir: &Path) -> Result<(), BenchError> {
    // A gateway of one product opened first and kept: what every process pays once (the
    // runtime's threads, DataFusion's function registry, the password hash's buffer: about
    // 29 MB here, varying by half a MB from process to process) is then not in the
    // difference, which would otherwise swamp the 2 MB a mesh of 100 products holds.
    let (warm, _, _) = config(1, &dir.join("warm-up"))?;
    let warm = open(warm).await?;
    // From before the mesh is generated: the catalog and policies the gateway holds are
    // parsed from it.
    let before = resident_bytes();
    let (config, _, _) = config(n, dir)?;
    let gateway = open(config).await?;
    let after = resident_bytes();
    std::hint::black_box((&warm, &gateway));
    match (before, after) {
        (Some(a), Some(b)) => println!("{}", (b - a).max(0.0)),
        _ => return Err(BenchError::Query("no /proc/self/statm here".into())),
    }
    Ok(())
}

/// In a process of its own (this binary with `--scale-open n --scale-list`): open the
/// generated mesh of `n` products and list the tables `scale-wide` sees `calls` times (what
/// [`listing_instructions`] counts).
pub async fn open_and_list(n: usize, dir: &Path, calls: usize) -> Result<(), BenchError> {
    let (config, _, _) = config(n, dir)?;
    let gateway = open(config).await?;
    let session = gateway.session(Principal::new(WIDE));
    for _ in 0..calls {
        if std::hint::black_box(session.tables().await.is_empty()) {
            return Err(BenchError::Query(format!(
                "{WIDE} sees no table in the mesh of {n} products"
            )));
        }
    }
    Ok(())
}

/// Instructions of listing `scale-wide`'s tables in the mesh of `n` products
/// ([`open_and_list`] under callgrind, with 0, 1 and 11 listings), beside the wall time,
/// which the host's cache contention moves: the first listing (every table resolved for the
/// caller, as after any change of grants, policies or products) and each repeat (answered
/// from what the gateway kept of the first).
pub async fn listing_instructions(n: usize, dir: &Path) -> Result<(f64, f64), String> {
    let (n, dir) = (n.to_string(), dir.join("probe"));
    let dir = dir.to_string_lossy();
    let args = ["--scale-open", &n, "--data-dir", &dir, "--scale-list"];
    match crate::micro::instruction_totals(&args, &[0, 1, 11])
        .await?
        .as_slice()
    {
        [none, one, eleven] => Ok((one - none, (eleven - one) / 10.0)),
        _ => Err("callgrind did not run three times".into()),
    }
}

/// [`open_and_report`] run as a child process, in MB.
async fn memory_in_child(n: usize, dir: &Path) -> Result<f64, BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::Query(e.to_string()))?;
    let out = tokio::process::Command::new(exe)
        .arg("--scale-open")
        .arg(n.to_string())
        .arg("--data-dir")
        .arg(dir)
        .output()
        .await
        .map_err(|e| BenchError::Query(format!("the memory probe did not start: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse::<f64>()
        .map(|bytes| bytes / 1e6)
        .map_err(|_| {
            BenchError::Query(format!(
                "the memory probe of {n} products failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })
}

/// Times each one-off measurement is repeated (its median is reported).
const REPEATS: usize = 3;

fn median(values: &[f64]) -> f64 {
    crate::stats::percentile(values, 0.5).unwrap_or(f64::NAN)
}

/// Per-call costs are timed in this many slices of the budget and the median slice is
/// reported, so one busy moment on a shared machine moves one slice, not the figure.
const SLICES: usize = 5;

/// One sample list per mesh size, filled a round at a time: every size takes its turn in
/// each round, so that the machine's drift over the section hits all sizes alike instead of
/// moving the growth between them.
struct Rounds(Vec<Vec<f64>>);

impl Rounds {
    fn new(sizes: usize) -> Self {
        Self(vec![Vec::new(); sizes])
    }

    fn push(&mut self, size: usize, value: f64) {
        self.0[size].push(value);
    }

    fn medians(&self) -> Vec<f64> {
        self.0.iter().map(|v| median(v)).collect()
    }
}

/// One size of the generated mesh, open, and what its measurements use.
struct Subject {
    n: usize,
    catalog: Catalog,
    sources: PolicySources,
    gateway: meshgate::Gateway,
}

/// Measure the generated meshes of `sizes` products, their state under `dir`. One-off costs
/// (start-up, reload, memory, the grant layer) are each the median of three; per-call costs
/// (resolution, planning, listing) the median of five slices of `budget`. Every measurement
/// takes the sizes in turn, round after round (small, large, small, large...).
pub async fn measure(
    sizes: &[usize],
    dir: &Path,
    budget: Duration,
) -> Result<Vec<Scale>, BenchError> {
    let k = sizes.len();
    // Memory, each probe a process of its own.
    let (mut base, mut memory) = (Vec::new(), Rounds::new(k));
    for _ in 0..REPEATS {
        base.push(memory_in_child(1, &dir.join("probe")).await?);
        for (i, n) in sizes.iter().enumerate() {
            memory.push(i, memory_in_child(*n, &dir.join("probe")).await?);
        }
    }
    let base_memory_mb = median(&base);

    // Start-up: each size opened in turn, the last opening of each kept.
    let mut opened = Rounds::new(k);
    let mut subjects: Vec<Option<Subject>> = sizes.iter().map(|_| None).collect();
    for _ in 0..REPEATS {
        for (i, n) in sizes.iter().enumerate() {
            let (config, catalog, sources) = config(*n, dir)?;
            drop(subjects[i].take());
            let started = Instant::now();
            let gateway = open(config).await?;
            opened.push(i, ms(started.elapsed()));
            subjects[i] = Some(Subject {
                n: *n,
                catalog,
                sources,
                gateway,
            });
        }
    }
    let subjects: Vec<Subject> = subjects.into_iter().flatten().collect();
    if subjects.len() != k {
        return Err(BenchError::Query("a generated mesh did not open".into()));
    }

    let mut reloads = Rounds::new(k);
    for _ in 0..REPEATS {
        for (i, s) in subjects.iter().enumerate() {
            let started = Instant::now();
            s.gateway
                .reload_policies(&s.sources)
                .await
                .map_err(|e| BenchError::Query(format!("reloading the generated mesh: {e}")))?;
            reloads.push(i, ms(started.elapsed()));
        }
    }

    // The grant layer and a first resolution, on the policy layer itself.
    let mut plain = Vec::new();
    let mut snapshots = Vec::new();
    for s in &subjects {
        plain.push(
            PolicySet::load(&s.catalog, &s.sources)
                .await
                .map_err(|e| BenchError::setup("the generated policies")(e.to_string()))?,
        );
        snapshots.push(grants(s.n));
    }
    let mut builds = Rounds::new(k);
    let mut layered: Vec<Option<PolicySet>> = sizes.iter().map(|_| None).collect();
    for _ in 0..REPEATS {
        for (i, s) in subjects.iter().enumerate() {
            let grants = snapshots[i].clone();
            drop(layered[i].take());
            let started = Instant::now();
            let built = plain[i]
                .with_grants(&s.catalog, grants, 1, meshgate::governance::now_millis())
                .await
                .map_err(|e| BenchError::setup("the generated grants")(e.to_string()))?;
            builds.push(i, ms(started.elapsed()));
            layered[i] = Some(built);
        }
    }
    drop(plain);
    let layered: Vec<PolicySet> = layered.into_iter().flatten().collect();
    let consumer = Principal::new("consumer-0");
    let mut first_tables = Vec::new();
    for (s, policies) in subjects.iter().zip(&layered) {
        let (p, t) = s
            .catalog
            .table(&domain(0), &table(0))
            .ok_or_else(|| BenchError::setup("the generated mesh")("no first table".into()))?;
        if policies.resolve_afresh(&consumer, p, t).is_err() {
            return Err(BenchError::Query(
                "the generated grant does not admit consumer-0".into(),
            ));
        }
        first_tables.push((p, t));
    }

    // Per-call costs, a slice of each size in turn.
    let slice = budget / SLICES as u32;
    let sessions: Vec<_> = subjects
        .iter()
        .map(|s| s.gateway.session(Principal::new(WIDE)))
        .collect();
    let sql = format!(
        "SELECT id, owner_name FROM {}.{} WHERE lob = 'CIB'",
        domain(0),
        table(0)
    );
    let mut served = Vec::new();
    let password = crate::mesh::password(WIDE);
    for s in &subjects {
        // GetTables over Flight SQL: the listing, plus encoding and the round trips.
        let (addr, stop) = crate::mesh::serve(&s.gateway).await?;
        let client = crate::engines::flight_client(addr, Some((WIDE, password.as_str()))).await?;
        served.push((client, stop));
    }
    let mut listed = Vec::new();
    let mut get_tables_rows = Vec::new();
    for (session, (client, _)) in sessions.iter().zip(&served) {
        listed.push(session.tables().await.len());
        get_tables_rows.push(get_tables(client.clone()).await?);
    }
    let (mut resolve, mut remembered) = (Rounds::new(k), Rounds::new(k));
    let (mut plan, mut listing, mut remote) = (Rounds::new(k), Rounds::new(k), Rounds::new(k));
    for _ in 0..SLICES {
        for i in 0..k {
            let (policies, (p, t)) = (&layered[i], first_tables[i]);
            let us = |(per, _): (Duration, u64)| per.as_secs_f64() * 1e6;
            resolve.push(
                i,
                us(per_call(slice, || {
                    std::hint::black_box(policies.resolve_afresh(&consumer, p, t).is_ok());
                })),
            );
            remembered.push(
                i,
                us(per_call(slice, || {
                    std::hint::black_box(policies.resolve(&consumer, p, t).is_ok());
                })),
            );
            let session = &sessions[i];
            let (per, _) = per_call_async(slice, || async {
                session
                    .prepare(&sql, None)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| BenchError::Query(format!("planning on the generated mesh: {e}")))?;
            plan.push(i, ms(per));
            let (per, _) = per_call_async(slice, || async {
                std::hint::black_box(session.tables().await.len());
                Ok(())
            })
            .await
            .map_err(BenchError::Query)?;
            listing.push(i, ms(per));
            let client = &served[i].0;
            let (per, _) = per_call_async(slice, || async {
                std::hint::black_box(
                    get_tables(client.clone())
                        .await
                        .map_err(|e| e.to_string())?,
                );
                Ok(())
            })
            .await
            .map_err(|e| BenchError::Query(format!("GetTables on the generated mesh: {e}")))?;
            remote.push(i, ms(per));
        }
    }
    let (memory, opened, reloads, builds) = (
        memory.medians(),
        opened.medians(),
        reloads.medians(),
        builds.medians(),
    );
    let (resolve, remembered, plan) = (resolve.medians(), remembered.medians(), plan.medians());
    let (listing, remote) = (listing.medians(), remote.medians());
    Ok((0..k)
        .map(|i| {
            let n = subjects[i].n;
            Scale {
                products: n,
                principals: n * CONSUMERS_PER_PRODUCT,
                grants: snapshots[i].len(),
                startup_ms: opened[i],
                reload_ms: reloads[i],
                memory_mb: (memory[i] - base_memory_mb).max(0.0),
                base_memory_mb,
                grant_layer_ms: builds[i],
                resolve_us: resolve[i],
                remembered_us: remembered[i],
                plan_ms: plan[i],
                listed: listed[i],
                listing_ms: listing[i],
                get_tables_rows: get_tables_rows[i],
                get_tables_ms: remote[i],
            }
        })
        .collect())
}

/// `GetTables` (no filter, no schemas) to its last batch; the rows answered.
async fn get_tables(
    mut client: arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
) -> Result<usize, BenchError> {
    use futures::TryStreamExt;
    let failed = |e: &dyn std::fmt::Display| BenchError::Query(format!("GetTables: {e}"));
    let info = client
        .get_tables(arrow_flight::sql::CommandGetTables::default())
        .await
        .map_err(|e| failed(&e))?;
    let mut rows = 0;
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else {
            continue;
        };
        let batches: Vec<_> = client
            .do_get(ticket)
            .await
            .map_err(|e| failed(&e))?
            .try_collect()
            .await
            .map_err(|e| failed(&e))?;
        rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    Ok(rows)
}
