//! `weir demo` (wired up once the async controller lands).

use anyhow::Result;

use crate::cli::DemoArgs;

pub fn run(_args: DemoArgs) -> Result<()> {
    anyhow::bail!("demo: not wired yet")
}
