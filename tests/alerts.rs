//! The operator's half on simulated time: burn rates and budgets, the multi-window rules, the
//! quiet tenant, resolved events, noisy neighbours, and how long a failing tenant takes to page.

#[path = "alerts/noisy.rs"]
mod noisy;
#[path = "alerts/sim.rs"]
mod sim;

use std::collections::BTreeSet;
use std::time::Duration;

use sim::Sim;
use tenant_otel::alert::{AlertEvent, AlertKind, AlertRules, AlertState, Measure, Severity};
use tenant_otel::slo::{Objective, Sli, Slo};

const MINUTE: Duration = Duration::from_secs(60);

/// Minutes of traffic: every simulated minute, `per_minute` requests of which the share
/// `error_rate` fail, then an evaluation; returns the events.
fn minutes(
    sim: &mut Sim,
    tenant: &str,
    count: u64,
    per_minute: u64,
    error_rate: f64,
) -> Vec<AlertEvent> {
    let mut events = Vec::new();
    for _ in 0..count {
        let failed = (per_minute as f64 * error_rate).round() as u64;
        sim.burst(tenant, per_minute, failed);
        sim.advance(MINUTE);
        events.extend(sim.alerts.evaluate());
    }
    events
}

fn kinds(events: &[AlertEvent], state: AlertState) -> Vec<AlertKind> {
    events
        .iter()
        .filter(|e| e.state == state)
        .map(|e| e.kind)
        .collect()
}

#[test]
fn a_sustained_error_rate_pages_and_a_short_spike_does_not() {
    let mut sim = Sim::new(AlertRules::default());
    sim.tier("acme", "premium");
    // An hour of clean traffic.
    assert!(minutes(&mut sim, "acme", 60, 100, 0.0).is_empty());
    // Two minutes at 4 % errors: the 5m window burns at 16x (over 14.4) and the success rate
    // stays over 95 %, but the 1h window is far from 14.4x: no page.
    let spike = minutes(&mut sim, "acme", 2, 100, 0.04);
    assert!(
        !spike.iter().any(|e| e.severity() == Severity::Page),
        "{spike:?}"
    );
    // (A ticket may fire: with only an hour of history, 4 % over two minutes burns over 1x on
    // the 3d and 6h windows. Nothing of page severity does.)
    assert!(sim
        .alerts
        .firing()
        .iter()
        .all(|e| e.severity() == Severity::Ticket));
    // Back to clean for an hour: nothing.
    assert!(minutes(&mut sim, "acme", 60, 100, 0.0)
        .iter()
        .all(|e| e.state == AlertState::Resolved));

    // A sustained 20 % error rate: the success-rate rule pages within the first minute, the
    // burn-rate page (1h and 5m over 14.4x) a few minutes in.
    let outage = minutes(&mut sim, "acme", 10, 100, 0.2);
    let fired = kinds(&outage, AlertState::Firing);
    assert!(fired.contains(&AlertKind::SuccessRate), "{fired:?}");
    assert!(fired.contains(&AlertKind::Page), "{fired:?}");
    let page = outage.iter().find(|e| e.kind == AlertKind::Page).unwrap();
    assert_eq!(page.slo, Some(Sli::Availability));
    assert_eq!(
        page.slo.map(|s| s.to_string()).as_deref(),
        Some("availability")
    );
    assert_eq!(page.tier, "premium");
    // With two hours of history the 6h and 30m pair (over 6x) gets there a minute before the
    // 1h and 5m pair (over 14.4x).
    let windows: Vec<&str> = page.readings.iter().map(|r| r.window.as_str()).collect();
    assert!(page.readings.iter().all(|r| r.measure == Measure::BurnRate));
    assert!(
        windows == ["6h", "30m"] || windows == ["1h", "5m"],
        "{windows:?}"
    );
    assert!(page.readings.iter().all(|r| r.value > r.threshold));
    // Each alert fired once, however many evaluations saw it.
    assert_eq!(fired.iter().filter(|k| **k == AlertKind::Page).count(), 1);
}

#[test]
fn alerts_resolve_once_false_for_the_hold_and_do_not_flap() {
    let mut sim = Sim::new(AlertRules::default().resolve_after(Duration::from_secs(180)));
    sim.tier("acme", "standard");
    minutes(&mut sim, "acme", 5, 100, 0.0);
    let outage = minutes(&mut sim, "acme", 3, 100, 0.5);
    assert!(kinds(&outage, AlertState::Firing).contains(&AlertKind::SuccessRate));
    // Hovering at the threshold: one clean minute, one bad, one clean... never resolved, never
    // fired again, because the hold outlasts each clean stretch.
    let mut hover = Vec::new();
    for i in 0..6 {
        hover.extend(minutes(
            &mut sim,
            "acme",
            1,
            100,
            if i % 2 == 0 { 0.0 } else { 0.5 },
        ));
    }
    let success: Vec<_> = hover
        .iter()
        .filter(|e| e.kind == AlertKind::SuccessRate)
        .collect();
    assert!(success.is_empty(), "no flapping: {success:?}");
    // Clean for good: resolved, once.
    let recovery = minutes(&mut sim, "acme", 10, 100, 0.0);
    let resolved = kinds(&recovery, AlertState::Resolved);
    assert_eq!(
        resolved
            .iter()
            .filter(|k| **k == AlertKind::SuccessRate)
            .count(),
        1,
        "{recovery:?}"
    );
    assert!(!sim.firing("acme").contains(&AlertKind::SuccessRate));
}

#[test]
fn a_quiet_tenants_single_error_pages_no_one_and_a_busy_outage_pages_fast() {
    let mut sim = Sim::new(AlertRules::default());
    sim.tier("quiet", "premium");
    sim.tier("busy", "premium");
    // Four requests an hour, one failed: 25 % errors, 250x a 99.9 % budget on every window.
    let mut events = Vec::new();
    for minute in 0..60 {
        if minute % 15 == 0 {
            let status = if minute == 45 { 500 } else { 200 };
            sim.request("quiet", status, Duration::ZERO);
        }
        sim.advance(MINUTE);
        events.extend(sim.alerts.evaluate());
    }
    assert!(events.is_empty(), "{events:?}");

    // A busy tenant's full outage: paged within the minute it began.
    minutes(&mut sim, "busy", 30, 600, 0.0);
    let mut paged_after = None;
    for second in 0..120 {
        sim.burst("busy", 10, 10);
        sim.advance(Duration::from_secs(1));
        if second % 10 == 9 {
            let events = sim.alerts.evaluate();
            if events.iter().any(|e| e.kind == AlertKind::Page) {
                paged_after = Some(second + 1);
                break;
            }
        }
    }
    let paged_after = paged_after.expect("a full outage pages");
    println!("busy tenant, full outage: burn-rate page after {paged_after} s");
    assert!(paged_after <= 60, "{paged_after} s");
}

#[test]
fn latency_objectives_burn_and_page_like_availability() {
    let slo = Slo::availability(Objective::new(0.999).unwrap())
        .with_latency(Duration::from_millis(500), Objective::new(0.99).unwrap());
    let mut sim = Sim::with(|b| b.slo("premium", slo), AlertRules::default());
    sim.tier("acme", "premium");
    for _ in 0..10 {
        for i in 0..100 {
            // A third of the requests take 800 ms: no error at all, but slow.
            let took = if i % 3 == 0 { 800 } else { 20 };
            sim.request("acme", 200, Duration::from_millis(took));
        }
        sim.advance(MINUTE);
        sim.alerts.evaluate();
    }
    let firing = sim.alerts.firing_for("acme");
    let page = firing
        .iter()
        .find(|e| e.kind == AlertKind::Page)
        .expect("the latency objective pages");
    assert_eq!(page.slo, Some(Sli::Latency));
    assert!(
        !firing
            .iter()
            .any(|e| e.kind == AlertKind::Page && e.slo == Some(Sli::Availability)),
        "nothing failed"
    );
}

#[test]
fn plain_thresholds_p99_and_quota() {
    // A ten-minute sliding window holds the 30 slow requests below.
    let mut sim = Sim::with(|b| b.window(MINUTE * 10), AlertRules::default());
    for _ in 0..30 {
        sim.request("slow", 200, Duration::from_secs(6));
    }
    sim.registry
        .update_quota_usage("full", "tokens", 95.0)
        .unwrap();
    sim.registry
        .update_quota_usage("fine", "tokens", 50.0)
        .unwrap();
    sim.alerts.evaluate();
    assert_eq!(sim.firing("slow"), [AlertKind::Latency]);
    assert_eq!(sim.firing("full"), [AlertKind::Quota]);
    assert!(sim.firing("fine").is_empty());
}

#[test]
fn tier_and_per_tenant_objectives_change_the_verdict() {
    let mut sim = Sim::new(AlertRules::default());
    let tenants = [
        ("free-co", "free"),
        ("standard-co", "standard"),
        ("premium-co", "premium"),
    ];
    for (tenant, tier) in tenants {
        sim.tier(tenant, tier);
    }
    // The same traffic for all three, 150 requests a minute with one failed (0.67 % errors),
    // burns 0.67x the free tier's budget (99 %), 1.33x standard's (99.5 %) and 6.7x premium's
    // (99.9 %).
    let minutes = |sim: &mut Sim, n: usize| {
        let mut events = Vec::new();
        for _ in 0..n {
            for (tenant, _) in tenants {
                sim.burst(tenant, 150, 1);
            }
            sim.advance(MINUTE);
            events.extend(sim.alerts.evaluate());
        }
        events
    };
    let verdict = |events: &[AlertEvent], state| -> BTreeSet<(String, AlertKind)> {
        events
            .iter()
            .filter(|e| e.state == state)
            .map(|e| (e.tenant.to_string(), e.kind))
            .collect()
    };
    let set = |alerts: &[(&str, AlertKind)]| -> BTreeSet<(String, AlertKind)> {
        alerts.iter().map(|(t, k)| (t.to_string(), *k)).collect()
    };
    let hour = minutes(&mut sim, 60);
    // Premium pages (6h and 30m over 6x) and files a ticket (1d and 2h over 3x), standard
    // files a ticket (3d and 6h over 1x), free is within its budget.
    assert_eq!(
        verdict(&hour, AlertState::Firing),
        set(&[
            ("premium-co", AlertKind::Page),
            ("premium-co", AlertKind::Ticket),
            ("standard-co", AlertKind::Ticket),
        ])
    );
    assert!(verdict(&hour, AlertState::Resolved).is_empty(), "{hour:?}");
    let objective = |t: &str| {
        sim.registry
            .slo(&sim.registry.resolve(t).unwrap())
            .availability_objective()
            .get()
    };
    assert_eq!(objective("free-co"), 0.99);
    assert_eq!(objective("premium-co"), 0.999);

    // Objectives of their own, changed at run time: the same traffic now burns 67x a 99.99 %
    // objective, which pages, and 0.67x a 99 % one, which resolves premium's alerts.
    let strict = Slo::availability(Objective::new(0.9999).unwrap());
    let lax = Slo::availability(Objective::new(0.99).unwrap());
    let free = sim
        .registry
        .set_tenant_slo("free-co", Some(strict))
        .unwrap();
    assert_eq!(sim.registry.slo(&free), strict);
    sim.registry
        .set_tenant_slo("premium-co", Some(lax))
        .unwrap();
    let changed = minutes(&mut sim, 2);
    assert_eq!(
        verdict(&changed, AlertState::Firing),
        set(&[("free-co", AlertKind::Page), ("free-co", AlertKind::Ticket)])
    );
    assert_eq!(
        verdict(&changed, AlertState::Resolved),
        set(&[
            ("premium-co", AlertKind::Page),
            ("premium-co", AlertKind::Ticket)
        ])
    );

    // Back to the tier's objective: free's alerts resolve, nothing else changes.
    sim.registry.set_tenant_slo("free-co", None).unwrap();
    assert_eq!(sim.registry.slo(&free).availability_objective().get(), 0.99);
    let back = minutes(&mut sim, 2);
    assert!(verdict(&back, AlertState::Firing).is_empty(), "{back:?}");
    assert_eq!(
        verdict(&back, AlertState::Resolved),
        set(&[("free-co", AlertKind::Page), ("free-co", AlertKind::Ticket)])
    );
    assert_eq!(sim.firing("standard-co"), [AlertKind::Ticket]);
}

/// Seconds from the moment one tenant of 50 starts failing at `error_rate` to its first event
/// of page severity, and to its first burn-rate page, at the tier's objective; the others stay
/// healthy. Requests arrive twice a second per tenant; the rules are evaluated every 10 s, as
/// [`AlertTask`](tenant_otel::alert::AlertTask) does by default.
fn detection(tier: &str, error_rate: f64) -> (u64, Option<u64>) {
    let mut sim = Sim::new(AlertRules::default());
    let tenants: Vec<String> = (0..50).map(|i| format!("tenant-{i:02}")).collect();
    for t in &tenants {
        sim.tier(t, tier);
    }
    let failing = "tenant-07";
    let mut first_page = None;
    let mut first_burn_page = None;
    // An hour of healthy history, then the drop: the failing tenant at its own pace, the
    // others at a coarser one (their history only has to exist).
    for _ in 0..60 {
        for t in &tenants {
            sim.burst(t, if t == failing { 120 } else { 30 }, 0);
        }
        sim.advance(MINUTE);
        assert!(sim.alerts.evaluate().is_empty());
    }
    for second in 1..=1800u64 {
        for t in &tenants {
            let failed = if t == failing {
                // Two requests a second: 20 % is one failure every 2.5 s.
                let due = |s: u64| (s as f64 * 2.0 * error_rate).floor() as u64;
                due(second) - due(second - 1)
            } else {
                0
            };
            sim.burst(t, 2, failed);
        }
        sim.advance(Duration::from_secs(1));
        if second % 10 == 0 {
            for e in sim.alerts.evaluate() {
                assert_eq!(e.tenant.as_str(), failing, "only the failing tenant: {e}");
                if e.severity() == Severity::Page && first_page.is_none() {
                    first_page = Some(second);
                }
                if e.kind == AlertKind::Page && first_burn_page.is_none() {
                    first_burn_page = Some(second);
                }
            }
        }
        if first_page.is_some() && first_burn_page.is_some() {
            break;
        }
    }
    (first_page.expect("paged"), first_burn_page)
}

#[test]
fn time_to_detect_a_failing_tenant_among_fifty() {
    for tier in ["premium", "standard", "free"] {
        for success in [0.8, 0.0] {
            let (page, burn) = detection(tier, 1.0 - success);
            println!(
                "{tier:>8}, {:>3.0} % success: first page after {page} s, burn-rate page after {}",
                success * 100.0,
                burn.map_or("(none in 30 min)".to_owned(), |s| format!("{s} s"))
            );
            assert!(page <= 60, "{tier} at {success}: {page} s");
            if success > 0.0 {
                // Not before one failure in five outweighs the previous minute's 120 good
                // requests in the two-minute success rate: 0.4 s > 0.05 (120 + 2 s), s > 20.
                assert!(page > 20, "{tier} at {success}: paged after {page} s");
            }
        }
    }
}
