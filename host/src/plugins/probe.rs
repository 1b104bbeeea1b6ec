//! Loads a candidate library in a short-lived child process (`toolbox plugin-probe
//! FILE`) before the host maps it. A library whose initialisers segfault or abort, or
//! that still crashes dlopen despite the ELF check, kills the child, not the host.

use std::{
    io::Read,
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{loader, LoadError};

/// Exit code of a probe that loaded the library and found a clean error (the host then
/// loads it itself to report that error precisely: a clean error is safe to repeat).
pub const EXIT_REFUSED: i32 = 2;

/// Probes `copy` (the private copy of `file`) with `exe plugin-probe`.
pub fn run(exe: &Path, file: &Path, copy: &Path, timeout: Duration) -> Result<(), LoadError> {
    let crashed = |reason: String| LoadError::ProbeCrashed {
        file: file.to_path_buf(),
        reason,
    };
    let mut child = Command::new(exe)
        .arg("plugin-probe")
        .arg(copy)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "off")
        .spawn()
        .map_err(|e| crashed(format!("cannot start the probe {}: {e}", exe.display())))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(crashed(format!("loading it took longer than {timeout:?}")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(crashed(format!("cannot wait for the probe: {e}"))),
        }
    };
    match status.code() {
        Some(0) | Some(EXIT_REFUSED) => Ok(()),
        code => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            let how = match (code, status.signal()) {
                (_, Some(signal)) => format!("killed by signal {signal}{}", signal_name(signal)),
                (Some(code), None) => format!("exit code {code}"),
                (None, None) => "ended abnormally".to_owned(),
            };
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            Err(crashed(match last {
                Some(line) => format!("{how}; it said: {}", line.trim()),
                None => how,
            }))
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        _ => "",
    }
}

/// The child's side: load `path` and read its manifest. Returns the exit code.
pub fn probe_main(path: &Path) -> i32 {
    let loaded =
        loader::open_module(path, path).and_then(|module| loader::read_manifest(module, path));
    match loaded {
        Ok(_) => 0,
        Err(error) => {
            eprintln!("{error}");
            EXIT_REFUSED
        }
    }
}
