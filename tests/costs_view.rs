//! `/tenants/costs`: the chargeback table as JSON and as CSV, worst first, to the cent.
#![cfg(feature = "axum")]

use axum::body::Body;
use tenant_otel::cost::{Currency, ModelPrice, Money, PriceTable, Prices, TokenUsage};
use tenant_otel::query::LlmCall;
use tenant_otel::view::view_router;
use tenant_otel::TenantRegistry;
use tower::ServiceExt;

/// A model name from the price file that needs quoting in CSV.
const ODD_MODEL: &str = "weird,\"model\"";

fn registry() -> TenantRegistry {
    let table = PriceTable::new(Currency::USD)
        .model(
            "gpt-4o-mini",
            ModelPrice::per_million("0.15", "0.60").unwrap(),
        )
        .model(ODD_MODEL, ModelPrice::per_million("1", "2").unwrap());
    let registry = TenantRegistry::builder().prices(Prices::new(table)).build();
    // acme: 1,000 calls at $0.00075 ($0.75) and one the provider priced at $1.00.
    let usage = TokenUsage::new(1_000, 1_000);
    for _ in 0..1_000 {
        registry
            .record_llm_call("acme", &LlmCall::new("openai", "gpt-4o-mini", usage))
            .unwrap();
    }
    registry
        .record_llm_call(
            "acme",
            &LlmCall::new("openai", "gpt-4o-mini", usage)
                .provider_cost(Money::from_minor(100, Currency::USD)),
        )
        .unwrap();
    // A valid id a spreadsheet would read as a formula: 10 calls at $0.002.
    for _ in 0..10 {
        registry
            .record_llm_call(
                "-red-team",
                &LlmCall::new("local", ODD_MODEL, TokenUsage::new(1_000, 500)),
            )
            .unwrap();
    }
    // A tenant without LLM calls is not in the table.
    registry.resolve("quiet").unwrap();
    registry
}

async fn get(registry: &TenantRegistry, uri: &str, accept: Option<&str>) -> (String, String) {
    let mut request = http::Request::get(uri);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = view_router(registry.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (content_type, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn costs_are_served_as_json_worst_first() {
    let registry = registry();
    let (content_type, body) = get(&registry, "/tenants/costs", None).await;
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["currency"], "USD");
    assert_eq!(json["minor_unit_decimals"], 2);
    let tenants = json["tenants"].as_array().unwrap();
    let names: Vec<_> = tenants
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "-red-team"]);
    for period in ["day", "month"] {
        let acme = &tenants[0][period];
        assert_eq!(acme["requests"], 1_001);
        assert_eq!(acme["cost"]["provider"], 100);
        assert_eq!(acme["cost"]["local"], 75);
        assert_eq!(acme["cost"]["total"], 175);
        let model = &acme["models"][0];
        assert_eq!(model["model"], "gpt-4o-mini");
        assert_eq!(model["input_tokens"], 1_001_000);
        assert_eq!(model["output_tokens"], 1_001_000);
        let red = &tenants[1][period];
        assert_eq!(red["cost"]["total"], 2);
        assert_eq!(red["models"][0]["model"], ODD_MODEL);
    }
    let date = json["day"].as_str().unwrap();
    assert_eq!(date.len(), 10);
    assert!(date.starts_with(json["month"].as_str().unwrap()));
}

#[tokio::test]
async fn costs_are_served_as_csv_quoted_and_defused() {
    let registry = registry();
    let view = registry.costs();
    let (day, month) = (view.day.clone(), view.month.clone());
    let expected = format!(
        "period,date,tenant,model,requests,input_tokens,output_tokens,provider_cost,local_cost,total_cost,currency\r\n\
         day,{day},acme,gpt-4o-mini,1001,1001000,1001000,1.00,0.75,1.75,USD\r\n\
         month,{month},acme,gpt-4o-mini,1001,1001000,1001000,1.00,0.75,1.75,USD\r\n\
         day,{day},\"'-red-team\",\"weird,\"\"model\"\"\",10,10000,5000,0.00,0.02,0.02,USD\r\n\
         month,{month},\"'-red-team\",\"weird,\"\"model\"\"\",10,10000,5000,0.00,0.02,0.02,USD\r\n"
    );
    for (uri, accept) in [
        ("/tenants/costs?format=csv", None),
        ("/tenants/costs", Some("text/html;q=0.9, text/csv")),
    ] {
        let (content_type, body) = get(&registry, uri, accept).await;
        assert!(content_type.starts_with("text/csv"), "{content_type}");
        assert_eq!(body, expected, "{uri} {accept:?}");
    }
    // An explicit `format` other than csv wins over the header.
    let (content_type, _) = get(&registry, "/tenants/costs?format=json", Some("text/csv")).await;
    assert!(content_type.starts_with("application/json"));
}
