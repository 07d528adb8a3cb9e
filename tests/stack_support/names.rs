//! What Prometheus holds, read through its HTTP API: metric names with their `tenant_id` values,
//! and instant queries, for the stack tests that compare the paths metrics take.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{http_get, url_encode};

/// Per metric name, the `tenant_id` values of its series (`None`: a series without the label).
pub type Names = BTreeMap<String, BTreeSet<Option<String>>>;

/// Series of the scrape, of the collector itself and of span metrics, not of tenant-otel.
pub fn is_tenant_otel_metric(name: &str) -> bool {
    !(name == "target_info"
        || name == "up"
        || name.starts_with("scrape_")
        || name.starts_with("otelcol_")
        || name.starts_with("traces_span_metrics_"))
}

/// The tenant-otel series Prometheus holds for `job`, by name.
pub fn names_of(prometheus: &str, job: &str) -> Names {
    let url = format!(
        "http://{prometheus}/api/v1/series?match[]={}",
        url_encode(&format!(r#"{{job="{job}"}}"#))
    );
    let Ok((200, body)) = http_get(&url) else {
        return Names::new();
    };
    let json: Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
    let mut names = Names::new();
    for series in json["data"].as_array().into_iter().flatten() {
        let name = series["__name__"].as_str().unwrap();
        if is_tenant_otel_metric(name) {
            let tenant = series["tenant_id"].as_str().map(str::to_owned);
            names.entry(name.to_owned()).or_default().insert(tenant);
        }
    }
    names
}

/// The tenant-otel series of a Prometheus text exposition (a service's own `/metrics`), by name.
pub fn names_in_exposition(exposition: &str) -> Names {
    let mut names = Names::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..end];
        if name.is_empty() || !is_tenant_otel_metric(name) {
            continue;
        }
        let labels = line[end..].split_once('}').map_or("", |(l, _)| l);
        // Label values here are tenant ids and the like: no escaped quotes to undo.
        let tenant = ["{tenant_id=\"", ",tenant_id=\""]
            .iter()
            .find_map(|key| labels.find(key).map(|at| &labels[at + key.len()..]))
            .and_then(|rest| rest.split_once('"'))
            .map(|(value, _)| value.to_owned());
        names.entry(name.to_owned()).or_default().insert(tenant);
    }
    names
}

/// What one side has and the other lacks, by name, for a failure message.
pub fn differences(left: &Names, right: &Names) -> Vec<String> {
    let all: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    all.into_iter()
        .filter(|name| left.get(*name) != right.get(*name))
        .map(|name| format!("{name}: {:?} against {:?}", left.get(name), right.get(name)))
        .collect()
}

/// Each series of the instant query `expr`: its labels and its value (empty when Prometheus
/// does not answer).
pub fn instant(prometheus: &str, expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let url = format!(
        "http://{prometheus}/api/v1/query?query={}",
        url_encode(expr)
    );
    let Ok((200, body)) = http_get(&url) else {
        return Vec::new();
    };
    let json: Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
    json["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect();
            let value = s["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (labels, value)
        })
        .collect()
}

/// The value of each series of `expr`, by `tenant_id`.
pub fn by_tenant(prometheus: &str, expr: &str) -> BTreeMap<String, f64> {
    instant(prometheus, expr)
        .into_iter()
        .map(|(labels, v)| (labels.get("tenant_id").cloned().unwrap_or_default(), v))
        .collect()
}
