//! JSON Web Tokens: Kubernetes service-account tokens (projected and
//! legacy secret-based, and the EKS IRSA and pod-identity tokens, which are
//! projected service-account tokens with another audience) and SPIFFE
//! JWT-SVIDs. The signature is not checked (no key here): the claims name
//! the identity, the token itself stays secret.
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;

use super::{ParseResult, text};
use crate::{Identity, Keyed, Secret, Unparsed, tokens};

#[derive(Deserialize, Default)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<OneOrMany>,
    exp: Option<f64>,
    #[serde(rename = "kubernetes.io")]
    k8s: Option<K8s>,
    #[serde(rename = "kubernetes.io/serviceaccount/namespace")]
    legacy_namespace: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name")]
    legacy_name: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid")]
    legacy_uid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct K8s {
    namespace: Option<String>,
    serviceaccount: Option<NameUid>,
    pod: Option<NameUid>,
    node: Option<NameUid>,
}

#[derive(Deserialize)]
struct NameUid {
    name: Option<String>,
    uid: Option<String>,
}

/// The non-secret identity a Kubernetes service-account token carries:
/// projected tokens (`kubernetes.io: {namespace, serviceaccount, pod,
/// node}`), legacy secret-based ones, or `sub` =
/// `system:serviceaccount:<namespace>:<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub node_name: Option<String>,
    pub issuer: Option<String>,
    /// `exp`, seconds since the epoch.
    pub expires: Option<i64>,
}

/// Why a token names no service account. Never quotes the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a JWT (expected three dot-separated parts)")]
    NotJwt,
    #[error("JWT payload is not base64url")]
    Base64,
    #[error("JWT payload is not a JSON object of claims")]
    Json,
    #[error("the token names no service account")]
    NoServiceAccount,
}

/// Decodes a service-account token's claims without verifying it.
pub fn service_account(token: &str) -> Result<ServiceAccount, JwtError> {
    let mut parts = token.trim().split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::NotJwt);
    };
    let decoded =
        Secret::new(URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).map_err(|_| JwtError::Base64)?);
    let claims: Claims = serde_json::from_slice(decoded.expose()).map_err(|_| JwtError::Json)?;
    sa_of(&claims).ok_or(JwtError::NoServiceAccount)
}

fn sa_of(c: &Claims) -> Option<ServiceAccount> {
    let k = c.k8s.as_ref();
    let sa = k.and_then(|k| k.serviceaccount.as_ref());
    let pod = k.and_then(|k| k.pod.as_ref());
    let from_sub = c.sub.as_deref().and_then(|s| s.strip_prefix("system:serviceaccount:")).and_then(|s| s.split_once(':'));
    let namespace = k
        .and_then(|k| k.namespace.clone())
        .or_else(|| c.legacy_namespace.clone())
        .or_else(|| from_sub.map(|(ns, _)| ns.to_owned()))?;
    let name = sa
        .and_then(|s| s.name.clone())
        .or_else(|| c.legacy_name.clone())
        .or_else(|| from_sub.map(|(_, n)| n.to_owned()))?;
    Some(ServiceAccount {
        namespace,
        name,
        uid: sa.and_then(|s| s.uid.clone()).or_else(|| c.legacy_uid.clone()),
        pod_name: pod.and_then(|p| p.name.clone()),
        pod_uid: pod.and_then(|p| p.uid.clone()),
        node_name: k.and_then(|k| k.node.as_ref()).and_then(|n| n.name.clone()),
        issuer: c.iss.clone(),
        expires: c.exp.filter(|e| e.is_finite() && e.abs() < 1e11).map(|e| e.trunc() as i64),
    })
}

/// `xxx.yyy.zzz` of base64url characters.
pub fn looks_like_jwt(t: &str) -> bool {
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// A file holding one JWT.
pub fn file(bytes: &[u8], kind: &str, keyed: &Keyed) -> ParseResult {
    let t = text(bytes)?.trim();
    if !looks_like_jwt(t) {
        return Err(Unparsed::Malformed("not a JWT (three base64url parts)".into()));
    }
    token_identity(t, kind, keyed).map(|i| vec![i])
}

fn pick<'a>(kind: &'a str, default: &'a str) -> &'a str {
    if kind.is_empty() || kind == "unknown" { default } else { kind }
}

/// The identity a JWT names: a Kubernetes service account, a SPIFFE id, or
/// issuer and subject.
pub fn token_identity(token: &str, kind: &str, keyed: &Keyed) -> Result<Identity, Unparsed> {
    let claims = claims(token)?;
    let expires = claims.exp.and_then(exp_rfc3339).unwrap_or_default();
    let audience = match &claims.aud {
        Some(OneOrMany::One(a)) => a.clone(),
        Some(OneOrMany::Many(v)) => v.join(","),
        None => String::new(),
    };
    let id = if let Some(sa) = sa_of(&claims) {
        // The rule's kind when it names a service-account token flavour
        // (EKS IRSA, pod identity), else the generic one.
        let sa_kind = if kind.starts_with("kubernetes.") || kind.starts_with("aws.eks.") {
            kind
        } else {
            "kubernetes.service_account_token"
        };
        Identity::new(sa_kind, format!("{}/{}", sa.namespace, sa.name))
            .with("nhi.k8s.service_account.uid", sa.uid.unwrap_or_default())
            .with("nhi.k8s.token.pod", sa.pod_name.unwrap_or_default())
            .with("nhi.k8s.token.pod_uid", sa.pod_uid.unwrap_or_default())
    } else if let Some(spiffe) = claims.sub.as_deref().filter(|s| s.starts_with("spiffe://")) {
        Identity::new("spiffe.jwt_svid", spiffe)
    } else if let (Some(iss), Some(sub)) = (&claims.iss, &claims.sub) {
        Identity::new(pick(kind, "jwt"), format!("{iss}#{sub}"))
    } else {
        let k = pick(kind, "jwt");
        Identity::new(k, keyed.id(k, token.as_bytes()))
    };
    Ok(id
        .with("nhi.jwt.issuer", claims.iss.unwrap_or_default())
        .with("nhi.jwt.audience", audience)
        .with("nhi.credential.expires_at", expires))
}

fn claims(token: &str) -> Result<Claims, Unparsed> {
    let payload = token.split('.').nth(1).ok_or_else(|| Unparsed::Malformed("JWT without payload".into()))?;
    let decoded = Secret::new(
        URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| Unparsed::Malformed("JWT payload is not base64url".into()))?,
    );
    let c: Claims = serde_json::from_slice(decoded.expose()).map_err(|e| super::json_error(&e))?;
    Ok(c)
}

/// A JWT `exp` (a JSON number, possibly fractional) as RFC 3339.
fn exp_rfc3339(secs: f64) -> Option<String> {
    if !secs.is_finite() || secs.abs() > 1e11 {
        return None;
    }
    // Bounded above, so the cast is exact to the second.
    super::rfc3339(secs.trunc() as i64)
}

/// A bearer token found inside another format (kubeconfig `token:`): a JWT
/// is named by its claims, anything else by prefix or keyed fingerprint.
pub fn bearer(token: &[u8], fallback_kind: &str, keyed: &Keyed) -> Option<Identity> {
    let t = std::str::from_utf8(token).ok().map(str::trim);
    if let Some(t) = t.filter(|t| looks_like_jwt(t))
        && let Ok(id) = token_identity(t, "", keyed)
    {
        return Some(id);
    }
    tokens::identity(token, fallback_kind, keyed)
}
