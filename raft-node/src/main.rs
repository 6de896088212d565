//! `raft-node`: a replicated key-value service over HTTP.
//!
//! Run `raft-node --help` for the options, `raft-node loadgen --help` for
//! the load generator and `raft-node gen-certs --help` for development TLS
//! certificates. Exit status: 0 after a clean shutdown (SIGTERM, ctrl-c),
//! 2 for a bad flag, config file or startup failure (one line on stderr),
//! 1 if a node stops on a fatal error.

use raft_node::service::cli::{self, Command, Parsed};
use raft_node::service::node;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("raft-node: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let parsed = match cli::parse(std::env::args_os()) {
        Ok(p) => p,
        Err(e) => return usage_error(&e),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raft-node: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match parsed {
        Parsed::Print(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Parsed::Command(Command::GenCerts(a)) => {
            match raft_node::service::tls::gen_certs(&a.out, &a.ids) {
                Ok(()) => {
                    println!(
                        "wrote ca.pem, ca.key and node-<id>.pem/.key to {}",
                        a.out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => usage_error(&e),
            }
        }
        Parsed::Command(Command::Loadgen(a)) => {
            init_tracing_quiet();
            match rt.block_on(raft_node::loadgen::main(a)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("raft-node loadgen: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Parsed::Run(c) => {
            init_tracing();
            let code = rt.block_on(run(*c));
            // Every node has stopped and flushed its storage; do not wait
            // for idle connection tasks or blocking-pool threads.
            rt.shutdown_background();
            code
        }
    }
}

/// The load generator logs only warnings unless RUST_LOG says otherwise.
fn init_tracing_quiet() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run(c: cli::Cli) -> ExitCode {
    let grace = Duration::from_millis(c.request_timeout_ms) + Duration::from_secs(1);
    let nodes = match node::start(c).await {
        Ok(n) => n,
        Err(e) => return usage_error(&e.0),
    };
    // Stop on a signal, or when a node stops on its own (a fatal storage
    // or state machine error).
    let mut watches: Vec<_> = nodes.iter().map(|n| n.handle.watch_status()).collect();
    let died = async move {
        let futs = watches
            .iter_mut()
            .map(|w| Box::pin(async move { w.wait_for(|s| !s.running).await.is_ok() }));
        futures::future::select_all(futs).await;
    };
    let fatal = tokio::select! {
        _ = node::shutdown_signal() => false,
        _ = died => true,
    };
    node::stop(nodes, grace).await;
    if fatal {
        tracing::error!("a node stopped on a fatal error; exiting");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
