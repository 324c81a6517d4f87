//! `cargo run -p xtask -- docs OUT_DIR`: writes the man pages (`nodeprep.1`, `nodeprep-check.1`, ...) and completions for bash, zsh and fish,
//! generated from the same clap definition the binary uses, so they cannot drift from `--help`.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = match args.as_slice() {
        [_, cmd, out] if cmd == "docs" => Path::new(out).to_path_buf(),
        _ => {
            eprintln!("usage: xtask docs OUT_DIR");
            std::process::exit(2);
        }
    };
    if let Err(e) = docs(&out) {
        eprintln!("xtask: writing docs to {}: {e}", out.display());
        std::process::exit(1);
    }
}

fn docs(out: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    // nodeprep.1 plus nodeprep-<command>.1 for each subcommand.
    clap_mangen::generate_to(nodeprep::cli::Cli::command(), out)?;
    for (shell, file) in
        [(Shell::Bash, "nodeprep.bash"), (Shell::Zsh, "_nodeprep"), (Shell::Fish, "nodeprep.fish")]
    {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut nodeprep::cli::Cli::command(), "nodeprep", &mut buf);
        std::fs::write(out.join(file), buf)?;
    }
    Ok(())
}
