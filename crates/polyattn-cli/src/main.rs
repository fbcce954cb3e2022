//! The `polyattn` command: attention on your own `.npy` / `.safetensors` tensors.
//!
//! Exit codes: 0 success, 2 bad input or usage (one line `error: ...` on stderr), 1 internal failure.

mod cli;

use clap::Parser;

fn main() {
    // A panic is an internal failure: one line, exit code 1, no backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal failure: {info}");
        std::process::exit(1);
    }));
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // The contract is one line `error: ...`; clap's usage lines and tips follow it.
            let rendered = e.to_string();
            eprintln!(
                "{}",
                rendered
                    .lines()
                    .next()
                    .unwrap_or("error: invalid arguments")
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = cli::run(args) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
