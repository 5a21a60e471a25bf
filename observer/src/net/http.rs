//! Plaintext HTTP request heads (to metadata services).
//!
//! Input: the first bytes of a TCP stream, contiguous from its start (the
//! kernel copies a bounded prefix of plaintext only for metadata-service
//! addresses). Output: the request heads it holds complete, in order;
//! parsing is httparse's. Header values are secrets in general (IMDSv2
//! tokens, `Authorization`): only the `Host` value and whether the
//! metadata-flavour headers are present leave this module, never another
//! value. The query string is kept for the classifier, which reads only the
//! parameters that name an identity.

/// Headers read per request; more makes the head unreadable (skipped).
const MAX_HEADERS: usize = 48;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: Option<String>,
    pub host: Option<String>,
    /// `Metadata-Flavor: Google` (GCP).
    pub google_flavor: bool,
    /// `Metadata: true` (Azure).
    pub azure_metadata: bool,
    /// `X-aws-ec2-metadata-token` present (IMDSv2 session); value not kept.
    pub aws_token: bool,
}

/// Outcome of reading a stream prefix.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// Complete request heads, in order.
    pub heads: Vec<RequestHead>,
    /// Bytes consumed by them (heads and declared bodies).
    pub consumed: usize,
    /// The stream is not HTTP/1.x (or a head was unreadable): stop reading.
    pub invalid: bool,
}

/// Reads the complete request heads in `stream[from..]`; a trailing
/// partial head is left for later.
pub fn parse(stream: &[u8], from: usize) -> Requests {
    let mut out = Requests { consumed: from, ..Requests::default() };
    while out.consumed < stream.len() {
        let rest = &stream[out.consumed..];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(rest) {
            Ok(httparse::Status::Complete(n)) => {
                let body = content_length(req.headers).unwrap_or(0);
                out.heads.push(head(&req));
                out.consumed += n.saturating_add(body).min(rest.len());
            }
            Ok(httparse::Status::Partial) => break,
            Err(_) => {
                out.invalid = true;
                break;
            }
        }
    }
    out
}

fn content_length(headers: &[httparse::Header<'_>]) -> Option<usize> {
    let h = headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length"))?;
    std::str::from_utf8(h.value).ok()?.trim().parse().ok()
}

fn head(req: &httparse::Request<'_, '_>) -> RequestHead {
    let target = req.path.unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let value = |name: &str| {
        req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
    };
    RequestHead {
        method: req.method.unwrap_or("").to_owned(),
        path: path.to_owned(),
        query,
        host: value("host").map(|v| v.trim().to_owned()),
        google_flavor: value("metadata-flavor").is_some_and(|v| v.trim().eq_ignore_ascii_case("google")),
        azure_metadata: value("metadata").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        aws_token: value("x-aws-ec2-metadata-token").is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_requests_with_bodies() {
        let s = b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 3\r\n\r\nabc\
GET /latest/meta-data/iam/security-credentials/role-a?x=1 HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token: SECRETTOKEN\r\n\r\nGET /part";
        let r = parse(s, 0);
        assert!(!r.invalid);
        assert_eq!(r.heads.len(), 2);
        assert_eq!(r.heads[0].method, "PUT");
        assert_eq!(r.heads[0].path, "/latest/api/token");
        assert_eq!(r.heads[1].path, "/latest/meta-data/iam/security-credentials/role-a");
        assert_eq!(r.heads[1].query.as_deref(), Some("x=1"));
        assert_eq!(r.heads[1].host.as_deref(), Some("169.254.169.254"));
        assert!(r.heads[1].aws_token && !r.heads[0].aws_token);
        assert!(!format!("{:?}", r.heads).contains("SECRETTOKEN"), "header values other than Host are never kept");
        assert_eq!(&s[r.consumed..], b"GET /part");
        // Resuming after more bytes arrive reads only the new request.
        let mut more = s.to_vec();
        more.extend_from_slice(b" HTTP/1.1\r\nMetadata-Flavor: Google\r\n\r\n");
        let r2 = parse(&more, r.consumed);
        assert_eq!(r2.heads.len(), 1);
        assert!(r2.heads[0].google_flavor);
    }

    #[test]
    fn not_http() {
        assert!(parse(b"\x16\x03\x01\x00\x05hello", 0).invalid);
        assert_eq!(parse(b"GET / HT", 0).heads.len(), 0);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000), from in 0usize..2100) {
            let r = parse(&bytes, from.min(bytes.len()));
            proptest::prop_assert!(r.consumed <= bytes.len().max(from.min(bytes.len())));
        }
    }
}
