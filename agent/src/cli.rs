//! The command line (clap derive, DESIGN 3.6): `run`, `api fetch x509|jwt`, `api watch`,
//! `healthcheck`, with `--output json|text` as a global flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{DEFAULT_SOCKET_PATH, RunFlags};

/// mandate-agent: attests workloads and serves them the SPIFFE Workload API.
#[derive(Debug, Parser)]
#[command(name = "mandate-agent", version)]
pub struct Cli {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent.
    Run(RunArgs),
    /// Talk to a running agent's Workload API.
    Api {
        /// What to ask.
        #[command(subcommand)]
        command: ApiCommand,
    },
    /// Check that the agent's Workload API answers and that the agent has heard from the
    /// server recently.
    Healthcheck(HealthcheckArgs),
}

/// Flags of `healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The socket.
    #[command(flatten)]
    pub socket: SocketArg,
    /// Unhealthy when the agent last heard from the server longer ago than this (DESIGN 3.4's
    /// staleness bound).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub max_staleness: std::time::Duration,
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML config file (keys: the flag names in snake_case, plus log_level).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// HOST:PORT of mandate-server.
    #[arg(long)]
    pub server_address: Option<String>,
    /// PEM trust bundle, needed for the first attestation only.
    #[arg(long)]
    pub trust_bundle: Option<PathBuf>,
    /// Join token for the first attestation.
    #[arg(long, env = "MANDATE_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Workload API socket path (an optional unix:// prefix is accepted).
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET")]
    pub socket_path: Option<String>,
    /// Data dir for the agent SVID and bundle.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl From<RunArgs> for RunFlags {
    fn from(args: RunArgs) -> Self {
        Self {
            config: args.config,
            server_address: args.server_address,
            trust_bundle: args.trust_bundle,
            join_token: args.join_token,
            socket_path: args.socket_path,
            data_dir: args.data_dir,
        }
    }
}

/// The Workload API socket to talk to.
#[derive(Debug, Args)]
pub struct SocketArg {
    /// Workload API socket path (an optional unix:// prefix is accepted).
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET", default_value = DEFAULT_SOCKET_PATH)]
    pub socket_path: String,
}

/// `api` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Fetch SVIDs once.
    Fetch {
        /// Which kind.
        #[command(subcommand)]
        kind: FetchKind,
    },
    /// Print every X509-SVID update until the stream ends.
    Watch(SocketArg),
    /// Open a sub-task for a delegate workload (DESIGN 3.8); prints the sub-task ID.
    Delegate(DelegateArgs),
    /// Close a sub-task this workload opened.
    Undelegate(UndelegateArgs),
}

/// Flags of `api delegate`.
#[derive(Debug, Args)]
pub struct DelegateArgs {
    /// The socket.
    #[command(flatten)]
    pub socket: SocketArg,
    /// SPIFFE ID of the delegate entry to bind the sub-task to.
    #[arg(long)]
    pub target_id: String,
    /// An action to grant, one of this workload's (repeat for several).
    #[arg(long, required = true)]
    pub action: Vec<String>,
    /// Why, in free text.
    #[arg(long)]
    pub purpose: Option<String>,
    /// The limit to grant, `<amount>:<CODE>`; default: this workload's.
    #[arg(long)]
    pub value_limit: Option<String>,
    /// How long from now the sub-task lasts, 1s to 366 days (never past this workload's
    /// deadline); default: this workload's deadline.
    #[arg(long, value_parser = sub_task_deadline)]
    pub deadline: Option<std::time::Duration>,
    /// Which of this workload's SPIFFE IDs delegates; default: its only task-bound one.
    #[arg(long)]
    pub delegator_id: Option<String>,
    /// Which of its tasks delegates, when it holds several for that ID.
    #[arg(long)]
    pub delegator_task: Option<String>,
}

/// Flags of `api undelegate`.
#[derive(Debug, Args)]
pub struct UndelegateArgs {
    /// The socket.
    #[command(flatten)]
    pub socket: SocketArg,
    /// The sub-task to close.
    pub task_id: String,
    /// Why.
    #[arg(long)]
    pub reason: Option<String>,
    /// Which of this workload's SPIFFE IDs opened it.
    #[arg(long)]
    pub delegator_id: Option<String>,
}

/// `api fetch` kinds.
#[derive(Debug, Subcommand)]
pub enum FetchKind {
    /// X509-SVIDs with their keys and bundles.
    X509 {
        /// The socket.
        #[command(flatten)]
        socket: SocketArg,
        /// Write svid.N.pem, svid.N.key and bundle.N.pem into this dir.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// JWT-SVIDs for an audience.
    Jwt {
        /// The socket.
        #[command(flatten)]
        socket: SocketArg,
        /// The audience (repeat for several).
        #[arg(long, required = true)]
        audience: Vec<String>,
        /// Only this SPIFFE ID.
        #[arg(long)]
        spiffe_id: Option<String>,
    },
}

/// `api delegate --deadline`: a duration from 1s to 366 days (`MAX_TASK_LIFETIME`), so adding
/// it to the clock cannot overflow (issue 11, item 8: `500000000000y` panicked).
fn sub_task_deadline(text: &str) -> Result<std::time::Duration, String> {
    mandate_core::time::parse_duration_within(
        text,
        std::time::Duration::from_secs(1),
        mandate_core::task::MAX_TASK_LIFETIME,
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegate_deadline_is_bounded() {
        for (text, ok) in [
            ("0s", false),
            ("1s", true),
            ("366days", true),
            ("31622401s", false),
            ("500000000000y", false),
        ] {
            assert_eq!(sub_task_deadline(text).is_ok(), ok, "{text}");
        }
    }

    #[test]
    fn output_is_global_and_parses_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "mandate-agent",
            "api",
            "fetch",
            "jwt",
            "--audience",
            "a",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.output, Output::Json);
        assert!(Cli::try_parse_from(["mandate-agent", "api", "fetch", "jwt"]).is_err());
        let cli = Cli::try_parse_from(["mandate-agent", "run", "--data-dir", "/d"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Run(RunArgs {
                data_dir: Some(_),
                ..
            })
        ));
    }
}
