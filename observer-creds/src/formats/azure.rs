//! Azure CLI state under `~/.azure`: the MSAL token cache, the profile
//! (subscriptions and who is logged in), service-principal entries and the
//! legacy `accessTokens.json`. One parser recognises each by shape.
//!
//! Identities: a user by `username` (with tenant), a service principal by
//! `client_id@tenant`. Tokens and client secrets are never read into
//! anything but `Secret`s (and are not needed: the ids are public).
use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ParseResult, text};
use crate::{Identity, Unparsed};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MsalCache {
    #[serde(default)]
    account: BTreeMap<String, MsalAccount>,
    #[serde(default)]
    refresh_token: BTreeMap<String, MsalToken>,
    #[serde(default)]
    access_token: BTreeMap<String, MsalToken>,
}

#[derive(Deserialize)]
struct MsalAccount {
    username: Option<String>,
    realm: Option<String>,
    environment: Option<String>,
}

#[derive(Deserialize)]
struct MsalToken {
    home_account_id: Option<String>,
    client_id: Option<String>,
    realm: Option<String>,
}

#[derive(Deserialize)]
struct Profile {
    subscriptions: Vec<Subscription>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    id: Option<String>,
    tenant_id: Option<String>,
    user: Option<SubscriptionUser>,
}

#[derive(Deserialize)]
struct SubscriptionUser {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct ServicePrincipal {
    #[serde(alias = "servicePrincipalId", alias = "clientId")]
    client_id: Option<String>,
    #[serde(alias = "servicePrincipalTenant")]
    tenant: Option<String>,
    #[serde(rename = "userId")]
    user_id: Option<String>,
    #[serde(rename = "_authority")]
    authority: Option<String>,
}

pub fn json(bytes: &[u8]) -> ParseResult {
    let t = text(bytes)?;
    let trimmed = t.trim_start();
    if trimmed.starts_with('[') {
        // service_principal_entries.json or legacy accessTokens.json.
        let sps: Vec<ServicePrincipal> = super::json(bytes)?;
        return Ok(sps.into_iter().filter_map(service_principal).collect());
    }
    let value_keys = top_level_keys(t)?;
    if value_keys.iter().any(|k| k == "subscriptions") {
        let p: Profile = super::json(bytes)?;
        return Ok(p.subscriptions.into_iter().filter_map(subscription).collect());
    }
    if value_keys.iter().any(|k| k == "Account" || k == "RefreshToken" || k == "AccessToken") {
        let c: MsalCache = super::json(bytes)?;
        let mut out: Vec<Identity> = c
            .account
            .into_values()
            .filter_map(|a| {
                let user = a.username.filter(|u| !u.is_empty())?;
                Some(
                    Identity::new("azure.user", user)
                        .with("nhi.azure.tenant_id", a.realm.unwrap_or_default())
                        .with("nhi.azure.environment", a.environment.unwrap_or_default()),
                )
            })
            .collect();
        // Tokens with no account are service-principal (client credential) tokens.
        for tok in c.refresh_token.into_values().chain(c.access_token.into_values()) {
            if tok.home_account_id.as_deref().is_some_and(|h| !h.is_empty()) {
                continue;
            }
            if let Some(client) = tok.client_id.filter(|c| !c.is_empty()) {
                let tenant = tok.realm.unwrap_or_default();
                out.push(
                    Identity::new("azure.service_principal", format!("{client}@{tenant}"))
                        .with("nhi.azure.tenant_id", tenant),
                );
            }
        }
        return Ok(out);
    }
    Ok(Vec::new())
}

fn service_principal(sp: ServicePrincipal) -> Option<Identity> {
    let tenant = sp.tenant.or_else(|| sp.authority.and_then(|a| a.rsplit('/').next().map(str::to_owned)));
    match (sp.client_id.filter(|c| !c.is_empty()), sp.user_id.filter(|u| !u.is_empty())) {
        (Some(client), _) => {
            let tenant = tenant.unwrap_or_default();
            Some(Identity::new("azure.service_principal", format!("{client}@{tenant}")).with("nhi.azure.tenant_id", tenant))
        }
        (None, Some(user)) => Some(Identity::new("azure.user", user).with("nhi.azure.tenant_id", tenant.unwrap_or_default())),
        (None, None) => None,
    }
}

fn subscription(s: Subscription) -> Option<Identity> {
    let user = s.user?;
    let name = user.name.filter(|n| !n.is_empty())?;
    let tenant = s.tenant_id.unwrap_or_default();
    let (kind, id) = match user.kind.as_deref() {
        Some("servicePrincipal") => ("azure.service_principal", format!("{name}@{tenant}")),
        _ => ("azure.user", name),
    };
    Some(
        Identity::new(kind, id)
            .with("nhi.azure.tenant_id", tenant)
            .with("nhi.azure.subscription_id", s.id.unwrap_or_default()),
    )
}

/// The keys of the top-level JSON object, without reading the values into
/// anything (they may be tokens).
fn top_level_keys(t: &str) -> Result<Vec<String>, Unparsed> {
    let map: BTreeMap<String, serde::de::IgnoredAny> =
        serde_json::from_str(t).map_err(|e| super::json_error(&e))?;
    Ok(map.into_keys().collect())
}
