//! The engine's shape, checked on its source (issue 13): the modules form no import circle,
//! no file grows past 500 lines, the use cases know no HTTP type, and run reports are built
//! from the typed model, not with `json!`. A plain-text reading of `src/`: no build tool needed,
//! and it fails with the circle or the file it found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/pull/paging.rs` → `pull`), None for lib.rs.
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (name != "lib").then(|| name.to_string())
}

/// Code without comments (line comments and doc comments), so prose naming a module is no edge.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Test modules (`#[cfg(test)] mod tests { … }` at the end of a file) may reach anywhere.
fn without_tests(code: &str) -> &str {
    match code.find("#[cfg(test)]") {
        Some(i) => &code[..i],
        None => code,
    }
}

fn files() -> Vec<(PathBuf, String)> {
    let mut paths = Vec::new();
    rust_files(&src(), &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text)
        })
        .collect()
}

/// Edges between top-level modules: `a` uses `crate::b…` (also inside `use crate::{b, c}`).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = files();
    let modules: BTreeSet<String> = files.iter().filter_map(|(p, _)| top_module(p)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for (path, text) in &files {
        let Some(from) = top_module(path) else {
            continue;
        };
        let code = code_of(text);
        let code = without_tests(&code);
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let targets: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap_or("").trim())
                    .collect()
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                vec![&rest[..end]]
            };
            for to in targets {
                if to != from && modules.contains(to) {
                    graph
                        .entry(from.clone())
                        .or_default()
                        .insert(to.to_string());
                }
            }
        }
    }
    graph
}

/// A circle in the graph, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let start = path.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node.as_str()).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(c) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_engine_modules_form_no_import_circle() {
    let graph = module_graph();
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import circle among the engine's modules: {}\nwhole graph: {graph:#?}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_circle_and_passes_a_layering() {
    let g = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            graph
                .entry(a.to_string())
                .or_default()
                .insert(b.to_string());
            graph.entry(b.to_string()).or_default();
        }
        graph
    };
    assert!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])).is_none());
    assert_eq!(
        find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn no_engine_source_file_is_over_500_lines() {
    let long: Vec<String> = files()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(p, text)| format!("{} ({} lines)", p.display(), text.lines().count()))
        .collect();
    assert!(long.is_empty(), "split these along their seams: {long:?}");
}

#[test]
fn the_engine_knows_no_http_type() {
    let http = [
        "ApiRequest",
        "ApiResponse",
        "ApiError",
        "StatusCode",
        "lambda_http",
        "axum",
    ];
    let found: Vec<String> = files()
        .into_iter()
        .flat_map(|(p, text)| {
            let code = code_of(&text);
            http.iter()
                .filter(|t| code.contains(*t))
                .map(|t| format!("{} uses {t}", p.display()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        found.is_empty(),
        "HTTP belongs to the service-API layer: {found:?}"
    );
}

#[test]
fn run_reports_are_built_from_the_typed_model_not_with_json() {
    // A report section written with `json!` names one of these keys.
    let report_keys = [
        "\"state\"",
        "\"kind\"",
        "\"entity\"",
        "\"manual_actions\"",
        "\"entities\"",
    ];
    // CloudWatch's metric documents (EMF) name a run's state as a dimension: a log line, not a report.
    let not_reports = ["metrics.rs"];
    let mut found = Vec::new();
    for (p, text) in files() {
        if p.file_name()
            .is_some_and(|n| not_reports.iter().any(|x| n == *x))
        {
            continue;
        }
        let code = code_of(&text);
        let code = without_tests(&code);
        let mut rest = code;
        while let Some(i) = rest.find("json!(") {
            rest = &rest[i + 6..];
            let end = rest.find(')').unwrap_or(rest.len());
            let body = &rest[..end];
            if let Some(k) = report_keys.iter().find(|k| body.contains(**k)) {
                found.push(format!(
                    "{}: json!({}…) names {k}",
                    p.display(),
                    &body[..body.len().min(60)]
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "use mapping::api's RunReport/EntityReport/ManualAction/RunError: {found:#?}"
    );
}
