//! The quickstart's second act (DESIGN 3.8): the procurement agent hands the supplier search to
//! a search agent on a second node, which calls the service under a narrower sub-task; the
//! service shows the chain; a call outside the sub-task's actions and one over its limit are
//! refused; alice withdraws consent and both agents are refused within a second; the audit
//! trail shows the tree.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::procs::{Binaries, run, wait_until};
use super::session::Session;
use super::{AI_AGENT_ID, Journey, SERVICE_ID, ms};

/// The search agent's SPIFFE ID: a delegate entry on the second node.
const SEARCH_ID: &str = "spiffe://example.org/ai/search";
/// The second node's agent.
const AGENT_B_ID: &str = "spiffe://example.org/mandate/agent/quickstart-b";

/// What the second act needs from the first.
pub(crate) struct Stage<'a> {
    pub(crate) bins: &'a Binaries,
    pub(crate) server: &'a dyn Fn(&[&str]) -> anyhow::Result<String>,
    pub(crate) server_address: &'a str,
    pub(crate) bundle: &'a Path,
    pub(crate) uid: u32,
    pub(crate) po_address: &'a str,
    /// Node A's Workload API socket.
    pub(crate) socket_a: &'a Path,
    /// The entry of the first act's agent workload, whose task is closed.
    pub(crate) old_entry: &'a str,
}

impl Journey<'_> {
    /// Runs the second act.
    pub(crate) fn sub_delegation(&mut self, stage: &Stage<'_>) -> anyhow::Result<()> {
        let server = stage.server;
        // The first act's agent session ended on purpose.
        self.children.finished("ai-agent", Duration::from_secs(5));
        println!();
        let t = Instant::now();
        let socket_b = self.dir.join("agent-b").join("public").join("api.sock");
        let token = server(&["token", "generate", "--agent-id", AGENT_B_ID])?;
        self.children.spawn_logged(
            "mandate-agent (node B)",
            Command::new(&stage.bins.agent)
                .args(["run", "--server-address", stage.server_address])
                .args(["--join-token", &token, "--trust-bundle"])
                .arg(stage.bundle)
                .arg("--socket-path")
                .arg(&socket_b)
                .arg("--data-dir")
                .arg(self.dir.join("agent-b-data")),
            &self.dir.join("agent-b.log"),
        )?;
        wait_until(
            "the second mandate-agent",
            Duration::from_secs(30),
            self.children,
            || {
                run(Command::new(&stage.bins.agent)
                    .args(["healthcheck", "--socket-path"])
                    .arg(&socket_b))
                .is_ok()
            },
        )?;
        self.say(&format!(
            "(6) a second node: mandate-agent {AGENT_B_ID} at {} ({})",
            socket_b.display(),
            ms(t)
        ));

        // A fresh task for alice, with room for one delegation hop.
        let task = server(&[
            "task",
            "open",
            "--principal",
            "user:alice@example.org",
            "--purpose",
            "draft purchase order 4712",
            "--action",
            "po.draft",
            "--action",
            "po.read",
            "--value-limit",
            "500.00:EUR",
            "--deadline",
            "1h",
            "--max-depth",
            "1",
        ])?;
        let selector = format!("unix:uid:{}", stage.uid);
        server(&["entry", "delete", stage.old_entry])?;
        server(&[
            "entry",
            "create",
            "--spiffe-id",
            AI_AGENT_ID,
            "--parent-id",
            super::AGENT_ID,
            "--selector",
            &selector,
            "--task",
            &task,
        ])?;
        server(&[
            "entry",
            "create",
            "--spiffe-id",
            SEARCH_ID,
            "--parent-id",
            AGENT_B_ID,
            "--selector",
            &selector,
            "--delegate-from",
            AI_AGENT_ID,
        ])?;
        self.say(&format!("    opened task {task} (po.draft po.read, 500.00 EUR, max depth 1), bound {AI_AGENT_ID} on node A; registered {SEARCH_ID} on node B as a delegate entry (--delegate-from {AI_AGENT_ID})"));

        // The procurement agent delegates the supplier search.
        let delegate_args = [
            "api",
            "delegate",
            "--target-id",
            SEARCH_ID,
            "--action",
            "po.read",
            "--value-limit",
            "50.00:EUR",
            "--deadline",
            "30m",
            "--purpose",
            "search suppliers for PO 4712",
        ];
        let mut sub = String::new();
        wait_until(
            "the procurement agent's SVID",
            Duration::from_secs(10),
            self.children,
            || match run(Command::new(&stage.bins.agent)
                .args(delegate_args)
                .arg("--socket-path")
                .arg(stage.socket_a))
            {
                Ok(id) => {
                    sub = id.trim().to_owned();
                    true
                }
                Err(_) => false,
            },
        )?;
        let t = Instant::now();
        self.say(&format!("(7) the procurement agent ran `mandate-agent api delegate --target-id {SEARCH_ID} --action po.read --value-limit 50.00:EUR --deadline 30m`: sub-task {sub}"));
        let widen = run(Command::new(&stage.bins.agent)
            .args([
                "api",
                "delegate",
                "--target-id",
                SEARCH_ID,
                "--action",
                "po.approve",
            ])
            .arg("--socket-path")
            .arg(stage.socket_a));
        match widen {
            Ok(id) => bail!("a sub-task wider than its parent was opened: {id}"),
            Err(e) => self.say(&format!(
                "    a wider one (po.approve) is refused: {}",
                first_line(&e)
            )),
        }

        // The search agent, on node B, calls the service with its sub-task's SVID.
        let endpoint_b = format!("unix://{}", socket_b.display());
        let mut command = Command::new(&stage.bins.ai_agent);
        command
            .arg("--server")
            .arg(stage.po_address)
            .args(["--server-id", SERVICE_ID, "--spiffe-id", SEARCH_ID])
            .arg("--endpoint")
            .arg(&endpoint_b)
            .arg("--stdin");
        let child = self.children.spawn_piped(
            "ai-agent (search)",
            &mut command,
            &self.dir.join("search-agent.log"),
        )?;
        let mut search = Session::new(child)?;
        self.say(&format!(
            "(8) the search agent on node B got its SVID (hint = {sub}) {} after delegate returned, and calls po-service:",
            ms(t)
        ));
        let read = search.call("po.read 20.00:EUR")?;
        println!("      {read}");
        if read["allowed"] != true {
            bail!("the search agent's po.read was refused: {read}");
        }
        let chain = read["body"]["chain"].clone();
        self.say(&format!(
            "    po-service sees principal {} task {} depth {} chain {chain}",
            read["body"]["principal"], read["body"]["task"], read["body"]["depth"]
        ));
        if chain.as_array().map(Vec::len) != Some(1) {
            bail!("po-service did not show a one-link chain: {read}");
        }
        self.expect(&mut search, "po.draft", false, Some("action_not_granted"))?;
        self.expect(
            &mut search,
            "po.read 80.00:EUR",
            false,
            Some("over_value_limit"),
        )?;

        // The procurement agent's own connection, open while consent is withdrawn.
        let endpoint_a = format!("unix://{}", stage.socket_a.display());
        let mut command = Command::new(&stage.bins.ai_agent);
        command
            .arg("--server")
            .arg(stage.po_address)
            .args(["--server-id", SERVICE_ID, "--spiffe-id", AI_AGENT_ID])
            .arg("--endpoint")
            .arg(&endpoint_a)
            .arg("--stdin");
        let child = self.children.spawn_piped(
            "ai-agent (procurement)",
            &mut command,
            &self.dir.join("ai-agent-2.log"),
        )?;
        let mut procurement = Session::new(child)?;
        self.expect(&mut procurement, "po.draft 120.00:EUR", true, None)?;

        // (9) Alice withdraws consent: every task of hers closes, with its sub-tasks.
        println!();
        let t0 = Instant::now();
        let closed = server(&[
            "task",
            "close",
            "--principal",
            "user:alice@example.org",
            "--reason",
            "alice withdrew consent",
        ])?;
        let t1 = Instant::now();
        self.say(&format!(
            "(9) alice withdraws consent: `task close --principal user:alice@example.org` closed {} ({:.1} ms)",
            closed.lines().collect::<Vec<_>>().join(", "),
            (t1 - t0).as_secs_f64() * 1000.0
        ));
        for (name, session, call) in [
            ("procurement agent", &mut procurement, "po.read"),
            ("search agent", &mut search, "po.read 10.00:EUR"),
        ] {
            let refused = refused_within(session, call, t1, Duration::from_secs(1))?;
            self.say(&format!(
                "    {name} refused with {} {:.1} ms after close returned",
                refused.0["body"]["refused"],
                refused.1.as_secs_f64() * 1000.0
            ));
        }
        search.finish();
        procurement.finish();

        // (10) The tree and its audit trail.
        println!();
        self.say(&format!("(10) mandate-server task tree {task}:"));
        for line in server(&["task", "tree", &task])?.lines() {
            println!("      {line}");
        }
        self.say("    audit trail of the tree (mandate-server audit list --task <id>, root then sub-task):");
        for id in [task.as_str(), sub.as_str()] {
            for line in server(&["audit", "list", "--task", id])?.lines() {
                println!("      {line}");
            }
        }
        Ok(())
    }
}

/// Calls `call` until it is refused; fails when it is still allowed `within` after `since`.
fn refused_within(
    session: &mut Session,
    call: &str,
    since: Instant,
    within: Duration,
) -> anyhow::Result<(serde_json::Value, Duration)> {
    loop {
        let line = session.call(call)?;
        if line["allowed"] == false {
            if line["body"]["refused"] != "task_closed" {
                bail!("expected task_closed, got {line}");
            }
            return Ok((line, since.elapsed()));
        }
        if since.elapsed() > within {
            bail!("still allowed {within:?} after consent was withdrawn: {line}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn first_line(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    line.split_once("mandate-agent: ")
        .map_or(line, |(_, rest)| rest)
        .trim()
        .to_owned()
}
