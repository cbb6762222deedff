//! The report: everything measured in one run, as JSON (`results.json`) and markdown
//! (`RESULTS.md`), with the machine it ran on and the targets it is read against.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::concurrency::Load;
use crate::stats::{Timings, geomean, shifted_ratio};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub date: String,
    pub machine: BTreeMap<String, String>,
    pub versions: BTreeMap<String, String>,
    pub settings: BTreeMap<String, String>,
    /// Configuration name -> what it is.
    pub configs: Vec<(String, String)>,
    /// Query -> configuration -> result.
    pub tpch: Results,
    /// The reference mesh's queries: query -> `twin` / `meshgate` / `meshgate-flight` -> result.
    pub mesh: Results,
    pub mesh_queries: Vec<MeshQueryInfo>,
    pub limits: Vec<Limit>,
    /// Per round: meshgate's `SELECT *` MB/s over Flight ÷ the transport-only limit's.
    pub transfer_fraction: Vec<f64>,
    pub micro: Vec<Micro>,
    /// `pushdown_user_predicates = false` against the default, query by query.
    pub timing_safe: Vec<TimingSafe>,
    pub concurrency: BTreeMap<String, Vec<Load>>,
    /// Query -> what the distributed configurations moved between processes.
    pub distributed: BTreeMap<String, Distributed>,
    /// A worker process killed with SIGKILL in the middle of a query.
    pub fault: Option<Fault>,
    /// The generated meshes, smallest first, and how each cost grows between them.
    pub scale: Vec<crate::scale::Scale>,
    pub scale_growth: Vec<crate::scale::Growth>,
    /// Notes about the run (peers not run, setup facts).
    pub notes: Vec<String>,
    pub targets: Vec<Target>,
    /// The steadiness probe's milliseconds at each section's start (`micro::steadiness_probe`).
    pub steadiness: Vec<(String, f64)>,
}

/// How much slower than its fastest the steadiness probe may run before the report says the
/// host was disturbed (quiet runs here stay within a few per cent).
pub const DISTURBED: f64 = 0.10;

/// Query -> configuration -> result.
pub type Results = BTreeMap<String, BTreeMap<String, Run>>;

/// A reference-mesh query as the report lists it.
#[derive(Debug, Serialize)]
pub struct MeshQueryInfo {
    pub name: String,
    pub principal: String,
    pub what: String,
    pub sql: String,
}

/// One configuration's runs of one query.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Run {
    pub timings: Timings,
    pub rows: Option<usize>,
    /// `ok`, or why the answer was not accepted (then no time is reported).
    pub verdict: String,
    pub gets: Option<u64>,
    pub heads: Option<u64>,
    pub lists: Option<u64>,
    pub bytes_read: Option<u64>,
    /// The median of each round (configurations run in turn, run by run within each query
    /// and round, so that the machine's drift hits all of them alike).
    pub rounds: Vec<f64>,
}

/// A ratio measured round by round: the median of the per-round values and their range.
/// A target counts as met only when the whole range is inside it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Self> {
        Some(Self {
            median: crate::stats::percentile(values, 0.5)?,
            min: values.iter().copied().reduce(f64::min)?,
            max: values.iter().copied().reduce(f64::max)?,
            rounds: values.len(),
        })
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3} ({:.3}–{:.3} over {} rounds)",
            self.median, self.min, self.max, self.rounds
        )
    }
}

/// A spread in a table cell: median (min–max).
pub fn fmt_range(spread: Option<Spread>) -> String {
    spread.map_or("–".into(), |s| {
        format!("{:.3} ({:.3}–{:.3})", s.median, s.min, s.max)
    })
}

/// A spread as the report prints it (`–` when nothing was measured).
pub fn fmt_spread(spread: Option<Spread>) -> String {
    spread.map_or("–".into(), |s| s.to_string())
}

impl Run {
    pub fn ok(&self) -> bool {
        self.verdict == "ok"
    }

    /// Add one more round of the same query on the same configuration: its timings join the
    /// rest and its median is kept as the round's; the first round's answer and reads stay.
    /// A round that failed makes the whole run fail.
    pub fn absorb(&mut self, round: Run) {
        if let Some(median) = round.timings.median() {
            self.rounds.push(median);
        }
        self.timings.ms.extend(round.timings.ms);
        if self.rows.is_none() {
            self.rows = round.rows;
            self.gets = round.gets;
            self.heads = round.heads;
            self.lists = round.lists;
            self.bytes_read = round.bytes_read;
        }
        if self.verdict.is_empty() || !round.verdict.is_empty() {
            self.verdict = round.verdict;
        }
    }

    /// The median, only when the answer was verified.
    pub fn median(&self) -> Option<f64> {
        if self.ok() {
            self.timings.median()
        } else {
            None
        }
    }
}

/// What one query's distributed runs moved: bytes the workers sent (shuffles and results)
/// and the stages meshgate cut it into.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Distributed {
    pub shuffled: Option<u64>,
    pub shuffled_peer: Option<u64>,
    pub stages: Option<usize>,
}

/// A worker killed with SIGKILL in the middle of a TPC-H query on one gateway and worker
/// processes: what the query returned, and whether the gateway went on.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Fault {
    pub query: String,
    pub workers: usize,
    /// The query's time on all workers, before the kill.
    pub full_ms: f64,
    /// When the worker was killed, from the query's start.
    pub killed_at_ms: f64,
    /// From the kill to the query's error (none: the query did not fail).
    pub error_after_ms: Option<f64>,
    /// The query's error code and text as the caller saw them.
    pub code: String,
    pub error: String,
    /// Whether the error named the worker that was killed.
    pub names_worker: bool,
    /// Workers the gateway counted as live right after the error.
    pub live_after: usize,
    /// The next queries on the remaining workers: query, ms, `ok` or what went wrong.
    pub next: Vec<(String, f64, String)>,
    /// `ok`, or what the fault pass found wrong.
    pub verdict: String,
    /// Kills it took to land one while the victim still had work (each on fresh workers,
    /// earlier in the query).
    pub attempts: usize,
}

/// The concurrency part's diagnostic server: meshgate with its per-query store calls removed
/// (see `nostore.rs`), not a configuration meshgate offers.
pub const NOSTORE: &str = "meshgate-nostore";

/// Assumed for the scaling model: 10 GbE between machines, bytes per second.
const MODEL_BANDWIDTH: f64 = 1.25e9;
/// Assumed for the scaling model: cores per worker machine.
const MODEL_CORES: f64 = 8.0;

/// One query run in turn with callers' predicates pushed into the sealed scan (the default)
/// and kept out of it (`pushdown_user_predicates = false`).
#[derive(Debug, Serialize)]
pub struct TimingSafe {
    pub query: String,
    pub sql: String,
    pub pushdown_ms: f64,
    pub timing_safe_ms: f64,
    /// Median, smallest and largest of the per-round ratios timing-safe ÷ default.
    pub ratio: f64,
    pub ratio_min: f64,
    pub ratio_max: f64,
    pub rounds: usize,
}

#[derive(Debug, Serialize)]
pub struct Limit {
    pub name: String,
    pub bytes: u64,
    pub median_ms: f64,
    pub mb_per_s: f64,
    pub note: String,
}

#[derive(Debug, Serialize)]
pub struct Micro {
    pub name: String,
    /// Nanoseconds per call.
    pub ns_per_call: f64,
    /// Values per second per core, for kernels.
    pub values_per_second: Option<f64>,
    /// For kernels measured round by round: the slowest and fastest round's values/s.
    pub values_range: Option<(f64, f64)>,
    /// Instructions per call, counted by callgrind (they do not move with the machine's load).
    pub instructions: Option<f64>,
}

impl Micro {
    /// `per` per call; with `values` per call, also values per second.
    pub fn timed(name: impl Into<String>, per: std::time::Duration, values: Option<usize>) -> Self {
        Self {
            name: name.into(),
            ns_per_call: per.as_nanos() as f64,
            values_per_second: values.map(|n| n as f64 / per.as_secs_f64()),
            values_range: None,
            instructions: None,
        }
    }

    /// Counted, not timed: instructions per call.
    pub fn instructions(name: impl Into<String>, per_call: f64) -> Self {
        Self {
            name: name.into(),
            ns_per_call: f64::NAN,
            values_per_second: None,
            values_range: None,
            instructions: Some(per_call),
        }
    }

    /// Round by round: the median round's time per call, and the range of values/s.
    pub fn rounds(name: impl Into<String>, per: &[std::time::Duration], values: usize) -> Self {
        let ns: Vec<f64> = per.iter().map(|d| d.as_nanos() as f64).collect();
        let median = crate::stats::percentile(&ns, 0.5).unwrap_or(f64::NAN);
        let rate = |ns: f64| values as f64 / (ns / 1e9);
        let (fast, slow) = (
            ns.iter().copied().fold(f64::INFINITY, f64::min),
            ns.iter().copied().fold(0.0, f64::max),
        );
        Self {
            name: name.into(),
            ns_per_call: median,
            values_per_second: Some(rate(median)),
            values_range: Some((rate(slow), rate(fast))),
            instructions: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub goal: String,
    pub measured: String,
    pub met: Option<bool>,
    pub why: String,
}

impl Report {
    /// Shifted ratios of `config` against `base` over TPC-H, per query where both were
    /// verified.
    pub fn ratios(&self, config: &str, base: &str) -> Vec<(String, f64)> {
        ratios(&self.tpch, config, base)
    }

    /// The geometric mean of [`Report::ratios`].
    pub fn geomean(&self, config: &str, base: &str) -> Option<f64> {
        geomean_of(&self.tpch, config, base)
    }

    /// The same over the reference mesh's queries.
    pub fn mesh_geomean(&self, config: &str, base: &str) -> Option<f64> {
        geomean_of(&self.mesh, config, base)
    }

    /// [`Report::geomean`] round by round: its median and range over the rounds.
    pub fn spread(&self, config: &str, base: &str) -> Option<Spread> {
        spread_of(&self.tpch, config, base)
    }

    /// [`Report::mesh_geomean`] round by round.
    pub fn mesh_spread(&self, config: &str, base: &str) -> Option<Spread> {
        spread_of(&self.mesh, config, base)
    }

    /// Queries per second of `server` ÷ `base` at `clients` clients, round by round.
    pub fn load_spread(&self, server: &str, base: &str, clients: usize) -> Option<Spread> {
        let rates = |name: &str| -> Vec<f64> {
            self.concurrency
                .get(name)
                .into_iter()
                .flatten()
                .filter(|l| l.clients == clients && l.errors == 0)
                .map(|l| l.queries_per_second)
                .collect()
        };
        let ratios: Vec<f64> = rates(server)
            .into_iter()
            .zip(rates(base))
            .filter(|(_, b)| *b > 0.0)
            .map(|(a, b)| a / b)
            .collect();
        Spread::of(&ratios)
    }

    /// The sections where the steadiness probe ran more than [`DISTURBED`] slower than its
    /// fastest, with its milliseconds there.
    pub fn disturbed_sections(&self) -> impl Iterator<Item = (&str, f64)> {
        let fastest = self
            .steadiness
            .iter()
            .map(|(_, ms)| *ms)
            .fold(f64::INFINITY, f64::min);
        self.steadiness
            .iter()
            .filter(move |(_, ms)| *ms > fastest * (1.0 + DISTURBED))
            .map(|(section, ms)| (section.as_str(), *ms))
    }

    /// The steadiness probe's range over the run and the sections it was slowest at; `None`
    /// when it never ran.
    pub fn steadiness_line(&self) -> Option<String> {
        let fastest = self.steadiness.iter().map(|(_, ms)| *ms).reduce(f64::min)?;
        let slowest = self.steadiness.iter().map(|(_, ms)| *ms).reduce(f64::max)?;
        let slow: Vec<String> = self
            .disturbed_sections()
            .map(|(section, ms)| format!("{section} ({:+.0} %)", (ms / fastest - 1.0) * 100.0))
            .collect();
        let mut line = format!(
            "a fixed CPU kernel (tokenizing {} values, median of 5) took {fastest:.1}–{slowest:.1} ms \
             at the {} section starts",
            crate::micro::STEADINESS_VALUES,
            self.steadiness.len()
        );
        if slow.is_empty() {
            let _ = write!(
                line,
                ", never more than {:.0} % above its fastest: the host was steady",
                DISTURBED * 100.0
            );
        } else {
            let _ = write!(
                line,
                "; **disturbed**, more than {:.0} % slower at: {}",
                DISTURBED * 100.0,
                slow.join(", ")
            );
        }
        Some(line)
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# meshgate benchmark results\n");
        let _ = writeln!(
            out,
            "Generated by `benches/run.sh` ({}) on {}. Every number below was measured in this one run, \
             side by side on the same files. Configurations run in turn, run by run within each query \
             and round (A B A B ...), so that the machine's drift hits all of them alike; times are \
             medians over all rounds. Geometric means use ClickBench's shifted ratio \
             `(t + 10 ms) / (t_base + 10 ms)` and are computed per round: each is given as the \
             median over rounds with its range (min–max), and a target counts as met only when the \
             whole range is inside it. Answers were checked before any time was \
             reported (`≠` marks a configuration whose answer differed, `err` one that failed).\n",
            self.settings.get("mode").map_or("", String::as_str),
            self.date
        );
        let _ = writeln!(out, "## Machine and settings\n");
        let _ = writeln!(out, "| | |\n|---|---|");
        for (k, v) in self
            .machine
            .iter()
            .chain(&self.settings)
            .chain(&self.versions)
        {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        if let Some(line) = self.steadiness_line() {
            let _ = writeln!(out, "| host steadiness | {line} |");
        }
        let _ = writeln!(out, "\n## Targets\n");
        let _ = writeln!(
            out,
            "| target | goal | measured | met | why / what would fix it |\n|---|---|---|---|---|"
        );
        for t in &self.targets {
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "n/a",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                t.name, t.goal, t.measured, met, t.why
            );
        }
        let _ = writeln!(out, "\n## Configurations\n");
        for (name, what) in &self.configs {
            let _ = writeln!(out, "- `{name}`: {what}");
        }
        self.tpch_tables(&mut out);
        self.distributed_table(&mut out);
        self.fault_section(&mut out);
        self.mesh_table(&mut out);
        let _ = writeln!(out, "\n## Physical limits and transfer\n");
        let _ = writeln!(
            out,
            "| measurement | bytes | median ms | MB/s | note |\n|---|---|---|---|---|"
        );
        for l in &self.limits {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.0} | {} |",
                l.name, l.bytes, l.median_ms, l.mb_per_s, l.note
            );
        }
        if !self.transfer_fraction.is_empty() {
            let _ = writeln!(
                out,
                "\nmeshgate's MB/s ÷ the transport limit's, round by round (the two run in turn \
                 within each round): {}.",
                self.transfer_fraction
                    .iter()
                    .map(|f| format!("{:.0}%", f * 100.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !self.timing_safe.is_empty() {
            let _ = writeln!(
                out,
                "\n## The timing-safe setting\n\n\
                 A product whose policy sets `pushdown_user_predicates = false` keeps callers' own \
                 predicates out of its sealed scans, so that which row groups a query reads (and so \
                 its time) says nothing about rows the caller may not see. Its price is pruning: \
                 here as `bench-prunable`, the default and the setting run each query in turn, \
                 round after round (ratio = timing-safe ÷ default per round: median, min–max).\n"
            );
            let _ = writeln!(
                out,
                "| query | default ms | timing-safe ms | ratio | spread | rounds |\n|---|---|---|---|---|---|"
            );
            for t in &self.timing_safe {
                let _ = writeln!(
                    out,
                    "| {} | {:.1} | {:.1} | {:.2} | {:.2}–{:.2} | {} |",
                    t.query,
                    t.pushdown_ms,
                    t.timing_safe_ms,
                    t.ratio,
                    t.ratio_min,
                    t.ratio_max,
                    t.rounds
                );
            }
        }
        self.scale_table(&mut out);
        let _ = writeln!(out, "\n## Micro-benchmarks\n");
        let _ = writeln!(
            out,
            "| benchmark | per call | values/s/core |\n|---|---|---|"
        );
        for m in &self.micro {
            let per_call = if let Some(count) = m.instructions {
                format!("{count:.0} instructions")
            } else if m.ns_per_call >= 1e6 {
                format!("{:.2} ms", m.ns_per_call / 1e6)
            } else if m.ns_per_call >= 1e3 {
                format!("{:.2} µs", m.ns_per_call / 1e3)
            } else {
                format!("{:.0} ns", m.ns_per_call)
            };
            let rate = match (m.values_per_second, m.values_range) {
                (Some(v), Some((lo, hi))) => {
                    format!(
                        "{:.2} M ({:.2}–{:.2} M over rounds)",
                        v / 1e6,
                        lo / 1e6,
                        hi / 1e6
                    )
                }
                (Some(v), None) => format!("{:.2} M", v / 1e6),
                _ => String::new(),
            };
            let _ = writeln!(out, "| {} | {per_call} | {rate} |", m.name);
        }
        let _ = writeln!(
            out,
            "\n## Latency under concurrency (point queries over Flight SQL)\n\nEach client is a \
             connection of its own, running one-order lookups back to back; meshgate's clients \
             are each their own principal (`bench-client-<n>`, seeing everything), since one \
             principal's share of the gateway's running slots and queue is capped. The servers \
             take turns in five slices of each level's time, on connections made once \
             (A B A B ...): every level, then again, round after round.\n"
        );
        let mut levels: Vec<usize> = self
            .concurrency
            .values()
            .flatten()
            .map(|l| l.clients)
            .collect();
        levels.sort_unstable();
        levels.dedup();
        if self.concurrency.contains_key("meshgate-flight")
            && self.concurrency.contains_key("df-flight-sql-server")
        {
            let diagnostic = self.concurrency.contains_key(NOSTORE);
            let _ = writeln!(
                out,
                "| clients | queries/s, meshgate ÷ datafusion-flight-sql-server |{}\n|---|---|{}",
                if diagnostic {
                    " diagnostic: meshgate without its store trips ÷ datafusion-flight-sql-server |"
                } else {
                    ""
                },
                if diagnostic { "---|" } else { "" }
            );
            for clients in &levels {
                let peer =
                    |server| fmt_spread(self.load_spread(server, "df-flight-sql-server", *clients));
                let _ = writeln!(
                    out,
                    "| {clients} | {} |{}",
                    peer("meshgate-flight"),
                    if diagnostic {
                        format!(" {} |", peer(NOSTORE))
                    } else {
                        String::new()
                    }
                );
            }
            if diagnostic {
                let _ = writeln!(
                    out,
                    "\n`{NOSTORE}` is a diagnostic, not a configuration meshgate offers: the same \
                     gateway, same policies and same files, whose store answers the grant \
                     generation from memory after one read and accepts audit records and outcomes \
                     without writing them (`benches/src/nostore.rs`). The gap between its column and \
                     meshgate's is what the per-query trips to the governance store cost under load."
                );
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(
            out,
            "| server | clients | queries | errors | queries/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|"
        );
        for (server, loads) in &self.concurrency {
            for l in loads {
                let _ = writeln!(
                    out,
                    "| {server} | {} | {} | {} | {:.1} | {} | {} |",
                    l.clients,
                    l.queries,
                    l.errors,
                    l.queries_per_second,
                    fmt_opt(l.p50_ms),
                    fmt_opt(l.p99_ms)
                );
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }

    fn scale_table(&self, out: &mut String) {
        if self.scale.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\n## Mesh scale\n\nGenerated meshes: per product one table (three columns, one masked \
             for every reader) in ten domains, ten consumers and a hundred access grants (ten per \
             consumer); `scale-wide` is admitted by the policy files to every other product. \
             Start-up opens the gateway (catalog and policies validated, every lake opened); the \
             grant layer is what the first query after a grant change builds from the grants in \
             force; one resolution is a consumer a grant admits, nothing remembered (the files' \
             lines are tried only for the product asked for, and patterns; casbin expands the \
             caller's roles), and `remembered` the same as every later query of the policy set finds \
             it; planning and \
             listing are `scale-wide`'s (listing is what Flight SQL's GetTables answers from; \
             GetTables is the same list as a Flight SQL client gets it, signed in with a \
             password: FlightInfo, then the DoGet of its ticket). Per-call costs are the median \
             of five slices of the time budget, one-off costs the median of three; every \
             measurement takes the sizes in turn (small, large, small, large...), so that the \
             machine's drift over the section moves both sizes alike, not the growth. \
             Memory is the resident set opening the gateway added, measured in a process of its own \
             after a gateway of one product was opened there (what every process pays once, the \
             runtime's threads, DataFusion's registries and the generated user's password hash, \
             varies by half a MB between processes), less what a second gateway of one product \
             adds ({}).\n",
            self.scale
                .first()
                .map_or("–".into(), |s| format!("{:.1} MB", s.base_memory_mb))
        );
        let _ = writeln!(
            out,
            "| products | principals | grants | start-up ms | reload ms | memory MB | grant layer ms | one resolution µs | remembered µs | plan ms | tables listed | listing ms | GetTables rows | GetTables ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for s in &self.scale {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.0} | {:.1} | {:.2} | {:.2} | {} | {:.2} | {} | {:.2} |",
                s.products,
                s.principals,
                s.grants,
                s.startup_ms,
                s.reload_ms,
                s.memory_mb,
                s.grant_layer_ms,
                s.resolve_us,
                s.remembered_us,
                s.plan_ms,
                s.listed,
                s.listing_ms,
                s.get_tables_rows,
                s.get_tables_ms
            );
        }
        if !self.scale_growth.is_empty() {
            let _ = writeln!(
                out,
                "\n| cost | smaller mesh | larger mesh | exponent | growth |\n|---|---|---|---|---|"
            );
            for g in &self.scale_growth {
                let _ = writeln!(
                    out,
                    "| {} | {:.2} | {:.2} | {:.2} | {} |",
                    g.name, g.small, g.large, g.exponent, g.shape
                );
            }
        }
    }

    fn cell(&self, query: &str, config: &str) -> String {
        cell(&self.tpch, query, config)
    }

    fn distributed_table(&self, out: &mut String) {
        if self.distributed.is_empty() {
            return;
        }
        let (md, m, dd) = ("meshgate-distributed", "meshgate", "datafusion-distributed");
        let _ = writeln!(
            out,
            "\n## TPC-H distributed: one gateway and two workers (median ms)\n\n\
             `{md}` is meshgate with every query cut into stages for two workers; `{dd}` is \
             DataFusion Distributed itself on the same files with no enforcement. All of them share \
             this machine's cores, so `distributing` (= {md} ÷ {m}, in process) is what distribution \
             costs, not what more machines buy. `enforcement` = {md} ÷ {dd}. `shuffled` is the bytes \
             the workers sent (shuffles and results, Arrow IPC, lz4).\n"
        );
        let _ = writeln!(
            out,
            "| query | {m} | {md} | {dd} | distributing | enforcement | stages | shuffled (meshgate) | shuffled (peer) |\n|---|---|---|---|---|---|---|---|---|"
        );
        let mb =
            |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{:.1} MB", b as f64 / 1e6));
        for query in self.tpch.keys() {
            let d = self.distributed.get(query).cloned().unwrap_or_default();
            let _ = writeln!(
                out,
                "| {query} | {} | {} | {} | {} | {} | {} | {} | {} |",
                self.cell(query, m),
                self.cell(query, md),
                self.cell(query, dd),
                self.ratio_cell(query, md, m),
                self.ratio_cell(query, md, dd),
                d.stages.map_or("-".into(), |s| s.to_string()),
                mb(d.shuffled),
                mb(d.shuffled_peer),
            );
        }
        let _ = writeln!(
            out,
            "| **geomean** | | | | **{}** | **{}** | | | |",
            fmt_range(self.spread(md, m)),
            fmt_range(self.spread(md, dd))
        );
        let more: Vec<&str> = self
            .distributed
            .iter()
            .filter(|(_, d)| match (d.shuffled, d.shuffled_peer) {
                (Some(mine), Some(peer)) => mine > 1_000_000 && mine as f64 > 1.5 * peer as f64,
                _ => false,
            })
            .map(|(q, _)| q.as_str())
            .collect();
        if !more.is_empty() {
            let _ = writeln!(
                out,
                "\nmeshgate shuffles over 1.5 × the peer's bytes on {}: there the plan is cut \
                 differently. The peer plans with the files' byte sizes and column statistics, which \
                 sealed scans do not report (see Targets); that is the first suspect, not yet \
                 analysed query by query.",
                more.join(", ")
            );
        }

        // The model: leaf stages (the scans and partial aggregates, nearly all of TPC-H's work)
        // divide over the machines; each stage adds a fixed latency, measured here as the
        // in-process overhead per stage; the shuffled bytes cross a real network.
        let mut per_stage = Vec::new();
        let mut rows = Vec::new();
        for query in self.tpch.keys() {
            let (Some(t_local), Some(t_dist)) = (
                self.tpch
                    .get(query)
                    .and_then(|r| r.get(m))
                    .and_then(Run::median),
                self.tpch
                    .get(query)
                    .and_then(|r| r.get(md))
                    .and_then(Run::median),
            ) else {
                continue;
            };
            let d = self.distributed.get(query).cloned().unwrap_or_default();
            let stages = d.stages.unwrap_or(1).max(1) as f64;
            per_stage.push(((t_dist - t_local) / stages).max(0.0));
            rows.push((
                query.clone(),
                t_local,
                stages,
                d.shuffled.unwrap_or(0) as f64,
            ));
        }
        let Some(latency) = crate::stats::percentile(&per_stage, 0.5) else {
            return;
        };
        let cores_here = self
            .machine
            .get("cores")
            .and_then(|c| c.parse::<f64>().ok())
            .unwrap_or(2.0);
        let _ = writeln!(
            out,
            "\n### A scaling model for N machines\n\n\
             This machine cannot show scaling (its {cores_here} cores run the gateway and both workers), so \
             the numbers above are turned into a model: `T(N) = T1 × {cores_here} / (N × c) + s × L + B / W`, \
             with `T1` the in-process time here, `N` workers of `c` = {MODEL_CORES} cores, `s` the query's \
             stages, `L` = {latency:.1} ms the median overhead per stage measured above (planning, \
             signing and encoding stages, gRPC on loopback), `B` the bytes shuffled and `W` = 10 GbE. \
             It assumes the leaf stages (scans, filters, partial aggregates) hold the work and split \
             evenly, and ignores skew and the coordinator's final stage; it is a model, not a measurement.\n"
        );
        let _ = writeln!(
            out,
            "| query | here (ms) | N=2 | N=4 | N=8 | N=16 |\n|---|---|---|---|---|---|"
        );
        let mut not_worth_it = Vec::new();
        for (query, t_local, stages, bytes) in rows {
            let model = |n: f64| {
                t_local * cores_here / (n * MODEL_CORES)
                    + stages * latency
                    + bytes / MODEL_BANDWIDTH * 1000.0
            };
            if model(16.0) >= t_local {
                not_worth_it.push(query.clone());
            }
            let _ = writeln!(
                out,
                "| {query} | {t_local:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                model(2.0),
                model(4.0),
                model(8.0),
                model(16.0)
            );
        }
        if !not_worth_it.is_empty() {
            let _ = writeln!(
                out,
                "\nFor {} the model never beats one process: small queries cut into many stages \
                 pay the per-stage latency and win little from more cores. The gateway's default \
                 `min_scan_bytes` (64 MiB of Parquet read) keeps such queries in process; this \
                 benchmark sets it to 0 to distribute every query.",
                not_worth_it.join(", ")
            );
        }
    }

    fn fault_section(&self, out: &mut String) {
        let Some(f) = &self.fault else {
            return;
        };
        let _ = writeln!(
            out,
            "\n### A worker killed mid-query\n\n\
             One gateway and {} `meshgate worker` processes (the harness's own binary, \
             `--serve-worker`) on loopback. `{}` took {:.0} ms on all of them; a second run's worker \
             was killed with SIGKILL {:.0} ms after the query started. **Verdict: {}.**\n",
            f.workers, f.query, f.full_ms, f.killed_at_ms, f.verdict
        );
        match f.error_after_ms {
            Some(after) => {
                let _ = writeln!(
                    out,
                    "- The query failed {after:.0} ms after the kill with `{}`{}: `{}`",
                    f.code,
                    if f.names_worker {
                        ", naming the killed worker"
                    } else {
                        ", **without naming the worker**"
                    },
                    f.error.replace('`', "'"),
                );
            }
            None => {
                let _ = writeln!(out, "- The query did not fail.");
            }
        }
        let _ = writeln!(
            out,
            "- Kills made: {} (a kill after the victim's part was done is repeated earlier, on fresh workers).\n\
             - Workers the gateway counted as live right after: {} of {}.",
            f.attempts, f.live_after, f.workers
        );
        for (query, ms, verdict) in &f.next {
            let _ = writeln!(
                out,
                "- Next: `{query}` on the remaining workers in {ms:.0} ms, answer {verdict}."
            );
        }
    }

    fn tpch_tables(&self, out: &mut String) {
        let configs: Vec<&str> = self.configs.iter().map(|(n, _)| n.as_str()).collect();
        let engines: Vec<&str> = configs
            .iter()
            .copied()
            .filter(|c| !c.contains('/') && *c != "meshgate-s3" && !c.ends_with("-distributed"))
            .collect();
        let _ = writeln!(
            out,
            "\n## TPC-H: engines and gateways, no policy (median ms)\n"
        );
        table(out, self, &engines, "datafusion");

        let policies: Vec<&str> = configs
            .iter()
            .filter_map(|c| c.strip_prefix("meshgate/"))
            .collect();
        if !policies.is_empty() {
            let _ = writeln!(
                out,
                "\n## TPC-H with policies (median ms; in process)\n\n\
                 `meshgate/<policy>` enforces the policy; `twin/<policy>` is embedded DataFusion with the \
                 same policy written by hand as views (same kernels, same key: identical answers). \
                 `rewrite` = meshgate/p ÷ twin/p, `policy` = meshgate/p ÷ meshgate (no policy).\n"
            );
            let mut header = String::from("| query |");
            let mut rule = String::from("|---|");
            for p in &policies {
                let _ = write!(header, " meshgate/{p} | twin/{p} | rewrite | policy |");
                rule.push_str("---|---|---|---|");
            }
            let _ = writeln!(out, "{header}\n{rule}");
            for query in self.tpch.keys() {
                let mut line = format!("| {query} |");
                for p in &policies {
                    let (m, t) = (format!("meshgate/{p}"), format!("twin/{p}"));
                    let _ = write!(
                        line,
                        " {} | {} | {} | {} |",
                        self.cell(query, &m),
                        self.cell(query, &t),
                        self.ratio_cell(query, &m, &t),
                        self.ratio_cell(query, &m, "meshgate")
                    );
                }
                let _ = writeln!(out, "{line}");
            }
            let mut line = String::from("| **geomean** |");
            for p in &policies {
                let (m, t) = (format!("meshgate/{p}"), format!("twin/{p}"));
                let _ = write!(
                    line,
                    " | | **{}** | **{}** |",
                    fmt_range(self.spread(&m, &t)),
                    fmt_range(self.spread(&m, "meshgate"))
                );
            }
            let _ = writeln!(out, "{line}");
        }

        if configs.contains(&"meshgate-s3") {
            let _ = writeln!(
                out,
                "\n## TPC-H over the in-process S3 server (meshgate in process, no policy)\n\n\
                 Requests and bytes are counted by the gateway per query (`meshgate` on local files \
                 issues the same reads as file range reads).\n"
            );
            let _ = writeln!(
                out,
                "| query | meshgate ms | meshgate-s3 ms | ratio | GET | HEAD | LIST | MB read |\n|---|---|---|---|---|---|---|---|"
            );
            for (query, runs) in &self.tpch {
                let Some(s3) = runs.get("meshgate-s3") else {
                    continue;
                };
                let _ = writeln!(
                    out,
                    "| {query} | {} | {} | {} | {} | {} | {} | {} |",
                    self.cell(query, "meshgate"),
                    self.cell(query, "meshgate-s3"),
                    self.ratio_cell(query, "meshgate-s3", "meshgate"),
                    s3.gets.map_or(String::new(), |v| v.to_string()),
                    s3.heads.map_or(String::new(), |v| v.to_string()),
                    s3.lists.map_or(String::new(), |v| v.to_string()),
                    s3.bytes_read
                        .map_or(String::new(), |v| format!("{:.1}", v as f64 / 1e6)),
                );
            }
            let _ = writeln!(
                out,
                "| **geomean** | | | **{}** | | | | |",
                fmt_range(self.spread("meshgate-s3", "meshgate"))
            );
        }
    }

    fn ratio_cell(&self, query: &str, config: &str, base: &str) -> String {
        ratio_cell(&self.tpch, query, config, base)
    }

    fn mesh_table(&self, out: &mut String) {
        if self.mesh_queries.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\n## Reference mesh (median ms; `docs/reference-mesh.md`)\n\n\
             Each query runs as the principal named, on the mesh's local files: `twin` is embedded \
             DataFusion with that principal's published policy written by hand as views (meshgate's \
             mask and token functions, same key: identical answers), `meshgate` the library session, \
             `meshgate-flight` the same over Flight SQL with a password login, `transport` \
             meshgate-flight's answer streamed again from memory through the same Flight encoder, \
             gRPC and client (the transfer alone: no call to plan, no scan). `rewrite` = meshgate ÷ \
             twin, `flight` = meshgate-flight ÷ twin. Each round times every query more often \
             than TPC-H's (see `runs per query`): they take milliseconds.\n"
        );
        let _ = writeln!(
            out,
            "| query | principal | what | rows | twin | meshgate | meshgate-flight | transport | rewrite | flight |\n\
             |---|---|---|---|---|---|---|---|---|---|"
        );
        for q in &self.mesh_queries {
            let rows = self
                .mesh
                .get(&q.name)
                .and_then(|r| r.get("twin"))
                .and_then(|r| r.rows)
                .map_or(String::new(), |n| n.to_string());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {rows} | {} | {} | {} | {} | {} | {} |",
                q.name,
                q.principal,
                q.what,
                cell(&self.mesh, &q.name, "twin"),
                cell(&self.mesh, &q.name, "meshgate"),
                cell(&self.mesh, &q.name, "meshgate-flight"),
                cell(&self.mesh, &q.name, "transport"),
                ratio_cell(&self.mesh, &q.name, "meshgate", "twin"),
                ratio_cell(&self.mesh, &q.name, "meshgate-flight", "twin"),
            );
        }
        let _ = writeln!(
            out,
            "| **geomean** | | | | | | | | **{}** | **{}** |",
            fmt_range(self.mesh_spread("meshgate", "twin")),
            fmt_range(self.mesh_spread("meshgate-flight", "twin"))
        );
        let _ = writeln!(out, "\n<details><summary>The mesh queries' SQL</summary>\n");
        for q in &self.mesh_queries {
            let _ = writeln!(out, "- {} (`{}`): `{}`", q.name, q.principal, q.sql);
        }
        let _ = writeln!(out, "\n</details>\n");
    }
}

fn ratios(results: &Results, config: &str, base: &str) -> Vec<(String, f64)> {
    results
        .iter()
        .filter_map(|(query, runs)| {
            let a = runs.get(config)?.median()?;
            let b = runs.get(base)?.median()?;
            Some((query.clone(), shifted_ratio(a, b)))
        })
        .collect()
}

fn geomean_of(results: &Results, config: &str, base: &str) -> Option<f64> {
    let ratios: Vec<f64> = ratios(results, config, base)
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    geomean(&ratios)
}

/// Per round, the geometric mean of `config` ÷ `base` over the queries both answered in
/// that round; then their median and range.
fn spread_of(results: &Results, config: &str, base: &str) -> Option<Spread> {
    let pairs: Vec<(&Run, &Run)> = results
        .values()
        .filter_map(|runs| {
            let (a, b) = (runs.get(config)?, runs.get(base)?);
            (a.ok() && b.ok()).then_some((a, b))
        })
        .collect();
    let rounds = pairs
        .iter()
        .map(|(a, b)| a.rounds.len().min(b.rounds.len()))
        .min()?;
    let per_round: Vec<f64> = (0..rounds)
        .filter_map(|r| {
            let ratios: Vec<f64> = pairs
                .iter()
                .map(|(a, b)| shifted_ratio(a.rounds[r], b.rounds[r]))
                .collect();
            geomean(&ratios)
        })
        .collect();
    Spread::of(&per_round)
}

fn cell(results: &Results, query: &str, config: &str) -> String {
    match results.get(query).and_then(|r| r.get(config)) {
        None => String::new(),
        Some(run) if run.ok() => fmt_opt(run.timings.median()),
        Some(run) if run.verdict.starts_with("error") => "err".into(),
        Some(_) => "≠".into(),
    }
}

fn ratio_cell(results: &Results, query: &str, config: &str, base: &str) -> String {
    let runs = results.get(query);
    let a = runs.and_then(|r| r.get(config)).and_then(Run::median);
    let b = runs.and_then(|r| r.get(base)).and_then(Run::median);
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", shifted_ratio(a, b)),
        _ => String::new(),
    }
}

fn table(out: &mut String, report: &Report, configs: &[&str], base: &str) {
    let mut header = String::from("| query |");
    let mut rule = String::from("|---|");
    for c in configs {
        let _ = write!(header, " {c} |");
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for query in report.tpch.keys() {
        let mut line = format!("| {query} |");
        for c in configs {
            let _ = write!(line, " {} |", report.cell(query, c));
        }
        let _ = writeln!(out, "{line}");
    }
    let mut line = format!("| **geomean vs {base}** |");
    for c in configs {
        let _ = write!(line, " **{}** |", fmt_range(report.spread(c, base)));
    }
    let _ = writeln!(out, "{line}");
}

pub fn fmt_opt(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
        None => String::new(),
    }
}

pub fn fmt_ratio(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(steadiness: &[(&str, f64)]) -> Report {
        Report {
            steadiness: steadiness
                .iter()
                .map(|(s, ms)| (s.to_string(), *ms))
                .collect(),
            ..Report::default()
        }
    }

    #[test]
    fn a_steady_host_is_reported_steady() {
        let report = with(&[("TPC-H round 1 of 3", 8.0), ("micro-benchmarks", 8.6)]);
        assert_eq!(report.disturbed_sections().count(), 0);
        let line = report.steadiness_line().unwrap();
        assert!(line.contains("8.0–8.6 ms"), "{line}");
        assert!(line.contains("steady"), "{line}");
    }

    #[test]
    fn a_section_run_slower_names_the_disturbance() {
        let report = with(&[
            ("TPC-H round 1 of 3", 8.0),
            ("mesh scale: generated meshes", 10.4),
            ("micro-benchmarks", 8.2),
        ]);
        let slow: Vec<_> = report.disturbed_sections().collect();
        assert_eq!(slow, vec![("mesh scale: generated meshes", 10.4)]);
        let line = report.steadiness_line().unwrap();
        assert!(
            line.contains("mesh scale: generated meshes (+30 %)"),
            "{line}"
        );
    }

    #[test]
    fn no_probe_no_line() {
        assert!(with(&[]).steadiness_line().is_none());
    }
}
