//! Network outputs as records, in the data contract's attribute names
//! (OpenTelemetry semantic conventions where one exists, `nhi.*` otherwise).
use std::{net::SocketAddr, time::SystemTime};

use observer_common::AF_INET6;

use super::{
    flows::{ConnTransport, Connection, ImdsRequest, Socket, quic_version_name},
    tls::version_name,
};
use crate::model::{
    Credential,
    records::{self, AccessSource, CredentialAccess, ImdsAccess, Peer, Process, SocketFacts, TlsHello, Workload},
};

fn peer(peer: &SocketAddr) -> Peer {
    Peer {
        network_type: if peer.is_ipv4() { "ipv4" } else { "ipv6" },
        address: peer.ip().to_string(),
        port: peer.port(),
    }
}

fn socket_facts(socket: &Socket) -> SocketFacts {
    SocketFacts {
        family: if socket.family == AF_INET6 { "inet6" } else { "inet" },
        cookie: socket.cookie.to_string(),
    }
}

/// Where a connection went, as `server.*` names it: the server name seen
/// (TLS or QUIC SNI, else the HTTP `Host`) and where it was seen, or the
/// peer's address when none was.
pub struct Server {
    /// `server.address`.
    pub address: String,
    /// `server.port`.
    pub port: u16,
    /// `nhi.server_name.source`, when a name was seen.
    pub name_source: Option<&'static str>,
}

/// The connection's [`Server`]: the one rule for `server.address`. The
/// record carries it, and the correlator's destination is read from the
/// typed record.
fn server(c: &Connection) -> Server {
    let sni = c.hello.as_ref().and_then(|h| h.server_name.clone());
    let host = c.http.as_ref().and_then(|(host, _, _)| host.as_deref().map(strip_port));
    let (name, name_source) = match (sni, host) {
        (Some(n), _) => (
            Some(n),
            Some(match c.transport {
                ConnTransport::Tcp => "tls.sni",
                ConnTransport::Quic => "quic.sni",
            }),
        ),
        (None, Some(h)) => (Some(h), Some("http.host")),
        (None, None) => (None, None),
    };
    Server { address: name.unwrap_or_else(|| c.peer.ip().to_string()), port: c.peer.port(), name_source }
}

/// `nhi.connection`: one per TCP connection and per QUIC connection
/// attempt; the workload identity stage adds the workload. Its
/// `server.address` and `server.port` are the [`Server`] the correlator
/// links to.
pub fn connection(c: &Connection, host_name: &'static str, time: SystemTime) -> records::Connection {
    let server = server(c);
    records::Connection {
        time,
        host_name: host_name.into(),
        transport: match c.transport {
            ConnTransport::Tcp => "tcp",
            ConnTransport::Quic => "quic",
        },
        server_address: server.address,
        server_port: server.port,
        server_name_seen: server.name_source.is_some(),
        server_name_source: server.name_source,
        peer: peer(&c.peer),
        payload: c.payload.as_str(),
        // The SNI is `server.address` (`tls.client.server_name` is
        // deprecated since semantic conventions 1.28).
        tls: c.hello.as_ref().map(|h| {
            let max = h.max_version();
            TlsHello {
                protocol_name: max.as_deref().map(|v| if v == "3" { "ssl" } else { "tls" }),
                protocol_version: max,
                offered_versions: h.versions.iter().map(|v| version_name(*v)).collect(),
                alpn: h.alpn.clone(),
                grease: h.grease,
            }
        }),
        quic_version: c.quic_version.map(quic_version_name),
        http_method: c.http.as_ref().map(|(_, method, _)| method.clone()),
        url_path: c.http.as_ref().map(|(_, _, path)| path.clone()),
        error_type: c.error,
        socket: socket_facts(&c.socket),
        process: Process::new(&c.socket.task, c.socket.exe.as_ref()),
        workload: Workload::default(),
        record_id: None,
    }
}

/// `nhi.credential.access` from a metadata service (`nhi.source` = `imds`);
/// the workload identity stage adds the workload.
pub fn imds_request(r: &ImdsRequest, host_name: &'static str, time: SystemTime) -> CredentialAccess {
    CredentialAccess {
        time,
        host_name: host_name.into(),
        source: AccessSource::Imds(Box::new(ImdsAccess {
            kind: r.call.kind,
            id: r.call.id.clone(),
            provider: r.call.provider,
            operation: r.call.operation,
            method: r.method.clone(),
            url_path: r.path.clone(),
            server_address: r.host.as_deref().map(strip_port).unwrap_or_else(|| r.peer.ip().to_string()),
            server_port: r.peer.port(),
            peer: peer(&r.peer),
            socket: socket_facts(&r.socket),
            process: Process::new(&r.socket.task, r.socket.exe.as_ref()),
            workload: Workload::default(),
        })),
        record_id: None,
    }
}

/// The credential a metadata-service request names, when it names one.
pub fn imds_credential(r: &ImdsRequest) -> Option<Credential> {
    let id = r.call.id.clone()?;
    Some(Credential { id, kind: r.call.kind.unwrap_or_default().to_owned() })
}

/// `Host: name:port` -> `name` (`[v6]:port` -> `v6`).
fn strip_port(host: &str) -> String {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_owned();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => name.to_owned(),
        _ => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(sni: Option<&str>, host: Option<&str>, transport: ConnTransport) -> Connection {
        use crate::{decode::Task, net::flows::Payload};
        Connection {
            socket: Socket {
                cookie: 1,
                task: Task { tgid: 1, pid: 1, ppid: 0, uid: 0, gid: 0, cgroup_id: 0, start_boot_ns: 1, comm: "c".into() },
                exe: None,
                family: observer_common::AF_INET,
            },
            boot_ns: 1,
            peer: "10.0.0.9:8443".parse().unwrap(),
            transport,
            payload: Payload::Tls,
            hello: sni.map(|n| super::super::tls::ClientHello { server_name: Some(n.into()), ..Default::default() }),
            quic_version: None,
            http: host.map(|h| (Some(h.to_owned()), "GET".to_owned(), "/".to_owned())),
            error: None,
        }
    }

    /// The destination the correlator links to is what the record names:
    /// the SNI, else the HTTP `Host` without its port, else the peer.
    #[test]
    fn server_is_sni_then_host_then_peer_and_the_record_shows_it() {
        let cases = [
            (conn(Some("sts.example"), Some("h.example:80"), ConnTransport::Tcp), "sts.example", Some("tls.sni")),
            (conn(Some("q.example"), None, ConnTransport::Quic), "q.example", Some("quic.sni")),
            (conn(None, Some("h.example:80"), ConnTransport::Tcp), "h.example", Some("http.host")),
            (conn(None, None, ConnTransport::Tcp), "10.0.0.9", None),
        ];
        for (c, address, source) in cases {
            let s = server(&c);
            assert_eq!((s.address.as_str(), s.port, s.name_source), (address, 8443, source));
            let r = crate::model::render(&connection(&c, "h", SystemTime::UNIX_EPOCH));
            let get = |k: &str| r.attributes.iter().find(|(x, _)| *x == k).map(|(_, v)| v.clone());
            assert_eq!(get("server.address"), Some(address.into()));
            assert_eq!(get("server.port"), Some(8443u32.into()));
            assert_eq!(get("nhi.server_name.seen"), Some(source.is_some().into()));
            assert_eq!(get("nhi.server_name.source"), source.map(crate::model::Value::from));
        }
    }

    #[test]
    fn host_header_ports() {
        assert_eq!(strip_port("169.254.169.254"), "169.254.169.254");
        assert_eq!(strip_port("metadata.google.internal:80"), "metadata.google.internal");
        assert_eq!(strip_port("[fd00:ec2::254]:80"), "fd00:ec2::254");
        assert_eq!(strip_port("fd00:ec2::254"), "fd00:ec2::254");
    }
}
