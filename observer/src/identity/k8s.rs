//! Kubernetes pod and service-account identity from the token a pod mounts,
//! with no API-server call from the node.
//!
//! Input: a pod uid (from the cgroup path) and pids that may be in that pod.
//! Output: the claims of the pod's service-account token: namespace, pod
//! name and uid, service account name and uid, issuer, expiry, node.
//!
//! The token is read through the process's own root
//! (`/proc/<pid>/root` + `openat2(RESOLVE_IN_ROOT)`, so the container's
//! `/var/run -> /run` symlink resolves inside the container, never on the
//! host) into a [`Secret`], and only its claims are decoded: the signature is
//! not verified (the agent only names what the pod holds; the API server is
//! the authority). The token itself never leaves this module. Results are
//! cached per pod; a pod whose token cannot be read is retried after
//! [`RETRY_AFTER`], and an expired token is re-read (the kubelet rotates it).
use std::{
    io::Read as _,
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use lru::LruCache;
use nix::{
    fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2},
    sys::stat::Mode,
};
use crate::secret::Secret;

/// The catalog kind of a service-account token file (builtin.toml).
pub const TOKEN_KIND: &str = "kubernetes.service_account_token";
/// Where the kubelet mounts the token, inside the container.
pub const TOKEN_PATH: &str = "var/run/secrets/kubernetes.io/serviceaccount/token";
/// A token is a few KiB; anything far larger is not one.
const MAX_TOKEN: u64 = 64 * 1024;
/// A pod whose token could not be read is tried again after this.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Processes tried per pod lookup.
pub const MAX_CANDIDATES: usize = 32;

/// Why a token names no service account (from the catalog's JWT decoder).
pub type TokenError = observer_creds::JwtError;

/// The non-secret identity a service-account token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaClaims {
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub node_name: Option<String>,
    pub issuer: Option<String>,
    /// `exp`, seconds since the epoch.
    pub expires: Option<i64>,
}

impl SaClaims {
    pub fn expired(&self, now: SystemTime) -> bool {
        let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.expires.is_some_and(|exp| i64::try_from(now).is_ok_and(|n| n >= exp))
    }
}

/// Decodes a service-account token's claims without verifying it.
pub fn parse_token(token: &Secret) -> Result<SaClaims, TokenError> {
    let text = std::str::from_utf8(token.expose()).map_err(|_| TokenError::NotJwt)?;
    let sa = observer_creds::service_account(text)?;
    Ok(SaClaims {
        namespace: sa.namespace,
        service_account: sa.name,
        service_account_uid: sa.uid,
        pod_name: sa.pod_name,
        pod_uid: sa.pod_uid,
        node_name: sa.node_name,
        issuer: sa.issuer,
        expires: sa.expires,
    })
}

/// Reads the token mounted in `pid`'s mount namespace, resolving the path
/// inside the process's root. The kubelet's projected volume makes
/// `token` a symlink into a `..data` directory: symlinks are followed, but
/// never out of that root.
pub fn read_token(pid: u32) -> std::io::Result<Secret> {
    let root = open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(&root, TOKEN_PATH, how)?;
    let mut file = std::fs::File::from(fd);
    // Read straight into memory that the Secret owns and zeroes.
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(4096));
    (&mut file).take(MAX_TOKEN).read_to_end(&mut buf)?;
    Ok(Secret::new(std::mem::take(&mut *buf)))
}

struct PodEntry {
    claims: Option<Arc<SaClaims>>,
    checked: Instant,
}

/// Per-pod service-account identity cache.
pub struct Pods {
    cache: LruCache<String, PodEntry>,
    /// Tokens read and decoded, and failures (for the stats line).
    pub tokens_read: u64,
    pub token_errors: u64,
}

impl Pods {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self { cache: LruCache::sparse(capacity), tokens_read: 0, token_errors: 0 }
    }

    /// Forgets that `pod_uid` had no readable token: a process in the pod
    /// just opened its token path (the token was being written, created or
    /// rotated), so the next lookup reads it instead of waiting
    /// [`RETRY_AFTER`]. Good claims are kept.
    pub fn token_opened(&mut self, pod_uid: &str) {
        if self.cache.peek(pod_uid).is_some_and(|e| e.claims.is_none()) {
            self.cache.pop(pod_uid);
        }
    }

    /// The claims for `pod_uid`, reading the token from the first of
    /// `candidates()` that has it when the cache has nothing fresh.
    pub fn lookup(&mut self, pod_uid: &str, candidates: impl FnOnce() -> Vec<u32>) -> Option<Arc<SaClaims>> {
        if let Some(e) = self.cache.get(pod_uid) {
            let fresh = match &e.claims {
                Some(c) => !c.expired(SystemTime::now()),
                None => e.checked.elapsed() < RETRY_AFTER,
            };
            if fresh {
                return e.claims.clone();
            }
        }
        let mut found = None;
        for pid in candidates().into_iter().take(MAX_CANDIDATES) {
            let Ok(token) = read_token(pid) else { continue };
            match parse_token(&token) {
                Ok(c) if c.pod_uid.as_deref().is_none_or(|u| u == pod_uid) => {
                    self.tokens_read += 1;
                    found = Some(Arc::new(c));
                    break;
                }
                Ok(_) => {
                    self.token_errors += 1;
                    tracing::debug!(pid, pod_uid, "service-account token names another pod; ignored");
                }
                Err(e) => {
                    self.token_errors += 1;
                    tracing::debug!(pid, pod_uid, error = %e, "unreadable service-account token");
                }
            }
        }
        // Keep the last good claims when a re-read fails (the pod may be gone).
        let claims = found.or_else(|| self.cache.get(pod_uid).and_then(|e| e.claims.clone()));
        self.cache.put(pod_uid.to_owned(), PodEntry { claims: claims.clone(), checked: Instant::now() });
        claims
    }
}

#[cfg(test)]
pub mod tests {
    use base64::Engine as _;

    use super::*;

    /// A fabricated, unsigned token with the claims the API server puts in
    /// a projected service-account token (shared with the e2e tests' shape).
    pub fn fake_token(payload: &serde_json::Value) -> Secret {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let header = b64(br#"{"alg":"RS256","kid":"test"}"#);
        let body = b64(payload.to_string().as_bytes());
        Secret::from(format!("{header}.{body}.c2lnbmF0dXJl"))
    }

    #[test]
    fn projected_token_claims() {
        let t = fake_token(&serde_json::json!({
            "aud": ["https://kubernetes.default.svc"], "exp": 4102444800_i64, "iat": 1700000000,
            "iss": "https://kubernetes.default.svc.cluster.local",
            "kubernetes.io": {
                "namespace": "payments",
                "node": {"name": "node-1", "uid": "n-uid"},
                "pod": {"name": "api-7d9f", "uid": "1f3c5a7e-9b2d-4f6a-8c1e-3d5f7a9b1c2d"},
                "serviceaccount": {"name": "api", "uid": "5e6f7a8b-0000-4000-8000-000000000001"},
                "warnafter": 1700003607
            },
            "sub": "system:serviceaccount:payments:api"
        }));
        let c = parse_token(&t).unwrap();
        assert_eq!(c.namespace, "payments");
        assert_eq!(c.service_account, "api");
        assert_eq!(c.pod_name.as_deref(), Some("api-7d9f"));
        assert_eq!(c.pod_uid.as_deref(), Some("1f3c5a7e-9b2d-4f6a-8c1e-3d5f7a9b1c2d"));
        assert_eq!(c.node_name.as_deref(), Some("node-1"));
        assert_eq!(c.expires, Some(4102444800));
        assert!(!c.expired(SystemTime::now()));
    }

    #[test]
    fn legacy_token_claims() {
        let t = fake_token(&serde_json::json!({
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": "default",
            "kubernetes.io/serviceaccount/secret.name": "builder-token-x",
            "kubernetes.io/serviceaccount/service-account.name": "builder",
            "kubernetes.io/serviceaccount/service-account.uid": "u-1",
            "sub": "system:serviceaccount:default:builder"
        }));
        let c = parse_token(&t).unwrap();
        assert_eq!((c.namespace.as_str(), c.service_account.as_str()), ("default", "builder"));
        assert_eq!(c.service_account_uid.as_deref(), Some("u-1"));
        assert_eq!(c.pod_uid, None);
        assert_eq!(c.expires, None);
    }

    /// Guards a race seen in e2e_identity: a lookup while the token was
    /// being written cached "no token" for RETRY_AFTER, so the next opens
    /// in the pod had no service account.
    #[test]
    fn a_pod_without_a_token_is_looked_up_again_once_its_token_path_is_opened() {
        let mut pods = Pods::new(NonZeroUsize::new(4).unwrap());
        let mut calls = 0;
        assert!(pods.lookup("p1", || { calls += 1; vec![u32::MAX - 1] }).is_none());
        assert!(pods.lookup("p1", || { calls += 1; vec![] }).is_none());
        assert_eq!(calls, 1, "a miss is cached");
        pods.token_opened("p1");
        assert!(pods.lookup("p1", || { calls += 1; vec![] }).is_none());
        assert_eq!(calls, 2, "looked up again once the token path was opened");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(parse_token(&Secret::from("nope".to_owned())), Err(TokenError::NotJwt)));
        assert!(matches!(parse_token(&Secret::from("a.b.c.d".to_owned())), Err(TokenError::NotJwt)));
        assert!(matches!(parse_token(&Secret::from("a.!!!.c".to_owned())), Err(TokenError::Base64)));
        let not_json = format!("a.{}.c", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("[1,2]"));
        assert!(matches!(parse_token(&Secret::from(not_json)), Err(TokenError::Json)));
        let t = fake_token(&serde_json::json!({"sub": "someone"}));
        assert!(matches!(parse_token(&t), Err(TokenError::NoServiceAccount)));
        let expired = fake_token(&serde_json::json!({"sub": "system:serviceaccount:a:b", "exp": 1}));
        assert!(parse_token(&expired).unwrap().expired(SystemTime::now()));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_token(&Secret::new(bytes));
        }
    }
}
