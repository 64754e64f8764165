//! Repository hygiene checks: cheap, textual rules that clippy and rustfmt do not cover.
//!
//! - every crate root starts with a `//!` doc comment;
//! - no `todo`/`unimplemented`/`dbg` macros outside tests;
//! - no tracked file over 5 MiB, no tracked build output or minified JS;
//! - every crate under `crates/` is named in `ARCHITECTURE.md`;
//! - every crate's section of the code map in `ARCHITECTURE.md` (and `xtask`'s) states its
//!   workspace dependencies exactly as its `Cargo.toml` has them: a `Depends on:` line for
//!   `[dependencies]` and a `Tests use:` line for `[dev-dependencies]` (see
//!   [`architecture_dependencies`] for the format).
//!
//! Each check returns a list of failures, each naming the file at fault, so that one run
//! reports every problem rather than the first.

use std::collections::{BTreeMap, BTreeSet};
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
    failures.extend(architecture_dependencies(root, &crates));
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

/// The label of the line that lists a crate's normal workspace dependencies.
const DEPENDS_ON: &str = "Depends on:";
/// The label of the line that lists the workspace crates in a crate's `[dev-dependencies]`.
const TESTS_USE: &str = "Tests use:";
/// What a `Depends on:` or `Tests use:` line says when the list is empty.
const NO_WORKSPACE_CRATE: &str = "no workspace crate";

/// Every crate's section of the code map in `ARCHITECTURE.md` states the crate's workspace
/// dependencies exactly as its `Cargo.toml` has them, so that the prose cannot drift.
///
/// The format, under the `## Code map` heading (fenced code blocks are skipped):
///
/// - one `` ### `crates/<dir>` `` heading per directory under `crates/`, and `` ### `xtask` ``;
///   text after the backticked path (`(binary)`, ...) is free;
/// - in each such section exactly one line starting with `Depends on:`, which lists the
///   workspace crates of the crate's `[dependencies]` (optional ones and target-specific ones
///   included) as backticked package names, or says `no workspace crate`;
/// - and at most one line starting with `Tests use:`, the same for `[dev-dependencies]`; it is
///   required when the crate has a dev-dependency on a workspace crate, and otherwise must be
///   absent or say `no workspace crate`.
///
/// A statement runs from its label over the following lines up to a blank line, a heading, a
/// code fence or the other label, and ends at its first full stop (a `.` followed by a space
/// or the end). Backticked names inside parentheses are remarks, not part of the list:
/// ``Depends on: `weir-core`, `weir-istio` (without its `client` feature).``
///
/// "Workspace crates" are the package names of `crates/*/Cargo.toml`; `[build-dependencies]`
/// are not checked. A code map section for a crate directory that does not exist fails too.
fn architecture_dependencies(root: &Path, crates: &[PathBuf]) -> Vec<String> {
    let doc = match fs::read_to_string(root.join("ARCHITECTURE.md")) {
        Ok(d) => d,
        Err(e) => {
            return vec![format!(
                "ARCHITECTURE.md: cannot read, so crate dependencies cannot be checked: {e}"
            )];
        }
    };
    let mut failures = Vec::new();
    let mut workspace = BTreeSet::new();
    let mut manifests = Vec::new();
    let sections = crates
        .iter()
        .filter_map(|dir| {
            let name = dir.file_name()?.to_string_lossy().into_owned();
            Some((format!("crates/{name}"), dir.join("Cargo.toml"), true))
        })
        .chain(std::iter::once((
            "xtask".to_owned(),
            root.join("xtask/Cargo.toml"),
            false,
        )));
    for (section, manifest, is_workspace_crate) in sections {
        let path = rel(root, &manifest);
        let text = match fs::read_to_string(&manifest) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{path}: cannot read: {e}"));
                continue;
            }
        };
        if is_workspace_crate {
            match package_name(&text) {
                Some(name) => {
                    workspace.insert(name);
                }
                None => failures.push(format!("{path}: no `name` in its [package] table")),
            }
        }
        manifests.push(Manifest {
            section,
            path,
            text,
        });
    }
    failures.extend(dependency_drift(&doc, &workspace, &manifests));
    failures
}

/// A manifest to hold against `ARCHITECTURE.md`.
#[derive(Debug)]
struct Manifest {
    /// The code map section that describes it: `crates/weir-core`, `xtask`.
    section: String,
    /// Its path, for messages: `crates/weir-core/Cargo.toml`.
    path: String,
    text: String,
}

/// The failures of [`architecture_dependencies`] for the text of `ARCHITECTURE.md`, the
/// workspace's package names and the manifests to check.
fn dependency_drift(
    doc: &str,
    workspace: &BTreeSet<String>,
    manifests: &[Manifest],
) -> Vec<String> {
    let Some(sections) = code_map_sections(doc) else {
        return vec![
            "ARCHITECTURE.md: no \"## Code map\" heading, so crate dependencies cannot be checked"
                .to_owned(),
        ];
    };
    let mut failures = Vec::new();
    let mut by_path: BTreeMap<&str, Vec<&CodeMapSection>> = BTreeMap::new();
    for s in &sections {
        by_path.entry(s.path.as_str()).or_default().push(s);
    }
    for m in manifests {
        let section = match by_path.get(m.section.as_str()).map(Vec::as_slice) {
            Some([one]) => *one,
            Some(several) => {
                failures.push(format!(
                    "ARCHITECTURE.md: {} has {} \"### `{}`\" sections under \"## Code map\"; write exactly one",
                    m.section,
                    several.len(),
                    m.section
                ));
                continue;
            }
            None => {
                failures.push(format!(
                    "ARCHITECTURE.md: no \"### `{}`\" section under \"## Code map\" stating what {} depends on",
                    m.section, m.path
                ));
                continue;
            }
        };
        let deps = manifest_deps(&m.text);
        let in_workspace = |set: &BTreeSet<String>| -> BTreeSet<String> {
            set.intersection(workspace).cloned().collect()
        };
        failures.extend(list_failures(
            DepKind::Normal,
            m,
            &section.depends_on,
            &in_workspace(&deps.normal),
            workspace,
        ));
        failures.extend(list_failures(
            DepKind::Dev,
            m,
            &section.tests_use,
            &in_workspace(&deps.dev),
            workspace,
        ));
    }
    for path in by_path.keys() {
        if !manifests.iter().any(|m| m.section == *path) {
            failures.push(format!(
                "ARCHITECTURE.md: the code map has a section for {path}, but there is no {path}/Cargo.toml"
            ));
        }
    }
    failures
}

/// Which table of a manifest a dependency comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DepKind {
    /// `[dependencies]`, stated by `Depends on:`.
    Normal,
    /// `[dev-dependencies]`, stated by `Tests use:`.
    Dev,
}

/// Compares one statement kind of one code map section (`stated`: the text after each of its
/// labels) with the workspace crates `actual` of the manifest's matching table.
fn list_failures(
    kind: DepKind,
    manifest: &Manifest,
    stated: &[String],
    actual: &BTreeSet<String>,
    workspace: &BTreeSet<String>,
) -> Vec<String> {
    let (label, table) = match kind {
        DepKind::Normal => (DEPENDS_ON, "[dependencies]"),
        DepKind::Dev => (TESTS_USE, "[dev-dependencies]"),
    };
    let (section, path) = (&manifest.section, &manifest.path);
    let join = |set: &BTreeSet<String>| {
        if set.is_empty() {
            NO_WORKSPACE_CRATE.to_owned()
        } else {
            set.iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let text = match stated {
        [one] => one,
        [] if kind == DepKind::Dev && actual.is_empty() => return Vec::new(),
        [] => {
            return vec![format!(
                "ARCHITECTURE.md: {section} has no `{label}` line; {path}'s {table} has {}",
                join(actual)
            )];
        }
        several => {
            return vec![format!(
                "ARCHITECTURE.md: {section} has {} `{label}` lines; write exactly one",
                several.len()
            )];
        }
    };
    let list = dep_list(text);
    let mut failures = Vec::new();
    if list.names.is_empty() && !list.says_none {
        failures.push(format!(
            "ARCHITECTURE.md: {section}'s `{label}` names no crate in backticks and does not say \"{NO_WORKSPACE_CRATE}\""
        ));
    }
    if !list.names.is_empty() && list.says_none {
        failures.push(format!(
            "ARCHITECTURE.md: {section}'s `{label}` says \"{NO_WORKSPACE_CRATE}\" but names {}",
            join(&list.names)
        ));
    }
    for name in list.names.difference(workspace) {
        failures.push(format!(
            "ARCHITECTURE.md: {section}'s `{label}` names `{name}`, which is not a workspace crate"
        ));
    }
    for name in list.names.intersection(workspace) {
        if !actual.contains(name) {
            failures.push(match kind {
                DepKind::Normal => format!(
                    "ARCHITECTURE.md: {section} says it depends on {name}, but {path} does not"
                ),
                DepKind::Dev => format!(
                    "ARCHITECTURE.md: {section} says its tests use {name}, but {path} has no such dev-dependency"
                ),
            });
        }
    }
    for name in actual.difference(&list.names) {
        failures.push(match kind {
            DepKind::Normal => format!(
                "ARCHITECTURE.md: {path} depends on {name}, which {section}'s `{label}` does not list"
            ),
            DepKind::Dev => format!(
                "ARCHITECTURE.md: {path} has a dev-dependency on {name}, which {section}'s `{label}` does not list"
            ),
        });
    }
    failures
}

/// One `` ### `<path>` `` section of the code map.
#[derive(Debug, Default, PartialEq, Eq)]
struct CodeMapSection {
    /// The backticked path of the heading: `crates/weir-core`, `xtask`.
    path: String,
    /// The text after each `Depends on:` label, wrapped lines joined by a space.
    depends_on: Vec<String>,
    /// The text after each `Tests use:` label, likewise.
    tests_use: Vec<String>,
}

/// The crate sections of the `## Code map` of `ARCHITECTURE.md`, in order, or `None` when it
/// has no such heading. See [`architecture_dependencies`] for the format.
fn code_map_sections(doc: &str) -> Option<Vec<CodeMapSection>> {
    let mut found = false;
    let mut in_code_map = false;
    let mut in_fence = false;
    let mut sections = Vec::new();
    let mut current: Option<CodeMapSection> = None;
    // The statement being read: which label, and its text so far.
    let mut open: Option<(DepKind, String)> = None;
    let close = |current: &mut Option<CodeMapSection>, open: &mut Option<(DepKind, String)>| {
        if let (Some(section), Some((kind, text))) = (current.as_mut(), open.take()) {
            let text = text.trim().to_owned();
            match kind {
                DepKind::Normal => section.depends_on.push(text),
                DepKind::Dev => section.tests_use.push(text),
            }
        }
    };
    for line in doc.lines() {
        let line = line.trim();
        if line.starts_with("```") || line.starts_with("~~~") {
            close(&mut current, &mut open);
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if let Some((level, title)) = heading(line) {
            close(&mut current, &mut open);
            if level <= 3 {
                sections.extend(current.take());
            }
            if level <= 2 {
                in_code_map = level == 2 && title == "Code map";
                found |= in_code_map;
            } else if level == 3 && in_code_map {
                current = section_path(title).map(|path| CodeMapSection {
                    path,
                    ..CodeMapSection::default()
                });
            }
            continue;
        }
        if line.is_empty() {
            close(&mut current, &mut open);
        } else if let Some(rest) = line.strip_prefix(DEPENDS_ON) {
            close(&mut current, &mut open);
            open = Some((DepKind::Normal, rest.to_owned()));
        } else if let Some(rest) = line.strip_prefix(TESTS_USE) {
            close(&mut current, &mut open);
            open = Some((DepKind::Dev, rest.to_owned()));
        } else if let Some((_, text)) = open.as_mut() {
            text.push(' ');
            text.push_str(line);
        }
    }
    close(&mut current, &mut open);
    sections.extend(current);
    found.then_some(sections)
}

/// `(level, title)` of an ATX heading line (`### Title`).
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.chars().take_while(|&c| c == '#').count();
    let rest = &line[level..];
    ((1..=6).contains(&level) && (rest.is_empty() || rest.starts_with(char::is_whitespace)))
        .then(|| (level, rest.trim().trim_end_matches('#').trim()))
}

/// The path a code map heading describes, when it starts with one in backticks that names a
/// crate: `` `crates/weir` (binary) `` gives `crates/weir`.
fn section_path(title: &str) -> Option<String> {
    let rest = title.strip_prefix('`')?;
    let path = rest[..rest.find('`')?].trim().trim_end_matches('/');
    (path == "xtask" || path.starts_with("crates/")).then(|| path.to_owned())
}

/// What one `Depends on:` / `Tests use:` statement says.
#[derive(Debug, Default, PartialEq, Eq)]
struct DepList {
    /// The backticked names before the first full stop, outside parentheses.
    names: BTreeSet<String>,
    /// The statement says "no workspace crate" (outside parentheses).
    says_none: bool,
}

/// Reads the text after a label: see [`architecture_dependencies`].
fn dep_list(text: &str) -> DepList {
    let mut names = BTreeSet::new();
    let mut prose = String::new();
    let mut parens = 0usize;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let after = &rest[c.len_utf8()..];
        match c {
            '`' => {
                let Some(end) = after.find('`') else { break };
                let name = after[..end].trim();
                if parens == 0 && !name.is_empty() {
                    names.insert(name.to_owned());
                }
                rest = &after[end + 1..];
                continue;
            }
            '(' => parens += 1,
            ')' => parens = parens.saturating_sub(1),
            '.' if parens == 0 && after.chars().next().is_none_or(char::is_whitespace) => break,
            _ if parens == 0 => prose.push(c),
            _ => {}
        }
        rest = after;
    }
    DepList {
        names,
        says_none: prose.to_lowercase().contains(NO_WORKSPACE_CRATE),
    }
}

/// The dependencies a manifest declares, by package name.
#[derive(Debug, Default, PartialEq, Eq)]
struct ManifestDeps {
    /// `[dependencies]` and `[target.<cfg>.dependencies]`, optional ones included.
    normal: BTreeSet<String>,
    /// `[dev-dependencies]` and `[target.<cfg>.dev-dependencies]`.
    dev: BTreeSet<String>,
}

/// Reads the dependency tables of a `Cargo.toml` (std only, so by hand: a small reader of the
/// TOML that manifests use). Handles `name.workspace = true`, `name = "1"`, inline tables
/// (`name = { workspace = true, features = [...] }`, also spread over lines), quoted keys,
/// `[dependencies.name]` tables, renames (`package = "..."`) and comments;
/// `[build-dependencies]` and every other table are ignored.
fn manifest_deps(manifest: &str) -> ManifestDeps {
    let mut deps = ManifestDeps::default();
    // Key as written -> package name, per table kind; a rename may come after the key.
    let mut found: BTreeMap<(DepKind, String), String> = BTreeMap::new();
    // The dependency table we are in, and the dependency a `[dependencies.name]` table names.
    let mut table: Option<(DepKind, Option<String>)> = None;
    for statement in toml_statements(manifest) {
        if let Some(header) = statement.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            let header = header.trim_end().trim_end_matches(']');
            table = dependency_table(&dotted_key(header));
            if let Some((kind, Some(name))) = &table {
                found
                    .entry((*kind, name.clone()))
                    .or_insert_with(|| name.clone());
            }
            continue;
        }
        let Some((kind, named)) = &table else {
            continue;
        };
        let Some((key, value)) = split_key_value(&statement) else {
            continue;
        };
        let key = dotted_key(key);
        let value = value.trim();
        match (named, key.as_slice()) {
            // `[dependencies.name]` then `package = "real"`.
            (Some(name), [field]) if field == "package" => {
                found.insert((*kind, name.clone()), toml_string(value));
            }
            (Some(_), _) => {}
            // `name.package = "real"`.
            (None, [name, field]) if field == "package" => {
                found.insert((*kind, name.clone()), toml_string(value));
            }
            // `name = { package = "real", ... }`.
            (None, [name]) if inline_table_value(value, "package").is_some() => {
                let package = inline_table_value(value, "package").unwrap_or_default();
                found.insert((*kind, name.clone()), toml_string(package));
            }
            (None, [name, ..]) => {
                found
                    .entry((*kind, name.clone()))
                    .or_insert_with(|| name.clone());
            }
            (None, []) => {}
        }
    }
    for ((kind, _), package) in found {
        match kind {
            DepKind::Normal => deps.normal.insert(package),
            DepKind::Dev => deps.dev.insert(package),
        };
    }
    deps
}

/// Which dependency table a header's dotted path opens: `dependencies`, `dev-dependencies`
/// (or the old `dev_dependencies`), either under `target.<cfg>`, optionally followed by the
/// one dependency the table describes. `None` for any other table, build-dependencies
/// included.
fn dependency_table(path: &[String]) -> Option<(DepKind, Option<String>)> {
    let path = match path {
        [target, _cfg, rest @ ..] if target == "target" => rest,
        _ => path,
    };
    let (first, rest) = path.split_first()?;
    let kind = match first.as_str() {
        "dependencies" => DepKind::Normal,
        "dev-dependencies" | "dev_dependencies" => DepKind::Dev,
        _ => return None,
    };
    match rest {
        [] => Some((kind, None)),
        [name] => Some((kind, Some(name.clone()))),
        // `[dependencies.name.features]` and the like: not a new dependency.
        _ => None,
    }
}

/// The logical lines of a TOML document: comments removed, strings kept verbatim, and a value
/// that spans lines (an array, an inline table, a multi-line string) joined into one line.
/// Table headers come out as statements starting with `[`.
fn toml_statements(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut i = 0;
    let flush = |current: &mut String, statements: &mut Vec<String>| {
        let s = current.trim();
        if !s.is_empty() {
            statements.push(s.to_owned());
        }
        current.clear();
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '"' | '\'' => {
                let triple = chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c);
                let quote_len = if triple { 3 } else { 1 };
                current.extend(&chars[i..i + quote_len]);
                i += quote_len;
                while i < chars.len() {
                    let d = chars[i];
                    if !triple && d == '\n' {
                        break; // An unterminated string ends with its line.
                    }
                    if d == '\\' && c == '"' {
                        current.extend(chars.get(i..(i + 2).min(chars.len())).unwrap_or(&[]));
                        i += 2;
                        continue;
                    }
                    if d == c
                        && (!triple
                            || (chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c)))
                    {
                        current.extend(&chars[i..i + quote_len]);
                        i += quote_len;
                        break;
                    }
                    current.push(if d == '\n' { ' ' } else { d });
                    i += 1;
                }
                continue;
            }
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            '\n' if depth == 0 => {
                flush(&mut current, &mut statements);
                i += 1;
                continue;
            }
            _ => {}
        }
        current.push(if c == '\n' { ' ' } else { c });
        i += 1;
    }
    flush(&mut current, &mut statements);
    statements
}

/// Byte offsets of `sep` in `s` outside strings and outside brackets and braces.
fn top_level_positions(s: &str, sep: char) -> Vec<usize> {
    let mut positions = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (at, c) in s.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            _ if c == sep && depth == 0 => positions.push(at),
            _ => {}
        }
    }
    positions
}

/// `key = value` split at its first top-level `=`.
fn split_key_value(statement: &str) -> Option<(&str, &str)> {
    let at = *top_level_positions(statement, '=').first()?;
    Some((&statement[..at], &statement[at + 1..]))
}

/// The parts of a dotted TOML key, unquoted: `a . "b.c"` gives `a` and `b.c`.
fn dotted_key(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut start = 0;
    for at in top_level_positions(key, '.')
        .into_iter()
        .chain(std::iter::once(key.len()))
    {
        let part = key[start..at].trim();
        if !part.is_empty() {
            parts.push(toml_string(part));
        }
        start = at + 1;
    }
    parts
}

/// The value of `key` in an inline table `{ k = v, ... }`, as written.
fn inline_table_value<'a>(value: &'a str, key: &str) -> Option<&'a str> {
    let inner = value.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut start = 0;
    for at in top_level_positions(inner, ',')
        .into_iter()
        .chain(std::iter::once(inner.len()))
    {
        let entry = &inner[start..at];
        start = at + 1;
        if let Some((k, v)) = split_key_value(entry)
            && dotted_key(k) == [key]
        {
            return Some(v.trim());
        }
    }
    None
}

/// A TOML string or bare key without its quotes (escapes are not needed for package names).
fn toml_string(s: &str) -> String {
    let s = s.trim();
    for q in ["\"", "'"] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    s.to_owned()
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

    /// Every form of dependency the repository's manifests use, and a few more.
    const MANIFEST: &str = r#"
[package]
name = "weir-x" # [dependencies] in a comment
description = """
[dev-dependencies]
weir-in-a-string = 1
"""

[dependencies]
weir-core.workspace = true
weir-shield = { workspace = true }   # weir-commented = { workspace = true }
  weir-istio = { workspace = true, features = ["client"] }
"weir-prom"={workspace=true,default-features=false}
weir-controller = { workspace = true, optional = true }
weir-sim = { path = "../weir-sim" }
weir-policy   .   workspace   =   true
# weir-eval.workspace = true
kube = { version = "5", features = [
    "client", # [dev-dependencies] in a comment
    "runtime",
] }
rec = { package = "weir-recorder", path = "../weir-recorder" }
cfg.package = "weir-config"
cfg.path = "../weir-config"
weir-git = { git = "https://example.invalid/x#main" }
serde.workspace = true

[ dev-dependencies ]
weir-test-support = { workspace = true, features = ["kube"] }
tokio = { workspace = true, features = ["test-util"] }

[build-dependencies]
weir-build.workspace = true

[target.'cfg(unix)'.dependencies]
weir-unix = { path = "../weir-unix" }

[dependencies.weir-dotted]
workspace = true

[[bench]]
name = "step"
harness = false

[features]
weir-feature = ["dep:weir-controller"]
default = []
"#;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn reads_dependency_tables() {
        let deps = manifest_deps(MANIFEST);
        assert_eq!(
            deps.normal,
            set(&[
                "kube",
                "serde",
                "weir-config",
                "weir-controller",
                "weir-core",
                "weir-dotted",
                "weir-git",
                "weir-istio",
                "weir-policy",
                "weir-prom",
                "weir-recorder",
                "weir-shield",
                "weir-sim",
                "weir-unix",
            ])
        );
        assert_eq!(deps.dev, set(&["tokio", "weir-test-support"]));
    }

    #[test]
    fn reads_dev_dependencies_up_to_the_next_table() {
        let deps = manifest_deps(
            "[dependencies]\nweir-core.workspace = true\n\n[dev-dependencies]\n\
             weir-test-support.workspace = true\n[features]\nweir-shield = []\n\
             [dependencies.weir-policy.features]\nx = 1\n",
        );
        assert_eq!(deps.normal, set(&["weir-core"]));
        assert_eq!(deps.dev, set(&["weir-test-support"]));
        assert_eq!(
            manifest_deps("[package]\nname = \"x\"\n"),
            ManifestDeps::default()
        );
    }

    #[test]
    fn splits_toml_statements() {
        assert_eq!(
            toml_statements("a = [\n  1, # one\n  2,\n]\n[t] # c\nb = \"#\"\n"),
            ["a = [   1,    2, ]", "[t]", "b = \"#\""]
        );
        assert_eq!(dotted_key(" a . \"b.c\" "), ["a", "b.c"]);
        assert_eq!(
            inline_table_value(r#"{ path = "x", package = 'y' }"#, "package"),
            Some("'y'")
        );
    }

    /// A code map in the new format, with a fence, a wrapped statement and a later section.
    const DOC: &str = "\
# Architecture

Depends on: `not-in-a-section`.

## Code map

```
### `crates/in-a-fence`
Depends on: `weir-fenced`.
```

### `crates/weir-core`

The types. Depends on: `serde` is prose, not a statement.
Depends on: no workspace crate.

### `crates/weir` (binary)

The command.

Depends on: `weir-core`, `weir-shield`,
  `weir-policy` (with `default-features = false`)
and `weir-eval`. Also `weir-prose`, not listed.
Tests use: `weir-test-support`.
More prose.

### `crates/weir-lab` (binary `weir-lab`)

Depends on: `weir-haproxy`.
Tests use: no workspace crate.

### Not a crate

Depends on: `weir-ignored`.

### `xtask`

Depends on: no workspace crate (std only).

## Cross-cutting concerns

### `crates/weir-later`

Depends on: `weir-core`.
";

    #[test]
    fn reads_code_map_sections() {
        let sections = code_map_sections(DOC).expect("has a code map");
        let section = |path: &str, depends_on: &[&str], tests_use: &[&str]| CodeMapSection {
            path: path.to_owned(),
            depends_on: depends_on.iter().map(|s| (*s).to_owned()).collect(),
            tests_use: tests_use.iter().map(|s| (*s).to_owned()).collect(),
        };
        assert_eq!(
            sections,
            [
                section("crates/weir-core", &["no workspace crate."], &[]),
                section(
                    "crates/weir",
                    &[
                        "`weir-core`, `weir-shield`, `weir-policy` (with `default-features = false`) \
                       and `weir-eval`. Also `weir-prose`, not listed."
                    ],
                    &["`weir-test-support`. More prose."],
                ),
                section(
                    "crates/weir-lab",
                    &["`weir-haproxy`."],
                    &["no workspace crate."]
                ),
                section("xtask", &["no workspace crate (std only)."], &[]),
            ]
        );
        assert_eq!(code_map_sections("# A\n## Data flow\n"), None);
        assert_eq!(
            section_path("`crates/weir` (binary)").as_deref(),
            Some("crates/weir")
        );
        assert_eq!(
            section_path("`crates/weir-x/`").as_deref(),
            Some("crates/weir-x")
        );
        assert_eq!(section_path("Determinism"), None);
        assert_eq!(section_path("`weir-core`"), None);
    }

    #[test]
    fn reads_dependency_lists() {
        let list = dep_list(&code_map_sections(DOC).expect("has a code map")[1].depends_on[0]);
        assert_eq!(
            list,
            DepList {
                names: set(&["weir-core", "weir-eval", "weir-policy", "weir-shield"]),
                says_none: false,
            }
        );
        let none = dep_list("no workspace crate (`axum` only).");
        assert_eq!(
            none,
            DepList {
                names: set(&[]),
                says_none: true
            }
        );
        assert_eq!(dep_list("No workspace crates").names, set(&[]));
        assert!(dep_list("No workspace crates").says_none);
        assert_eq!(
            dep_list("`weir-core` only.It goes on").names,
            set(&["weir-core"])
        );
        assert_eq!(dep_list("`a`. `b`").names, set(&["a"]));
        assert!(!dep_list("nothing").says_none);
    }

    fn manifest(section: &str, text: &str) -> Manifest {
        Manifest {
            section: section.to_owned(),
            path: format!("{section}/Cargo.toml"),
            text: text.to_owned(),
        }
    }

    fn workspace() -> BTreeSet<String> {
        set(&[
            "weir-controller",
            "weir-core",
            "weir-io",
            "weir-prom",
            "weir-shield",
            "weir-test-support",
        ])
    }

    #[test]
    fn consistent_code_map_passes() {
        let doc = "## Code map\n\n### `crates/weir-prom`\n\nThe source.\n\n\
                   Depends on: `weir-core`, `weir-controller` (optional).\n\
                   Tests use: `weir-test-support`.\n\n\
                   ### `crates/weir-core`\n\nDepends on: no workspace crate.\n\n\
                   ### `xtask`\n\nDepends on: no workspace crate.\nTests use: no workspace crate.\n";
        let manifests = [
            manifest(
                "crates/weir-prom",
                "[dependencies]\nweir-core.workspace = true\nserde.workspace = true\n\
                 weir-controller = { workspace = true, optional = true }\n\
                 [dev-dependencies]\nweir-test-support.workspace = true\ntokio.workspace = true\n",
            ),
            manifest("crates/weir-core", "[dependencies]\nserde = \"1\"\n"),
            manifest("xtask", "[dependencies]\n"),
        ];
        assert_eq!(
            dependency_drift(doc, &workspace(), &manifests),
            Vec::<String>::new()
        );
    }

    #[test]
    fn drift_is_reported_both_ways() {
        let doc = "## Code map\n\n### `crates/weir-prom`\n\n\
                   Depends on: `weir-core`, `weir-controller`.\n\
                   Tests use: `weir-test-support`, `weir-shield`.\n\n\
                   ### `crates/weir-shield`\n\nThe rules.\n\n\
                   ### `crates/weir-core`\n\nDepends on: `weir-core-types`.\n\n\
                   ### `crates/weir-gone`\n\nDepends on: no workspace crate.\n\n\
                   ### `xtask`\n\nDepends on: nothing at all.\n";
        let manifests = [
            manifest(
                "crates/weir-prom",
                "[dependencies]\nweir-core.workspace = true\nweir-io = { path = \"../weir-io\" }\n\
                 [dev-dependencies]\nweir-test-support.workspace = true\nweir-io.workspace = true\n",
            ),
            manifest(
                "crates/weir-shield",
                "[dependencies]\nweir-core.workspace = true\n\
                 [dev-dependencies]\nweir-test-support.workspace = true\n",
            ),
            manifest("crates/weir-core", "[dependencies]\nserde = \"1\"\n"),
            manifest(
                "crates/weir-io",
                "[dependencies]\nweir-core.workspace = true\n",
            ),
            manifest("xtask", "[dependencies]\n"),
        ];
        assert_eq!(
            dependency_drift(doc, &workspace(), &manifests),
            [
                "ARCHITECTURE.md: crates/weir-prom says it depends on weir-controller, \
                 but crates/weir-prom/Cargo.toml does not",
                "ARCHITECTURE.md: crates/weir-prom/Cargo.toml depends on weir-io, \
                 which crates/weir-prom's `Depends on:` does not list",
                "ARCHITECTURE.md: crates/weir-prom says its tests use weir-shield, \
                 but crates/weir-prom/Cargo.toml has no such dev-dependency",
                "ARCHITECTURE.md: crates/weir-prom/Cargo.toml has a dev-dependency on weir-io, \
                 which crates/weir-prom's `Tests use:` does not list",
                "ARCHITECTURE.md: crates/weir-shield has no `Depends on:` line; \
                 crates/weir-shield/Cargo.toml's [dependencies] has weir-core",
                "ARCHITECTURE.md: crates/weir-shield has no `Tests use:` line; \
                 crates/weir-shield/Cargo.toml's [dev-dependencies] has weir-test-support",
                "ARCHITECTURE.md: crates/weir-core's `Depends on:` names `weir-core-types`, \
                 which is not a workspace crate",
                "ARCHITECTURE.md: no \"### `crates/weir-io`\" section under \"## Code map\" \
                 stating what crates/weir-io/Cargo.toml depends on",
                "ARCHITECTURE.md: xtask's `Depends on:` names no crate in backticks \
                 and does not say \"no workspace crate\"",
                "ARCHITECTURE.md: the code map has a section for crates/weir-gone, \
                 but there is no crates/weir-gone/Cargo.toml",
            ]
        );
    }

    #[test]
    fn statements_must_be_single_and_consistent() {
        let doc = "## Code map\n\n### `crates/weir-core`\n\n\
                   Depends on: no workspace crate.\n\nDepends on: no workspace crate.\n\n\
                   ### `crates/weir-prom`\n\nDepends on: no workspace crate but `weir-core`.\n\n\
                   ### `crates/weir-prom`\n\nDepends on: `weir-core`.\n";
        let manifests = [
            manifest("crates/weir-core", ""),
            manifest(
                "crates/weir-prom",
                "[dependencies]\nweir-core.workspace = true\n",
            ),
        ];
        assert_eq!(
            dependency_drift(doc, &workspace(), &manifests),
            [
                "ARCHITECTURE.md: crates/weir-core has 2 `Depends on:` lines; write exactly one",
                "ARCHITECTURE.md: crates/weir-prom has 2 \"### `crates/weir-prom`\" sections \
                 under \"## Code map\"; write exactly one",
            ]
        );
        let doc = "## Code map\n\n### `crates/weir-prom`\n\n\
                   Depends on: no workspace crate but `weir-core`.\n";
        assert_eq!(
            dependency_drift(doc, &workspace(), &manifests[1..]),
            [
                "ARCHITECTURE.md: crates/weir-prom's `Depends on:` says \"no workspace crate\" \
              but names weir-core"
            ]
        );
        assert_eq!(
            dependency_drift("# Architecture\n", &workspace(), &manifests),
            [
                "ARCHITECTURE.md: no \"## Code map\" heading, so crate dependencies cannot be checked"
            ]
        );
    }

    /// The check runs as part of `check_all`, on the files of a workspace.
    #[test]
    fn check_all_compares_architecture_with_manifests() {
        let root = std::env::temp_dir().join(format!("xtask-tidy-deps-{}", std::process::id()));
        let write = |path: &str, text: &str| {
            let path = root.join(path);
            fs::create_dir_all(path.parent().expect("has a parent")).expect("create dir");
            fs::write(path, text).expect("write file");
        };
        write(
            "crates/weir-core/Cargo.toml",
            "[package]\nname = \"weir-core\"\n",
        );
        write("crates/weir-core/src/lib.rs", "//! Core.\n");
        write(
            "crates/weir-prom/Cargo.toml",
            "[package]\nname = \"weir-prom\"\n[dependencies]\nweir-core.workspace = true\n",
        );
        write("crates/weir-prom/src/lib.rs", "//! Prom.\n");
        write(
            "xtask/Cargo.toml",
            "[package]\nname = \"xtask\"\n[dependencies]\n",
        );
        let doc = |prom: &str| {
            format!(
                "## Code map\n\n### `crates/weir-core`\n\nDepends on: no workspace crate.\n\n\
                 ### `crates/weir-prom`\n\nDepends on: {prom}.\n\n\
                 ### `xtask`\n\nDepends on: no workspace crate.\n"
            )
        };
        let architecture_failures = || {
            check_all(&root)
                .into_iter()
                .filter(|f| f.starts_with("ARCHITECTURE.md"))
                .collect::<Vec<_>>()
        };
        write("ARCHITECTURE.md", &doc("`weir-core`"));
        let passing = architecture_failures();
        write("ARCHITECTURE.md", &doc("no workspace crate"));
        let failing = architecture_failures();
        let _ = fs::remove_dir_all(&root);
        assert_eq!(passing, Vec::<String>::new());
        assert_eq!(
            failing,
            [
                "ARCHITECTURE.md: crates/weir-prom/Cargo.toml depends on weir-core, \
              which crates/weir-prom's `Depends on:` does not list"
            ]
        );
    }
}
