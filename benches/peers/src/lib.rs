//! The stacks compared by the benchmarks of this package, and the one request loop that drives
//! them, so the wall-clock run (`benches/peers.rs`) and the instruction and allocation counts
//! (`benches/cost.rs`) measure exactly the same code.
//!
//! Every stack is an axum `Router` with `GET /hello` answering "hello", called in process as a
//! tower service (`oneshot` on a current-thread tokio runtime, body read). Every request carries
//! an `x-tenant-id` header (cycling over the tenants asked for) and a W3C `traceparent` with the
//! sampled flag, as requests from an instrumented caller do; the sampler is the SDK's default
//! (parent-based, always on), so every request is traced.
//!
//! The peers export to a batch span processor whose exporter discards, and to a periodic metric
//! reader that discards; their `tracing` spans become OpenTelemetry spans through
//! tracing-opentelemetry, as their documentation sets up. tenant-otel runs exactly as
//! [`tenant_otel::init`] wires it (its span processor, the batch exporter, the global propagator
//! and `tracing` subscriber), with the same discarding span exporter as the peers and metrics
//! aggregated for an OTLP reader that exports off the request path, so nothing leaves the
//! process and the request path is the one users run.

use std::fmt;

use axum::body::Body;
use axum::http::{HeaderValue, Request};
use axum::routing::get;
use axum::Router;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tenant_otel::Telemetry;
use tower::ServiceExt;
use tracing::subscriber::DefaultGuard;

/// The exporters that discard, shared with the root crate's benchmarks.
#[path = "../../support/discard.rs"]
mod discard;
pub use discard::{DiscardMetrics, DiscardSpans};
use tracing_subscriber::layer::SubscriberExt;

/// One way of instrumenting the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stack {
    /// No instrumentation: the baseline every other figure is taken over.
    Bare,
    /// A middleware that does nothing, through `axum::middleware::from_fn`: the floor any
    /// middleware pays.
    Noop,
    /// opentelemetry-instrumentation-tower with its spans switched off: HTTP metrics only.
    InstrumentationTowerMetrics,
    /// opentelemetry-instrumentation-tower: server span and HTTP metrics.
    InstrumentationTower,
    /// tower-http's `TraceLayer::new_for_http()` through tracing-opentelemetry.
    TowerHttpTrace,
    /// axum-tracing-opentelemetry's `OtelAxumLayer`.
    AxumTracingOtel,
    /// tower-otel's HTTP trace and metrics layers.
    TowerOtel,
    /// What a team assembles by hand for tenant labels: axum-tracing-opentelemetry for spans,
    /// instrumentation-tower for metrics, and a middleware that puts the tenant on the span and
    /// in baggage (no per-tenant metrics, no cap, no validation).
    HandWritten,
    /// tenant-otel without server spans: tenant lookup, validation, baggage, tenant-labelled
    /// metrics, SLO windows, the in-process view.
    TenantOtelMetrics,
    /// tenant-otel as `init()` wires it: all of the above plus the server span, the tenant on
    /// every child span, and the batch exporter.
    TenantOtel,
    /// [`Stack::TenantOtel`] whose handler makes one downstream call, in process, through a
    /// plain tower service.
    TenantOtelCalling,
    /// The same call through `ClientLayer`: a CLIENT span, injected headers, and
    /// `http.client.request.duration`. The difference is the client layer's cost.
    TenantOtelCallingTraced,
    /// [`Stack::TenantOtel`] with the per-tenant fair sampler (floor 5, ratio 1%, cap 600 a
    /// minute): most requests past the floor are not traced.
    TenantOtelFairSampled,
    /// [`Stack::TenantOtel`] as a public endpoint: every caller's `traceparent` becomes a link
    /// of a new trace, its baggage dropped.
    TenantOtelPublic,
}

impl Stack {
    /// Every stack, in the order the tables list them.
    pub const ALL: [Stack; 14] = [
        Stack::Bare,
        Stack::Noop,
        Stack::InstrumentationTowerMetrics,
        Stack::InstrumentationTower,
        Stack::TowerHttpTrace,
        Stack::AxumTracingOtel,
        Stack::TowerOtel,
        Stack::HandWritten,
        Stack::TenantOtelMetrics,
        Stack::TenantOtel,
        Stack::TenantOtelCalling,
        Stack::TenantOtelCallingTraced,
        Stack::TenantOtelFairSampled,
        Stack::TenantOtelPublic,
    ];

    /// The name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Bare => "bare",
            Stack::Noop => "noop",
            Stack::InstrumentationTowerMetrics => "instrumentation-tower-metrics",
            Stack::InstrumentationTower => "instrumentation-tower",
            Stack::TowerHttpTrace => "tower-http-trace",
            Stack::AxumTracingOtel => "axum-tracing-otel",
            Stack::TowerOtel => "tower-otel",
            Stack::HandWritten => "hand-written",
            Stack::TenantOtelMetrics => "tenant-otel-metrics",
            Stack::TenantOtel => "tenant-otel",
            Stack::TenantOtelCalling => "tenant-otel-calling",
            Stack::TenantOtelCallingTraced => "tenant-otel-calling-traced",
            Stack::TenantOtelFairSampled => "tenant-otel-fair-sampled",
            Stack::TenantOtelPublic => "tenant-otel-public",
        }
    }

    /// What the stack does, for the tables.
    pub fn describe(self) -> &'static str {
        match self {
            Stack::Bare => "bare Router",
            Stack::Noop => "a do-nothing `from_fn` middleware",
            Stack::InstrumentationTowerMetrics => {
                "opentelemetry-instrumentation-tower, metrics only"
            }
            Stack::InstrumentationTower => "opentelemetry-instrumentation-tower, span + metrics",
            Stack::TowerHttpTrace => "tower-http `TraceLayer` + tracing-opentelemetry",
            Stack::AxumTracingOtel => "axum-tracing-opentelemetry",
            Stack::TowerOtel => "tower-otel, span + metrics",
            Stack::HandWritten => {
                "axum-tracing-opentelemetry + instrumentation-tower metrics + tenant middleware"
            }
            Stack::TenantOtelMetrics => "tenant-otel, metrics only",
            Stack::TenantOtel => "tenant-otel, span + metrics + tenant on every span",
            Stack::TenantOtelCalling => "tenant-otel, the handler calling a service in process",
            Stack::TenantOtelCallingTraced => {
                "tenant-otel, the handler calling it through `ClientLayer`"
            }
            Stack::TenantOtelFairSampled => "tenant-otel, fair sampler (floor 5, 1%, cap 600)",
            Stack::TenantOtelPublic => "tenant-otel, public endpoint (caller's trace as a link)",
        }
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stack ready to serve: the router, and what must live as long as it does.
pub struct Setup {
    app: Router,
    _subscriber: Option<DefaultGuard>,
    providers: Providers,
}

enum Providers {
    Peer(SdkTracerProvider, SdkMeterProvider),
    TenantOtel(Box<Telemetry>),
    None,
}

impl Setup {
    /// The instrumented router.
    pub fn app(&self) -> &Router {
        &self.app
    }

    /// tenant-otel's telemetry, for the tenant-otel stacks.
    pub fn telemetry(&self) -> Option<&Telemetry> {
        match &self.providers {
            Providers::TenantOtel(telemetry) => Some(telemetry),
            _ => None,
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        match &self.providers {
            Providers::Peer(t, m) => {
                let _ = t.shutdown();
                let _ = m.shutdown();
            }
            Providers::TenantOtel(telemetry) => {
                let _ = telemetry.shutdown();
            }
            Providers::None => {}
        }
    }
}

/// Builds `stack` for up to `tenants` distinct tenants. Sets the OpenTelemetry globals (the
/// peers read them) and, for the `tracing`-based stacks, a `tracing` subscriber for the calling
/// thread until the setup is dropped: build one stack at a time, on the thread that runs it.
pub fn setup(stack: Stack, tenants: usize) -> Setup {
    setup_with_cap(stack, tenants.max(1000))
}

/// [`setup`] with tenant-otel's cap on distinct tenants set to `max_tenants`: tenants past it
/// share the `__overflow__` entry.
pub fn setup_with_cap(stack: Stack, max_tenants: usize) -> Setup {
    let router = || Router::new().route("/hello", get(|| async { "hello" }));
    if matches!(
        stack,
        Stack::TenantOtel
            | Stack::TenantOtelMetrics
            | Stack::TenantOtelCalling
            | Stack::TenantOtelCallingTraced
            | Stack::TenantOtelFairSampled
            | Stack::TenantOtelPublic
    ) {
        let mut builder = Telemetry::builder();
        if stack == Stack::TenantOtelFairSampled {
            builder = builder.sampler(
                tenant_otel::sampling::TenantSampler::builder()
                    .floor(5)
                    .ratio(0.01)
                    .cap(600)
                    .build(),
            );
        }
        let telemetry = builder
            .service_name("bench")
            // Spans go to the batch processor and an exporter that discards, as the peers'
            // do. Metrics are aggregated for the OTLP reader, which exports (and fails, as
            // nothing listens there) off the request path once a minute.
            .span_exporter(DiscardSpans)
            .otlp_endpoint("http://127.0.0.1:9")
            .registry(tenant_otel::TenantRegistry::builder().max_tenants(max_tenants))
            .without_console_logs()
            .init()
            .expect("tenant-otel init");
        let app = match stack {
            Stack::TenantOtelMetrics => {
                router().layer(telemetry.layer_builder().without_spans().build())
            }
            Stack::TenantOtelCalling => calling(downstream()).layer(telemetry.layer()),
            Stack::TenantOtelCallingTraced => {
                use tower::Layer as _;
                calling(telemetry.client_layer().layer(downstream())).layer(telemetry.layer())
            }
            Stack::TenantOtelPublic => router().layer(
                telemetry
                    .layer_builder()
                    .edge(tenant_otel::layer::Edge::public())
                    .build(),
            ),
            _ => router().layer(telemetry.layer()),
        };
        return Setup {
            app,
            _subscriber: None,
            providers: Providers::TenantOtel(Box::new(telemetry)),
        };
    }
    if stack == Stack::Bare {
        return Setup {
            app: router(),
            _subscriber: None,
            providers: Providers::None,
        };
    }
    if stack == Stack::Noop {
        return Setup {
            app: router().layer(axum::middleware::from_fn(
                |req: Request<Body>, next: axum::middleware::Next| next.run(req),
            )),
            _subscriber: None,
            providers: Providers::None,
        };
    }

    let tracer_provider = SdkTracerProvider::builder()
        .with_batch_exporter(DiscardSpans)
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(DiscardMetrics).build())
        .build();
    // instrumentation-tower takes its tracer and meter from the globals only, and the
    // trace-context peers extract with the global propagator (a no-op until set).
    opentelemetry::global::set_tracer_provider(tracer_provider.clone());
    opentelemetry::global::set_meter_provider(meter_provider.clone());
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    let tracing_otel = || {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("bench")));
        Some(tracing::subscriber::set_default(subscriber))
    };
    let instrumentation_tower = |tracing: bool| {
        opentelemetry_instrumentation_tower::http::server::LayerBuilder::builder()
            .with_tracing(tracing)
            .build()
            .expect("instrumentation-tower layer")
    };
    let (app, subscriber) = match stack {
        Stack::InstrumentationTowerMetrics => (router().layer(instrumentation_tower(false)), None),
        Stack::InstrumentationTower => (router().layer(instrumentation_tower(true)), None),
        Stack::TowerHttpTrace => (
            router().layer(tower_http::trace::TraceLayer::new_for_http()),
            tracing_otel(),
        ),
        Stack::AxumTracingOtel => (
            router().layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default()),
            tracing_otel(),
        ),
        Stack::TowerOtel => {
            let meter = meter_provider.meter("bench");
            (
                router()
                    .layer(tower_otel::metrics::HttpLayer::server(&meter))
                    .layer(tower_otel::trace::HttpLayer::server(tracing::Level::INFO)),
                tracing_otel(),
            )
        }
        Stack::HandWritten => (
            router()
                .layer(axum::middleware::from_fn(tenant_middleware))
                .layer(instrumentation_tower(false))
                .layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default()),
            tracing_otel(),
        ),
        Stack::Bare
        | Stack::Noop
        | Stack::TenantOtel
        | Stack::TenantOtelMetrics
        | Stack::TenantOtelCalling
        | Stack::TenantOtelCallingTraced
        | Stack::TenantOtelFairSampled
        | Stack::TenantOtelPublic => unreachable!("built above"),
    };
    Setup {
        app,
        _subscriber: subscriber,
        providers: Providers::Peer(tracer_provider, meter_provider),
    }
}

/// The service the calling stacks' handler calls: answers "ok" at once.
fn downstream() -> impl tower::Service<
    Request<http_body_util::Empty<bytes::Bytes>>,
    Response = axum::http::Response<http_body_util::Full<bytes::Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(|_req: Request<http_body_util::Empty<bytes::Bytes>>| async {
        Ok::<_, std::convert::Infallible>(axum::http::Response::new(http_body_util::Full::new(
            bytes::Bytes::from_static(b"ok"),
        )))
    })
}

/// `GET /hello` answering after one call to `client`, body read.
fn calling<S, B>(client: S) -> Router
where
    S: tower::Service<
            Request<http_body_util::Empty<bytes::Bytes>>,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    B: axum::body::HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug + Send,
{
    use http_body_util::BodyExt as _;
    Router::new().route(
        "/hello",
        get(move || {
            let client = client.clone();
            async move {
                let req = Request::get("http://downstream.internal/search")
                    .body(http_body_util::Empty::new())
                    .expect("request");
                let res = client.oneshot(req).await.expect("infallible");
                let _ = res.into_body().collect().await.expect("body");
                "hello"
            }
        }),
    )
}

/// The tenant middleware a team writes when no crate does it: the header onto the current span
/// and into baggage for downstream calls.
async fn tenant_middleware(
    req: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use opentelemetry::context::FutureExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let tenant = req
        .headers()
        .get("x-tenant-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    tracing::Span::current().set_attribute("tenant.id", tenant.clone());
    let cx = Context::current().with_baggage([KeyValue::new("tenant.id", tenant)]);
    next.run(req).with_context(cx).await
}

/// Drives requests through a [`Setup`]: the one loop every figure comes from.
pub struct Driver {
    rt: tokio::runtime::Runtime,
    tenants: Vec<HeaderValue>,
    traceparents: Vec<HeaderValue>,
    i: usize,
}

impl Driver {
    /// A driver cycling over `tenants` tenant ids, on a current-thread runtime.
    pub fn new(tenants: usize) -> Driver {
        Driver {
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
            tenants: (0..tenants.max(1))
                .map(|i| HeaderValue::try_from(format!("tenant-{i}")).expect("header"))
                .collect(),
            // A few callers' spans, so no cache of a last-seen header can help.
            traceparents: (1..=7u64)
                .map(|i| {
                    HeaderValue::try_from(format!(
                        "00-{:032x}-{:016x}-01",
                        0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736u128 ^ u128::from(i),
                        0x00f0_67aa_0ba9_02b7u64 ^ i
                    ))
                    .expect("header")
                })
                .collect(),
            i: 0,
        }
    }

    /// A driver sending every request as tenant `tenant`.
    pub fn for_tenant(tenant: &str) -> Driver {
        let mut driver = Driver::new(1);
        driver.tenants = vec![HeaderValue::try_from(tenant).expect("header")];
        driver
    }

    /// Sends one request and reads the whole response body.
    #[inline(never)]
    pub fn request(&mut self, app: &Router) {
        self.i = self.i.wrapping_add(1);
        let req = Request::get("/hello")
            .header(
                "x-tenant-id",
                self.tenants[self.i % self.tenants.len()].clone(),
            )
            .header(
                "traceparent",
                self.traceparents[self.i % self.traceparents.len()].clone(),
            )
            .body(Body::empty())
            .expect("request");
        let app = app.clone();
        self.rt.block_on(async move {
            let res = app.oneshot(req).await.expect("infallible");
            assert!(res.status().is_success(), "status {}", res.status());
            axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .expect("body")
        });
    }

    /// Sends one request for each tenant, so every tenant is known before measuring.
    pub fn warm_up(&mut self, app: &Router, at_least: usize) {
        for _ in 0..at_least.max(self.tenants.len()) {
            self.request(app);
        }
    }
}
