//! Noisy neighbours: a tenant taking more than its share of a loaded service, judged on the
//! busy time each tenant held over the sliding window, never on who happens to hold the one
//! request in flight at the moment of evaluation.

use std::collections::BTreeMap;
use std::time::Duration;

use tenant_otel::alert::{AlertEvent, AlertKind, AlertRules, AlertState};

use super::sim::{Sim, Stream};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

/// The noisy-neighbour events, as `tenant: share` lines.
fn noisy(events: &[AlertEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind == AlertKind::NoisyNeighbor && e.state == AlertState::Firing)
        .map(|e| format!("{}: {e}", e.tenant))
        .collect()
}

/// The named reading of the tenant's firing noisy-neighbour alert.
fn reading(sim: &Sim, tenant: &str, measure: &str) -> f64 {
    let alert = sim
        .alerts
        .firing_for(tenant)
        .into_iter()
        .find(|e| e.kind == AlertKind::NoisyNeighbor)
        .unwrap_or_else(|| panic!("{tenant} is not a noisy neighbour"));
    alert
        .readings
        .iter()
        .find(|r| r.measure.as_str() == measure)
        .unwrap_or_else(|| panic!("no {measure} in {alert}"))
        .value
}

#[test]
fn five_tenants_at_two_requests_a_second_have_no_noisy_neighbour() {
    // The outside tester's case: five tenants at 2 requests a second, 50 ms each, staggered so
    // one of them holds the only request in flight whenever the rules are evaluated; `t4`
    // fails every other request.
    let mut sim = Sim::new(AlertRules::default());
    let streams: Vec<Stream> = (0..5u32)
        .map(|i| Stream {
            offset: MS * 100 * i,
            fail_every: if i == 4 { 2 } else { 0 },
            ..Stream::new(&format!("t{i}"), MS * 500, MS * 50)
        })
        .collect();
    let events = sim.run(&streams, Duration::from_secs(300), MS * 10, SECOND * 10);

    let noisy = noisy(&events);
    println!("noisy_neighbor events: {}", noisy.len());
    assert!(noisy.is_empty(), "{noisy:#?}");
    // The rules did run on real traffic: 600 requests each, and the failing tenant alerts.
    for i in 0..5 {
        let total = sim.registry.request_stats(&format!("t{i}")).unwrap().total;
        assert!((595..=600).contains(&total), "t{i}: {total}");
    }
    assert!(events
        .iter()
        .any(|e| e.kind == AlertKind::SuccessRate && e.tenant.as_str() == "t4"));
    for i in 0..4 {
        assert!(sim.firing(&format!("t{i}")).is_empty(), "t{i}");
    }
}

#[test]
fn a_slow_tenant_on_a_service_far_from_loaded_is_no_noisy_neighbour() {
    // The demo: 50 tenants at 2 requests a second, 49 answered in 50 ms and `finance` in 5 s,
    // one in five failing, the rules evaluated every second. `finance` holds two thirds of the
    // busy time, but the service averages about 15 requests in flight: nobody waits for it.
    let mut sim = Sim::new(AlertRules::default());
    let mut streams: Vec<Stream> = (1..50u32)
        .map(|i| Stream {
            offset: MS * 10 * i,
            ..Stream::new(&format!("tenant-{i:02}"), MS * 500, MS * 50)
        })
        .collect();
    streams.push(Stream {
        fail_every: 5,
        ..Stream::new("finance", MS * 500, SECOND * 5)
    });
    let events = sim.run(&streams, Duration::from_secs(120), MS * 10, SECOND);

    let noisy = noisy(&events);
    println!("noisy_neighbor events: {}", noisy.len());
    assert!(noisy.is_empty(), "{noisy:#?}");
    // finance's own trouble is seen, and the other 49 are left alone.
    let finance = sim.firing("finance");
    assert!(finance.contains(&AlertKind::SuccessRate), "{finance:?}");
    assert!(finance.contains(&AlertKind::Latency), "{finance:?}");
    let others: Vec<_> = events
        .iter()
        .filter(|e| e.tenant.as_str() != "finance")
        .collect();
    assert!(others.is_empty(), "{others:#?}");
}

/// A saturated service: `hog` keeps 40 requests in flight (one every 25 ms, each taking 1 s),
/// three others 5 each (one every 100 ms, each 500 ms): 55 in flight on average, `hog` holding
/// 40/55 = 73 % of the busy time.
fn saturated() -> Vec<Stream> {
    let mut streams = vec![Stream::new("hog", MS * 25, SECOND)];
    for t in ["a", "b", "c"] {
        streams.push(Stream::new(t, MS * 100, MS * 500));
    }
    streams
}

#[test]
fn a_tenant_holding_most_of_a_saturated_service_is_named_and_a_lone_one_never_is() {
    let mut sim = Sim::new(AlertRules::default());
    // Alone, a tenant has all the service, however busy: that is no neighbour's problem.
    let solo = [Stream::new("solo", MS * 25, SECOND)];
    let events = sim.run(&solo, Duration::from_secs(120), MS * 5, SECOND * 10);
    assert!(noisy(&events).is_empty(), "{:#?}", noisy(&events));
    assert!(sim.registry.request_stats("solo").unwrap().total >= 4700);

    // Once `solo`'s work has left the sliding window, the saturated service.
    sim.advance(Duration::from_secs(120));
    let events = sim.run(&saturated(), Duration::from_secs(120), MS * 5, SECOND * 10);
    let named: BTreeMap<String, usize> = events
        .iter()
        .filter(|e| e.kind == AlertKind::NoisyNeighbor)
        .fold(BTreeMap::new(), |mut m, e| {
            *m.entry(e.tenant.to_string()).or_default() += 1;
            m
        });
    assert_eq!(
        named,
        BTreeMap::from([("hog".to_owned(), 1)]),
        "{events:#?}"
    );
    let share = reading(&sim, "hog", "share");
    let load = reading(&sim, "hog", "in_flight");
    println!("hog: share {share:.4}, service in flight {load:.2}");
    assert!((0.70..=0.76).contains(&share), "hog's share {share}");
    assert!(
        (50.0..=60.0).contains(&load),
        "requests in flight on average {load}"
    );
    for t in ["a", "b", "c", "solo"] {
        assert!(sim.firing(t).is_empty(), "{t}: {:?}", sim.firing(t));
    }
}

#[test]
fn the_minimum_load_is_the_services_capacity() {
    // A service that saturates at 8 requests in flight (say a fair-share capacity of 8): hog
    // keeps 6 in flight (one every 100 ms, each 600 ms), three others 1 each: 9 on average,
    // hog holding two thirds.
    let mut streams = vec![Stream::new("hog", MS * 100, MS * 600)];
    for t in ["a", "b", "c"] {
        streams.push(Stream::new(t, MS * 500, MS * 500));
    }
    let run = |rules: AlertRules| {
        let mut sim = Sim::new(rules);
        let events = sim.run(&streams, Duration::from_secs(120), MS * 10, SECOND * 10);
        (sim, events)
    };
    // Under the default minimum of 32, that is a quiet service.
    let (_, events) = run(AlertRules::default());
    assert!(noisy(&events).is_empty(), "{:#?}", noisy(&events));
    // Told its capacity, the rule names hog, and only hog. NaN leaves the setting alone.
    let rules = AlertRules::default()
        .noisy_neighbor_min_load(8.0)
        .noisy_neighbor_min_load(f64::NAN);
    let (sim, events) = run(rules);
    let named: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == AlertKind::NoisyNeighbor)
        .map(|e| e.tenant.as_str())
        .collect();
    assert_eq!(named, ["hog"]);
    let share = reading(&sim, "hog", "share");
    let load = reading(&sim, "hog", "in_flight");
    println!("hog: share {share:.4}, service in flight {load:.2}");
    assert!((0.63..=0.70).contains(&share), "hog's share {share}");
    assert!(
        (8.0..=10.0).contains(&load),
        "requests in flight on average {load}"
    );
}
