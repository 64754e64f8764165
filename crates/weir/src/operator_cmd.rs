//! `weir operator`: wires the Kubernetes client, the options and the shutdown signal into
//! `weir_operator::operator::run`.

use anyhow::{Context, Result};
use weir_operator::operator::{OperatorOptions, run as run_operator};

use crate::cli::{ManifestsArgs, OperatorArgs};

/// Where Kubernetes mounts the pod's namespace.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

pub fn run(args: OperatorArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .context("no Kubernetes configuration (in-cluster service account or kubeconfig)")?;
        let lease_namespace = match args.lease_namespace {
            Some(ns) => ns,
            None => std::fs::read_to_string(NAMESPACE_FILE)
                .map(|s| s.trim().to_string())
                .context("--lease-namespace (or POD_NAMESPACE) is needed outside a pod")?,
        };
        let identity = match args.identity {
            Some(id) => id,
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| format!("weir-{}", std::process::id())),
        };
        let opts = OperatorOptions {
            listen: args.listen,
            namespace: args.namespace,
            lease_name: args.lease_name,
            lease_namespace,
            identity,
            lease_duration_s: args.lease_duration.max(2),
            concurrency: args.concurrency,
        };
        tracing::info!(listen = %opts.listen, namespace = ?opts.namespace, identity = %opts.identity, "weir operator: starting");
        run_operator(client, opts, crate::run::termination()).await?;
        tracing::info!("weir operator: stopped");
        Ok(())
    })
}

/// `weir manifests`: print the plain manifests, or regenerate every committed deploy file.
pub fn manifests(args: &ManifestsArgs) -> Result<()> {
    if !args.write {
        print!(
            "{}",
            weir_operator::deploy::plain_manifests(&weir_operator::deploy::Values::defaults())
        );
        return Ok(());
    }
    let root = std::env::current_dir().context("the current directory")?;
    if !root.join("deploy").is_dir() {
        anyhow::bail!(
            "{} has no deploy/ directory: run `weir manifests --write` from the repository root",
            root.display()
        );
    }
    for path in weir_operator::deploy::write_all(&root).context("writing the deploy files")? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
