//! Private keys to their public halves, and the two fingerprints we name
//! keys by: the SSH `SHA256:` fingerprint (what `ssh-keygen -l` prints) for
//! SSH keys, and the SHA-256 of the SubjectPublicKeyInfo (what ties a TLS
//! key to its certificate) for TLS keys.
use der::{Decode, Encode, asn1::BitStringRef};
use pkcs8::{ObjectIdentifier, PrivateKeyInfo};
use sha2::{Digest, Sha256};
use pkcs8::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use crate::Unparsed;

const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A public key, from whichever private-key encoding held it.
pub enum PublicKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// SEC1 point with the named-curve OID.
    Ec { curve: ObjectIdentifier, point: Vec<u8> },
    Ed25519([u8; 32]),
}

fn der_err(what: &str) -> impl Fn(der::Error) -> Unparsed + '_ {
    move |e| Unparsed::Malformed(format!("{what}: {}", e.kind()))
}

/// PKCS#1 `RSA PRIVATE KEY`.
pub fn from_pkcs1(der: &[u8]) -> Result<PublicKey, Unparsed> {
    let k = pkcs1::RsaPrivateKey::from_der(der).map_err(|e| Unparsed::Malformed(format!("PKCS#1 key: {e}")))?;
    Ok(PublicKey::Rsa { n: k.modulus.as_bytes().to_vec(), e: k.public_exponent.as_bytes().to_vec() })
}

/// SEC1 `EC PRIVATE KEY`; `curve` from the PKCS#8 wrapper when the SEC1
/// structure leaves it out.
pub fn from_sec1(der: &[u8], curve: Option<ObjectIdentifier>) -> Result<PublicKey, Unparsed> {
    let k = sec1::EcPrivateKey::from_der(der).map_err(|e| Unparsed::Malformed(format!("SEC1 key: {e}")))?;
    let curve = k
        .parameters
        .and_then(|p| p.named_curve())
        .or(curve)
        .ok_or_else(|| Unparsed::Unsupported("EC key without a named curve".into()))?;
    let point = k
        .public_key
        .ok_or_else(|| Unparsed::Unsupported("EC key without its public point".into()))?;
    Ok(PublicKey::Ec { curve, point: point.to_vec() })
}

/// PKCS#8 `PRIVATE KEY`: RSA, EC or Ed25519.
pub fn from_pkcs8(der: &[u8]) -> Result<PublicKey, Unparsed> {
    let info = PrivateKeyInfo::from_der(der).map_err(der_err("PKCS#8 key"))?;
    match info.algorithm.oid {
        RSA => from_pkcs1(info.private_key),
        EC => {
            let curve = info.algorithm.parameters_oid().ok();
            match from_sec1(info.private_key, curve) {
                Err(Unparsed::Unsupported(_)) if info.public_key.is_some() => Ok(PublicKey::Ec {
                    curve: curve.ok_or_else(|| Unparsed::Unsupported("EC key without a named curve".into()))?,
                    point: info.public_key.unwrap_or_default().to_vec(),
                }),
                other => other,
            }
        }
        ED25519 => {
            if let Some(public) = info.public_key.and_then(|p| <[u8; 32]>::try_from(p).ok()) {
                return Ok(PublicKey::Ed25519(public));
            }
            // CurvePrivateKey ::= OCTET STRING (the 32-byte seed).
            let seed = der::asn1::OctetStringRef::from_der(info.private_key).map_err(der_err("Ed25519 key"))?;
            let seed = zeroize::Zeroizing::new(
                <[u8; 32]>::try_from(seed.as_bytes())
                    .map_err(|_| Unparsed::Malformed("Ed25519 seed is not 32 bytes".into()))?,
            );
            let pair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
            Ok(PublicKey::Ed25519(pair.public.0))
        }
        other => Err(Unparsed::Unsupported(format!("private key algorithm {other}"))),
    }
}

impl PublicKey {
    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Result<Vec<u8>, Unparsed> {
        let enc = |e: der::Error| Unparsed::Malformed(format!("encoding public key: {}", e.kind()));
        match self {
            Self::Rsa { n, e } => {
                let pk = pkcs1::RsaPublicKey {
                    modulus: der::asn1::UintRef::new(n).map_err(enc)?,
                    public_exponent: der::asn1::UintRef::new(e).map_err(enc)?,
                };
                let key = pk.to_der().map_err(enc)?;
                let null = der::asn1::AnyRef::NULL;
                spki(AlgorithmIdentifierRef { oid: RSA, parameters: Some(null) }, &key)
            }
            Self::Ec { curve, point } => {
                let param = der::asn1::AnyRef::from(curve);
                spki(AlgorithmIdentifierRef { oid: EC, parameters: Some(param) }, point)
            }
            Self::Ed25519(k) => spki(AlgorithmIdentifierRef { oid: ED25519, parameters: None }, k),
        }
    }

    /// `spki-sha256:<hex>`: the SHA-256 of the SubjectPublicKeyInfo, the
    /// same for a key and for every certificate issued for it.
    pub fn spki_id(&self) -> Result<String, Unparsed> {
        Ok(format!("spki-sha256:{}", hex::encode(Sha256::digest(self.spki_der()?))))
    }

    /// OpenSSH `SHA256:<base64>` fingerprint.
    pub fn ssh_fingerprint(&self) -> Result<String, Unparsed> {
        use ssh_key::public::{EcdsaPublicKey, Ed25519PublicKey, KeyData, RsaPublicKey};
        let bad = |e: ssh_key::Error| Unparsed::Unsupported(format!("SSH public key: {e}"));
        let data = match self {
            Self::Rsa { n, e } => KeyData::from(RsaPublicKey {
                e: ssh_key::Mpint::from_positive_bytes(e).map_err(bad)?,
                n: ssh_key::Mpint::from_positive_bytes(n).map_err(bad)?,
            }),
            Self::Ec { point, .. } => KeyData::from(EcdsaPublicKey::from_sec1_bytes(point).map_err(bad)?),
            Self::Ed25519(k) => KeyData::from(Ed25519PublicKey(*k)),
        };
        Ok(data.fingerprint(ssh_key::HashAlg::Sha256).to_string())
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Rsa { .. } => "rsa",
            Self::Ec { .. } => "ecdsa",
            Self::Ed25519(_) => "ed25519",
        }
    }
}

fn spki(algorithm: AlgorithmIdentifierRef<'_>, key: &[u8]) -> Result<Vec<u8>, Unparsed> {
    let enc = |e: der::Error| Unparsed::Malformed(format!("encoding public key: {}", e.kind()));
    let info = SubjectPublicKeyInfoRef { algorithm, subject_public_key: BitStringRef::from_bytes(key).map_err(enc)? };
    info.to_der().map_err(enc)
}
