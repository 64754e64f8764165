//! Embeds the dashboard's files. Our own page, script and style come from `web/`; the chart
//! library (uPlot) comes from npm through `web/package.json` and its lockfile, installed
//! here with `npm ci` when `web/node_modules` is missing or older than the lockfile, so a
//! fresh clone needs nothing but `cargo`. Set `WEIR_UPLOT_DIST` to a directory holding
//! `uPlot.esm.js` and `uPlot.min.css` to build without npm (packagers, offline builds).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Our own files, copied as they are.
const OWN: &[&str] = &["index.html", "app.js", "app.css", "view.js"];
/// What the page needs from the uPlot package.
const UPLOT: &[&str] = &["uPlot.esm.js", "uPlot.min.css"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let web = manifest.join("web");
    println!("cargo::rerun-if-env-changed=WEIR_UPLOT_DIST");
    for f in OWN.iter().chain(&["package.json", "package-lock.json"]) {
        println!("cargo::rerun-if-changed=web/{f}");
    }
    for f in OWN {
        copy(&web.join(f), &out.join(f));
    }
    let dist = match std::env::var_os("WEIR_UPLOT_DIST") {
        Some(d) => PathBuf::from(d),
        None => {
            npm_ci(&web);
            web.join("node_modules/uplot/dist")
        }
    };
    for f in UPLOT {
        copy(&dist.join(f), &out.join(f));
    }
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = fs::copy(from, to) {
        fail(&format!("cannot copy {}: {e}", from.display()));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("weir-dashboard build: {msg}");
    panic!("weir-dashboard build: {msg}");
}

/// `npm ci` in `web/` unless what it installed is at least as new as the lockfile. A lock
/// file keeps two builds (clippy and tests, say) from installing at the same time.
fn npm_ci(web: &Path) {
    let lock_path = web.join(".npm-install.lock");
    let lock = match fs::File::create(&lock_path) {
        Ok(f) => f,
        Err(e) => fail(&format!("cannot create {}: {e}", lock_path.display())),
    };
    if let Err(e) = lock.lock() {
        fail(&format!("cannot lock {}: {e}", lock_path.display()));
    }
    let installed = web.join("node_modules/.package-lock.json");
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (mtime(&installed), mtime(&web.join("package-lock.json"))) {
        (Some(i), Some(l)) => i >= l && web.join("node_modules/uplot/dist").is_dir(),
        _ => false,
    };
    if fresh {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(web)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "`npm ci` in {} failed ({s}); the dashboard needs uPlot from the npm registry \
             (or set WEIR_UPLOT_DIST to a directory with uPlot.esm.js and uPlot.min.css)",
            web.display()
        )),
        Err(e) => fail(&format!(
            "cannot run `npm` ({e}): install Node.js and npm (Debian: apt-get install npm), \
             or set WEIR_UPLOT_DIST to a directory with uPlot.esm.js and uPlot.min.css"
        )),
    }
}
