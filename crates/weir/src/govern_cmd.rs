//! `weir govern compile|check|explain|lint`: read files, hand them to `weir-govern`, write
//! what it returns.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use weir_govern::lint::{Severity, lint_all};
use weir_govern::standalone::{parse_inventory, render};
use weir_govern::{Output, Problems, compile, explain, parse, to_yaml};
use weir_persist::write_atomic;

use crate::cli::{
    GovernCheckArgs, GovernCommand, GovernCompileArgs, GovernExplainArgs, GovernLintArgs,
    GovernTarget,
};

pub fn run(cmd: GovernCommand) -> Result<()> {
    match cmd {
        GovernCommand::Compile(args) => compile_cmd(&args),
        GovernCommand::Check(args) => check_cmd(&args),
        GovernCommand::Explain(args) => explain_cmd(&args),
        GovernCommand::Lint(args) => lint_cmd(&args),
    }
}

/// Compiled policies, each with the file it came from.
type Outputs = Vec<(PathBuf, Output)>;

/// Every policy of every file, compiled; all problems of all files when any.
fn compile_files(files: &[PathBuf]) -> Result<Result<Outputs, Vec<Problems>>> {
    let mut outputs = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let origin = file.display().to_string();
        match parse(&text, &origin) {
            Ok(policies) => {
                for p in &policies {
                    match compile(p, &origin) {
                        Ok(o) => outputs.push((file.clone(), o)),
                        Err(e) => problems.push(e),
                    }
                }
            }
            Err(e) => problems.push(e),
        }
    }
    Ok(if problems.is_empty() {
        Ok(outputs)
    } else {
        Err(problems)
    })
}

fn report(problems: &[Problems]) -> usize {
    let n: usize = problems.iter().map(|p| p.0.len()).sum();
    for p in problems {
        eprintln!("{p}");
    }
    n
}

fn notes(outputs: &Outputs) {
    for (file, o) in outputs {
        for n in &o.notes {
            eprintln!(
                "note: {} ({}): {n}",
                file.display(),
                o.virtual_service.metadata.name
            );
        }
    }
}

fn compile_cmd(args: &GovernCompileArgs) -> Result<()> {
    if args.target == GovernTarget::Envoy {
        return compile_envoy(args);
    }
    let outputs = match compile_files(&args.files)? {
        Ok(o) => o,
        Err(problems) => {
            let n = report(&problems);
            bail!("{n} problem(s): nothing written");
        }
    };
    notes(&outputs);
    match &args.out {
        None => {
            let all: Vec<Output> = outputs.into_iter().map(|(_, o)| o).collect();
            print!("{}", to_yaml(&all).context("rendering YAML")?);
        }
        Some(dir) => {
            for (_, o) in &outputs {
                let meta = &o.virtual_service.metadata;
                let name = match &meta.namespace {
                    Some(ns) => format!("{ns}.{}.yaml", meta.name),
                    None => format!("{}.yaml", meta.name),
                };
                let path = dir.join(&name);
                let yaml = to_yaml(std::slice::from_ref(o)).context("rendering YAML")?;
                write(&path, &yaml)?;
                println!("wrote {}", path.display());
                // Prometheus without the operator, and Grafana, take files of their own.
                if let Some(m) = &o.monitoring {
                    let stem = name.trim_end_matches(".yaml");
                    let rules = dir.join(format!("{stem}.rules.yaml"));
                    write(&rules, &m.rules_yaml().context("rendering YAML")?)?;
                    println!("wrote {}", rules.display());
                    let dashboard = dir.join(format!("{stem}.dashboard.json"));
                    write(&dashboard, &m.dashboard_json().context("rendering JSON")?)?;
                    println!("wrote {}", dashboard.display());
                }
                // The rate-limit service's own file, for a service run without Kubernetes.
                if let Some(rl) = &o.ratelimit {
                    let stem = name.trim_end_matches(".yaml");
                    let path = dir.join(format!("{stem}.ratelimit-{}.yaml", rl.domain));
                    let yaml = rl.to_yaml().context("rendering YAML")?;
                    write(&path, &yaml)?;
                    println!("wrote {}", path.display());
                }
            }
        }
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

fn check_cmd(args: &GovernCheckArgs) -> Result<()> {
    match compile_files(&args.files)? {
        Ok(outputs) => {
            notes(&outputs);
            for (file, o) in &outputs {
                println!(
                    "ok: {} ({}: {} routes)",
                    file.display(),
                    o.virtual_service.metadata.name,
                    o.virtual_service.spec.http.len()
                );
            }
            Ok(())
        }
        Err(problems) => {
            let n = report(&problems);
            bail!("{n} problem(s)");
        }
    }
}

fn explain_cmd(args: &GovernExplainArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let origin = args.file.display().to_string();
    let policies = match parse(&text, &origin) {
        Ok(p) => p,
        Err(e) => {
            let n = report(std::slice::from_ref(&e));
            bail!("{n} problem(s)");
        }
    };
    let mut problems = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        match compile(p, &origin) {
            Ok(out) => {
                if i > 0 {
                    println!();
                }
                print!("{}", explain(p, &out));
            }
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let n = report(&problems);
        bail!("{n} problem(s)")
    }
}

fn lint_cmd(args: &GovernLintArgs) -> Result<()> {
    let mut texts = Vec::new();
    for file in &args.files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        texts.push((file.display().to_string(), text));
    }
    let files: Vec<(&str, &str)> = texts
        .iter()
        .map(|(o, t)| (o.as_str(), t.as_str()))
        .collect();
    let findings = lint_all(&files);
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    for f in &findings {
        println!("{f}");
    }
    let warnings = findings.len() - errors;
    if errors > 0 {
        bail!("{errors} error(s), {warnings} warning(s)");
    }
    println!("lint: 0 errors, {warnings} warning(s)");
    Ok(())
}

/// `--target envoy`: one policy, one standalone bootstrap.
fn compile_envoy(args: &GovernCompileArgs) -> Result<()> {
    let [file] = args.files.as_slice() else {
        bail!("--target envoy takes one policy file (one Envoy serves one service)");
    };
    let Some(inv_path) = &args.inventory else {
        bail!("--target envoy needs --inventory FILE");
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let origin = file.display().to_string();
    let policies = match parse(&text, &origin) {
        Ok(p) => p,
        Err(e) => {
            let n = report(std::slice::from_ref(&e));
            bail!("{n} problem(s): nothing written");
        }
    };
    let [policy] = policies.as_slice() else {
        bail!("{origin}: --target envoy takes a file with one policy");
    };
    let out = match compile(policy, &origin) {
        Ok(o) => o,
        Err(e) => {
            let n = report(std::slice::from_ref(&e));
            bail!("{n} problem(s): nothing written");
        }
    };
    let inv_text = std::fs::read_to_string(inv_path)
        .with_context(|| format!("reading {}", inv_path.display()))?;
    let inv_origin = inv_path.display().to_string();
    let rendered = match parse_inventory(&inv_text, &inv_origin)
        .and_then(|inv| render(policy, &out, &inv, &inv_origin))
    {
        Ok(s) => s,
        Err(e) => {
            let n = report(std::slice::from_ref(&e));
            bail!("{n} problem(s): nothing written");
        }
    };
    for n in out.notes.iter().chain(&rendered.notes) {
        eprintln!("note: {origin}: {n}");
    }
    let yaml = weir_govern::standalone::to_yaml(&rendered).context("rendering YAML")?;
    match &args.out {
        None => print!("{yaml}"),
        Some(dir) => {
            let path = dir.join("envoy.yaml");
            write(&path, &yaml)?;
            println!(
                "wrote {} (run: envoy -c {})",
                path.display(),
                path.display()
            );
            if let Some(rl) = &out.ratelimit {
                let path = dir.join(format!("ratelimit-{}.yaml", rl.domain));
                write(&path, &rl.to_yaml().context("rendering YAML")?)?;
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
