//! The server's folders import only what docs/ARCHITECTURE.md says they may.
//!
//! Each file of `src/` belongs to a unit: its top folder (`node`, `client`,
//! ...) or, at the top, its own name (`server`, `limits`, ...). Every
//! `crate::<unit>` path in a unit must be allowed by [`ALLOWED`], or be one
//! of the imports still to be cut ([`TO_CUT`]); a cut that has been made must
//! leave that list too, so it only shrinks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Unit → the units it may import. `lib`, `embed` and `main` wire everything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("limits", &[]),
    ("status", &[]),
    ("config", &["limits", "status"]),
    ("metrics", &["config"]),
    ("transport", &["limits", "status", "config", "metrics"]),
    ("state", &["limits", "status", "metrics", "transport"]),
    (
        "node",
        &[
            "state",
            "config",
            "transport",
            "limits",
            "status",
            "metrics",
        ],
    ),
    (
        "server",
        &[
            "node",
            "state",
            "config",
            "transport",
            "limits",
            "status",
            "metrics",
        ],
    ),
    (
        "duties",
        &[
            "server",
            "state",
            "config",
            "transport",
            "limits",
            "status",
            "metrics",
        ],
    ),
    (
        "peer",
        &[
            "server",
            "state",
            "config",
            "transport",
            "limits",
            "status",
            "metrics",
        ],
    ),
    (
        "client",
        &[
            "server",
            "duties",
            "state",
            "config",
            "transport",
            "limits",
            "status",
            "metrics",
        ],
    ),
];

/// Imports that close today's circles, to be cut (none left: issue 14 cut
/// the applier's result type, the metrics, the discovery and the lease loop
/// out of them). A new entry needs a reason and an issue.
const TO_CUT: &[(&str, &str)] = &[];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The unit a file belongs to.
fn unit_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// The units a source text names as `crate::<unit>`.
fn imports_of(text: &str) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if rest.starts_with('{') {
            return Err("a grouped `crate::{…}` import (name each path)".into());
        }
        let unit: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !unit.is_empty() {
            out.insert(unit);
        }
    }
    Ok(out)
}

#[test]
fn folders_import_only_what_they_may() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 40,
        "found only {} files under src",
        files.len()
    );

    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut wrong = Vec::new();
    for file in &files {
        let unit = unit_of(&src, file);
        if unit == "lib" || unit == "main" || unit == "embed" {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read a source file");
        let imports = match imports_of(&text) {
            Ok(imports) => imports,
            Err(why) => {
                wrong.push(format!("{}: {why}", file.display()));
                continue;
            }
        };
        let allowed = ALLOWED
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, may)| *may)
            .unwrap_or_else(|| panic!("{unit} (from {}) is not in ALLOWED", file.display()));
        for target in imports.into_iter().filter(|t| *t != unit) {
            if allowed.contains(&target.as_str()) {
                continue;
            }
            if TO_CUT.contains(&(unit.as_str(), target.as_str())) {
                seen.insert((unit.clone(), target));
                continue;
            }
            wrong.push(format!(
                "{}: {unit} may not import {target}",
                file.display()
            ));
        }
    }
    for (from, to) in TO_CUT {
        if !seen.contains(&(from.to_string(), to.to_string())) {
            wrong.push(format!(
                "{from} no longer imports {to}: take it off TO_CUT in tests/layout.rs"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "layout rules broken:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn imports_are_read_from_paths() {
    let text = "use crate::node::apply;\nlet m = crate::client::metrics::Metrics::new();";
    let got = imports_of(text).expect("no grouped import");
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        vec!["client".to_string(), "node".to_string()]
    );
    assert!(imports_of("use crate::{node, client};").is_err());
}
