//! The query API as seen on the wire: what a collector receives over OTLP/gRPC.

mod otlp_support;

use std::time::Duration;

use otlp_support::{histogram, matching, pipeline, quantile, tenant_ids, total, value};
use tenant_otel::instruments::QUERY_DURATION_BUCKETS;
use tenant_otel::query::{QueryOutcome, QueryStatus};
use tenant_otel::TenantInfo;

/// 49 tenants at 50 ms and one at 5 s failing one query in five: the platform mean says
/// ~149 ms, while the failing tenant's own series show a p99 of ~5 s and 80 % success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn averaging_blindness_is_visible_per_tenant_in_otlp_and_in_process() {
    let p = pipeline(1000).await;
    let registry = p.telemetry.registry().clone();
    const PER_TENANT: u64 = 10;
    for t in 0..49 {
        let id = format!("healthy-{t:02}");
        for _ in 0..PER_TENANT {
            registry
                .track_query(
                    id.as_str(),
                    QueryStatus::Success,
                    Duration::from_millis(50),
                    4,
                    300,
                )
                .unwrap();
        }
    }
    for i in 0..PER_TENANT {
        let status = if i % 5 == 4 {
            QueryStatus::Error
        } else {
            QueryStatus::Success
        };
        registry
            .track_query("finance", status, Duration::from_millis(5000), 2, 900)
            .unwrap();
    }

    // In process.
    let view = registry.view();
    let platform = &view.platform.queries.stats;
    assert_eq!(platform.total, 50 * PER_TENANT);
    assert!((platform.avg_ms - 149.0).abs() < 0.5, "{}", platform.avg_ms);
    assert!((platform.success_rate - 0.996).abs() < 1e-9);
    let worst = &view.tenants[0];
    assert_eq!(worst.tenant, "finance");
    assert!((worst.queries.success_rate - 0.8).abs() < 1e-9);
    assert!(
        (worst.queries.p99_ms - 5000.0).abs() / 5000.0 < 0.01,
        "{}",
        worst.queries.p99_ms
    );
    assert!((worst.queries.window.p99_ms - 5000.0).abs() / 5000.0 < 0.01);
    let healthy = registry.tenant_view("healthy-07").unwrap();
    assert!((healthy.queries.p99_ms - 50.0).abs() / 50.0 < 0.01);
    assert_eq!(healthy.queries.success_rate, 1.0);

    // On the wire.
    let metrics = p.finish().await;
    let duration = &metrics["rag.query.duration"];
    let (count, sum, _, _) = histogram(duration, &[]);
    assert_eq!(count, 50 * PER_TENANT);
    let platform_avg = sum / count as f64;
    assert!((platform_avg - 0.149).abs() < 1e-6, "{platform_avg}");

    let (f_count, f_sum, f_buckets, bounds) = histogram(duration, &[("tenant.id", "finance")]);
    assert_eq!(bounds, QUERY_DURATION_BUCKETS.to_vec());
    assert_eq!(f_count, PER_TENANT);
    assert!((f_sum / f_count as f64 - 5.0).abs() < 1e-9);
    let f_p99 = quantile(0.99, &f_buckets, &bounds);
    assert!((4.5..=5.0).contains(&f_p99), "finance p99 {f_p99}");

    let (_, _, h_buckets, _) = histogram(duration, &[("tenant.id", "healthy-07")]);
    let h_p99 = quantile(0.99, &h_buckets, &bounds);
    assert!(h_p99 <= 0.05, "healthy p99 {h_p99}");

    let queries = &metrics["rag.queries"];
    let ok = total(queries, &[("tenant.id", "finance"), ("status", "success")]);
    let all = total(queries, &[("tenant.id", "finance")]);
    assert_eq!((ok, all), (8.0, 10.0));
    let platform_ok = total(queries, &[("status", "success")]) / total(queries, &[]);
    assert!((platform_ok - 0.996).abs() < 1e-9);

    let tokens = &metrics["rag.llm.tokens"];
    assert_eq!(total(tokens, &[("tenant.id", "finance")]), 9000.0);
    assert_eq!(total(tokens, &[]), 49.0 * 10.0 * 300.0 + 9000.0);
    let docs = &metrics["rag.docs_retrieved"];
    let (d_count, d_sum, _, _) = histogram(docs, &[("tenant.id", "finance")]);
    assert_eq!((d_count, d_sum), (10, 20.0));
}

/// A guard dropped without `end` is one failed query with `error.type=cancelled`, and the
/// active count comes back to zero; an ended guard records its outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_guard_records_one_cancelled_error_and_active_returns_to_zero() {
    let p = pipeline(1000).await;
    let registry = p.telemetry.registry().clone();

    let ended = registry.start_query("acme").unwrap();
    let dropped = registry.start_query("acme").unwrap();
    assert_eq!(registry.tenant_view("acme").unwrap().queries.active, 2);
    ended.end(QueryOutcome::success().docs_retrieved(5).llm_tokens(1200));
    drop(dropped);

    let view = registry.tenant_view("acme").unwrap();
    assert_eq!(view.queries.active, 0);
    assert_eq!((view.queries.total, view.queries.errors), (2, 1));

    let metrics = p.finish().await;
    let active = &metrics["rag.active_queries"];
    assert_eq!(matching(active, &[("tenant.id", "acme")]).len(), 1);
    assert_eq!(total(active, &[("tenant.id", "acme")]), 0.0);

    let queries = &metrics["rag.queries"];
    let cancelled = [
        ("tenant.id", "acme"),
        ("status", "error"),
        ("error.type", "cancelled"),
    ];
    assert_eq!(total(queries, &cancelled), 1.0);
    assert_eq!(
        total(queries, &[("tenant.id", "acme"), ("status", "error")]),
        1.0
    );
    assert_eq!(
        total(queries, &[("tenant.id", "acme"), ("status", "success")]),
        1.0
    );
    let (count, _, _, _) = histogram(&metrics["rag.query.duration"], &cancelled);
    assert_eq!(count, 1);
    // The cancelled query retrieved nothing and used no tokens.
    let (docs, docs_sum, _, _) =
        histogram(&metrics["rag.docs_retrieved"], &[("tenant.id", "acme")]);
    assert_eq!((docs, docs_sum), (1, 5.0));
    assert_eq!(
        total(&metrics["rag.llm.tokens"], &[("tenant.id", "acme")]),
        1200.0
    );
}

/// Quota usage and tenant metadata arrive as gauges with their attributes; bad values are
/// refused or clamped as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_usage_and_tenant_info_are_exported_as_gauges() {
    let p = pipeline(1000).await;
    let registry = p.telemetry.registry().clone();
    registry
        .register_tenant(
            "finance-team",
            TenantInfo::new("Finance", "premium", "eu-west-1"),
        )
        .unwrap();
    registry
        .register_tenant("marketing", TenantInfo::new("M".repeat(1000), "free", "us"))
        .unwrap();
    registry
        .update_quota_usage("finance-team", "queries", 75.0)
        .unwrap();
    registry
        .update_quota_usage("finance-team", "queries", 80.0)
        .unwrap();
    registry
        .update_quota_usage("finance-team", "tokens", -5.0)
        .unwrap();
    assert!(registry
        .update_quota_usage("marketing", "tokens", f64::NAN)
        .is_err());
    registry
        .update_quota_usage("marketing", "tokens", 150.0)
        .unwrap();

    let metrics = p.finish().await;
    let quota = &metrics["rag.quota.usage"];
    let finance_queries = matching(
        quota,
        &[("tenant.id", "finance-team"), ("resource_type", "queries")],
    );
    assert_eq!(finance_queries.len(), 1);
    assert_eq!(value(&finance_queries[0]), 80.0);
    assert_eq!(
        total(
            quota,
            &[("tenant.id", "finance-team"), ("resource_type", "tokens")]
        ),
        0.0
    );
    assert_eq!(
        total(
            quota,
            &[("tenant.id", "marketing"), ("resource_type", "tokens")]
        ),
        150.0
    );

    let info = &metrics["tenant.info"];
    let finance = matching(info, &[("tenant.id", "finance-team")]);
    assert_eq!(finance.len(), 1);
    let a = otlp_support::attrs(&finance[0]);
    assert_eq!(a["tenant.name"], "Finance");
    assert_eq!(a["tenant.tier"], "premium");
    assert_eq!(a["tenant.region"], "eu-west-1");
    assert_eq!(value(&finance[0]), 1.0);
    let marketing = matching(info, &[("tenant.id", "marketing")]);
    assert_eq!(otlp_support::attrs(&marketing[0])["tenant.name"].len(), 128);
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// 100,000 distinct tenant ids against a cap of 100: the wire carries at most cap + 1
/// `tenant.id` values, the overflow counter counts every overflowed query, and memory stays
/// bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tenant_ids_stays_within_the_cap() {
    const CAP: usize = 100;
    const FLOOD: usize = 100_000;
    let p = pipeline(CAP).await;
    let registry = p.telemetry.registry().clone();

    // Warm the shared paths so the measurement sees the flood, not first-use allocations.
    registry
        .track_query(
            "warm-up",
            QueryStatus::Success,
            Duration::from_millis(1),
            1,
            1,
        )
        .unwrap();
    let before = rss_kib();
    for i in 0..FLOOD {
        let id = format!("tenant-{i:06}");
        let status = if i % 10 == 0 {
            QueryStatus::Error
        } else {
            QueryStatus::Success
        };
        registry
            .track_query(id.as_str(), status, Duration::from_millis(20), 3, 100)
            .unwrap();
        if i % 1000 == 0 {
            registry
                .start_query(id.as_str())
                .unwrap()
                .end(QueryOutcome::success());
        }
    }
    let after = rss_kib();
    // The warm-up tenant took one slot of the cap, so ids from index CAP - 1 on overflow, and
    // so do the tracked queries among them.
    let overflowed = (FLOOD - (CAP - 1)) as u64
        + (0..FLOOD).step_by(1000).filter(|&i| i >= CAP - 1).count() as u64;
    assert_eq!(registry.len(), CAP);
    // `tenant.cardinality.overflow` counts HTTP requests, and these are queries.
    assert_eq!(registry.overflowed_requests(), 0);
    let overflow_view = registry.tenant_view("__overflow__").unwrap();
    assert_eq!(overflow_view.queries.total, overflowed);

    if let (Some(before), Some(after)) = (before, after) {
        let growth = after.saturating_sub(before);
        println!("RSS growth over a flood of {FLOOD} tenant ids (cap {CAP}): {growth} KiB ({before} -> {after} KiB)");
        // Bounded by construction: a generous factor over a cap's worth of entries.
        assert!(growth < 64 * 1024, "RSS grew by {growth} KiB");
    }

    let metrics = p.finish().await;
    let ids = tenant_ids(&metrics);
    assert_eq!(
        ids.len(),
        CAP + 1,
        "{} distinct tenant.id values",
        ids.len()
    );
    assert!(ids.contains("__overflow__"));
    // Queries are not requests: the overflow counter never moved, so it has no point at all.
    assert!(!metrics.contains_key("tenant.cardinality.overflow"));
    assert_eq!(
        total(&metrics["rag.queries"], &[("tenant.id", "__overflow__")]),
        overflowed as f64
    );
    // No series fell into the SDK's own overflow bucket.
    assert!(metrics
        .values()
        .flat_map(otlp_support::points)
        .all(|p| !otlp_support::attrs(&p).contains_key("otel.metric.overflow")));
}
