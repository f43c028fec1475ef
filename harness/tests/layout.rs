//! The tree shows the pipeline: no import cycle between the modules of `harness/src`.
//!
//! Every file is a module (`main.rs` the crate root, `x/mod.rs` the folder `x`). A module imports
//! another when its non-test code names `crate::…` or `super::…` paths into it; test modules
//! (`#[cfg(test)] mod tests` at the end of a file, and files declared test-only) are left out, as
//! they may reach anywhere for fixtures. The graph of those imports must have no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts == ["main"] || parts.last().map(String::as_str) == Some("mod") {
                parts.pop();
            }
            found.insert(parts, path);
        }
    }
    found
}

/// The file's code without comments and without its trailing test module.
fn production_code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Modules declared `#[cfg(test)] mod x;` in their parent: test-only files.
fn test_only(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut lines = code.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            if let Some(next) = lines.peek() {
                let next = next.trim();
                if let Some(name) = next.strip_prefix("mod ").and_then(|n| n.strip_suffix(';')) {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names
}

/// Paths named after `prefix` (`crate::`, `super::`), with `{a, b::c}` groups expanded one level.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let path_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    for (at, _) in code.match_indices(prefix) {
        if code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let item: String = item.trim().chars().take_while(|&c| path_char(c)).collect();
                if !item.is_empty() {
                    found.push(item.split("::").map(str::to_owned).collect());
                }
            }
        } else {
            let path: String = rest.chars().take_while(|&c| path_char(c)).collect();
            let path = path.trim_end_matches(':');
            if !path.is_empty() {
                found.push(path.split("::").map(str::to_owned).collect());
            }
        }
    }
    found
}

fn imports(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let all = modules(src);
    let mut excluded: BTreeSet<Module> = BTreeSet::new();
    for (module, path) in &all {
        for name in test_only(&std::fs::read_to_string(path).unwrap()) {
            let mut child = module.clone();
            child.push(name);
            excluded.insert(child);
        }
    }
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, path) in &all {
        if excluded.iter().any(|e| module.starts_with(e)) {
            continue;
        }
        let code = production_code(&std::fs::read_to_string(path).unwrap());
        let is_folder = path
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "main.rs");
        let parent: Module = if is_folder {
            module[..module.len().saturating_sub(1)].to_vec()
        } else {
            module[..module.len() - 1].to_vec()
        };
        let mut named = paths_after(&code, "crate::");
        for path in paths_after(&code, "super::") {
            named.push(parent.iter().cloned().chain(path).collect());
        }
        let edges = graph.entry(module.clone()).or_default();
        for path in named {
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|prefix| all.contains_key(prefix));
            if let Some(target) = target {
                if target != *module && !excluded.contains(&target) {
                    edges.insert(target);
                }
            }
        }
    }
    graph
}

/// One cycle of the graph, if any (depth-first search with an explicit path).
fn find_cycle(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Open,
        Done,
    }
    fn visit(
        node: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, State>,
        path: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        state.insert(node.clone(), State::Open);
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(State::Open) => {
                    let start = path.iter().position(|m| m == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(State::Done) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, state, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        state.insert(node.clone(), State::Done);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

fn show(module: &Module) -> String {
    if module.is_empty() {
        "main".into()
    } else {
        module.join("::")
    }
}

#[test]
fn no_import_cycle_between_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    assert!(
        graph.len() > 20,
        "found only {} modules under {}",
        graph.len(),
        src.display()
    );
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(edges > 50, "found only {edges} import edges");
    if let Some(cycle) = find_cycle(&graph) {
        let shown: Vec<String> = cycle.iter().map(show).collect();
        panic!("import cycle: {}", shown.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    std::fs::create_dir_all(dir.join("boot")).unwrap();
    std::fs::write(dir.join("main.rs"), "mod boot;\nmod interrupt;\n").unwrap();
    std::fs::write(dir.join("boot/mod.rs"), "pub mod vm;\n").unwrap();
    std::fs::write(
        dir.join("boot/vm.rs"),
        "use crate::interrupt;\n// crate::ignored in a comment\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("interrupt.rs"),
        "fn f() { crate::boot::vm::kill(); }\n#[cfg(test)]\nmod tests { use crate::main; }\n",
    )
    .unwrap();
    let cycle = find_cycle(&imports(dir)).expect("a planted cycle is found");
    let shown: Vec<String> = cycle.iter().map(show).collect();
    assert!(
        shown.contains(&"boot::vm".to_string()) && shown.contains(&"interrupt".to_string()),
        "{shown:?}"
    );
    std::fs::write(dir.join("interrupt.rs"), "fn f() {}\n").unwrap();
    assert_eq!(find_cycle(&imports(dir)), None);
}
