//! Stored records to OTLP log records, and the delivery loop behind the
//! store's cursor.
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use opentelemetry::{
    InstrumentationScope, Key,
    logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity},
};
use opentelemetry_sdk::{
    Resource,
    logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLogger, SdkLoggerProvider},
};
use rusqlite::Connection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{OtlpConfig, OtlpError, STOP_DEADLINE};
use crate::{
    correlate::record::EVENT_USAGE,
    export::record::{EVENT_AGENT_STATS, EVENT_COVERAGE, EVENT_CREDENTIAL_ACCESS, EVENT_CREDENTIAL_ROTATION},
    stats::Stats,
    store,
};

const EVENT_CONNECTION: &str = "nhi.connection";
const EVENT_FINDING: &str = "nhi.finding";
/// Longest one export call may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the cursor is checked when nothing wakes the loop.
const POLL: Duration = Duration::from_secs(1);

/// The event names the agent emits, as the `'static` strings the SDK wants.
fn event_name(name: &str) -> Option<&'static str> {
    [
        EVENT_CREDENTIAL_ACCESS,
        EVENT_CREDENTIAL_ROTATION,
        EVENT_CONNECTION,
        EVENT_USAGE,
        EVENT_FINDING,
        EVENT_COVERAGE,
        EVENT_AGENT_STATS,
    ]
        .into_iter()
        .find(|n| *n == name)
}

fn any_value(v: &serde_json::Value) -> Option<AnyValue> {
    Some(match v {
        serde_json::Value::String(s) => AnyValue::String(s.clone().into()),
        serde_json::Value::Bool(b) => AnyValue::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => AnyValue::Double(n.as_f64()?),
        },
        serde_json::Value::Array(a) => AnyValue::ListAny(Box::new(a.iter().filter_map(any_value).collect())),
        serde_json::Value::Null | serde_json::Value::Object(_) => return None,
    })
}

/// A stored record (its JSON line) as an OTLP log record: `event.name`
/// becomes the EventName, `time` the timestamp, every other key an
/// attribute of the same name and type. `None` for rows that are not a
/// JSON object.
pub fn to_log_record(logger: &SdkLogger, time_ns: i64, body: &str) -> Option<SdkLogRecord> {
    let serde_json::Value::Object(map) = serde_json::from_str::<serde_json::Value>(body).ok()? else { return None };
    let mut r = logger.create_log_record();
    let name = map.get("event.name").and_then(serde_json::Value::as_str).unwrap_or_default();
    if let Some(n) = event_name(name) {
        r.set_event_name(n);
    }
    r.set_timestamp(store::db_time(time_ns));
    r.set_observed_timestamp(SystemTime::now());
    r.set_severity_number(Severity::Info);
    r.set_severity_text("INFO");
    r.set_body(AnyValue::String(name.to_owned().into()));
    for (k, v) in &map {
        if k == "time" || k == "event.name" {
            continue;
        }
        if let Some(v) = any_value(v) {
            r.add_attribute(Key::new(k.clone()), v);
        }
    }
    Some(r)
}

pub struct Delivery {
    exporter: opentelemetry_otlp::LogExporter,
    conn: Connection,
    logger: SdkLogger,
    _provider: SdkLoggerProvider,
    scope: InstrumentationScope,
    batch: usize,
    /// The batch size now: halved after each failed export (a batch the
    /// collector refuses as too large gets through in halves), doubled
    /// back to `batch` after each success.
    size: usize,
    max_backoff: Duration,
    stats: Arc<Stats>,
    last_warn: Option<Instant>,
    /// When the backlog gauge was last counted (a count over the records
    /// behind the cursor: once a second, not per batch while catching up).
    last_backlog: Option<Instant>,
}

/// The next batch size: halved after a failed export (down to one record),
/// doubled after a success (up to `max`).
fn next_size(size: usize, max: usize, ok: bool) -> usize {
    if ok { size.saturating_mul(2).min(max) } else { (size / 2).max(1) }
}

impl Delivery {
    /// Builds the SDK's OTLP log exporter (protocol, endpoint, headers,
    /// compression and timeout from the `OTEL_*` variables) on this
    /// runtime, and opens the database for reading.
    pub fn new(cfg: &OtlpConfig, state_dir: &Path, resource: &Resource, stats: Arc<Stats>) -> Result<Self, OtlpError> {
        use opentelemetry_sdk::logs::LogExporter as _;
        let mut exporter =
            opentelemetry_otlp::LogExporter::builder().build().map_err(|e| OtlpError::Build(e.to_string()))?;
        exporter.set_resource(resource);
        let conn = store::open_reader(state_dir)?;
        // Records with no logger pipeline behind them: the provider only
        // lends its record type; records are exported by hand.
        let provider = SdkLoggerProvider::builder().with_resource(resource.clone()).build();
        let logger = provider.logger("nhi-observer");
        let scope = InstrumentationScope::builder("nhi-observer").with_version(env!("CARGO_PKG_VERSION")).build();
        Ok(Self {
            exporter,
            conn,
            logger,
            _provider: provider,
            scope,
            batch: cfg.batch_size.max(1),
            size: cfg.batch_size.max(1),
            max_backoff: cfg.max_backoff,
            stats,
            last_warn: None,
            last_backlog: None,
        })
    }

    /// Delivers until `stop`; then for at most [`STOP_DEADLINE`] more.
    pub async fn run(&mut self, wake: &Notify, stop: &CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        let mut stop_at: Option<Instant> = None;
        loop {
            if stop.is_cancelled() && stop_at.is_none() {
                stop_at = Some(Instant::now() + STOP_DEADLINE);
            }
            if stop_at.is_some_and(|t| Instant::now() >= t) {
                return;
            }
            match self.deliver_one().await {
                Ok(0) => {
                    backoff = Duration::from_millis(250);
                    if stop_at.is_some() {
                        return;
                    }
                    tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep(POLL) => {}
                        () = stop.cancelled() => {}
                    }
                }
                Ok(_) => backoff = Duration::from_millis(250),
                Err(e) => {
                    self.warn(&e);
                    let wait = match stop_at {
                        Some(t) => backoff.min(t.saturating_duration_since(Instant::now())),
                        None => backoff,
                    };
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stop.cancelled(), if stop_at.is_none() => {}
                    }
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }

    fn warn(&mut self, e: &str) {
        // Rate-limited: an outage is one line per minute, not per retry.
        if self.last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            self.last_warn = Some(Instant::now());
            tracing::warn!(error = %e, backlog = Stats::get(&self.stats.export_backlog), "OTLP log export failed; retrying (nothing is dropped)");
        } else {
            tracing::debug!(error = %e, "OTLP log export failed; retrying");
        }
    }

    /// Exports the next batch behind the cursor; the number exported.
    async fn deliver_one(&mut self) -> Result<usize, String> {
        let cursor = store::cursor(&self.conn, store::CURSOR_OTLP_LOGS).map_err(|e| e.to_string())?;
        let rows = store::records_after(&self.conn, cursor, self.size).map_err(|e| e.to_string())?;
        if self.last_backlog.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            && let Ok(n) = store::backlog(&self.conn, store::CURSOR_OTLP_LOGS)
        {
            self.last_backlog = Some(Instant::now());
            Stats::set(&self.stats.export_backlog, n);
        }
        let Some(last) = rows.last().map(|r| r.0) else { return Ok(0) };
        let records: Vec<SdkLogRecord> =
            rows.iter().filter_map(|(_, time_ns, body)| to_log_record(&self.logger, *time_ns, body)).collect();
        if records.len() < rows.len() {
            tracing::debug!(skipped = rows.len() - records.len(), "stored records that are not JSON objects skipped");
        }
        let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> = records.iter().map(|r| (r, &self.scope)).collect();
        let result = tokio::time::timeout(EXPORT_TIMEOUT, self.exporter.export(LogBatch::new(&refs))).await;
        match result {
            Ok(Ok(())) => {
                self.size = next_size(self.size, self.batch, true);
                store::set_cursor(&self.conn, store::CURSOR_OTLP_LOGS, last).map_err(|e| e.to_string())?;
                Stats::add(&self.stats.exported_records, records.len() as u64);
                Ok(rows.len())
            }
            Ok(Err(e)) => {
                self.size = next_size(self.size, self.batch, false);
                Stats::add(&self.stats.export_failures_logs, 1);
                Err(e.to_string())
            }
            Err(_) => {
                self.size = next_size(self.size, self.batch, false);
                Stats::add(&self.stats.export_failures_logs, 1);
                Err(format!("export timed out after {EXPORT_TIMEOUT:?}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn json_line_to_log_record() {
        let provider = SdkLoggerProvider::builder().build();
        let logger = provider.logger("t");
        let body = r#"{"time":"2026-01-01T00:00:00Z","event.name":"nhi.usage","nhi.id":"AKIA","nhi.usage.count":3,"process.interactive":false,"nhi.usage.destinations":["a:443","b:443"]}"#;
        let r = to_log_record(&logger, 1_000_000_000, body).unwrap();
        assert_eq!(r.event_name(), Some("nhi.usage"));
        assert_eq!(r.timestamp(), Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1)));
        let attrs: Vec<(String, AnyValue)> = r.attributes_iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let get = |k: &str| attrs.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
        assert_eq!(get("nhi.id"), Some(AnyValue::String("AKIA".into())));
        assert_eq!(get("nhi.usage.count"), Some(AnyValue::Int(3)));
        assert_eq!(get("process.interactive"), Some(AnyValue::Boolean(false)));
        assert!(matches!(get("nhi.usage.destinations"), Some(AnyValue::ListAny(l)) if l.len() == 2));
        assert!(get("time").is_none() && get("event.name").is_none());
        assert!(to_log_record(&logger, 0, "[1,2]").is_none());
        assert!(to_log_record(&logger, 0, "not json").is_none());
    }
}
