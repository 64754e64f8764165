//! `weir scenarios generate`: procedurally generated scenario files.

use anyhow::{Context, Result};
use weir_persist::write_atomic;
use weir_sim::generate::{self, GeneratorConfig, Split};

use crate::cli::{GenerateArgs, SplitArg};

pub fn generate(args: &GenerateArgs) -> Result<()> {
    let split = match args.split {
        SplitArg::Train => Split::Train,
        SplitArg::Heldout => Split::Heldout,
    };
    let command = generate::command_line(split, args.seed, args.count);
    let config = GeneratorConfig::default();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for index in 0..args.count {
        let scenario = generate::generate(&config, split, args.seed, index)?;
        let text = generate::render(&scenario, &command)?;
        let path = args.out.join(generate::file_name(&scenario));
        write_atomic(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}  — {}", path.display(), scenario.description);
    }
    Ok(())
}
