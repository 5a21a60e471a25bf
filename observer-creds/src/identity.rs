//! What a parser yields: identities, or the reason there are none.
/// One non-secret identity found in a credential file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `nhi.kind`: what the credential is (`aws.access_key`, `ssh.private_key`).
    pub kind: String,
    /// `nhi.id`: the stable, non-secret identity (see the crate docs).
    pub id: String,
    /// Further non-secret facts, as record attributes (`nhi.aws.profile`).
    pub attributes: Vec<(&'static str, String)>,
}

impl Identity {
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Self { kind: kind.into(), id: id.into(), attributes: Vec::new() }
    }

    /// Adds an attribute; empty values are left out.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.attributes.push((key, value));
        }
        self
    }

    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }
}

/// Why a file yielded no identity. Low-cardinality [`Unparsed::reason`]s are
/// what records and counters carry; the detail is for debug logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unparsed {
    #[error("empty file")]
    Empty,
    #[error("larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("binary content where text was expected")]
    Binary,
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("no credential in the file")]
    NoCredential,
    #[error("encrypted: {0}")]
    Encrypted(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("cannot read: {0}")]
    Unreadable(String),
}

impl Unparsed {
    /// Short reason for records and counters (`malformed`, `too_large`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge { .. } => "too_large",
            Self::Binary => "binary",
            Self::Malformed(_) => "malformed",
            Self::NoCredential => "no_credential",
            Self::Encrypted(_) => "encrypted",
            Self::Unsupported(_) => "unsupported",
            Self::Unreadable(_) => "unreadable",
        }
    }
}

/// The outcome of parsing one file: identities, and when there are none,
/// why. A file with some good and some bad entries keeps the good ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub identities: Vec<Identity>,
    pub unparsed: Option<Unparsed>,
}

impl Parsed {
    pub fn unparsed(reason: Unparsed) -> Self {
        Self { identities: Vec::new(), unparsed: Some(reason) }
    }
}
