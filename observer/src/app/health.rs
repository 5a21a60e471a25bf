//! Health endpoint for orchestrators (Kubernetes probes), off unless
//! `--health-listen` (or `health_listen` in the config) names an address.
//!
//! Input: the agent's lifecycle, told through [`Health`]: `attached()` once
//! the probes are attached, `beat()` from the sink thread on every turn of
//! its loop (the 1 s ticker keeps it turning when no event comes),
//! `stopping()` when shutdown starts.
//! Output: HTTP/1.1 on the given address: `GET /healthz` is 200 while the
//! sink thread has turned within [`STALL_AFTER`] (and during start-up,
//! before it runs), else 503; `GET /readyz` is 200 from attach until
//! shutdown starts, else 503; any other path is 404.
//! Invariants: the server reads nothing but the request line and headers
//! hyper parses, answers a few bytes of plain text, and never blocks the
//! agent: a failed connection is logged at debug level and dropped.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

/// A sink thread that has not turned for this long is stuck: not live.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// Lifecycle flags the endpoint answers from; cheap to update from any
/// thread.
#[derive(Debug)]
pub struct Health {
    start: Instant,
    attached: AtomicBool,
    stopping: AtomicBool,
    /// Milliseconds since `start` of the sink's last turn; 0: not yet.
    last_beat_ms: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            attached: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            last_beat_ms: AtomicU64::new(0),
        }
    }

    pub fn attached(&self) {
        self.attached.store(true, Ordering::Relaxed);
    }

    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// The sink thread turned.
    pub fn beat(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        self.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// Ready: probes attached and not shutting down.
    pub fn ready(&self) -> bool {
        self.attached.load(Ordering::Relaxed) && !self.stopping.load(Ordering::Relaxed)
    }

    /// Live: the sink has turned within [`STALL_AFTER`] of `now`, or has
    /// not started yet (loading the probes takes seconds; a start-up probe
    /// bounds that).
    pub fn live_at(&self, now: Instant) -> bool {
        let last = self.last_beat_ms.load(Ordering::Relaxed);
        if last == 0 {
            return true;
        }
        let since_start = now.saturating_duration_since(self.start);
        since_start.saturating_sub(Duration::from_millis(last)) <= STALL_AFTER
    }

    fn answer(&self, path: &str) -> (StatusCode, &'static str) {
        match path {
            "/healthz" if self.live_at(Instant::now()) => (StatusCode::OK, "ok\n"),
            "/healthz" => (StatusCode::SERVICE_UNAVAILABLE, "stalled\n"),
            "/readyz" if self.ready() => (StatusCode::OK, "ready\n"),
            "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            _ => (StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for the health endpoint: {source}")]
pub struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds `addr` and serves until `stop` is cancelled. Binding happens
/// before this returns, so a taken port is a start-up error.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, BindError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| BindError { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(address = %local, "health endpoint listening (/healthz, /readyz)");
    Ok(tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "health endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let health = health.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (status, body) = health.answer(req.uri().path());
                    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                    *resp.status_mut() = status;
                    std::future::ready(Ok::<_, std::convert::Infallible>(resp))
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(TokioIo::new(tcp), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "health endpoint: connection failed");
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_between_attach_and_stop() {
        let h = Health::new();
        assert_eq!(h.answer("/readyz").0, StatusCode::SERVICE_UNAVAILABLE);
        h.attached();
        assert_eq!(h.answer("/readyz").0, StatusCode::OK);
        h.stopping();
        assert_eq!(h.answer("/readyz").0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(h.answer("/other").0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn live_until_the_sink_stalls() {
        let h = Health::new();
        // Before the sink runs: live (start-up).
        assert!(h.live_at(Instant::now()));
        h.beat();
        assert!(h.live_at(Instant::now()));
        assert!(h.live_at(Instant::now() + STALL_AFTER - Duration::from_secs(1)));
        assert!(!h.live_at(Instant::now() + STALL_AFTER + Duration::from_secs(2)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_http() {
        let h = Arc::new(Health::new());
        let stop = CancellationToken::new();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        // Bind a port of our own first to learn a free one.
        let probe = std::net::TcpListener::bind(addr).unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let task = serve(addr, h.clone(), stop.clone()).await.unwrap();
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        h.attached();
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        // A second bind of the same address fails at start-up.
        assert!(serve(addr, h.clone(), stop.clone()).await.is_err());
        stop.cancel();
        task.await.unwrap();
    }
}
