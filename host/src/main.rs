use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = toolbox::cli::Cli::parse();
    toolbox::telemetry::init();
    match toolbox::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(toolbox::cli::EXIT_USAGE)
        }
    }
}
