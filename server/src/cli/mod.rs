//! The `mandate-server` CLI: `run` starts the server, every other command talks to the admin
//! API over its unix socket, or over mTLS with `--server-address` and `--endpoint` (DESIGN
//! 3.9). Exit codes: 0 success, 64 usage/config error, 1 any refusal.

mod args;
mod caller_flag;
mod commands;
mod output;
mod print;
mod remote;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hyper_util::rt::TokioIo;
use mandate_proto::admin::admin_client::AdminClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

pub use args::{Cli, Command, OutputFormat, RunArgs};
pub use caller_flag::hoist_caller_spiffe_id;
pub use remote::Remote;

use crate::config::{self, Config, FlagOverrides};

/// Exit code for usage and config errors.
pub const EXIT_USAGE: u8 = 64;

/// Runs a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(run) => run_server(run, cli.admin_socket),
        command => {
            let target = match (cli.server_address, cli.endpoint) {
                (Some(address), Some(endpoint)) => Target::Remote(Remote {
                    address,
                    endpoint,
                    spiffe_id: cli.caller_spiffe_id,
                }),
                (Some(_), None) => {
                    return fail(
                        "--server-address needs --endpoint (the local agent's Workload API)",
                    );
                }
                (None, _) => Target::Socket(
                    cli.admin_socket
                        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_ADMIN_SOCKET)),
                ),
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("cannot start runtime: {e}")),
            };
            match runtime.block_on(commands::execute(command, &target, cli.output)) {
                Ok(code) => code,
                Err(message) => fail(&message),
            }
        }
    }
}

/// Prints one line on stderr and exits 1.
fn fail(message: &str) -> ExitCode {
    let first = message.lines().next().unwrap_or("failed");
    eprintln!("mandate-server: {first}");
    ExitCode::from(1)
}

fn run_server(run: RunArgs, admin_socket: Option<PathBuf>) -> ExitCode {
    let flags = FlagOverrides {
        trust_domain: run.trust_domain,
        data_dir: run.data_dir,
        bind_address: run.bind_address,
        admin_socket,
        metrics_address: run.metrics_address,
        log_level: run.log_level,
        admin_bind_address: run.admin_bind_address,
    };
    // Every setting is checked before anything is bound or opened.
    let config = match Config::load(run.config.as_deref(), flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mandate-server: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&config.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mandate-server: invalid log_level: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start runtime: {e}")),
    };
    match runtime.block_on(crate::server::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers, only Ctrl-C via tokio's fallback.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Largest admin reply the CLI accepts; lists stream in messages of about 1 MiB.
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// Where the admin commands go.
#[derive(Debug, Clone)]
pub enum Target {
    /// The admin unix socket.
    Socket(PathBuf),
    /// The mTLS admin listener, as a workload of a local agent.
    Remote(Remote),
}

impl Target {
    /// Connects to the admin API.
    ///
    /// # Errors
    /// A one-line message when it cannot be reached.
    pub async fn connect(&self) -> Result<AdminClient<Channel>, String> {
        let client = match self {
            Self::Socket(path) => connect(path).await?,
            Self::Remote(remote) => remote.connect().await?,
        };
        Ok(client.max_decoding_message_size(MAX_REPLY))
    }
}

/// Connects to the admin API on `socket`.
///
/// # Errors
/// A one-line message when the socket cannot be reached.
pub async fn connect(socket: &Path) -> Result<AdminClient<Channel>, String> {
    let path = socket.to_owned();
    let endpoint =
        Endpoint::try_from("http://localhost").map_err(|e| format!("invalid endpoint: {e}"))?;
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_else(|| e.to_string());
            format!(
                "cannot reach the admin socket {}: {cause}",
                socket.display()
            )
        })?;
    Ok(AdminClient::new(channel))
}
