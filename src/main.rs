//! `m2`: caption images with a Meshed-Memory Transformer blob. See `m2 --help`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let result = match &args.command {
        Some(cli::Command::Caption(a)) => cli::caption(a),
        Some(cli::Command::Score(a)) => cli::score(a),
        Some(cli::Command::Info(a)) => cli::info(a),
        None => cli::kernels(None).and_then(cli::demo::run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // the reader went away (`m2 … | head`): stop quietly, as Unix tools do
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // one line: the error and its causes
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", msg.join(": "));
            ExitCode::FAILURE
        }
    }
}
