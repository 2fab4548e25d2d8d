//! `m2`: caption images with a Meshed-Memory Transformer blob. See `m2 --help`.

mod cli;

use clap::error::ErrorKind;
use clap::Parser;
use std::process::ExitCode;

/// Whether the shell started us with fd 1 closed (`m2 caption … >&-`). Rust's runtime reopens a
/// closed standard fd on `/dev/null` before `main` (read-write), so every caption would vanish
/// with exit 0. A user's own `> /dev/null` opens it write-only, which this tells apart through
/// `/proc/self/fdinfo` (Linux; elsewhere nothing is detected).
fn stdout_was_closed() -> bool {
    let target = std::fs::read_link("/proc/self/fd/1");
    let flags = std::fs::read_to_string("/proc/self/fdinfo/1");
    match (target, flags) {
        (Ok(t), Ok(info)) if t == std::path::Path::new("/dev/null") => info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .is_some_and(|f| f & 0o3 == 0o2),
        _ => false,
    }
}

/// A command-line error as one `error:` line and exit 1 (clap's own text is several lines and
/// exit 2); `--help` and `--version` print as usual and exit 0.
fn usage_error(e: clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::FAILURE;
    }
    // the first paragraph, joined: one line, or a heading and its list ("the following
    // required arguments were not provided:" and the arguments)
    let text = e.render().to_string();
    let para: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let first = if para.is_empty() {
        "invalid arguments".to_string()
    } else {
        para.join(" ")
    };
    let first = first.strip_prefix("error: ").unwrap_or(&first);
    eprintln!("error: {first} (see `m2 --help`)");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    if stdout_was_closed() {
        eprintln!("error: standard output is closed (`>&-`): the captions would be lost");
        return ExitCode::FAILURE;
    }
    let result = match &args.command {
        Some(cli::Command::Caption(a)) => cli::caption::run(a),
        Some(cli::Command::Score(a)) => cli::score(a),
        Some(cli::Command::Info(a)) => cli::info(a),
        Some(cli::Command::Bench(a)) => cli::bench::run(a),
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
            // (a library's message may span lines, e.g. a parser's caret diagram: folded)
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let msg = msg.join(": ");
            eprintln!(
                "error: {}",
                msg.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            ExitCode::FAILURE
        }
    }
}
