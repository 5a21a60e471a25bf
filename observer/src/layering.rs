//! The agent's top-level modules form a graph without cycles: a stage
//! imports the model and the stages before it, never a sink or the wiring
//! (`app`) after it. Checked here from the source text, so a new import
//! that closes a cycle fails the unit tests with the cycle named.
//!
//! Input: the files under `src/`. Output: the test's verdict. Edges are the
//! `crate::<module>` paths a module names outside comments, including the
//! grouped form `use crate::{a, b::c}`.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The top-level module a file under `src/` belongs to.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level names in `use crate::{...}` groups and `crate::x` paths.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: split on commas at depth 0.
            let mut depth = 0usize;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(item);
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out.into_iter()
        .filter_map(|i| {
            let head = i.trim().split("::").next()?.trim().to_owned();
            (!head.is_empty() && head != "self").then_some(head)
        })
        .collect()
}

fn graph(src: &Path) -> Graph {
    let mut g = Graph::new();
    let mut files = vec![src.to_owned()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(
                fs::read_dir(&p)
                    .expect("read src")
                    .map(|e| e.expect("dir entry").path()),
            );
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let Some(module) = module_of(p.strip_prefix(src).expect("under src")) else {
            continue;
        };
        let text = strip_comments(&fs::read_to_string(&p).expect("read source"));
        let deps = g.entry(module.clone()).or_default();
        deps.extend(referenced(&text).into_iter().filter(|d| *d != module));
    }
    let modules: BTreeSet<String> = g.keys().cloned().collect();
    for deps in g.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    g
}

/// One cycle through `start`, if any (depth-first search).
fn cycle_through(g: &Graph, start: &str) -> Option<Vec<String>> {
    fn dfs(
        g: &Graph,
        node: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in g.get(node).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if dfs(g, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    dfs(g, start, start, &mut path, &mut BTreeSet::new()).then(|| {
        path.push(start.to_owned());
        path
    })
}

#[test]
fn top_level_modules_have_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(
        g.contains_key("app") && g["app"].contains("store"),
        "the graph was not read: {g:?}"
    );
    let cycles: Vec<String> = g
        .keys()
        .filter_map(|m| cycle_through(&g, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn a_cycle_is_found() {
    // Guards the checker itself: a two-module cycle and a longer one.
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    g.entry("d".into()).or_default().insert("a".into());
    assert_eq!(cycle_through(&g, "a").unwrap(), ["a", "b", "c", "a"]);
    assert!(cycle_through(&g, "d").is_none());
    let r = referenced("use crate::{\n    a::{B, c},\n    d,\n};\nlet x = crate::e::f();");
    assert_eq!(r, ["a", "d", "e"].into_iter().map(String::from).collect());
}
