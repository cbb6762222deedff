//! The micro-benchmarks' bodies, shared by criterion (`benches/micro.rs`) and the report:
//! policy resolution with many grants, tokenization and mask kernels, and planning a
//! 20-table join with and without the rewrite.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, DictionaryArray, StringArray};
use arrow::datatypes::Int32Type;
use meshgate::api::{Grant, GrantState};
use meshgate::catalog::{Product, Table};
use meshgate::policy::{PolicySet, Principal};
use meshgate::protect::{MaskKind, MasterKey, TokenKey};
use meshgate_reference as reference;

use crate::BenchError;

/// What one query's policy resolution does for one table, with `grants` grants in force
/// (each to a different consumer, all on `payments.transactions`).
pub struct Resolution {
    pub policies: PolicySet,
    pub product: Arc<Product>,
    pub table: Table,
    /// A consumer admitted by a grant (the slow path: casbin with every grant's line).
    pub by_grant: Principal,
    /// A principal the policy files admit (the fast path).
    pub by_files: Principal,
}

impl Resolution {
    pub async fn new(grants: usize) -> Result<Self, BenchError> {
        let catalog =
            reference::catalog().map_err(|e| BenchError::setup("catalog")(e.to_string()))?;
        let policies = PolicySet::load(&catalog, &reference::policy_sources())
            .await
            .map_err(|e| BenchError::setup("policies")(e.to_string()))?;
        let now = meshgate::governance::now_millis();
        let snapshot: Vec<Grant> = (0..grants)
            .map(|i| Grant {
                id: format!("g-{i}"),
                request_id: None,
                principal: format!("consumer-{i}"),
                product: "payments.transactions".into(),
                domain: "payments".into(),
                columns: None,
                row_filter: Some("lob = 'CCB'".into()),
                purpose: "benchmark".into(),
                state: GrantState::Active,
                approved_by: "pay-owner".into(),
                created_at: now,
                valid_until: now + 86_400_000,
                changed_at: now,
                changed_by: "pay-owner".into(),
                change_reason: None,
            })
            .collect();
        let policies = policies
            .with_grants(&catalog, snapshot, 1, now)
            .await
            .map_err(|e| BenchError::setup("grants")(e.to_string()))?;
        let (product, table) = catalog
            .table("payments", "transactions")
            .map(|(p, t)| (Arc::clone(p), t.clone()))
            .ok_or_else(|| BenchError::setup("catalog")("no payments.transactions".into()))?;
        Ok(Self {
            policies,
            product,
            table,
            by_grant: Principal::new(format!("consumer-{}", grants.saturating_sub(1))),
            by_files: Principal::new("risk-officer").with_role("firmwide-risk"),
        })
    }

    /// Resolve for `principal` as a query's first reference to the table does (nothing
    /// remembered); true when admitted.
    pub fn resolve(&self, principal: &Principal) -> bool {
        self.policies
            .resolve_afresh(principal, &self.product, &self.table)
            .is_ok()
    }

    /// Resolve for `principal` as every later query of the same policy set does (the set's
    /// memo); true when admitted.
    pub fn remembered(&self, principal: &Principal) -> bool {
        self.policies
            .resolve(principal, &self.product, &self.table)
            .is_ok()
    }
}

/// `n` distinct customer names, as TPC-H writes them.
pub fn unique_strings(n: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| format!("Customer#{i:09}")),
    ))
}

/// `n` values drawn from `distinct` names, dictionary-encoded (as Parquet often reads
/// low-cardinality columns).
pub fn dictionary_strings(n: usize, distinct: usize) -> ArrayRef {
    let values = StringArray::from_iter_values((0..distinct).map(|i| format!("Clerk#{i:09}")));
    let keys = arrow::array::Int32Array::from_iter_values(
        (0..n).map(|i| ((i * 7919) % distinct.max(1)) as i32),
    );
    match DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)) {
        Ok(array) => Arc::new(array),
        Err(_) => unique_strings(n),
    }
}

/// Phone numbers for the mask kernels.
pub fn phones(n: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values((0..n).map(|i| {
        format!(
            "{:02}-{:03}-{:03}-{:04}",
            10 + i % 25,
            i % 1000,
            (i / 7) % 1000,
            i % 10_000
        )
    })))
}

pub fn token_key() -> TokenKey {
    MasterKey::demo().token_key("tpch")
}

/// Rows per batch the engine hands a kernel: DataFusion's default batch size.
pub const BATCH_ROWS: usize = 8_192;

/// `input` cut into batches of [`BATCH_ROWS`], as a scan hands them to the protection kernels.
pub fn batches(input: &ArrayRef) -> Vec<ArrayRef> {
    (0..input.len())
        .step_by(BATCH_ROWS)
        .map(|at| input.slice(at, BATCH_ROWS.min(input.len() - at)))
        .collect()
}

/// Tokenize every value of `input`; returns how many values were tokenized.
pub fn tokenize(key: &TokenKey, input: &ArrayRef) -> usize {
    meshgate::protect::tokenize(key, input).map_or(0, |a| a.len())
}

/// Values the steadiness probe tokenizes (few in a debug build, whose smoke run checks the
/// harness, not the host).
pub const STEADINESS_VALUES: usize = if cfg!(debug_assertions) {
    1_000
} else {
    100_000
};

/// Milliseconds a fixed, single-threaded CPU kernel takes now (tokenizing
/// [`STEADINESS_VALUES`] unique values in batches; the median of five runs). Timed at each
/// section's start: on a quiet host it barely moves, so a run where it does was disturbed by
/// something besides the configurations compared.
pub fn steadiness_probe() -> f64 {
    let key = token_key();
    let inputs = batches(&unique_strings(STEADINESS_VALUES));
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let started = std::time::Instant::now();
            for input in &inputs {
                std::hint::black_box(tokenize(&key, input));
            }
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The mask kernels the report measures.
pub fn masks() -> Vec<MaskKind> {
    vec![
        MaskKind::ShowLast4,
        MaskKind::Email,
        MaskKind::Hash,
        MaskKind::Redact("REDACTED".into()),
    ]
}

pub fn mask(kind: &MaskKind, input: &ArrayRef) -> usize {
    kind.apply(input).map_or(0, |a| a.len())
}

/// A chain join of `tables` TPC-H table references, customers and orders alternating,
/// every one of them a protected scan under meshgate.
pub fn join_sql(tables: usize) -> String {
    let mut sql = String::from("SELECT count(*) FROM tpch.customer t0");
    for i in 1..tables {
        let (table, on) = if i % 2 == 1 {
            ("orders", format!("t{i}.o_custkey = t{}.c_custkey", i - 1))
        } else {
            ("customer", format!("t{i}.c_custkey = t{}.o_custkey", i - 1))
        };
        sql.push_str(&format!(" JOIN tpch.{table} t{i} ON {on}"));
    }
    sql
}

/// Time `op` until at least `budget` has passed (and at least 3 calls): mean per call.
pub fn per_call(budget: Duration, mut op: impl FnMut()) -> (Duration, u64) {
    op();
    let started = Instant::now();
    let mut calls = 0u64;
    while calls < 3 || started.elapsed() < budget {
        op();
        calls += 1;
    }
    (started.elapsed() / calls as u32, calls)
}

/// Mean per call of an async `op`, like [`per_call`]; stops at the first error.
pub async fn per_call_async<F, Fut>(budget: Duration, mut op: F) -> Result<(Duration, u64), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    op().await?;
    let started = Instant::now();
    let mut calls = 0u64;
    while calls < 3 || started.elapsed() < budget {
        op().await?;
        calls += 1;
    }
    Ok((started.elapsed() / calls as u32, calls))
}

/// For reports: which structures the measurements used.
pub fn describe() -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("resolution", "PolicySet::resolve for payments.transactions, grants in force for N other consumers; `by grant` is a consumer admitted by a grant, `by files` risk-officer".to_string()),
        ("tokenize", "meshgate_protect::tokenize (HMAC-SHA256, tok_ + base64url), one thread".to_string()),
        ("masks", "MaskKind::apply on TPC-H-style phone numbers, one thread".to_string()),
        ("rewrite", "planning a 20-table chain join (customers and orders): meshgate Session::query (resolve, rewrite, audit record) against DataFusion's own SQL-to-physical-plan".to_string()),
    ])
}

/// A kernel counted in instructions (`count_kernel`): its name, how many values one call
/// handles (instructions are reported per value when more than one) and what that unit is.
pub struct Counted {
    pub name: &'static str,
    pub values: usize,
    pub unit: &'static str,
}

/// Values one call of the counted tokenization handles.
const TOKENIZED: usize = 10_000;

/// The kernels counted in instructions.
pub const COUNTED: [Counted; 3] = [
    Counted {
        name: "tokenize 10,000 unique strings",
        values: TOKENIZED,
        unit: "value",
    },
    Counted {
        name: "policy resolution, 1,000 grants, admitted by grant",
        values: 1,
        unit: "call",
    },
    Counted {
        name: "policy resolution, 1,000 grants, admitted by files",
        values: 1,
        unit: "call",
    },
];

/// Set up `kernel` (a name of [`COUNTED`]), then run it `calls` times.
pub async fn count_kernel(kernel: &str, calls: usize) -> Result<(), BenchError> {
    let [tokenizing, by_grant, by_files] = &COUNTED;
    if kernel == tokenizing.name {
        let (key, input) = (token_key(), unique_strings(TOKENIZED));
        for _ in 0..calls {
            std::hint::black_box(tokenize(&key, &input));
        }
    } else if kernel == by_grant.name || kernel == by_files.name {
        let resolution = Resolution::new(1_000).await?;
        let principal = match kernel == by_grant.name {
            true => &resolution.by_grant,
            false => &resolution.by_files,
        };
        for _ in 0..calls {
            std::hint::black_box(resolution.resolve(principal));
        }
    } else {
        return Err(BenchError::Query(format!("no kernel `{kernel}` to count")));
    }
    Ok(())
}

/// Instructions per call of `kernel`: this binary under callgrind with 1 and 11 calls, the
/// difference over 10 (the set-up cancels out). Errors say why nothing was counted
/// (no valgrind, a failed run).
pub async fn instructions(kernel: &str) -> Result<f64, String> {
    instructions_per_call(&["--count-kernel", kernel]).await
}

/// Instructions per call of what this binary does when run with `args` and
/// `--count-calls <n>`: counted under callgrind with 1 and 11 calls, the difference over 10.
pub async fn instructions_per_call(args: &[&str]) -> Result<f64, String> {
    match instruction_totals(args, &[1, 11]).await?.as_slice() {
        [one, eleven] => Ok((eleven - one) / 10.0),
        _ => Err("callgrind did not run twice".into()),
    }
}

/// Instructions of this binary run with `args` and `--count-calls <n>` under callgrind, for
/// each `n` of `calls` in turn.
pub async fn instruction_totals(args: &[&str], calls: &[usize]) -> Result<Vec<f64>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("meshgate-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut totals = Vec::new();
    for &calls in calls {
        let out = dir.join(format!("callgrind.{calls}"));
        let status = tokio::process::Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(&exe)
            .args(args)
            .arg("--count-calls")
            .arg(calls.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .map_err(|e| format!("valgrind could not be started ({e})"))?;
        if !status.success() {
            return Err(format!("valgrind exited with {status}"));
        }
        let text = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
        let total = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            })
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .ok_or("no instruction total in callgrind's output")?;
        totals.push(total);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(totals)
}
