//! kubeconfig: every user entry, with the clusters whose contexts use it.
//!
//! Identities by authentication method: a client certificate by its
//! SHA-256 fingerprint (subject = user and groups); a bearer token by its
//! claims when it is a service-account JWT, else by prefix or keyed
//! fingerprint; basic auth by `username@server`; an exec plugin by its
//! command line (secret-looking arguments redacted), e.g.
//! `aws eks get-token --cluster-name prod`; an auth provider by issuer and
//! client id; certificate or token *files* by the user entry and server.
use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde::Deserialize;

use super::{ParseResult, jwt, pem, text, x509, yaml_error};
use crate::{Identity, Keyed, Secret, Unparsed};

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(default)]
    clusters: Option<Vec<Named<Cluster>>>,
    #[serde(default)]
    contexts: Option<Vec<Named<Context>>>,
    #[serde(default)]
    users: Option<Vec<Named<User>>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: Option<String>,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    value: Option<T>,
}

#[derive(Deserialize, Default)]
struct Cluster {
    server: Option<String>,
}

#[derive(Deserialize, Default)]
struct Context {
    cluster: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize, Default)]
struct User {
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<Secret>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    token: Option<Secret>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    username: Option<String>,
    exec: Option<Exec>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<AuthProvider>,
}

#[derive(Deserialize)]
struct Exec {
    command: Option<String>,
    #[serde(default)]
    args: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct AuthProvider {
    name: Option<String>,
    #[serde(default)]
    config: Option<ProviderConfig>,
}

#[derive(Deserialize)]
struct ProviderConfig {
    #[serde(rename = "client-id")]
    client_id: Option<String>,
    #[serde(rename = "idp-issuer-url")]
    issuer: Option<String>,
}

pub fn kubeconfig(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    let t = text(bytes)?;
    let k: Kubeconfig = serde_yaml_ng::from_str(t).map_err(|e| yaml_error(&e))?;
    let clusters = k.clusters.unwrap_or_default();
    let contexts = k.contexts.unwrap_or_default();
    let server_of = |cluster: &str| {
        clusters
            .iter()
            .find(|c| c.name.as_deref() == Some(cluster))
            .and_then(|c| c.value.as_ref()?.server.clone())
    };
    let mut out = Vec::new();
    let mut first_error = None;
    for user in k.users.unwrap_or_default() {
        let name = user.name.unwrap_or_default();
        let Some(u) = user.value else { continue };
        let ctx = contexts.iter().find_map(|c| {
            let v = c.value.as_ref()?;
            (v.user.as_deref() == Some(name.as_str())).then(|| (c.name.clone(), v.cluster.clone()))
        });
        let context = ctx.as_ref().and_then(|c| c.0.clone()).unwrap_or_default();
        let server = ctx.and_then(|c| c.1).and_then(|c| server_of(&c)).unwrap_or_default();
        let tag = |id: Identity| {
            id.with("nhi.k8s.user", name.clone())
                .with("nhi.k8s.context", context.clone())
                .with("nhi.k8s.cluster.server", server.clone())
        };
        let at_server = |who: &str| if server.is_empty() { who.to_owned() } else { format!("{who}@{server}") };
        if let Some(data) = &u.client_certificate_data {
            match client_certificate(data) {
                Ok(id) => out.push(tag(id)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        } else if let Some(path) = &u.client_certificate {
            out.push(tag(
                Identity::new("kubernetes.client_certificate_file", at_server(&name))
                    .with("nhi.k8s.client_certificate_path", path.clone()),
            ));
        }
        if let Some(token) = &u.token
            && let Some(id) = jwt::bearer(token.expose(), "kubernetes.token", keyed)
        {
            out.push(tag(id));
        } else if let Some(path) = &u.token_file {
            out.push(tag(
                Identity::new("kubernetes.token_file", at_server(&name)).with("nhi.k8s.token_path", path.clone()),
            ));
        }
        if let Some(user) = u.username.as_deref().filter(|s| !s.is_empty()) {
            out.push(tag(Identity::new("kubernetes.basic_auth", at_server(user))));
        }
        if let Some(exec) = &u.exec
            && let Some(cmd) = exec.command.as_deref()
        {
            let line = exec_line(cmd, exec.args.as_deref().unwrap_or_default());
            out.push(tag(Identity::new("kubernetes.exec_plugin", format!("exec:{line}"))));
        }
        if let Some(p) = &u.auth_provider {
            let (issuer, client) = p
                .config
                .as_ref()
                .map(|c| (c.issuer.clone().unwrap_or_default(), c.client_id.clone().unwrap_or_default()))
                .unwrap_or_default();
            let provider = p.name.clone().unwrap_or_default();
            out.push(tag(Identity::new("kubernetes.auth_provider", format!("{provider}:{issuer}#{client}"))));
        }
    }
    match first_error {
        Some(e) if out.is_empty() => Err(e),
        _ => Ok(out),
    }
}

fn client_certificate(data: &Secret) -> Result<Identity, Unparsed> {
    let compact: Vec<u8> = data.expose().iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let pem_text = Secret::new(
        STANDARD
            .decode(compact)
            .map_err(|_| Unparsed::Malformed("client-certificate-data is not base64".into()))?,
    );
    let t = std::str::from_utf8(pem_text.expose())
        .map_err(|_| Unparsed::Malformed("client-certificate-data is not PEM".into()))?;
    let block = pem::blocks(t)
        .into_iter()
        .find(|b| b.label == "CERTIFICATE")
        .and_then(|b| b.der)
        .ok_or_else(|| Unparsed::Malformed("client-certificate-data holds no certificate".into()))?;
    let id = x509::certificate(block.expose())?;
    Ok(Identity { kind: "kubernetes.client_certificate".into(), ..id })
}

/// The plugin's command line with the values of secret-looking flags
/// replaced, so the id is stable and shows no secret.
fn exec_line(command: &str, args: &[String]) -> String {
    const SECRET_WORDS: &[&str] = &["token", "secret", "password", "passwd", "credential", "apikey", "api-key"];
    let looks_secret = |a: &str| {
        let l = a.to_ascii_lowercase();
        SECRET_WORDS.iter().any(|w| l.contains(w))
    };
    let mut parts = vec![command.to_owned()];
    let mut redact_next = false;
    for a in args {
        if redact_next {
            parts.push("<redacted>".into());
            redact_next = false;
        } else if let Some((flag, _)) = a.split_once('=').filter(|(f, _)| looks_secret(f)) {
            parts.push(format!("{flag}=<redacted>"));
        } else if a.starts_with('-') && looks_secret(a) && a != "get-token" {
            parts.push(a.clone());
            redact_next = true;
        } else {
            parts.push(a.clone());
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_lines_redact_secret_flags() {
        let args: Vec<String> =
            ["eks", "get-token", "--cluster-name", "prod", "--token", "s3cr3t", "--client-secret=xyz"]
                .map(String::from)
                .to_vec();
        let line = exec_line("aws", &args);
        assert_eq!(line, "aws eks get-token --cluster-name prod --token <redacted> --client-secret=<redacted>");
    }
}
