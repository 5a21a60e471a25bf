//! Cloud instance-metadata services: which addresses they answer on, and
//! what a request to one of them means for credentials.
//!
//! Input: a destination address and an HTTP request head (see [`super::http`]).
//! Output: the provider, the operation, and for credential operations the
//! credential kind and its non-secret identity (role or service-account
//! name, managed-identity client id). Nothing here sees a header value
//! except `Host` and the provider-flavour headers; token values never reach
//! this module.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::http::RequestHead;

/// Addresses whose plaintext requests the kernel copies, with what answers
/// there. The agent hands these to the kernel at start.
pub fn default_endpoints() -> Vec<IpAddr> {
    vec![
        // AWS, GCP, Azure, OCI, DigitalOcean... instance metadata.
        IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
        // AWS instance metadata over IPv6 (Nitro).
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
        // AWS ECS task-role credentials endpoint.
        IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
        // AWS EKS Pod Identity agent (IPv4 and IPv6).
        IpAddr::V4(Ipv4Addr::new(169, 254, 170, 23)),
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0023)),
        // Alibaba Cloud instance metadata.
        IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    ]
}

/// What a metadata request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `aws`, `gcp`, `azure`, `alibaba` or `unknown`.
    pub provider: &'static str,
    /// `token` (session or access token), `credentials` (role keys),
    /// `list` (names of roles or accounts), `identity` (identity document
    /// or token), or `metadata` (anything else).
    pub operation: &'static str,
    /// Credential kind (`nhi.kind`) when the call hands out or names one.
    pub kind: Option<&'static str>,
    /// Non-secret identity (`nhi.id`): role, service account, client id.
    pub id: Option<String>,
}

impl Call {
    fn new(provider: &'static str, operation: &'static str, kind: Option<&'static str>, id: Option<String>) -> Self {
        Self { provider, operation, kind, id }
    }
}

fn segment(rest: &str) -> Option<String> {
    let s = rest.split('/').next().unwrap_or("");
    (!s.is_empty()).then(|| s.to_owned())
}

/// Classifies one request to a metadata address.
pub fn classify(peer: IpAddr, req: &RequestHead) -> Call {
    let path = req.path.as_str();
    let method = req.method.as_str();
    match peer {
        IpAddr::V4(v4) if v4 == Ipv4Addr::new(169, 254, 170, 2) => {
            // ECS: GET /v2/credentials/<id>; the id is a bearer path, not shown.
            if path.starts_with("/v2/credentials/") || path.starts_with("/v1/credentials") {
                return Call::new("aws", "credentials", Some("aws.ecs_task_role"), None);
            }
            return Call::new("aws", "metadata", None, None);
        }
        IpAddr::V4(v4) if v4 == Ipv4Addr::new(169, 254, 170, 23) => return eks(path),
        IpAddr::V6(v6) if v6 == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x23) => return eks(path),
        IpAddr::V4(v4) if v4 == Ipv4Addr::new(100, 100, 100, 200) => return alibaba(path),
        _ => {}
    }
    if req.google_flavor || path.starts_with("/computeMetadata/") {
        return gcp(path);
    }
    if req.azure_metadata || path.starts_with("/metadata/") {
        return azure(path, req.query.as_deref());
    }
    if path.starts_with("/latest/") || req.aws_token || method == "PUT" {
        return aws(method, path);
    }
    Call::new("unknown", "metadata", None, None)
}

fn eks(path: &str) -> Call {
    if path.starts_with("/v1/credentials") {
        Call::new("aws", "credentials", Some("aws.eks_pod_identity"), None)
    } else {
        Call::new("aws", "metadata", None, None)
    }
}

fn aws(method: &str, path: &str) -> Call {
    const CREDS: &str = "/latest/meta-data/iam/security-credentials/";
    if method == "PUT" && path == "/latest/api/token" {
        return Call::new("aws", "token", Some("aws.imds.session_token"), None);
    }
    if let Some(rest) = path.strip_prefix(CREDS) {
        return match segment(rest) {
            Some(role) => Call::new("aws", "credentials", Some("aws.iam_role"), Some(role)),
            None => Call::new("aws", "list", Some("aws.iam_role"), None),
        };
    }
    if path == "/latest/meta-data/iam/security-credentials" {
        return Call::new("aws", "list", Some("aws.iam_role"), None);
    }
    if path.starts_with("/latest/meta-data/identity-credentials/ec2/security-credentials/") {
        return Call::new("aws", "credentials", Some("aws.ec2_instance_identity"), None);
    }
    if path.starts_with("/latest/dynamic/instance-identity/") {
        return Call::new("aws", "identity", Some("aws.ec2_instance_identity"), None);
    }
    Call::new("aws", "metadata", None, None)
}

fn gcp(path: &str) -> Call {
    const SA: &str = "/computeMetadata/v1/instance/service-accounts/";
    let Some(rest) = path.strip_prefix(SA) else {
        return Call::new("gcp", "metadata", None, None);
    };
    let account = segment(rest);
    let what = rest.split('/').nth(1).unwrap_or("");
    let op = match what {
        "token" => "token",
        "identity" => "identity",
        _ if account.is_none() => "list",
        _ => "metadata",
    };
    Call::new("gcp", op, Some("gcp.service_account"), account)
}

fn azure(path: &str, query: Option<&str>) -> Call {
    if !path.starts_with("/metadata/identity/") {
        return Call::new("azure", "metadata", None, None);
    }
    // A user-assigned identity is named by one of these; none means the
    // system-assigned identity.
    let named = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| matches!(k.as_ref(), "client_id" | "object_id" | "msi_res_id" | "mi_res_id"))
            .map(|(_, v)| v.into_owned())
    });
    let op = if path.starts_with("/metadata/identity/oauth2/token") { "token" } else { "metadata" };
    Call::new("azure", op, Some("azure.managed_identity"), Some(named.unwrap_or_else(|| "system-assigned".into())))
}

fn alibaba(path: &str) -> Call {
    const RAM: &str = "/latest/meta-data/ram/security-credentials/";
    match path.strip_prefix(RAM) {
        Some(rest) => match segment(rest) {
            Some(role) => Call::new("alibaba", "credentials", Some("alibaba.ram_role"), Some(role)),
            None => Call::new("alibaba", "list", Some("alibaba.ram_role"), None),
        },
        None if path == "/latest/api/token" => Call::new("alibaba", "token", Some("alibaba.imds.session_token"), None),
        None => Call::new("alibaba", "metadata", None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str) -> RequestHead {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        RequestHead {
            method: method.into(),
            path,
            query,
            host: None,
            google_flavor: false,
            azure_metadata: false,
            aws_token: false,
        }
    }

    const IMDS: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254));

    #[test]
    fn aws() {
        let c = classify(IMDS, &req("GET", "/latest/meta-data/iam/security-credentials/app-role"));
        assert_eq!(c, Call::new("aws", "credentials", Some("aws.iam_role"), Some("app-role".into())));
        let c = classify(IMDS, &req("GET", "/latest/meta-data/iam/security-credentials/"));
        assert_eq!((c.operation, c.id), ("list", None));
        let c = classify(IMDS, &req("PUT", "/latest/api/token"));
        assert_eq!((c.provider, c.operation, c.kind), ("aws", "token", Some("aws.imds.session_token")));
        assert_eq!(classify(IMDS, &req("GET", "/latest/meta-data/instance-id")).kind, None);
        let ecs = IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2));
        let c = classify(ecs, &req("GET", "/v2/credentials/0f1e2d"));
        assert_eq!((c.kind, c.id), (Some("aws.ecs_task_role"), None), "the ECS credential path is a bearer secret");
    }

    #[test]
    fn gcp_and_azure() {
        let mut r = req("GET", "/computeMetadata/v1/instance/service-accounts/default/token");
        r.google_flavor = true;
        let c = classify(IMDS, &r);
        assert_eq!(c, Call::new("gcp", "token", Some("gcp.service_account"), Some("default".into())));
        let c = classify(IMDS, &req("GET", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=1234-abcd"));
        assert_eq!(c, Call::new("azure", "token", Some("azure.managed_identity"), Some("1234-abcd".into())));
        let c = classify(IMDS, &req("GET", "/metadata/identity/oauth2/token?resource=x"));
        assert_eq!(c.id.as_deref(), Some("system-assigned"));
        assert_eq!(classify(IMDS, &req("GET", "/metadata/instance?api-version=2021-02-01")).kind, None);
    }
}
