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
    model::EVENT_NAMES,
    stats::Stats,
    store,
};

/// Longest one export call may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the cursor is checked when nothing wakes the loop.
const POLL: Duration = Duration::from_secs(1);

/// The event names the agent emits, as the `'static` strings the SDK wants.
fn event_name(name: &str) -> Option<&'static str> {
    EVENT_NAMES.iter().copied().find(|n| *n == name)
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

/// Keys of a stored record that are not log attributes in OTLP: the time
/// and event name have fields of their own, and host identity is the
/// resource's (`host.name` there may come from OTEL_RESOURCE_ATTRIBUTES;
/// JSON lines, which have no resource, keep it on each line).
const NOT_ATTRIBUTES: &[&str] = &["time", "event.name", "host.name"];

/// Attributes a log body names after the event name, when present: a short
/// human summary (what, which credential, who, where to). None is secret.
const SUMMARY_KEYS: &[&str] =
    &["nhi.finding.type", "nhi.id", "nhi.kind", "process.executable.path", "file.path", "server.address"];

/// The log body: the event name and [`SUMMARY_KEYS`] present, space-separated.
fn summary(name: &str, map: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut s = name.to_owned();
    for v in SUMMARY_KEYS.iter().filter_map(|k| map.get(*k)?.as_str()) {
        s.push(' ');
        s.push_str(v);
    }
    s
}

/// A stored record (its JSON line) as an OTLP log record: `event.name`
/// becomes the EventName, `time` the timestamp, every other key but
/// [`NOT_ATTRIBUTES`] an attribute of the same name and type, and the body
/// a one-line [`summary`]. `None` for rows that are not a JSON object.
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
    r.set_body(AnyValue::String(summary(name, &map).into()));
    for (k, v) in &map {
        if NOT_ATTRIBUTES.contains(&k.as_str()) {
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

/// What a failed export says about its batch, after the OTLP
/// specification's failure rules (gRPC status codes, HTTP status codes).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Transient (unavailable, throttled, timed out, no answer): retried
    /// with backoff, nothing is given up.
    Retry,
    /// Non-retryable but about the agent's set-up, not its records
    /// (unauthenticated, permission denied, endpoint not found or not
    /// implemented): retried with backoff, logged as an ERROR for the
    /// operator; no record is set aside for a configuration problem.
    Config(String),
    /// Non-retryable and about the request's content (invalid argument,
    /// HTTP 400 and the other 4xx): the batch is narrowed down to the
    /// record the collector refuses, which is set aside, with this reason.
    Record(String),
}

/// Classifies the SDK exporter's error text: "... gRPC code: InvalidArgument
/// ..." (tonic) or "... status code: 400" (HTTP).
pub fn refusal(message: &str) -> Refusal {
    if let Some(rest) = message.split("gRPC code: ").nth(1) {
        let code: String = rest.chars().take_while(char::is_ascii_alphanumeric).collect();
        let mut reason = String::from("grpc_");
        for (n, c) in code.chars().enumerate() {
            if c.is_ascii_uppercase() && n > 0 {
                reason.push('_');
            }
            reason.push(c.to_ascii_lowercase());
        }
        return match code.as_str() {
            "Cancelled" | "DeadlineExceeded" | "Aborted" | "OutOfRange" | "Unavailable" | "DataLoss"
            | "ResourceExhausted" | "Unknown" | "Internal" | "" => Refusal::Retry,
            "Unauthenticated" | "PermissionDenied" | "NotFound" | "Unimplemented" => Refusal::Config(reason),
            _ => Refusal::Record(reason),
        };
    }
    if let Some(rest) = message.split("status code: ").nth(1) {
        let code: u16 = rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0);
        return match code {
            401 | 403 | 404 | 405 => Refusal::Config(format!("http_{code}")),
            408 | 429 => Refusal::Retry,
            400..=499 => Refusal::Record(format!("http_{code}")),
            _ => Refusal::Retry,
        };
    }
    Refusal::Retry
}

/// What one delivery step did.
enum Step {
    /// Nothing behind the cursor.
    Idle,
    /// Records delivered or set aside, or the batch narrowed after a refusal
    /// of its content: go on at once.
    Progress,
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
                Ok(Step::Idle) => {
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
                Ok(Step::Progress) => backoff = Duration::from_millis(250),
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
            if let Refusal::Config(reason) = refusal(e) {
                tracing::error!(error = %e, reason, backlog = Stats::get(&self.stats.export_backlog), "the OTLP collector refuses the agent (authentication, permission or endpoint): fix the OTEL_EXPORTER_OTLP_* settings; retrying, nothing is dropped");
                return;
            }
            tracing::warn!(error = %e, backlog = Stats::get(&self.stats.export_backlog), "OTLP log export failed; retrying (nothing is dropped)");
        } else {
            tracing::debug!(error = %e, "OTLP log export failed; retrying");
        }
    }

    /// Exports the next batch behind the cursor.
    async fn deliver_one(&mut self) -> Result<Step, String> {
        let cursor = store::cursor(&self.conn, store::CURSOR_OTLP_LOGS).map_err(|e| e.to_string())?;
        let rows = store::records_after(&self.conn, cursor, self.size).map_err(|e| e.to_string())?;
        if self.last_backlog.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            && let Ok(n) = store::backlog(&self.conn, store::CURSOR_OTLP_LOGS)
        {
            self.last_backlog = Some(Instant::now());
            Stats::set(&self.stats.export_backlog, n);
        }
        let Some(last) = rows.last().map(|r| r.0) else { return Ok(Step::Idle) };
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
                Ok(Step::Progress)
            }
            Ok(Err(e)) => {
                let message = e.to_string();
                Stats::add(&self.stats.export_failures_logs, 1);
                match refusal(&message) {
                    Refusal::Record(reason) if rows.len() > 1 => {
                        // Some record in the batch is refused: narrow down
                        // to it at once (the rest goes through in halves).
                        tracing::debug!(reason, rows = rows.len(), "OTLP collector refused a batch; narrowing it");
                        self.size = (rows.len() / 2).max(1);
                        Ok(Step::Progress)
                    }
                    Refusal::Record(reason) => {
                        let (id, time_ns, body) = &rows[0];
                        self.set_aside(*id, *time_ns, body, &reason, &message).map_err(|e| e.to_string())?;
                        Ok(Step::Progress)
                    }
                    Refusal::Retry | Refusal::Config(_) => {
                        self.size = next_size(self.size, self.batch, false);
                        Err(message)
                    }
                }
            }
            Err(_) => {
                self.size = next_size(self.size, self.batch, false);
                Stats::add(&self.stats.export_failures_logs, 1);
                Err(format!("export timed out after {EXPORT_TIMEOUT:?}"))
            }
        }
    }
}

impl Delivery {
    /// A record the collector refuses for good: kept aside in the store's
    /// `rejected` table with the reason, and the cursor moves past it (one
    /// transaction); counted and logged once, with its record id.
    fn set_aside(&mut self, id: i64, time_ns: i64, body: &str, reason: &str, message: &str) -> rusqlite::Result<()> {
        store::reject(&mut self.conn, store::CURSOR_OTLP_LOGS, id, time_ns, body, reason, message)?;
        self.stats.export_rejected(reason);
        let record_id = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("nhi.record.id").and_then(|i| i.as_str().map(str::to_owned)))
            .unwrap_or_default();
        tracing::error!(
            record_id,
            reason,
            error = message,
            "the OTLP collector refused a record for good: kept in the store's rejected table, delivery goes on"
        );
        self.size = 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn refusals_are_classified_after_the_otlp_specification() {
        assert_eq!(
            refusal("TonicLogsClient export failed with gRPC code: InvalidArgument: bad"),
            Refusal::Record("grpc_invalid_argument".into())
        );
        assert_eq!(refusal("TonicLogsClient export failed with gRPC code: Unavailable"), Refusal::Retry);
        assert_eq!(refusal("TonicLogsClient export failed with gRPC code: ResourceExhausted"), Refusal::Retry);
        assert_eq!(
            refusal("TonicLogsClient export failed with gRPC code: Unauthenticated"),
            Refusal::Config("grpc_unauthenticated".into())
        );
        assert_eq!(refusal("HTTP export failed with status code: 400"), Refusal::Record("http_400".into()));
        assert_eq!(refusal("HTTP export failed with status code: 413"), Refusal::Record("http_413".into()));
        assert_eq!(refusal("HTTP export failed with status code: 401"), Refusal::Config("http_401".into()));
        assert_eq!(refusal("HTTP export failed with status code: 429"), Refusal::Retry);
        assert_eq!(refusal("HTTP export failed with status code: 503"), Refusal::Retry);
        assert_eq!(refusal("connection refused"), Refusal::Retry);
    }

    use super::*;

    #[test]
    fn json_line_to_log_record() {
        let provider = SdkLoggerProvider::builder().build();
        let logger = provider.logger("t");
        let body = r#"{"time":"2026-01-01T00:00:00Z","event.name":"nhi.usage","host.name":"vm","nhi.id":"AKIA","nhi.kind":"aws.access_key","nhi.usage.count":3,"process.interactive":false,"nhi.usage.destinations":["a:443","b:443"]}"#;
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
        assert!(get("host.name").is_none(), "host identity is the resource's");
        assert_eq!(r.body(), Some(&AnyValue::String("nhi.usage AKIA aws.access_key".into())));
        assert!(to_log_record(&logger, 0, "[1,2]").is_none());
        assert!(to_log_record(&logger, 0, "not json").is_none());
    }
}
