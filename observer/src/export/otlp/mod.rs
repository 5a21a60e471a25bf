//! OTLP export: logs (every stored record: credential accesses, rotations,
//! connections, usage records) and metrics (the agent's low-cardinality
//! counters), over gRPC or HTTP/protobuf, with the OpenTelemetry SDK's own
//! OTLP exporters, configured by the standard `OTEL_*` variables.
//!
//! Input: the store's `records` table, read behind a cursor
//! (`store::CURSOR_OTLP_LOGS`), and [`Stats`]. Output: OTLP requests.
//!
//! Delivery: the SDK's exporter retries a few times and then drops the
//! batch; ours does not. A batch is read from the database, exported, and
//! only then is the cursor moved (committed). A failed export is retried,
//! with backoff up to `max_backoff`, for as long as it takes: a collector
//! outage delays delivery, it loses nothing the store holds. A crash
//! between an export and its cursor commit sends that batch again (at most
//! `batch_size` duplicates), each record with its `nhi.record.id`.
//!
//! Threads: everything here runs on one thread of its own with its own
//! single-worker tokio runtime (tonic and reqwest need one), so an export
//! that blocks or stalls never takes a worker of the agent's runtime (the
//! ring-buffer reader's). The SDK's periodic metric reader has its own
//! thread, and runs its exports on this runtime.
//!
//! - `logs`: stored records to SDK log records, and the delivery loop;
//! - `metrics`: the instruments and the exporter wrapper.
use std::{
    path::PathBuf,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

pub mod logs;
pub mod metrics;

/// The `[otlp]` configuration, resolved.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// An endpoint variable is set, or the config file asked for export.
    pub enabled: bool,
    pub logs: bool,
    pub metrics: bool,
    pub batch_size: usize,
    pub max_backoff: Duration,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self { enabled: false, logs: true, metrics: true, batch_size: 512, max_backoff: Duration::from_secs(30) }
    }
}

/// Whether the environment names an OTLP endpoint (the DESIGN's switch:
/// export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or a signal's own
/// endpoint variable is set).
pub fn endpoint_in_env() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Whether a signal (`LOGS`, `METRICS`) is exported: when the environment
/// names no endpoint (export turned on by `[otlp] enabled`), every signal
/// goes to the SDK's default endpoint; when it names one, only signals with
/// an endpoint (the common one or their own) are sent, so setting just
/// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` does not also send metrics to a
/// localhost default that is not there.
fn signal_wanted(signal: &str, var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.is_empty());
    let own = format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT");
    let any = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]
        .iter()
        .any(|v| set(v));
    !any || set("OTEL_EXPORTER_OTLP_ENDPOINT") || set(&own)
}

/// The resource every export carries: the SDK's detectors (the
/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` variables, telemetry
/// SDK), then `host.name`, `service.instance.id` (the database's instance
/// id) and `service.version`, unless the variables set them; and
/// `service.name` = `nhi-observer` unless they name one.
pub fn resource(host_name: &str, instance: &str) -> Resource {
    let env_attrs = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    let env_sets = |key: &str| env_attrs.split(',').any(|kv| kv.split('=').next().map(str::trim) == Some(key));
    let mut builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) && !env_sets("service.name") {
        builder = builder.with_service_name("nhi-observer");
    }
    let mut extra = Vec::new();
    if !env_sets("host.name") {
        extra.push(KeyValue::new("host.name", host_name.to_owned()));
    }
    if !env_sets("service.instance.id") {
        extra.push(KeyValue::new("service.instance.id", instance.to_owned()));
    }
    if !env_sets("service.version") {
        extra.push(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    }
    builder.with_attributes(extra).build()
}

/// The running exporter thread.
pub struct Exporter {
    wake: Arc<Notify>,
    stop: CancellationToken,
    thread: Option<thread::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("OTLP exporter: {0}")]
    Build(String),
    #[error("OTLP exporter thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("OTLP exporter: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl Exporter {
    /// Starts the exporter thread. Fails (the agent does not start) when the
    /// `OTEL_*` configuration cannot make an exporter, e.g. an unknown
    /// protocol or a malformed endpoint.
    pub fn start(
        cfg: &OtlpConfig,
        state_dir: PathBuf,
        resource: Resource,
        stats: Arc<Stats>,
    ) -> Result<Exporter, OtlpError> {
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), OtlpError>>();
        let env = |name: &str| std::env::var(name).ok();
        let mut cfg = cfg.clone();
        cfg.logs &= signal_wanted("LOGS", env);
        cfg.metrics &= signal_wanted("METRICS", env);
        tracing::info!(logs = cfg.logs, metrics = cfg.metrics, "OTLP export on");
        let (w, s) = (wake.clone(), stop.clone());
        let thread = thread::Builder::new().name("nhi-otlp".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("nhi-otlp-io")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(OtlpError::Thread(e)));
                    return;
                }
            };
            let handle = runtime.handle().clone();
            runtime.block_on(async move {
                let meters = if cfg.metrics {
                    match metrics::start(handle, resource.clone(), stats.clone(), s.clone()) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    }
                } else {
                    None
                };
                let delivery = if cfg.logs {
                    match logs::Delivery::new(&cfg, &state_dir, &resource, stats.clone()) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    }
                } else {
                    None
                };
                let _ = ready_tx.send(Ok(()));
                if let Some(mut d) = delivery {
                    d.run(&w, &s).await;
                } else {
                    s.cancelled().await;
                }
                if let Some(m) = meters {
                    m.shutdown();
                }
            });
        })?;
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(Exporter { wake, stop, thread: Some(thread) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(OtlpError::Build("the exporter did not start within 30 s".into())),
        }
    }

    /// What the sink notifies when it has committed new records.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Delivers what it can within `deadline`, then stops. What it could
    /// not deliver stays behind the cursor for the next start.
    pub fn stop(mut self, deadline: Duration) {
        self.stop.cancel();
        self.wake.notify_one();
        let until = Instant::now() + deadline + Duration::from_secs(2);
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < until {
                thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!("OTLP exporter did not stop in time; undelivered records stay queued for the next start");
            }
        }
    }
}

/// How long the exporter keeps delivering after a stop was asked for.
pub const STOP_DEADLINE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_without_an_endpoint_is_not_sent() {
        let env = |vars: &'static [(&'static str, &'static str)]| move |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| (*v).to_owned());
        assert!(signal_wanted("METRICS", env(&[])), "export on by config: both signals to the defaults");
        let logs_only = env(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://c:4318/v1/logs")]);
        assert!(signal_wanted("LOGS", logs_only) && !signal_wanted("METRICS", logs_only));
        let common = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert!(signal_wanted("LOGS", common) && signal_wanted("METRICS", common));
        let empty = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", ""), ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m")]);
        assert!(!signal_wanted("LOGS", empty) && signal_wanted("METRICS", empty));
    }
}
