//! The command line of `mandate-server` (DESIGN 3.6): clap derive, doc comments as `--help`.
//! `--admin-socket` and `--output` are global and may follow the subcommand.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mandate_core::entry;
use mandate_core::task::MAX_TASK_LIFETIME;
use mandate_core::time::parse_duration_within;

use crate::attest::{MAX_TOKEN_TTL, MIN_TOKEN_TTL};

/// Mandate server: SPIFFE identities for AI agents acting on someone's behalf.
#[derive(Debug, Parser)]
#[command(name = "mandate-server", version, about)]
pub struct Cli {
    /// Admin API unix socket.
    #[arg(long, global = true, env = "MANDATE_ADMIN_SOCKET", value_name = "PATH")]
    pub admin_socket: Option<PathBuf>,
    /// Reach the admin API over the network at HOST:PORT (the server's admin_bind_address),
    /// authenticated by this workload's SVID; needs --endpoint.
    #[arg(
        long,
        global = true,
        env = "MANDATE_SERVER_ADDRESS",
        value_name = "HOST:PORT"
    )]
    pub server_address: Option<String>,
    /// The local agent's Workload API, e.g. unix:///tmp/agent.sock: where the caller's SVID
    /// and the trust bundle come from with --server-address.
    #[arg(
        long,
        global = true,
        env = "SPIFFE_ENDPOINT_SOCKET",
        value_name = "URI"
    )]
    pub endpoint: Option<String>,
    /// With --server-address: which of the caller's SVIDs to present (default: the first).
    /// It may follow the subcommand, except `entry create`, whose --spiffe-id is the entry's.
    #[arg(long = "spiffe-id", env = "MANDATE_SPIFFE_ID", value_name = "ID")]
    pub caller_spiffe_id: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text; commands that print one ID print only that.
    Text,
    /// JSON (DESIGN 3.7 shapes), times in unix seconds.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Run(RunArgs),
    /// Join tokens for node agents.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The trust bundle.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Registration entries.
    #[command(subcommand)]
    Entry(EntryCommand),
    /// Tasks (delegations).
    #[command(subcommand)]
    Task(TaskCommand),
    /// Attested node agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check that the server answers (exit 0) or not (exit 1).
    Healthcheck,
}

/// `run` flags; each wins over the config file.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Trust domain (default example.org).
    #[arg(long, value_name = "TD")]
    pub trust_domain: Option<String>,
    /// Data directory (default .data/server), created with mode 0700.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Agent API address, HOST:PORT (default 127.0.0.1:8081).
    #[arg(long, value_name = "ADDR")]
    pub bind_address: Option<String>,
    /// HTTP listener for /metrics, /live, /ready, HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub metrics_address: Option<String>,
    /// Log filter, e.g. info or mandate_server=debug.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Also serve the admin API over mTLS at HOST:PORT to the SPIFFE IDs of the config's
    /// [[admin_ids]], each held to its role (off by default).
    #[arg(long, value_name = "ADDR")]
    pub admin_bind_address: Option<String>,
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a single-use join token; prints it.
    Generate {
        /// SPIFFE ID the agent gets (default: .../mandate/agent/join_token/<token-id>).
        #[arg(long, value_name = "SPIFFE_ID")]
        agent_id: Option<String>,
        /// Lifetime, from 1s to 30 days, e.g. 10m.
        #[arg(long, default_value = "10m")]
        ttl: String,
    },
}

/// `bundle` subcommands.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Print the CA certificates as PEM.
    Show,
}

/// `entry` subcommands.
#[derive(Debug, Subcommand)]
pub enum EntryCommand {
    /// Register a workload; prints the entry ID.
    Create(EntryCreateArgs),
    /// List every entry.
    List,
    /// Show one entry.
    Show {
        /// Entry ID.
        id: String,
    },
    /// Delete an entry; prints its ID.
    Delete {
        /// Entry ID.
        id: String,
    },
}

/// `entry create` flags.
#[derive(Debug, Args)]
pub struct EntryCreateArgs {
    /// The workload's SPIFFE ID.
    #[arg(long)]
    pub spiffe_id: String,
    /// The agent's SPIFFE ID.
    #[arg(long)]
    pub parent_id: String,
    /// Selector such as unix:uid:1001 (repeat for more).
    #[arg(long = "selector", required = true)]
    pub selectors: Vec<String>,
    /// X509-SVID lifetime, from 1s to 30 days, e.g. 5m (never past the task's deadline).
    #[arg(long)]
    pub x509_ttl: Option<String>,
    /// JWT-SVID lifetime, from 1s to 30 days, e.g. 5m (never past the task's deadline).
    #[arg(long)]
    pub jwt_ttl: Option<String>,
    /// Bind the entry to a task.
    #[arg(long = "task", value_name = "TASK_ID")]
    pub task: Option<String>,
    /// DNS SAN (repeat for more).
    #[arg(long = "dns-name")]
    pub dns_names: Vec<String>,
    /// Hint for workloads holding several identities.
    #[arg(long)]
    pub hint: Option<String>,
    /// Make this a delegate entry (DESIGN 3.8): a SPIFFE ID that may bind sub-tasks to it
    /// (repeat for more). Such an entry has no task of its own.
    #[arg(long = "delegate-from", value_name = "SPIFFE_ID")]
    pub delegate_from: Vec<String>,
}

/// `task` subcommands.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Open a task; prints its ID.
    Open(TaskOpenArgs),
    /// Approve a pending task; prints its ID.
    Approve {
        /// Task ID.
        id: String,
        /// Who approves.
        #[arg(long)]
        approver: String,
    },
    /// Close a task and its sub-tasks; prints its ID. With --principal (consent withdrawn):
    /// every pending or open task of that principal, with their sub-tasks; prints their IDs.
    Close {
        /// Task ID.
        #[arg(required_unless_present = "principal", conflicts_with = "principal")]
        id: Option<String>,
        /// Close every pending or open task of this principal (user:<id>, app:<id> or a
        /// SPIFFE ID).
        #[arg(long)]
        principal: Option<String>,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// List tasks.
    List {
        /// Only the tasks of this principal.
        #[arg(long)]
        principal: Option<String>,
        /// Only tasks in this state: pending, open, closed or expired.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one task.
    Show {
        /// Task ID.
        id: String,
    },
    /// Print a task and every sub-task below it.
    Tree {
        /// Task ID.
        id: String,
    },
}

/// `task open` flags.
#[derive(Debug, Args)]
pub struct TaskOpenArgs {
    /// user:<id>, app:<id> or a SPIFFE ID.
    #[arg(long)]
    pub principal: String,
    /// Why, in free text.
    #[arg(long)]
    pub purpose: String,
    /// Allowed action (repeat for more).
    #[arg(long = "action", required = true)]
    pub actions: Vec<String>,
    /// Time from now until the task expires, from 1s to 366 days (1y), e.g. 1h.
    #[arg(long, default_value = "1h")]
    pub deadline: String,
    /// Spending limit, e.g. 500.00:EUR.
    #[arg(long)]
    pub value_limit: Option<String>,
    /// Further delegation hops allowed.
    #[arg(long, default_value_t = 0)]
    pub max_depth: u32,
    /// Keep the task pending until approved.
    #[arg(long)]
    pub require_approval: bool,
    /// Choose the task ID (never reused).
    #[arg(long)]
    pub id: Option<String>,
}

/// `agent` subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// List attested agents.
    List,
    /// Ban an agent: it must attest again; prints its ID.
    Evict {
        /// The agent's SPIFFE ID.
        id: String,
    },
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit records.
    List {
        /// Only records of this task.
        #[arg(long = "task", value_name = "TASK_ID")]
        task: Option<String>,
        /// Only records after this sequence number.
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// At most this many records.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Check the hash chain; exits non-zero when a record was edited or removed.
    Verify,
}

/// The range of a duration flag, `(shortest, longest)`: `--ttl` (join token) 1s..30 days,
/// `--deadline` 1s..366 days, `--x509-ttl` and `--jwt-ttl` 1s..30 days.
fn duration_range(flag: &str) -> (Duration, Duration) {
    match flag {
        "--ttl" => (MIN_TOKEN_TTL, MAX_TOKEN_TTL),
        "--deadline" => (Duration::from_secs(1), MAX_TASK_LIFETIME),
        _ => (entry::MIN_TTL, entry::MAX_TTL),
    }
}

/// Parses a duration flag and checks it against its range before anything is sent.
///
/// # Errors
/// One line naming the flag, the text and the range.
pub(super) fn duration_flag(flag: &str, text: &str) -> Result<Duration, String> {
    let (min, max) = duration_range(flag);
    parse_duration_within(text, min, max).map_err(|e| format!("invalid {flag}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_flags_table() {
        // (flag, text, accepted): zero, the edges, one past them, absurd values.
        let cases: &[(&str, &str, bool)] = &[
            ("--ttl", "0s", false),
            ("--ttl", "1s", true),
            ("--ttl", "30days", true),
            ("--ttl", "2592001s", false),
            ("--ttl", "500000000000y", false),
            ("--x509-ttl", "0s", false),
            ("--x509-ttl", "1s", true),
            ("--jwt-ttl", "30days", true),
            ("--jwt-ttl", "2592001s", false),
            ("--x509-ttl", "30days", true),
            ("--x509-ttl", "2592001s", false),
            ("--x509-ttl", "10000y", false),
            ("--deadline", "0s", false),
            ("--deadline", "1s", true),
            ("--deadline", "1y", true),
            ("--deadline", "366days", true),
            ("--deadline", "31622401s", false),
            ("--deadline", "10000y", false),
            ("--deadline", "500000000000y", false),
            ("--deadline", "soon", false),
        ];
        for (flag, text, ok) in cases {
            let got = duration_flag(flag, text);
            assert_eq!(got.is_ok(), *ok, "{flag} {text:?}");
            if let Err(line) = got {
                assert!(line.starts_with(&format!("invalid {flag}: ")), "{line}");
                assert_eq!(line.lines().count(), 1, "{line}");
            }
        }
    }
}
