//! The extension's modules keep the layer rule that docs/development.md
//! writes down: a module imports only from its own layer or lower ones, and
//! no modules import each other in a cycle. The table in the doc is the one
//! this test reads, so the doc and the code cannot drift.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Module name → layer number, from the "Layers" table of the doc.
fn documented_layers() -> BTreeMap<String, u32> {
    let doc = std::fs::read_to_string(repo().join("docs/development.md")).unwrap();
    let section = doc
        .split("\n## Layers\n")
        .nth(1)
        .expect("docs/development.md has a Layers section");
    let mut layers = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | 2 store | `store` | what |
        let (Some(layer), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Some(number) = layer
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        for module in modules.split(',') {
            let module = module.trim().trim_matches('`');
            assert!(
                layers.insert(module.to_owned(), number).is_none(),
                "{module} is listed twice"
            );
        }
    }
    assert!(layers.len() > 10, "the layer table was read: {layers:?}");
    layers
}

/// The top-level module a file belongs to (`src/store/clocks.rs` → store).
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(repo().join("src")).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_owned())
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Every `crate::name` a file refers to (in `use` lines, `use crate::{…}`
/// lists over several lines, and paths alike).
fn crate_references(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let leading_name = |text: &str| -> String {
        text.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut in_list = false;
    for line in source.lines() {
        // Skip comments: prose may name modules freely.
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name = leading_name(after);
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
        let list = match code.trim_start().strip_prefix("use crate::{") {
            Some(list) => {
                in_list = true;
                list
            }
            None if in_list => code,
            None => continue,
        };
        // Only the names at the top of the list, not those nested in
        // `store::{clocks, tickets}`.
        let mut depth = 0;
        let mut item = String::new();
        for c in list.chars().chain([',']) {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    in_list = false;
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    let name = leading_name(&item);
                    if !name.is_empty() {
                        found.insert(name);
                    }
                    item.clear();
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                item.push(c);
            }
        }
        if !in_list {
            let name = leading_name(&item);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn modules_import_only_their_layer_or_lower_and_never_in_a_cycle() {
    let layers = documented_layers();
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let source = std::fs::read_to_string(file).unwrap();
        let used = imports.entry(module.clone()).or_default();
        used.extend(
            crate_references(&source)
                .into_iter()
                .filter(|m| *m != module && layers.contains_key(m)),
        );
    }
    for module in imports.keys() {
        assert!(
            layers.contains_key(module),
            "src/{module} is not in the layer table of docs/development.md"
        );
    }
    for (module, used) in &imports {
        for other in used {
            assert!(
                layers[other] <= layers[module],
                "{module} (layer {}) imports {other} (layer {}): an upward import",
                layers[module],
                layers[other]
            );
        }
    }
    // No cycles: repeatedly remove modules that import nothing left.
    let mut left = imports.clone();
    loop {
        let leaves: Vec<String> = left
            .iter()
            .filter(|(_, used)| used.iter().all(|u| !left.contains_key(u)))
            .map(|(m, _)| m.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for leaf in leaves {
            left.remove(&leaf);
        }
    }
    assert!(left.is_empty(), "import cycle among: {:?}", left.keys());
}

#[test]
fn the_reader_sees_imports_in_every_form() {
    let source = "use crate::store::clocks;\nuse crate::{convert, store::{tickets, x}};\n\
                  use crate::{\n    due::take,\n    identity,\n};\n\
                  // crate::worker in prose\nlet x = crate::gucs::event_time();";
    let found: Vec<String> = crate_references(source).into_iter().collect();
    assert_eq!(found, ["convert", "due", "gucs", "identity", "store"]);
}

/// The identity rule lives in the store: no module outside `src/store/`
/// (and `identity`, which implements the switch) chooses whose privileges a
/// query runs with.
#[test]
fn only_the_store_switches_identities() {
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let store = repo().join("src/store");
    let identity = repo().join("src/identity.rs");
    for file in files {
        if file.starts_with(&store) || file == identity {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        for (number, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            assert!(
                !code.contains("run_as") && !code.contains("as_sla_owner"),
                "{}:{}: identities are switched by the store only: {line}",
                file.display(),
                number + 1
            );
        }
    }
}
