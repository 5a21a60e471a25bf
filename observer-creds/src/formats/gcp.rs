//! GCP JSON credentials: service-account keys and the application-default
//! credentials gcloud writes (authorized user, external account / workload
//! identity federation, impersonated service account).
//!
//! Identities: a service-account key by `client_email/private_key_id`; an
//! authorized user by account when gcloud recorded it, else by a keyed
//! fingerprint of its refresh token (the client id is gcloud's own, shared
//! by every user); external accounts by audience; impersonation by the
//! target service account.
use serde::Deserialize;

use super::ParseResult;
use crate::{Identity, Keyed, Secret};

#[derive(Deserialize)]
struct GcpFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key_id: Option<String>,
    project_id: Option<String>,
    quota_project_id: Option<String>,
    account: Option<String>,
    audience: Option<String>,
    service_account_impersonation_url: Option<String>,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    private_key: Option<Secret>,
}

pub fn json(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    let f: GcpFile = super::json(bytes)?;
    let impersonated = f.service_account_impersonation_url.as_deref().and_then(impersonated_email);
    let id = match f.kind.as_deref() {
        Some("service_account") => {
            let (Some(email), Some(key_id)) = (f.client_email, f.private_key_id) else {
                return Ok(match f.private_key {
                    Some(k) => vec![Identity::new(
                        "gcp.service_account_key",
                        keyed.id("gcp.service_account_key", k.expose()),
                    )],
                    None => Vec::new(),
                });
            };
            Identity::new("gcp.service_account_key", format!("{email}/{key_id}"))
                .with("nhi.gcp.client_email", email)
                .with("nhi.gcp.private_key_id", key_id)
                .with("nhi.gcp.project_id", f.project_id.unwrap_or_default())
        }
        Some("authorized_user") => {
            let id = match (f.account.filter(|a| !a.is_empty()), &f.refresh_token) {
                (Some(a), _) => a,
                (None, Some(t)) => keyed.id("gcp.authorized_user", t.expose()),
                (None, None) => return Ok(Vec::new()),
            };
            Identity::new("gcp.authorized_user", id).with("nhi.gcp.project_id", f.quota_project_id.unwrap_or_default())
        }
        Some("external_account") | Some("external_account_authorized_user") => {
            let Some(aud) = f.audience else { return Ok(Vec::new()) };
            Identity::new("gcp.external_account", aud)
                .with("nhi.gcp.impersonated_service_account", impersonated.unwrap_or_default())
        }
        Some("impersonated_service_account") => {
            let Some(email) = impersonated else { return Ok(Vec::new()) };
            Identity::new("gcp.impersonated_service_account", email)
        }
        _ => return Ok(Vec::new()),
    };
    Ok(vec![id])
}

/// `.../serviceAccounts/<email>:generateAccessToken` -> `<email>`.
fn impersonated_email(url: &str) -> Option<String> {
    let tail = url.rsplit_once("/serviceAccounts/")?.1;
    let email = tail.split_once(':').map_or(tail, |(e, _)| e);
    (!email.is_empty()).then(|| email.to_owned())
}
