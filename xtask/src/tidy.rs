//! Repository hygiene checks: cheap, textual rules that clippy and rustfmt do not cover.
//!
//! Each check returns a list of failures, each naming the file at fault, so that one run
//! reports every problem rather than the first.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Tracked files larger than this are rejected: models, fixtures and captures that big belong
/// in a release artifact, not in Git history.
const MAX_TRACKED_FILE_BYTES: u64 = 5 * 1024 * 1024;

/// Directory names that only ever hold generated or downloaded files.
const GENERATED_DIRS: [&str; 3] = ["node_modules", "target", "dist"];

/// Runs every check from the workspace root.
pub fn check_all(root: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    let crates = match crate_dirs(root) {
        Ok(c) => c,
        Err(e) => return vec![format!("crates/: cannot list crate directories: {e}")],
    };
    failures.extend(crate_docs(root, &crates));
    failures.extend(debug_macros(root, &crates));
    match tracked_files(root) {
        Ok(Some(files)) => {
            failures.extend(large_files(root, &files));
            failures.extend(generated_files(&files));
        }
        Ok(None) => {
            println!("tidy: not a Git work tree, skipping the tracked-file checks");
        }
        Err(e) => failures.push(format!("git ls-files: {e}")),
    }
    failures.extend(architecture_mentions(root, &crates));
    failures
}

/// The directories under `crates/` that hold a `Cargo.toml`, sorted.
fn crate_dirs(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(root.join("crates"))? {
        let path = entry?.path();
        if path.join("Cargo.toml").is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every crate root starts with a `//!` doc comment saying what the crate is for.
/// `src/lib.rs`, or `src/main.rs` for a binary-only crate.
fn crate_docs(root: &Path, crates: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for dir in crates {
        let lib = dir.join("src/lib.rs");
        let main = dir.join("src/main.rs");
        let file = if lib.is_file() {
            lib
        } else if main.is_file() {
            main
        } else {
            failures.push(format!(
                "{}: crate has neither src/lib.rs nor src/main.rs",
                rel(root, dir)
            ));
            continue;
        };
        match fs::read_to_string(&file) {
            Ok(text) if starts_with_inner_doc(&text) => {}
            Ok(_) => failures.push(format!(
                "{}: must start with a `//!` doc comment saying what the crate is for",
                rel(root, &file)
            )),
            Err(e) => failures.push(format!("{}: cannot read: {e}", rel(root, &file))),
        }
    }
    failures
}

fn starts_with_inner_doc(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("//!"))
}

/// The macros that mark unfinished or debugging code. Spelled in pieces so that this file
/// does not trip its own check.
fn forbidden_macros() -> [String; 3] {
    ["todo", "unimplemented", "dbg"].map(|name| format!("{name}!("))
}

/// No leftover `todo!`, `unimplemented!` or `dbg!` in non-test code under `crates/*/src` and
/// `xtask/src`. Test files (`tests.rs`, anything under a `tests` directory) are skipped;
/// comment lines are ignored.
fn debug_macros(root: &Path, crates: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut files = Vec::new();
    let src_dirs = crates
        .iter()
        .map(|c| c.join("src"))
        .chain(std::iter::once(root.join("xtask/src")));
    for dir in src_dirs {
        if let Err(e) = rust_files(&dir, &mut files) {
            failures.push(format!("{}: cannot list: {e}", rel(root, &dir)));
        }
    }
    files.sort();
    let patterns = forbidden_macros();
    for file in files {
        if is_test_file(&file) {
            continue;
        }
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{}: cannot read: {e}", rel(root, &file)));
                continue;
            }
        };
        for (line, pattern) in find_macros(&text, &patterns) {
            failures.push(format!(
                "{}:{line}: `{pattern}` left in non-test code",
                rel(root, &file)
            ));
        }
    }
    failures
}

/// `(line number, pattern)` for every forbidden macro outside a comment line.
fn find_macros(text: &str, patterns: &[String]) -> Vec<(usize, String)> {
    let mut hits = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for p in patterns {
            if contains_macro(line, p) {
                hits.push((i + 1, p.clone()));
            }
        }
    }
    hits
}

/// `line` calls the macro `pattern` (`name!(`) as a whole identifier, so `my_dbg!(` does not
/// count as `dbg!(`.
fn contains_macro(line: &str, pattern: &str) -> bool {
    line.match_indices(pattern).any(|(at, _)| {
        !line[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "tests.rs")
        || path.components().any(|c| c.as_os_str() == "tests")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The files Git tracks, relative to the root, or `None` outside a Git work tree (a source
/// tarball), where the tracked-file checks do not apply.
fn tracked_files(root: &Path) -> Result<Option<Vec<String>>, String> {
    let inside = Command::new("git")
        .args(["rev-parse", "--is-inside-work-tree"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !inside.is_ok_and(|s| s.success()) {
        return Ok(None);
    }
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let list = String::from_utf8_lossy(&out.stdout);
    Ok(Some(
        list.split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    ))
}

/// No tracked file over [`MAX_TRACKED_FILE_BYTES`].
fn large_files(root: &Path, files: &[String]) -> Vec<String> {
    files
        .iter()
        .filter_map(|f| {
            // A tracked file deleted in the work tree has no size to check.
            let len = fs::metadata(root.join(f)).ok()?.len();
            (len > MAX_TRACKED_FILE_BYTES).then(|| {
                format!(
                    "{f}: {:.1} MiB is over the {} MiB limit for tracked files",
                    len as f64 / (1024.0 * 1024.0),
                    MAX_TRACKED_FILE_BYTES / (1024 * 1024)
                )
            })
        })
        .collect()
}

/// No tracked build output, dependencies or minified bundles.
fn generated_files(files: &[String]) -> Vec<String> {
    files
        .iter()
        .filter_map(|f| generated_reason(f).map(|why| format!("{f}: {why} must not be tracked")))
        .collect()
}

fn generated_reason(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = path.split('/').collect();
    let file = parts.pop().unwrap_or_default();
    if let Some(dir) = parts.iter().find(|p| GENERATED_DIRS.contains(p)) {
        return Some(format!("a file under `{dir}/`"));
    }
    file.ends_with(".min.js")
        .then(|| "a minified `*.min.js` file".to_owned())
}

/// Every crate under `crates/` is described in `ARCHITECTURE.md`, by its package name.
fn architecture_mentions(root: &Path, crates: &[PathBuf]) -> Vec<String> {
    let doc = match fs::read_to_string(root.join("ARCHITECTURE.md")) {
        Ok(d) => d,
        Err(e) => return vec![format!("ARCHITECTURE.md: cannot read: {e}")],
    };
    let mut failures = Vec::new();
    for dir in crates {
        let manifest = dir.join("Cargo.toml");
        let name = fs::read_to_string(&manifest)
            .ok()
            .and_then(|t| package_name(&t))
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        if !mentions(&doc, &name) {
            failures.push(format!(
                "ARCHITECTURE.md: does not mention crate `{name}` ({})",
                rel(root, &manifest)
            ));
        }
    }
    failures
}

/// The `name` of the `[package]` table of a manifest (a line scan is enough for ours).
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
        {
            return Some(value.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// `text` contains `name` as a whole crate name: `weir` inside `weir-core` does not count.
fn mentions(text: &str, name: &str) -> bool {
    let part_of_name = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    !name.is_empty()
        && text.match_indices(name).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + name.len()..].chars().next();
            !before.is_some_and(part_of_name) && !after.is_some_and(part_of_name)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_doc_must_come_first() {
        assert!(starts_with_inner_doc("\n//! Docs.\nmod a;"));
        assert!(!starts_with_inner_doc("mod a;\n//! Docs."));
        assert!(!starts_with_inner_doc("/// Outer.\nfn f() {}"));
        assert!(!starts_with_inner_doc(""));
    }

    #[test]
    fn finds_macros_outside_comments_only() {
        let patterns = forbidden_macros();
        let text = format!(
            "fn f() {{\n    // {0}) is fine in a comment\n    let x = {0}1);\n    my_{0}2);\n}}",
            patterns[2]
        );
        assert_eq!(
            find_macros(&text, &patterns),
            vec![(3, patterns[2].clone())]
        );
    }

    #[test]
    fn test_files_are_skipped() {
        assert!(is_test_file(Path::new("crates/a/src/sim/tests.rs")));
        assert!(is_test_file(Path::new("crates/a/src/tests/helpers.rs")));
        assert!(!is_test_file(Path::new("crates/a/src/testsuite.rs")));
    }

    #[test]
    fn generated_paths_are_rejected() {
        assert!(generated_reason("web/node_modules/x/index.js").is_some());
        assert!(generated_reason("target/debug/weir").is_some());
        assert!(generated_reason("web/dist/app.js").is_some());
        assert!(generated_reason("web/vendor/chart.min.js").is_some());
        assert!(generated_reason("crates/weir-sim/src/target.rs").is_none());
        assert!(generated_reason("docs/distribution.md").is_none());
    }

    #[test]
    fn crate_names_match_whole() {
        let doc = "`weir-core` owns the types; the `weir` binary wires them.";
        assert!(mentions(doc, "weir-core"));
        assert!(mentions(doc, "weir"));
        assert!(!mentions("only weir-core and weir-sim", "weir"));
        assert!(!mentions("weir-core-extra", "weir-core"));
    }

    #[test]
    fn reads_package_name() {
        let manifest = "[package]\nname = \"weir-sim\"\n[dependencies]\nname = \"x\"\n";
        assert_eq!(package_name(manifest).as_deref(), Some("weir-sim"));
        assert_eq!(package_name("[dependencies]\nname = \"x\"\n"), None);
    }
}
