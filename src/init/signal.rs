//! The signals a stopped service receives, for a shutdown that flushes telemetry.

/// Resolves when the process is asked to stop: Ctrl-C (SIGINT, from a terminal) or SIGTERM (from
/// an orchestrator: Kubernetes, systemd, Docker). Give it to the server's graceful shutdown, and
/// the telemetry of the last requests is flushed when [`Telemetry`](crate::Telemetry) is shut
/// down or dropped after the server returns, instead of dying with the process.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let telemetry = tenant_otel::init()?;
/// let app = axum::Router::new().layer(telemetry.layer());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app)
///     .with_graceful_shutdown(tenant_otel::shutdown_signal())
///     .await?;
/// telemetry.shutdown()?; // every span, metric and log record delivered
/// # Ok(())
/// # }
/// ```
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // Without a handler (a process with no signal support), wait on SIGTERM alone.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!(target: "tenant_otel", "stop requested: finishing the requests in flight, then flushing telemetry");
}
