//! The `mandate-agent` binary: parses the command line, checks the config before opening
//! anything (exit 64 on error), and runs the chosen command with one clear line on failure.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mandate_agent::cli::{ApiCommand, Cli, Command, FetchKind, Output};
use mandate_agent::config::{AgentConfig, RunFlags};
use mandate_agent::{client, delegate_client, run};

const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONFIG } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let output = cli.output;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}"), 1),
    };
    match cli.command {
        Command::Run(args) => {
            let config = match AgentConfig::resolve(RunFlags::from(args)) {
                Ok(config) => config,
                Err(e) => return fail(&e.to_string(), EXIT_CONFIG),
            };
            init_logs(&config.log_level);
            match runtime.block_on(run::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e.to_string(), 1),
            }
        }
        Command::Api { command } => {
            init_logs("warn");
            let result = runtime.block_on(async {
                match command {
                    ApiCommand::Fetch {
                        kind: FetchKind::X509 { socket, write },
                    } => client::fetch_x509(&socket.socket_path, write.as_deref(), output)
                        .await
                        .map(Some),
                    ApiCommand::Fetch {
                        kind:
                            FetchKind::Jwt {
                                socket,
                                audience,
                                spiffe_id,
                            },
                    } => client::fetch_jwt(&socket.socket_path, audience, spiffe_id, output)
                        .await
                        .map(Some),
                    ApiCommand::Watch(socket) => client::watch(&socket.socket_path, output)
                        .await
                        .map(|()| None),
                    ApiCommand::Delegate(args) => {
                        delegate_client::delegate(args, output).await.map(Some)
                    }
                    ApiCommand::Undelegate(args) => {
                        delegate_client::undelegate(args, output).await.map(Some)
                    }
                }
            });
            match result {
                Ok(Some(text)) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Ok(None) => ExitCode::SUCCESS,
                Err(e) => fail(&e.to_string(), 1),
            }
        }
        Command::Healthcheck(args) => {
            match runtime.block_on(client::healthcheck(
                &args.socket.socket_path,
                args.max_staleness,
            )) {
                Ok(()) => {
                    if output == Output::Json {
                        println!("{}", serde_json::json!({"healthy": true}));
                    } else {
                        println!("agent is healthy");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("agent is unhealthy: {e}"), 1),
            }
        }
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    let line = message.lines().next().unwrap_or(message);
    eprintln!("mandate-agent: {line}");
    ExitCode::from(code)
}

fn init_logs(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MANDATE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only on a terminal: a log redirected to a file stays plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
