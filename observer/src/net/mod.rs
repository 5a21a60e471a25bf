//! Network sensor, agent side: which process connects where, and with
//! which server name.
//!
//! Input: the kernel's connect, payload and close records (decode). Output:
//! `nhi.connection` records (process, destination, TLS/QUIC server name,
//! ALPN, offered TLS versions, transport) and `nhi.credential.access`
//! records for metadata-service requests that hand out credentials.
//!
//! - `flows`: joins records by socket cookie, reassembles, decides.
//! - `tls`, `quic`, `http`: parsers of untrusted bytes (fuzzed: fuzz/).
//! - `reassembly`: bounded stream reassembly shared by TCP and QUIC.
//! - `imds`: metadata-service addresses and request classification.
//! - `record`: the records, in the data contract's names.
pub mod flows;
pub mod http;
pub mod imds;
pub mod quic;
pub mod reassembly;
pub mod record;
pub mod tls;

pub use flows::{Output, Tracker, TrackerConfig};
