//! The fixture corpus: every supported format, with the identities it must
//! yield (fingerprints computed by ssh-keygen and openssl when the corpus
//! was made, see `make_corpus.py`) and the synthetic secrets that must
//! appear nowhere in what the parser returns.
use std::{collections::BTreeSet, path::Path};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use observer_creds::{Format, Keyed, Parsed, Secret, parse};
use serde_json::Value;

const TEST_KEY: [u8; 32] = [0x42; 32];

fn corpus() -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap().as_array().unwrap().clone()
}

fn expected_id(v: &Value, keyed: &Keyed) -> String {
    if let Some(s) = v.as_str() {
        return s.to_owned();
    }
    if let Some([kind, secret]) = v.get("keyed").and_then(Value::as_array).map(Vec::as_slice) {
        return keyed.id(kind.as_str().unwrap(), secret.as_str().unwrap().as_bytes());
    }
    if let Some([kind, b64]) = v.get("keyed_bytes").and_then(Value::as_array).map(Vec::as_slice) {
        return keyed.id(kind.as_str().unwrap(), &STANDARD.decode(b64.as_str().unwrap()).unwrap());
    }
    panic!("bad expected id {v}");
}

fn run(case: &Value, keyed: &Keyed) -> Parsed {
    let file = case["file"].as_str().unwrap();
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(file)).unwrap();
    let format: Format = case["format"].as_str().unwrap().parse().unwrap();
    parse(format, &Secret::new(bytes), case["kind"].as_str().unwrap_or_default(), keyed)
}

#[test]
fn every_fixture_yields_its_expected_identities() {
    let keyed = Keyed::new(Secret::new(TEST_KEY));
    let mut failures = Vec::new();
    let cases = corpus();
    assert!(cases.len() >= 60, "corpus shrank: {}", cases.len());
    for case in &cases {
        let file = case["file"].as_str().unwrap();
        let parsed = run(case, &keyed);
        if let Some(want) = case.get("unparsed").and_then(Value::as_str) {
            let got = parsed.unparsed.as_ref().map(|u| u.reason());
            if got != Some(want) || !parsed.identities.is_empty() {
                failures.push(format!("{file}: want unparsed `{want}`, got {parsed:?}"));
            }
            continue;
        }
        let want: BTreeSet<(String, String)> = case["identities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["kind"].as_str().unwrap().to_owned(), expected_id(&i["id"], &keyed)))
            .collect();
        let got: BTreeSet<(String, String)> = parsed.identities.iter().map(|i| (i.kind.clone(), i.id.clone())).collect();
        if want != got {
            failures.push(format!("{file}:\n  want {want:?}\n  got  {got:?}\n  ({:?})", parsed.unparsed));
            continue;
        }
        for i in case["identities"].as_array().unwrap() {
            let id = expected_id(&i["id"], &keyed);
            let found = parsed.identities.iter().find(|x| x.id == id).unwrap();
            for (k, v) in i["attributes"].as_object().unwrap() {
                if found.attribute(k) != v.as_str() {
                    failures.push(format!("{file}: {id}: attribute {k} = {:?}, want {v}", found.attribute(k)));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// The planted secrets appear nowhere in a parser's output, including the
/// unparsed reasons of malformed files (serde and dotenv errors quote input).
#[test]
fn no_planted_secret_reaches_parser_output() {
    let keyed = Keyed::new(Secret::new(TEST_KEY));
    for case in corpus() {
        let shown = format!("{:?} {:#?}", run(&case, &keyed), run(&case, &keyed).unparsed.map(|u| u.to_string()));
        for s in case["secrets"].as_array().unwrap() {
            let s = s.as_str().unwrap();
            assert!(!shown.contains(s), "{}: secret {s:?} in parser output:\n{shown}", case["file"]);
        }
    }
}

/// Every format the catalog offers has at least one fixture.
#[test]
fn every_format_has_fixtures() {
    let used: BTreeSet<String> = corpus().iter().map(|c| c["format"].as_str().unwrap().to_owned()).collect();
    // `content` has its own corpus (tests/content.json, tests/content.rs).
    for f in Format::ALL.iter().filter(|f| !matches!(f, Format::Auto | Format::Content)) {
        assert!(used.contains(f.name()), "no fixture for format {f}");
    }
}

/// Auto-detection finds the same identities as the declared format for
/// the self-describing formats.
#[test]
fn auto_detects_self_describing_formats() {
    let keyed = Keyed::new(Secret::new(TEST_KEY));
    for case in corpus() {
        let fmt = case["format"].as_str().unwrap();
        if !["tls", "ssh-private-key", "gcp-json", "docker-auth", "jwt", "kubeconfig"].contains(&fmt) || case.get("unparsed").is_some() {
            continue;
        }
        let declared = run(&case, &keyed);
        let mut auto_case = case.clone();
        auto_case["format"] = "auto".into();
        if fmt == "ssh-private-key" {
            auto_case["kind"] = "ssh.private_key".into();
        }
        let auto = run(&auto_case, &keyed);
        assert_eq!(
            auto.identities.iter().map(|i| &i.id).collect::<BTreeSet<_>>(),
            declared.identities.iter().map(|i| &i.id).collect::<BTreeSet<_>>(),
            "{}",
            case["file"]
        );
    }
}
