//! The `exposures` binary as a child process, and free ports to give it.

use std::process::Stdio;

use tokio::process::Command;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

pub(crate) fn exposures() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_exposures"));
    command.kill_on_drop(true).stdin(Stdio::null());
    command
}
