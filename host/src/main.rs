use std::process::ExitCode;

use clap::Parser;

// Plugins allocate with their own copy of std; whatever crosses the boundary carries its
// own deallocator (abi_stable's R* types), so the host's allocator is its own business.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
