//! OTLP metrics: the agent's counters as observable instruments, read from
//! [`Stats`] at each collection. Low cardinality by construction: the only
//! attributes are a credential source, a drop reason, a signal or whether a
//! connection was linked.
//!
//! | metric | type | unit | attributes |
//! |---|---|---|---|
//! | `nhi.credential.accesses` | counter | `{access}` | `nhi.source` |
//! | `nhi.connections` | counter | `{connection}` | `nhi.usage.linked` |
//! | `nhi.agent.drops` | counter | `{event}` | `nhi.drop.reason` |
//! | `nhi.agent.records` | counter | `{record}` | |
//! | `nhi.store.size` | gauge | `By` | |
//! | `nhi.export.records` | counter | `{record}` | |
//! | `nhi.export.failures` | counter | `{request}` | `nhi.export.signal` |
//! | `nhi.export.backlog` | gauge | `{record}` | |
//! | `nhi.export.rejected` | counter | `{record}` | `nhi.export.reason` |
//!
//! The SDK's periodic reader (interval: `OTEL_METRIC_EXPORT_INTERVAL`,
//! default 60 s) runs on its own thread; its exports run on the exporter
//! thread's runtime through [`OnRuntime`]. Metrics are cumulative: an export
//! lost to an outage is made good by the next one.
use std::{sync::Arc, time::Duration};

use opentelemetry::{KeyValue, metrics::MeterProvider as _};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{PeriodicReader, SdkMeterProvider, Temporality, data::ResourceMetrics, exporter::PushMetricExporter},
};

use super::OtlpError;
use crate::stats::Stats;

/// The SDK's OTLP metric exporter, run on the exporter thread's runtime
/// (tonic and reqwest need a tokio reactor; the periodic reader's thread
/// has none), counting failures.
struct OnRuntime {
    inner: opentelemetry_otlp::MetricExporter,
    runtime: tokio::runtime::Handle,
    stats: Arc<Stats>,
    /// The exporter's stop: an export in flight then (or the last one) gets
    /// [`STOP_GRACE`] more, so a collector that does not answer cannot hold
    /// the agent's stop up.
    stop: tokio_util::sync::CancellationToken,
}

const STOP_GRACE: Duration = Duration::from_millis(400);

impl std::fmt::Debug for OnRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnRuntime").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl PushMetricExporter for OnRuntime {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.runtime.block_on(async {
            tokio::select! {
                r = self.inner.export(metrics) => r,
                () = async {
                    self.stop.cancelled().await;
                    tokio::time::sleep(STOP_GRACE).await;
                } => Err(opentelemetry_sdk::error::OTelSdkError::Timeout(STOP_GRACE)),
            }
        });
        if let Err(e) = &result {
            Stats::add(&self.stats.export_failures_metrics, 1);
            tracing::debug!(error = %e, "OTLP metric export failed (the next one carries the totals)");
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

pub struct Meters {
    provider: SdkMeterProvider,
}

impl Meters {
    /// Exports a last time and stops the reader.
    pub fn shutdown(self) {
        let provider = self.provider;
        // The reader's last export blocks on our runtime: run it from a
        // thread that is not one of its workers.
        let _ = std::thread::spawn(move || provider.shutdown()).join();
    }
}

/// Builds the exporter (on the current runtime), the reader and the
/// instruments.
pub fn start(
    runtime: tokio::runtime::Handle,
    resource: Resource,
    stats: Arc<Stats>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Meters, OtlpError> {
    let inner = opentelemetry_otlp::MetricExporter::builder().build().map_err(|e| OtlpError::Build(e.to_string()))?;
    let exporter = OnRuntime { inner, runtime, stats: stats.clone(), stop };
    let reader = PeriodicReader::builder(exporter).build();
    let provider = SdkMeterProvider::builder().with_resource(resource).with_reader(reader).build();
    let scope =
        opentelemetry::InstrumentationScope::builder("nhi-observer").with_version(env!("CARGO_PKG_VERSION")).build();
    let meter = provider.meter_with_scope(scope);
    let s = stats.clone();
    meter
        .u64_observable_counter("nhi.credential.accesses")
        .with_unit("{access}")
        .with_description("Credential accesses (sum of nhi.access.count), by source")
        .with_callback(move |o| {
            for (source, n) in s.accesses() {
                o.observe(n, &[KeyValue::new("nhi.source", source)]);
            }
        })
        .build();
    let s = stats.clone();
    meter
        .u64_observable_counter("nhi.connections")
        .with_unit("{connection}")
        .with_description("Connections seen, by whether they were linked to a credential access")
        .with_callback(move |o| {
            o.observe(Stats::get(&s.connections_linked), &[KeyValue::new("nhi.usage.linked", true)]);
            o.observe(Stats::get(&s.connections_unlinked), &[KeyValue::new("nhi.usage.linked", false)]);
        })
        .build();
    let s = stats.clone();
    meter
        .u64_observable_counter("nhi.agent.drops")
        .with_unit("{event}")
        .with_description("Events or records lost: kernel ring buffer full (per sensor), undecodable, store full, store unwritable past its queue")
        .with_callback(move |o| {
            for (reason, n) in s.drops() {
                o.observe(n, &[KeyValue::new("nhi.drop.reason", reason)]);
            }
            o.observe(Stats::get(&s.store_dropped), &[KeyValue::new("nhi.drop.reason", "store_full")]);
            // Records the store gave up on while it could not write
            // (`store_queue_full`, `usage_queue_full`, `store_unwritable_at_stop`).
            for (reason, n) in s.store_drops() {
                o.observe(n, &[KeyValue::new("nhi.drop.reason", reason)]);
            }
            // Lines the JSON lines output could not take (their records
            // are in the store).
            o.observe(Stats::get(&s.jsonl_lines_lost), &[KeyValue::new("nhi.drop.reason", "jsonl_unwritable")]);
            // Records whose type could not be rendered (not stored).
            o.observe(crate::model::record::unrenderable(), &[KeyValue::new("nhi.drop.reason", "record_unrenderable")]);
        })
        .build();
    let s = stats.clone();
    meter
        .u64_observable_counter("nhi.agent.records")
        .with_unit("{record}")
        .with_description("Records written")
        .with_callback(move |o| o.observe(Stats::get(&s.records_written), &[]))
        .build();
    let s = stats.clone();
    meter
        .u64_observable_gauge("nhi.store.size")
        .with_unit("By")
        .with_description("Size of the database and its write-ahead log")
        .with_callback(move |o| o.observe(Stats::get(&s.store_bytes), &[]))
        .build();
    let s = stats.clone();
    meter
        .u64_observable_counter("nhi.export.records")
        .with_unit("{record}")
        .with_description("Records delivered over OTLP")
        .with_callback(move |o| o.observe(Stats::get(&s.exported_records), &[]))
        .build();
    let s = stats.clone();
    meter
        .u64_observable_counter("nhi.export.failures")
        .with_unit("{request}")
        .with_description("Failed OTLP export requests (logs are retried until delivered)")
        .with_callback(move |o| {
            o.observe(Stats::get(&s.export_failures_logs), &[KeyValue::new("nhi.export.signal", "logs")]);
            o.observe(Stats::get(&s.export_failures_metrics), &[KeyValue::new("nhi.export.signal", "metrics")]);
        })
        .build();
    let s = stats.clone();
    meter
        .u64_observable_counter("nhi.export.rejected")
        .with_unit("{record}")
        .with_description("Records an OTLP collector refused for good (kept in the store's rejected table), by reason")
        .with_callback(move |o| {
            for (reason, n) in s.export_rejections() {
                o.observe(n, &[KeyValue::new("nhi.export.reason", reason)]);
            }
        })
        .build();
    let s = stats;
    meter
        .u64_observable_gauge("nhi.export.backlog")
        .with_unit("{record}")
        .with_description("Records stored but not yet delivered over OTLP")
        .with_callback(move |o| o.observe(Stats::get(&s.export_backlog), &[]))
        .build();
    Ok(Meters { provider })
}
