//! In-process OTLP receivers for the export tests: a gRPC one (the
//! opentelemetry-proto services on tonic) and an HTTP/protobuf one (hyper),
//! on loopback. Each keeps every request it accepted (headers, whether it
//! was gzip-compressed, the decoded protobuf and its raw encoding), and can
//! be stopped and started again on the same port to play a collector
//! outage.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, body::Bytes, service::service_fn};
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{
            ExportLogsServiceRequest, ExportLogsServiceResponse,
            logs_service_server::{LogsService, LogsServiceServer},
        },
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
    },
    common::v1::{AnyValue, KeyValue, any_value},
};
use prost::Message;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    pub fn env_value(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

#[derive(Default)]
pub struct Received {
    pub logs: Vec<ExportLogsServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
    /// Lower-cased header names and values of every request.
    pub headers: Vec<HashMap<String, String>>,
    /// Requests whose body came gzip-compressed.
    pub gzip: usize,
    pub requests: usize,
    /// Every request body as received after decompression (to search for
    /// planted secrets).
    pub raw: Vec<Vec<u8>>,
    /// A log request holding an attribute whose string value contains this
    /// is refused for good (gRPC INVALID_ARGUMENT, HTTP 400), as a
    /// collector refuses a record it cannot take; set by [`Receiver::refuse`].
    pub refuse: Option<String>,
    /// Requests refused that way.
    pub refused: usize,
}

impl Received {
    /// Whether a log request is one to refuse (see `refuse`).
    fn refuses(&mut self, req: &ExportLogsServiceRequest) -> bool {
        let Some(marker) = &self.refuse else { return false };
        let hit = req.resource_logs.iter().flat_map(|rl| &rl.scope_logs).flat_map(|sl| &sl.log_records).any(|lr| {
            lr.attributes.iter().any(|kv| {
                matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()), Some(any_value::Value::StringValue(s)) if s.contains(marker.as_str()))
            })
        });
        if hit {
            self.refused += 1;
        }
        hit
    }
}

pub struct Receiver {
    pub protocol: Protocol,
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Received>>,
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
struct Grpc(Arc<Mutex<Received>>);

fn headers_of(md: &tonic::metadata::MetadataMap) -> HashMap<String, String> {
    md.clone()
        .into_headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect()
}

impl Grpc {
    /// Counts a request and keeps its headers, raw bytes and body.
    fn note<T: Message>(&self, req: tonic::Request<T>, list: impl FnOnce(&mut Received) -> &mut Vec<T>) {
        let headers = headers_of(req.metadata());
        let body = req.into_inner();
        let mut g = self.0.lock().unwrap();
        g.requests += 1;
        if headers.get("grpc-encoding").is_some_and(|e| e == "gzip") {
            g.gzip += 1;
        }
        g.headers.push(headers);
        g.raw.push(body.encode_to_vec());
        list(&mut g).push(body);
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        if self.0.lock().unwrap().refuses(req.get_ref()) {
            return Err(tonic::Status::invalid_argument("refused: the request holds the test's marker"));
        }
        self.note(req, |g| &mut g.logs);
        Ok(tonic::Response::new(ExportLogsServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.note(req, |g| &mut g.metrics);
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

async fn http_handler(
    got: Arc<Mutex<Received>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let gzip = headers.get("content-encoding").is_some_and(|e| e == "gzip");
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(Response::builder().status(400).body(Full::new(Bytes::new())).unwrap());
    };
    let body = if gzip {
        use std::io::Read as _;
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out).is_err() {
            return Ok(Response::builder().status(400).body(Full::new(Bytes::new())).unwrap());
        }
        out
    } else {
        body.to_vec()
    };
    let mut g = got.lock().unwrap();
    g.requests += 1;
    if gzip {
        g.gzip += 1;
    }
    let response = match path.as_str() {
        "/v1/logs" => match ExportLogsServiceRequest::decode(&body[..]) {
            Ok(r) if g.refuses(&r) => {
                return Ok(Response::builder().status(400).body(Full::new(Bytes::from_static(b"refused"))).unwrap());
            }
            Ok(r) => {
                g.logs.push(r);
                ExportLogsServiceResponse { partial_success: None }.encode_to_vec()
            }
            Err(_) => return Ok(Response::builder().status(400).body(Full::new(Bytes::new())).unwrap()),
        },
        "/v1/metrics" => match ExportMetricsServiceRequest::decode(&body[..]) {
            Ok(r) => {
                g.metrics.push(r);
                ExportMetricsServiceResponse { partial_success: None }.encode_to_vec()
            }
            Err(_) => return Ok(Response::builder().status(400).body(Full::new(Bytes::new())).unwrap()),
        },
        _ => return Ok(Response::builder().status(404).body(Full::new(Bytes::new())).unwrap()),
    };
    g.headers.push(headers);
    g.raw.push(body);
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(response)))
        .unwrap())
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 (port 0: any free port).
    pub fn start(protocol: Protocol, port: u16) -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let got = Arc::new(Mutex::new(Received::default()));
        let mut r = Receiver { protocol, addr: SocketAddr::from(([127, 0, 0, 1], port)), got, rt, stop: None, task: None };
        r.serve(port);
        r
    }

    fn serve(&mut self, port: u16) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // The port may linger for a moment after a stop: retry the bind.
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match self.rt.block_on(tokio::net::TcpListener::bind(addr)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("receiver bind {addr}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        self.addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let got = self.got.clone();
        let task = match self.protocol {
            Protocol::Grpc => self.rt.spawn(async move {
                let svc = Grpc(got);
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                tonic::transport::Server::builder()
                    .add_service(
                        LogsServiceServer::new(svc.clone()).accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                    )
                    .add_service(MetricsServiceServer::new(svc).accept_compressed(tonic::codec::CompressionEncoding::Gzip))
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            }),
            Protocol::HttpProtobuf => self.rt.spawn(async move {
                let mut rx = rx;
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let got = got.clone();
                            conns.spawn(async move {
                                let io = hyper_util::rt::TokioIo::new(stream);
                                let svc = service_fn(move |req| http_handler(got.clone(), req));
                                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                            });
                        }
                    }
                }
                // An outage: every open connection goes too.
                conns.abort_all();
            }),
        };
        self.stop = Some(tx);
        self.task = Some(task);
    }

    /// From now on, refuses for good every log request holding an
    /// attribute whose string value contains `marker`.
    pub fn refuse(&self, marker: &str) {
        self.got.lock().unwrap().refuse = Some(marker.to_owned());
    }

    /// Log requests refused so far.
    pub fn refused(&self) -> usize {
        self.got.lock().unwrap().refused
    }

    /// The endpoint for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving (connections close, the port is free): an outage.
    pub fn down(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), t).await });
        }
    }

    /// Serves again on the same port.
    pub fn up(&mut self) {
        let port = self.addr.port();
        self.serve(port);
    }

    /// The log records received so far, flattened.
    pub fn logs(&self) -> Vec<LogView> {
        let g = self.got.lock().unwrap();
        g.logs.iter().flat_map(flatten_logs).collect()
    }

    /// Waits until `pred` holds for the received logs.
    pub fn wait_logs(&self, timeout: Duration, pred: impl Fn(&[LogView]) -> bool) -> Vec<LogView> {
        let deadline = Instant::now() + timeout;
        loop {
            let logs = self.logs();
            if pred(&logs) || Instant::now() > deadline {
                return logs;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// (name, version) of every instrumentation scope metrics came in.
    pub fn metric_scopes(&self) -> BTreeSet<(String, String)> {
        let g = self.got.lock().unwrap();
        g.metrics
            .iter()
            .flat_map(|req| &req.resource_metrics)
            .flat_map(|rm| &rm.scope_metrics)
            .filter_map(|sm| sm.scope.as_ref().map(|s| (s.name.clone(), s.version.clone())))
            .collect()
    }

    /// Data points of a metric by name: (attributes, value) of the last
    /// export that had it.
    pub fn metric(&self, name: &str) -> Vec<(BTreeMap<String, Value>, f64)> {
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value as N};
        let g = self.got.lock().unwrap();
        for req in g.metrics.iter().rev() {
            for rm in &req.resource_metrics {
                for sm in &rm.scope_metrics {
                    for m in sm.metrics.iter().filter(|m| m.name == name) {
                        let points = match &m.data {
                            Some(Data::Sum(s)) => &s.data_points,
                            Some(Data::Gauge(g)) => &g.data_points,
                            _ => continue,
                        };
                        return points
                            .iter()
                            .map(|p| {
                                let v = match p.value {
                                    Some(N::AsInt(i)) => i as f64,
                                    Some(N::AsDouble(d)) => d,
                                    None => 0.0,
                                };
                                (attrs(&p.attributes), v)
                            })
                            .collect();
                    }
                }
            }
        }
        Vec::new()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// One received log record with its resource, as JSON-ish maps.
#[derive(Debug, Clone)]
pub struct LogView {
    pub event_name: String,
    pub time_unix_nano: u64,
    pub attributes: BTreeMap<String, Value>,
    pub resource: BTreeMap<String, Value>,
    pub scope: String,
    pub scope_version: String,
    /// The body, when it is a string.
    pub body: Option<String>,
}

impl LogView {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.attributes.get(key).and_then(Value::as_i64)
    }
}

fn value(v: &AnyValue) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Value::from(s.clone()),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::BoolValue(b)) => Value::from(*b),
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(value).collect()),
        _ => Value::Null,
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(value).unwrap_or(Value::Null))).collect()
}

fn flatten_logs(req: &ExportLogsServiceRequest) -> Vec<LogView> {
    let mut out = Vec::new();
    for rl in &req.resource_logs {
        let resource = rl.resource.as_ref().map(|r| attrs(&r.attributes)).unwrap_or_default();
        for sl in &rl.scope_logs {
            let scope = sl.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
            let scope_version = sl.scope.as_ref().map(|s| s.version.clone()).unwrap_or_default();
            for lr in &sl.log_records {
                out.push(LogView {
                    event_name: lr.event_name.clone(),
                    time_unix_nano: lr.time_unix_nano,
                    attributes: attrs(&lr.attributes),
                    resource: resource.clone(),
                    scope: scope.clone(),
                    scope_version: scope_version.clone(),
                    body: lr.body.as_ref().and_then(|b| match &b.value {
                        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    }),
                });
            }
        }
    }
    out
}

/// The OTEL_* environment for an agent exporting to `r`.
pub fn otel_env(r: &Receiver, gzip: bool) -> Vec<(String, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), r.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), r.protocol.env_value().into()),
        ("OTEL_EXPORTER_OTLP_COMPRESSION".into(), if gzip { "gzip" } else { "none" }.into()),
        ("OTEL_METRIC_EXPORT_INTERVAL".into(), "1000".into()),
    ]
}
