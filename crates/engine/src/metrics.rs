//! The gateway's operational numbers, in Prometheus' text format.
//!
//! Every series has a fixed set of label names, and every label value is either a name from
//! a closed set written in this code (an RPC, a Flight SQL command, a status, a denial reason)
//! or a product id from the catalog. The methods take exactly those, so a principal, a
//! statement, a literal or a value cannot become a label: there is no method that would take
//! one. One [`Metrics`] per gateway (no global registry), so several gateways in one process
//! count apart.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use meshgate_storage::IoReport;

/// Upper bounds (seconds) of the duration histograms' buckets.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; SECONDS.len()];
        }
        for (bucket, bound) in self.buckets.iter_mut().zip(SECONDS) {
            if seconds <= *bound {
                *bucket += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// A series' label values, in the order of its family's label names.
type Labels = Vec<String>;

#[derive(Debug, Default)]
struct Families {
    counters: BTreeMap<&'static str, BTreeMap<Labels, u64>>,
    histograms: BTreeMap<&'static str, BTreeMap<Labels, Histogram>>,
}

/// What a family is, for its `# HELP` and `# TYPE` lines.
struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const RPCS: Family = Family {
    name: "meshgate_rpcs_total",
    help: "Flight RPCs answered, by method, Flight SQL command and gRPC status.",
    labels: &["method", "command", "status"],
};
const RPC_SECONDS: Family = Family {
    name: "meshgate_rpc_duration_seconds",
    help: "Time to answer a Flight RPC (for streams: until the first response).",
    labels: &["method", "command"],
};
const QUERIES: Family = Family {
    name: "meshgate_queries_total",
    help: "Queries that ended, by how they arrived and how they ended.",
    labels: &["method", "status"],
};
const QUERY_SECONDS: Family = Family {
    name: "meshgate_query_duration_seconds",
    help: "Time from a query's start to its end, by how it arrived.",
    labels: &["method"],
};
const ROWS: Family = Family {
    name: "meshgate_rows_returned_total",
    help: "Rows sent to callers.",
    labels: &[],
};
const BYTES: Family = Family {
    name: "meshgate_bytes_returned_total",
    help: "Bytes (in Arrow memory) sent to callers.",
    labels: &[],
};
const DENIALS: Family = Family {
    name: "meshgate_denials_total",
    help: "Queries refused by policy, by reason.",
    labels: &["reason"],
};
const POLICY_SECONDS: Family = Family {
    name: "meshgate_policy_resolution_seconds",
    help: "Time to find the policy in force (grants re-read from the store when they changed).",
    labels: &[],
};
const DRAFTS: Family = Family {
    name: "meshgate_drafts_total",
    help: "Statements run from what describing them planned (`continued`), or planned again because that no longer applied (`replanned`: a grant, policy or catalog change, or another token of the principal, in between).",
    labels: &["outcome"],
};
const AUDIT_SECONDS: Family = Family {
    name: "meshgate_audit_write_seconds",
    help: "Time to write an audit record (`start`: before the query runs; `end`: its outcome).",
    labels: &["phase"],
};
const AUDIT_FAILURES: Family = Family {
    name: "meshgate_audit_write_failures_total",
    help: "Audit writes that failed (`start` failures refuse the query).",
    labels: &["phase"],
};
const STORAGE_REQUESTS: Family = Family {
    name: "meshgate_storage_requests_total",
    help: "Requests to product storage, by product and kind.",
    labels: &["product", "kind"],
};
const STORAGE_BYTES: Family = Family {
    name: "meshgate_storage_bytes_total",
    help: "Bytes read from product storage, by product.",
    labels: &["product"],
};

const ROW_FILTER_STATISTICS: Family = Family {
    name: "meshgate_row_filter_statistics_total",
    help: "Files read in the background under a row filter, for the statistics of the rows its callers see (`computed`; `failed`: tried again on a later scan). Their reads count in meshgate_storage_*.",
    labels: &["outcome"],
};

/// A point-in-time reading the gateway supplies when rendering.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub queries_running: usize,
    pub queries_queued: usize,
    pub memory_reserved_bytes: usize,
    /// Per product id: its quality rules that breached in their latest check.
    pub quality_breaches: Vec<(String, usize)>,
}

/// The counters and histograms of one gateway.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<Families>,
    audit_in_flight: AtomicI64,
}

impl Metrics {
    fn count(&self, family: &Family, labels: &[&str], by: u64) {
        debug_assert_eq!(labels.len(), family.labels.len(), "{}", family.name);
        if let Ok(mut f) = self.families.lock() {
            *f.counters
                .entry(family.name)
                .or_default()
                .entry(labels.iter().map(|l| l.to_string()).collect())
                .or_default() += by;
        }
    }

    fn time(&self, family: &Family, labels: &[&str], took: Duration) {
        debug_assert_eq!(labels.len(), family.labels.len(), "{}", family.name);
        if let Ok(mut f) = self.families.lock() {
            f.histograms
                .entry(family.name)
                .or_default()
                .entry(labels.iter().map(|l| l.to_string()).collect())
                .or_default()
                .observe(took.as_secs_f64());
        }
    }

    /// A Flight RPC answered: `command` is the Flight SQL command's message name (from a
    /// closed list; `none` for RPCs without one).
    /// `status`: the gRPC status, as the Flight crate names it.
    pub fn rpc(
        &self,
        method: &'static str,
        command: &'static str,
        status: &'static str,
        took: Duration,
    ) {
        self.count(&RPCS, &[method, command, status], 1);
        self.time(&RPC_SECONDS, &[method, command], took);
    }

    /// A query ended: `method` is how it arrived (the audit's method), `status` how it ended
    /// (`ok`, or the error's code).
    pub(crate) fn query(
        &self,
        method: &str,
        status: &'static str,
        took: Duration,
        rows: u64,
        bytes: u64,
    ) {
        let method = method_label(method);
        self.count(&QUERIES, &[method, status], 1);
        self.time(&QUERY_SECONDS, &[method], took);
        self.count(&ROWS, &[], rows);
        self.count(&BYTES, &[], bytes);
    }

    pub(crate) fn denial(&self, reason: &'static str) {
        self.count(&DENIALS, &[reason], 1);
    }

    /// A statement run with a draft: `continued` from it, or `replanned` (see
    /// [`crate::Draft`]).
    pub(crate) fn draft(&self, outcome: &'static str) {
        self.count(&DRAFTS, &[outcome], 1);
    }

    pub(crate) fn policy_resolution(&self, took: Duration) {
        self.time(&POLICY_SECONDS, &[], took);
    }

    /// An audit write (`phase`: `start` or `end`) took `took`; `ok` whether it was written.
    pub(crate) fn audit_write(&self, phase: &'static str, took: Duration, ok: bool) {
        self.time(&AUDIT_SECONDS, &[phase], took);
        if !ok {
            self.count(&AUDIT_FAILURES, &[phase], 1);
        }
    }

    /// An outcome write queued (`+1`) or done (`-1`).
    pub(crate) fn audit_queued(&self, delta: i64) {
        self.audit_in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Outcome writes queued and not yet done.
    pub(crate) fn audit_pending(&self) -> i64 {
        self.audit_in_flight.load(Ordering::Relaxed)
    }

    /// What a query asked of storage, by product (product ids come from the catalog).
    pub(crate) fn storage(&self, io: &IoReport) {
        for (product, p) in &io.products {
            for (kind, n) in [("get", p.gets), ("head", p.heads), ("list", p.lists)] {
                if n > 0 {
                    self.count(&STORAGE_REQUESTS, &[product, kind], n);
                }
            }
            self.count(&STORAGE_BYTES, &[product], p.bytes);
        }
    }

    /// A file read in the background for the statistics of a row filter's rows (see
    /// `visible.rs`): `computed` or `failed`.
    pub(crate) fn row_filter_statistics(&self, outcome: &'static str) {
        self.count(&ROW_FILTER_STATISTICS, &[outcome], 1);
    }

    /// Every series, in Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::new();
        let families = match self.families.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        let all = [
            &RPCS,
            &RPC_SECONDS,
            &QUERIES,
            &QUERY_SECONDS,
            &ROWS,
            &BYTES,
            &DENIALS,
            &POLICY_SECONDS,
            &DRAFTS,
            &AUDIT_SECONDS,
            &AUDIT_FAILURES,
            &STORAGE_REQUESTS,
            &STORAGE_BYTES,
            &ROW_FILTER_STATISTICS,
        ];
        for family in all {
            if let Some(series) = families.counters.get(family.name) {
                header(&mut out, family, "counter");
                for (labels, value) in series {
                    let _ = writeln!(
                        out,
                        "{}{} {value}",
                        family.name,
                        labels_text(family, labels, None)
                    );
                }
            } else if let Some(series) = families.histograms.get(family.name) {
                header(&mut out, family, "histogram");
                for (labels, h) in series {
                    for (bound, n) in SECONDS.iter().zip(&h.buckets) {
                        let le = bound.to_string();
                        let _ = writeln!(
                            out,
                            "{}_bucket{} {n}",
                            family.name,
                            labels_text(family, labels, Some(&le))
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{}_bucket{} {}",
                        family.name,
                        labels_text(family, labels, Some("+Inf")),
                        h.count
                    );
                    let plain = labels_text(family, labels, None);
                    let _ = writeln!(out, "{}_sum{plain} {}", family.name, h.sum);
                    let _ = writeln!(out, "{}_count{plain} {}", family.name, h.count);
                }
            } else if family.labels.is_empty() {
                // A counter that has not moved yet still exists, at 0.
                header(
                    &mut out,
                    family,
                    if family.name.ends_with("_total") {
                        "counter"
                    } else {
                        "histogram"
                    },
                );
                if family.name.ends_with("_total") {
                    let _ = writeln!(out, "{} 0", family.name);
                } else {
                    let _ = writeln!(out, "{}_bucket{{le=\"+Inf\"}} 0", family.name);
                    let _ = writeln!(out, "{}_sum 0", family.name);
                    let _ = writeln!(out, "{}_count 0", family.name);
                }
            }
        }
        drop(families);
        for (name, help, value) in [
            (
                "meshgate_queries_running",
                "Queries holding a running slot.",
                gauges.queries_running as i64,
            ),
            (
                "meshgate_queries_queued",
                "Queries waiting for a running slot.",
                gauges.queries_queued as i64,
            ),
            (
                "meshgate_memory_reserved_bytes",
                "Memory the running queries hold in the shared pool.",
                gauges.memory_reserved_bytes as i64,
            ),
            (
                "meshgate_audit_queue_depth",
                "Query outcomes waiting to be written to the audit log.",
                self.audit_in_flight.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        if !gauges.quality_breaches.is_empty() {
            let name = "meshgate_quality_breaches";
            let _ = writeln!(
                out,
                "# HELP {name} Quality rules of a product (its freshness SLO included) that breached in their latest check.\n# TYPE {name} gauge"
            );
            for (product, breached) in &gauges.quality_breaches {
                let _ = writeln!(out, "{name}{{product=\"{}\"}} {breached}", escape(product));
            }
        }
        out
    }
}

fn header(out: &mut String, family: &Family, kind: &str) {
    let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
    let _ = writeln!(out, "# TYPE {} {kind}", family.name);
}

fn labels_text(family: &Family, values: &[String], le: Option<&str>) -> String {
    let mut pairs: Vec<String> = family
        .labels
        .iter()
        .zip(values)
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// How a query arrived, as a label: the Flight methods and the library; anything else (an
/// embedder's own method name) is `other`, so an embedder cannot grow the label set either.
fn method_label(method: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "library",
        "DoGet",
        "GetFlightInfo",
        "PollFlightInfo",
        "GetSchema",
        "DoPut",
        "DoAction",
        "CreatePreparedStatement",
        "cli",
        "system",
    ];
    KNOWN
        .iter()
        .find(|k| **k == method)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges_in_the_text_format() {
        let m = Metrics::default();
        m.rpc(
            "DoGet",
            "CommandStatementQuery",
            "ok",
            Duration::from_millis(3),
        );
        m.query("DoGet", "ok", Duration::from_millis(20), 5, 100);
        m.query(
            "an embedder's \"own\" method",
            "denied",
            Duration::from_millis(1),
            0,
            0,
        );
        m.denial("no_grant");
        let text = m.render(Gauges {
            queries_running: 2,
            quality_breaches: vec![("payments.transactions".into(), 1)],
            ..Gauges::default()
        });
        assert!(text.contains("meshgate_quality_breaches{product=\"payments.transactions\"} 1"));
        assert!(text.contains(
            "meshgate_rpcs_total{method=\"DoGet\",command=\"CommandStatementQuery\",status=\"ok\"} 1"
        ));
        assert!(text.contains("meshgate_queries_total{method=\"other\",status=\"denied\"} 1"));
        assert!(
            text.contains(
                "meshgate_query_duration_seconds_bucket{method=\"DoGet\",le=\"0.025\"} 1"
            )
        );
        assert!(
            text.contains("meshgate_query_duration_seconds_bucket{method=\"DoGet\",le=\"0.01\"} 0")
        );
        assert!(text.contains("meshgate_rows_returned_total 5"));
        assert!(text.contains("meshgate_queries_running 2"));
        assert!(text.contains("# TYPE meshgate_policy_resolution_seconds histogram"));
        assert!(
            !text.contains("own"),
            "an unknown method is not a label value"
        );
    }
}
