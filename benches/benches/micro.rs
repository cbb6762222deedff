//! Criterion micro-benchmarks: `cargo bench --manifest-path benches/Cargo.toml --bench micro`.
//! The bodies are `meshgate_bench::micro`'s, the same code the report measures.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meshgate_bench::micro;

fn resolution(c: &mut Criterion) {
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        return;
    };
    let mut group = c.benchmark_group("policy resolution");
    for grants in [1usize, 1_000, 100_000] {
        let Ok(setup) = runtime.block_on(micro::Resolution::new(grants)) else {
            continue;
        };
        group.bench_with_input(
            BenchmarkId::new("admitted by grant", grants),
            &setup,
            |b, s| b.iter(|| black_box(s.resolve(&s.by_grant))),
        );
        group.bench_with_input(
            BenchmarkId::new("admitted by files", grants),
            &setup,
            |b, s| b.iter(|| black_box(s.resolve(&s.by_files))),
        );
    }
    group.finish();
}

fn kernels(c: &mut Criterion) {
    let n = 100_000;
    let key = micro::token_key();
    let mut group = c.benchmark_group("kernels");
    group.throughput(Throughput::Elements(n as u64));
    let unique = micro::unique_strings(n);
    let dictionary = micro::dictionary_strings(n, 1_000);
    group.bench_function("tokenize unique", |b| {
        b.iter(|| black_box(micro::tokenize(&key, &unique)))
    });
    group.bench_function("tokenize dictionary", |b| {
        b.iter(|| black_box(micro::tokenize(&key, &dictionary)))
    });
    let phones = micro::phones(n);
    for kind in micro::masks() {
        group.bench_function(format!("mask {}", kind.name()), |b| {
            b.iter(|| black_box(micro::mask(&kind, &phones)))
        });
    }
    group.finish();
}

/// Planning a 20-table join with every table policy-wrapped, against DataFusion alone
/// (tiny generated TPC-H: planning does not read data).
fn rewrite(c: &mut Criterion) {
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("meshgate-bench-micro-{}", std::process::id()));
    let Ok(data) = meshgate_bench::tpch::generate(&dir, 0.001) else {
        return;
    };
    let setup = runtime.block_on(async {
        let gateway = meshgate_bench::mesh::gateway(
            &data,
            &meshgate_bench::mesh::Lake::Local,
            &dir.join("state"),
            true,
        )
        .await
        .ok()?;
        let session = gateway.session(gateway.known_principal("bench-protect")?);
        let ctx = meshgate_bench::mesh::datafusion(&data).await.ok()?;
        Some((gateway, session, ctx))
    });
    let Some((_gateway, session, ctx)) = setup else {
        return;
    };
    let sql = micro::join_sql(20);
    let mut group = c.benchmark_group("plan a 20-table join");
    group.bench_function("meshgate (resolve, rewrite, audit record)", |b| {
        b.iter(|| runtime.block_on(async { black_box(session.query(&sql).await.is_ok()) }))
    });
    group.bench_function("DataFusion alone", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let planned = match ctx.sql(&sql).await {
                    Ok(frame) => frame.create_physical_plan().await.is_ok(),
                    Err(_) => false,
                };
                black_box(planned)
            })
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, resolution, kernels, rewrite);
criterion_main!(benches);
