//! Substrait plans over Flight SQL (`CommandStatementSubstraitPlan` and
//! `CreatePreparedSubstraitPlan`): answered as their SQL is, and refused where their SQL is
//! or where a plan tries what SQL cannot say (a read of files). The attack suite sends each
//! of its query attacks as a plan as well (`attacks::attack_suite`).

use crate::support::flight;
use crate::support::substrait as plans;
use crate::support::truth::data_dir;
use crate::support::views::{Rows, principals, run_flight as sql, session, sorted};

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion_substrait::substrait::proto::read_rel::{
    LocalFiles, NamedTable, ReadType, local_files::FileOrFiles,
    local_files::file_or_files::PathType,
};
use datafusion_substrait::substrait::proto::rel::RelType;
use datafusion_substrait::substrait::proto::{Plan, ReadRel, Rel, plan_rel};
use prost::Message;
use sha2::Digest;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_and_its_prepared_form_answer_what_the_sql_answers_for_every_principal() {
    let server = flight::default_server().await;
    let queries = [
        "SELECT lob, count(*) AS n, min(tax_id) AS first_token, max(contact_email) AS email \
         FROM reference.counterparties GROUP BY lob",
        "SELECT t.lob, count(*) AS n, max(p.card_number) AS card FROM payments.transactions p \
         JOIN reference.counterparties t ON t.counterparty_id = p.counterparty_id \
         WHERE p.amount > 100 GROUP BY t.lob",
        "SELECT trader_id, sum(notional) AS total FROM markets.trades \
         GROUP BY trader_id ORDER BY total DESC LIMIT 3",
    ];
    let mut answered = 0;
    for user in principals().iter().map(|p| p.name) {
        let library = session(&server.gateway, user);
        let mut client = flight::login(server.addr, user).await;
        for query in queries {
            let expected = sql(&mut client, query).await;
            let bytes = plans::produce(&library, query)
                .await
                .expect("DataFusion's producer writes these queries");
            let direct = plans::run(&mut client, bytes.clone()).await;
            let prepared = plans::run_prepared(&mut client, bytes).await;
            for (how, got) in [("as a plan", &direct), ("prepared", &prepared)] {
                match (&expected, got) {
                    (Ok(e), Ok(g)) => assert_eq!(sorted(e), sorted(g), "{user} {how}: {query}"),
                    // Refused alike, with the same reason (the product, how to ask).
                    (Err(e), Err(g)) => assert_eq!(e, g, "{user} {how}: {query}"),
                    (e, g) => panic!("{user} {how}: {query}: SQL {e:?}, plan {g:?}"),
                }
            }
            answered += usize::from(expected.is_ok());
        }
    }
    // Some principals see these products, others are refused: both paths were exercised.
    assert!((4..18).contains(&answered), "{answered}");
}

/// The first read of a plan (through projections, filters, aggregates, sorts, limits).
fn read_of(rel: &mut Rel) -> Option<&mut ReadRel> {
    match rel.rel_type.as_mut()? {
        RelType::Read(read) => Some(read),
        RelType::Project(p) => read_of(p.input.as_mut()?),
        RelType::Filter(f) => read_of(f.input.as_mut()?),
        RelType::Aggregate(a) => read_of(a.input.as_mut()?),
        RelType::Sort(s) => read_of(s.input.as_mut()?),
        RelType::Fetch(f) => read_of(f.input.as_mut()?),
        _ => None,
    }
}

/// `bytes` with its first read replaced by `read_type`.
fn with_read(bytes: &[u8], read_type: ReadType) -> Vec<u8> {
    let mut plan = Plan::decode(bytes).unwrap();
    let root = match plan.relations[0].rel_type.as_mut().unwrap() {
        plan_rel::RelType::Root(root) => root.input.as_mut().unwrap(),
        plan_rel::RelType::Rel(rel) => rel,
    };
    read_of(root).expect("a read").read_type = Some(read_type);
    plan.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_that_read_files_hidden_columns_or_functions_outside_the_surface_are_refused() {
    let server = flight::default_server().await;
    let cib = session(&server.gateway, "cib-reporting");
    let mut client = flight::login(server.addr, "cib-reporting").await;
    let base = plans::produce(&cib, "SELECT count(*) FROM reference.counterparties")
        .await
        .unwrap();
    assert_eq!(
        plans::run(&mut client, base.clone()).await.unwrap(),
        vec![vec![Some("15000".to_string())]],
        "the unaltered plan answers with cib-reporting's rows"
    );

    // A read of the product's raw file, as `LocalFiles`, the path as a table name, a URL.
    let file =
        data_dir().join("s3/reference-counterparties/data/counterparties/part-00000.parquet");
    let local = ReadType::LocalFiles(LocalFiles {
        items: vec![FileOrFiles {
            path_type: Some(PathType::UriFile(format!("file://{}", file.display()))),
            ..Default::default()
        }],
        advanced_extension: None,
    });
    let error = plans::run(&mut client, with_read(&base, local))
        .await
        .unwrap_err();
    assert!(
        error.contains("a Substrait read of files (`LocalFiles`) is not allowed"),
        "{error}"
    );
    for name in [
        vec![file.display().to_string()],
        vec!["s3://reference-counterparties/data/counterparties/part-00000.parquet".into()],
        vec!["mesh".into(), "raw".into(), "counterparties".into()],
    ] {
        let named = ReadType::NamedTable(NamedTable {
            names: name.clone(),
            advanced_extension: None,
        });
        let error = plans::run(&mut client, with_read(&base, named))
            .await
            .unwrap_err();
        assert!(
            error.contains("not found") || error.contains("failed to resolve schema"),
            "{name:?}: {error}"
        );
    }

    // A hidden column, named by a plan made over the raw schema: refused, as its SQL is;
    // risk-officer, who sees the column, gets the same plan answered.
    let hidden = "SELECT count(DISTINCT internal_rating) FROM reference.counterparties";
    let bytes = plans::produce(&cib, hidden).await.unwrap();
    let error = plans::run(&mut client, bytes.clone()).await.unwrap_err();
    assert!(error.contains("internal_rating"), "{error}");
    assert!(sql(&mut client, hidden).await.is_err());
    let mut risk = flight::login(server.addr, "risk-officer").await;
    assert_eq!(
        plans::run(&mut risk, bytes).await.unwrap(),
        sql(&mut risk, hidden).await.unwrap()
    );

    // A function the gateway does not offer (made up by the client's producer).
    let producer = datafusion::prelude::SessionContext::new();
    producer.register_udf(create_udf(
        "pg_read_file",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(|args: &[ColumnarValue]| Ok(args[0].clone())),
    ));
    let udf = producer
        .sql("SELECT pg_read_file('/etc/passwd')")
        .await
        .unwrap()
        .into_unoptimized_plan();
    let udf =
        datafusion_substrait::logical_plan::producer::to_substrait_plan(&udf, &producer.state())
            .unwrap();
    let error = plans::run(&mut client, udf.encode_to_vec())
        .await
        .unwrap_err();
    assert!(error.contains("pg_read_file"), "{error}");

    // A plan over the statement limits SQL has (here 70 table reads): refused as its SQL is,
    // before it is optimized.
    let wide = vec!["SELECT lob FROM reference.counterparties"; 70].join(" UNION ALL ");
    let wide = format!("SELECT count(*) FROM ({wide})");
    assert!(
        sql(&mut client, &wide)
            .await
            .unwrap_err()
            .contains("reads more tables")
    );
    // As the producer writes it (unions nested 70 deep), the decoder's nesting bound refuses
    // it; flattened (one union of 70 inputs), the plan's own measure does.
    let nested = plans::produce(&cib, &wide).await.unwrap();
    let error = plans::run(&mut client, nested).await.unwrap_err();
    assert!(error.contains("cannot be decoded"), "{error}");
    let flat = plans::produce_optimized(&cib, &wide).await.unwrap();
    let error = plans::run(&mut client, flat).await.unwrap_err();
    assert!(
        error.contains("reads more tables and subqueries than the limit of 64"),
        "{error}"
    );

    // Bytes that are no plan, and a command without one.
    let error = plans::run(&mut client, b"not a plan".to_vec())
        .await
        .unwrap_err();
    assert!(error.contains("cannot be decoded"), "{error}");
    let error = plans::run(&mut client, Vec::new()).await.unwrap_err();
    assert!(error.contains("carries no Substrait plan"), "{error}");

    // A denied product's plan is refused with the SQL's reason, and audited for its owner.
    let mut intern = flight::login(server.addr, "intern").await;
    let intern_session = session(&server.gateway, "intern");
    let denied = plans::produce(
        &intern_session,
        "SELECT count(*) FROM reference.counterparties",
    )
    .await
    .unwrap();
    let mut owner = flight::login(server.addr, "ref-owner").await;
    // This plan's records only (by the hash of how the audit names a plan): other tests
    // query as `intern` on the same store meanwhile.
    let named = meshgate::engine::Statement::Substrait(&denied)
        .text()
        .into_owned();
    let hash = hex::encode(sha2::Sha256::digest(named.as_bytes()));
    let probes = format!(
        "SELECT count(*) FROM mesh_catalog.audit a \
         JOIN mesh_catalog.audit_tables t USING (query_id) \
         WHERE a.principal = 'intern' AND a.decision = 'deny' \
         AND t.product_id = 'reference.counterparties' AND a.statement_sha256 = '{hash}'"
    );
    let probes = probes.as_str();
    let before = sql(&mut owner, probes).await.unwrap();
    let error = plans::run(&mut intern, denied).await.unwrap_err();
    let after = sql(&mut owner, probes).await.unwrap();
    let count = |rows: &Rows| rows[0][0].as_deref().unwrap().parse::<u64>().unwrap();
    assert_eq!(
        count(&after),
        count(&before) + 1,
        "the refused plan is audited"
    );
    assert_eq!(
        error,
        sql(&mut intern, "SELECT count(*) FROM reference.counterparties")
            .await
            .unwrap_err()
    );
}
