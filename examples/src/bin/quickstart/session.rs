//! A call session with `ai-agent --stdin`: one line in, one JSON line out, on one open
//! connection; reads time out so a stuck child cannot hang the quickstart.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// How long one call may take before the session is declared stuck (first call includes the
/// agent's SVID fetch and TLS handshake).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The pipes of a running `ai-agent --stdin`.
#[derive(Debug)]
pub(crate) struct Session {
    input: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Session {
    /// Takes the child's pipes and starts reading its output lines on a thread.
    pub(crate) fn new(child: &mut Child) -> anyhow::Result<Self> {
        let input = child.stdin.take().context("ai-agent stdin")?;
        let output = child.stdout.take().context("ai-agent stdout")?;
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            input: Some(input),
            lines,
        })
    }

    /// Sends one call (`<action> [<amount>]`) and returns its JSON result.
    pub(crate) fn call(&mut self, call: &str) -> anyhow::Result<serde_json::Value> {
        let input = self.input.as_mut().context("session already finished")?;
        writeln!(input, "{call}").context("write to ai-agent")?;
        input.flush()?;
        match self.lines.recv_timeout(CALL_TIMEOUT) {
            Ok(line) => {
                serde_json::from_str(&line).with_context(|| format!("ai-agent printed {line:?}"))
            }
            Err(RecvTimeoutError::Timeout) => {
                bail!("ai-agent gave no answer to {call:?} within {CALL_TIMEOUT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                bail!(
                    "ai-agent exited before answering {call:?} (its connection is gone; see ai-agent.log)"
                )
            }
        }
    }

    /// Closes the agent's stdin, so it ends its session and exits.
    pub(crate) fn finish(&mut self) {
        self.input = None;
    }
}
