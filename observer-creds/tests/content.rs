//! The content detector's corpus (`tests/content/`, hand-written, synthetic
//! secrets): credentials at no catalog path, found by what they hold, with
//! the same ids their catalog formats give; placeholders, code, public
//! material and binaries that must give none. And its recall on the
//! format corpus (`tests/corpus/`): every file there that holds a
//! credential is found by content too, but for the formats listed.
use std::{collections::BTreeSet, path::Path};

use observer_creds::{Format, Keyed, Secret, parse};
use serde_json::Value;

const TEST_KEY: [u8; 32] = [0x42; 32];
/// Kinds that name public material, not credentials.
const PUBLIC: &[&str] = &["x509.certificate", "x509.ca_certificate", "ssh.public_key", "spiffe.x509_svid"];

fn load(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(name)).unwrap();
    serde_json::from_str::<Value>(&text).unwrap().as_array().unwrap().clone()
}

fn id(v: &Value, keyed: &Keyed) -> String {
    match v.get("keyed").and_then(Value::as_array) {
        Some(pair) => keyed.id(pair[0].as_str().unwrap(), pair[1].as_str().unwrap().as_bytes()),
        None => v.as_str().unwrap().to_owned(),
    }
}

fn detect(dir: &str, file: &str, keyed: &Keyed) -> observer_creds::Parsed {
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(dir).join(file)).unwrap();
    parse(Format::Content, &Secret::new(bytes), "", keyed)
}

#[test]
fn content_fixtures_yield_their_identities_and_no_secret() {
    let keyed = Keyed::new(Secret::new(TEST_KEY));
    let corpus = load("corpus.json");
    let mut failures = Vec::new();
    for case in load("content.json") {
        let file = case["file"].as_str().unwrap();
        let parsed = detect("content", file, &keyed);
        let want: BTreeSet<(String, String)> = match case.get("same_as").and_then(Value::as_str) {
            Some(other) => corpus
                .iter()
                .find(|c| c["file"] == other)
                .unwrap()["identities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (i["kind"].as_str().unwrap().to_owned(), id(&i["id"], &keyed)))
                .collect(),
            None => case["identities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (i["kind"].as_str().unwrap().to_owned(), id(&i["id"], &keyed)))
                .collect(),
        };
        let got: BTreeSet<(String, String)> = parsed.identities.iter().map(|i| (i.kind.clone(), i.id.clone())).collect();
        if want != got {
            failures.push(format!("{file}:\n  want {want:?}\n  got  {got:?} ({:?})", parsed.unparsed));
        }
        for i in case.get("identities").and_then(Value::as_array).into_iter().flatten() {
            let want_id = id(&i["id"], &keyed);
            let detector = parsed.identities.iter().find(|x| x.id == want_id).and_then(|x| x.attribute("nhi.detector"));
            if detector != i["detector"].as_str() {
                failures.push(format!("{file}: {want_id}: detector {detector:?}, want {}", i["detector"]));
            }
        }
        let shown = format!("{parsed:?}");
        for s in case["secrets"].as_array().unwrap() {
            assert!(!shown.contains(s.as_str().unwrap()), "{file}: secret in output: {shown}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Recall on the format corpus: what the catalog's parsers find at a
/// catalog path, content detection finds anywhere, except formats whose
/// files have no marker to recognise (a `.pgpass` line is five colon-
/// separated words; DER and PKCS#12 are binary), and ids that only the
/// path gives (a `token` file of an unprefixed token). `aws/config` and
/// Azure's `azureProfile.json` name accounts and roles, no secret they
/// hold.
#[test]
fn content_recall_on_the_format_corpus() {
    const NEEDS_A_PATH: &[&str] = &["pgpass"];
    let keyed = Keyed::new(Secret::new(TEST_KEY));
    let mut missed = Vec::new();
    let mut found = 0;
    for case in load("corpus.json") {
        let file = case["file"].as_str().unwrap();
        let fmt = case["format"].as_str().unwrap();
        let creds = case.get("identities").and_then(Value::as_array).into_iter().flatten().filter(|i| !PUBLIC.contains(&i["kind"].as_str().unwrap())).count();
        // Binary formats (DER, PKCS#12) are not searched by content.
        if creds == 0 || NEEDS_A_PATH.contains(&fmt) || file.ends_with(".p12") || file.ends_with(".der") || file == "vault/legacy-token" || file == "aws/config" || file == "azure/azureProfile.json" {
            continue;
        }
        let parsed = detect("corpus", file, &keyed);
        if parsed.identities.is_empty() {
            missed.push(file.to_owned());
        } else {
            found += 1;
        }
    }
    assert!(missed.is_empty(), "content detection missed {missed:?} ({found} found)");
    assert!(found >= 40, "corpus shrank: {found}");
}

/// Issue 14, item 6: one Latin-1 byte in a comment of an otherwise valid
/// `~/.aws/credentials` does not make it binary nor hide the key id.
#[test]
fn latin1_comment_does_not_hide_the_aws_key_id() {
    let keyed = Keyed::new(Secret::new(TEST_KEY));
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/content/aws/credentials-latin1")).unwrap();
    assert!(std::str::from_utf8(&bytes).is_err(), "the fixture must hold a non-UTF-8 byte");
    let parsed = parse(Format::AwsIni, &Secret::new(bytes), "", &keyed);
    let ids: Vec<_> = parsed.identities.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["AKIALATIN1SYNTHET067"], "{parsed:?}");
    assert!(!format!("{parsed:?}").contains("SYNTHETICLATIN1AWSSECRET68"));
}
