//! TLS material: X.509 certificates and private keys in PEM bundles, DER
//! files and unencrypted PKCS#12.
//!
//! Identities: a certificate by the SHA-256 of its DER (upper-case hex, as
//! OpenTelemetry's `tls.*.hash.sha256`), with subject, issuer and notAfter;
//! an X.509-SVID (a `spiffe://` URI SAN) by its SPIFFE id; a private key
//! by the SHA-256 of its public key info (`spki-sha256:`), which its
//! certificates carry too. Encrypted keys and password-protected PKCS#12
//! get a keyed fingerprint of their (encrypted) bytes.
use der::{Decode, Encode, Tagged, asn1::OctetString};
use sha2::{Digest, Sha256};
use x509_cert::{
    Certificate,
    ext::pkix::{BasicConstraints, SubjectAltName, name::GeneralName},
};

use super::{ParseResult, keys, pem, ssh};

/// CMS `id-data` (RFC 5652): unencrypted content.
const ID_DATA: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
use crate::{Identity, Keyed, Secret, Unparsed};

pub fn tls(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    match std::str::from_utf8(bytes) {
        Ok(t) if t.contains("-----BEGIN ") => pem_bundle(t, keyed),
        _ => der_file(bytes, keyed),
    }
}

fn pem_bundle(text: &str, keyed: &Keyed) -> ParseResult {
    let blocks = pem::blocks(text);
    if blocks.is_empty() {
        return Err(Unparsed::Malformed("no complete PEM block".into()));
    }
    let mut out = Vec::new();
    let mut first_error = None;
    for b in blocks {
        let result = match (b.label, &b.der) {
            ("OPENSSH PRIVATE KEY", _) => ssh::openssh(b.text, keyed),
            (_, None) => Err(Unparsed::Malformed("a PEM block is not valid base64".into())),
            ("CERTIFICATE" | "TRUSTED CERTIFICATE" | "X509 CERTIFICATE", Some(der)) => {
                certificate(der.expose()).map(|i| vec![i])
            }
            (label @ ("RSA PRIVATE KEY" | "EC PRIVATE KEY" | "DSA PRIVATE KEY"), Some(der)) if b.encrypted_header => {
                Ok(vec![encrypted_key(label, der, keyed)])
            }
            ("ENCRYPTED PRIVATE KEY", Some(der)) => Ok(vec![encrypted_key("ENCRYPTED PRIVATE KEY", der, keyed)]),
            ("PRIVATE KEY", Some(der)) => key(keys::from_pkcs8(der.expose())),
            ("RSA PRIVATE KEY", Some(der)) => key(keys::from_pkcs1(der.expose())),
            ("EC PRIVATE KEY", Some(der)) => key(keys::from_sec1(der.expose(), None)),
            // Public keys, requests, CRLs, parameters: not credentials.
            _ => Ok(Vec::new()),
        };
        match result {
            Ok(ids) => out.extend(ids),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if out.is_empty() => Err(e),
        _ => Ok(out),
    }
}

fn der_file(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    if let Ok(cert) = Certificate::from_der(bytes) {
        return certificate_id(&cert, bytes).map(|i| vec![i]);
    }
    if let Ok(pfx) = pkcs12::pfx::Pfx::from_der(bytes) {
        return pkcs12(&pfx, bytes, keyed);
    }
    if pkcs8::PrivateKeyInfo::from_der(bytes).is_ok() {
        return key(keys::from_pkcs8(bytes));
    }
    if pkcs1::RsaPrivateKey::from_der(bytes).is_ok() {
        return key(keys::from_pkcs1(bytes));
    }
    if sec1::EcPrivateKey::from_der(bytes).is_ok() {
        return key(keys::from_sec1(bytes, None));
    }
    if std::str::from_utf8(bytes).is_ok() {
        // Text without a PEM block (a placeholder, notes): no key material.
        return Ok(Vec::new());
    }
    Err(Unparsed::Malformed("binary, but not a DER certificate, key or PKCS#12".into()))
}

fn key(public: Result<keys::PublicKey, Unparsed>) -> ParseResult {
    let public = public?;
    Ok(vec![Identity::new("tls.private_key", public.spki_id()?).with("nhi.key.algorithm", public.algorithm())])
}

fn encrypted_key(label: &str, der: &Secret, keyed: &Keyed) -> Identity {
    // The label is part of what is fingerprinted: the same bytes under two
    // labels are two different things.
    let material = Secret::new([label.as_bytes(), b"\0", der.expose()].concat());
    Identity::new("tls.private_key", keyed.id("tls.private_key", material.expose())).with("nhi.key.encrypted", "true")
}

/// A DER certificate's identity.
pub fn certificate(der: &[u8]) -> Result<Identity, Unparsed> {
    let cert = Certificate::from_der(der).map_err(|e| Unparsed::Malformed(format!("certificate: {}", e.kind())))?;
    certificate_id(&cert, der)
}

fn certificate_id(cert: &Certificate, der: &[u8]) -> Result<Identity, Unparsed> {
    let tbs = &cert.tbs_certificate;
    let fingerprint = hex::encode_upper(Sha256::digest(der));
    let not_after = i64::try_from(tbs.validity.not_after.to_unix_duration().as_secs())
        .ok()
        .and_then(super::rfc3339)
        .unwrap_or_default();
    let spki = tbs
        .subject_public_key_info
        .to_der()
        .map(|d| format!("spki-sha256:{}", hex::encode(Sha256::digest(d))))
        .unwrap_or_default();
    let mut spiffe = None;
    let mut is_ca = false;
    if let Ok(Some((_, san))) = tbs.get::<SubjectAltName>() {
        spiffe = san.0.iter().find_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) if u.as_str().starts_with("spiffe://") => {
                Some(u.as_str().to_owned())
            }
            _ => None,
        });
    }
    if let Ok(Some((_, bc))) = tbs.get::<BasicConstraints>() {
        is_ca = bc.ca;
    }
    let id = match spiffe {
        Some(s) => Identity::new("spiffe.x509_svid", s).with("nhi.x509.sha256", fingerprint),
        None if is_ca => Identity::new("x509.ca_certificate", fingerprint),
        None => Identity::new("x509.certificate", fingerprint),
    };
    Ok(id
        .with("nhi.x509.subject", tbs.subject.to_string())
        .with("nhi.x509.issuer", tbs.issuer.to_string())
        .with("nhi.x509.not_after", not_after)
        .with("nhi.x509.serial", hex::encode(tbs.serial_number.as_bytes()))
        .with("nhi.x509.spki_sha256", spki))
}

/// PKCS#12: certificates and keys from unencrypted safe contents. A file
/// whose bags are password-encrypted is named by a keyed fingerprint.
fn pkcs12(pfx: &pkcs12::pfx::Pfx, whole: &[u8], keyed: &Keyed) -> ParseResult {
    let mal = |what: &str| {
        let what = what.to_owned();
        move |e: der::Error| Unparsed::Malformed(format!("PKCS#12 {what}: {}", e.kind()))
    };
    if pfx.auth_safe.content_type != ID_DATA {
        return Err(Unparsed::Unsupported("PKCS#12 with public-key integrity mode".into()));
    }
    let data = pfx.auth_safe.content.decode_as::<OctetString>().map_err(mal("authSafe"))?;
    let safes = Vec::<cms::content_info::ContentInfo>::from_der(data.as_bytes()).map_err(mal("authenticatedSafe"))?;
    let mut out = Vec::new();
    let mut encrypted = false;
    for ci in safes {
        if ci.content_type != ID_DATA {
            encrypted = true;
            continue;
        }
        let inner = ci.content.decode_as::<OctetString>().map_err(mal("safeContents"))?;
        let bags = pkcs12::safe_bag::SafeContents::from_der(inner.as_bytes()).map_err(mal("safeBag"))?;
        for bag in bags {
            // pkcs12 0.1 keeps the `[0] EXPLICIT` wrapper around bagValue.
            let value = match der::asn1::AnyRef::from_der(&bag.bag_value) {
                Ok(any) if any.tag().is_context_specific() => any.value(),
                _ => &bag.bag_value[..],
            };
            if bag.bag_id == pkcs12::PKCS_12_CERT_BAG_OID {
                let cb = pkcs12::cert_type::CertBag::from_der(value).map_err(mal("certBag"))?;
                if cb.cert_id == pkcs12::PKCS_12_X509_CERT_OID {
                    out.push(certificate(cb.cert_value.as_bytes())?);
                }
            } else if bag.bag_id == pkcs12::PKCS_12_KEY_BAG_OID {
                let der = Secret::new(value);
                out.extend(key(keys::from_pkcs8(der.expose()))?);
            } else if bag.bag_id == pkcs12::PKCS_12_PKCS8_KEY_BAG_OID {
                encrypted = true;
            }
        }
    }
    if encrypted && !out.iter().any(|i| i.kind == "tls.private_key") {
        out.push(
            Identity::new("tls.pkcs12", keyed.id("tls.pkcs12", whole)).with("nhi.credential.encrypted", "true"),
        );
    }
    Ok(out)
}
