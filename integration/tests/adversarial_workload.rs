//! Hostile workloads against a real agent (issue 11): a binary overwritten in place with its
//! mtime restored (`unix:sha256`), a process that execs an approved binary after it connected
//! and hands its connection to a relay (`unix:path`), and the Workload API's rules on hints and
//! on which SVID comes first (DESIGN 3.1).

mod agent_support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_support::*;
use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use mandate_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use mandate_proto::workload::{JwtsvidRequest, X509svidRequest, X509svidResponse};
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::{Endpoint, Uri};

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `exe api fetch x509` against `socket` until its output names `id` or `timeout` passes;
/// returns whether it did.
fn fetch_names(exe: &Path, socket: &Path, id: &str, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let output = Command::new(exe)
            .args(["api", "fetch", "x509", "--socket-path"])
            .arg(socket)
            .output()?;
        if String::from_utf8_lossy(&output.stdout).contains(id) {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Finding 2: the digest cache was keyed by (device, inode, mtime). The approved binary is
/// overwritten in place with another program of the same size and its mtime restored with
/// `utimensat`; the other program must not get the approved binary's SVID.
#[tokio::test(flavor = "multi_thread")]
async fn an_in_place_overwrite_with_the_mtime_restored_loses_the_sha256_identity() -> Result<()> {
    let (server, agent) = server_and_agent("sha256-overwrite")?;
    let dir = tempfile::tempdir()?;
    let exe = dir.path().join("client");
    // Two programs of one size: the agent CLI with different trailing bytes (ignored by the
    // loader), so both run and only their digests differ.
    let cli = std::fs::read(mandate_integration::bin("mandate-agent"))?;
    let mut approved = cli.clone();
    approved.extend_from_slice(&[b'A'; 4096]);
    let mut other = cli;
    other.extend_from_slice(&[b'B'; 4096]);
    std::fs::write(&exe, &approved)?;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
    let uid = my_uid_selector();
    let approved_sha = format!("unix:sha256:{}", sha256_hex(&approved));
    let other_sha = format!("unix:sha256:{}", sha256_hex(&other));
    server.create_entry(
        &id("workload/approved"),
        &agent.spiffe_id,
        &["--selector", &uid, "--selector", &approved_sha],
    )?;
    // The cache keeps a digest only once the file's ctime is 2 s old: let it settle, so the
    // approved digest is cached by the time the attack runs.
    std::thread::sleep(Duration::from_millis(2_100));
    assert!(
        fetch_names(
            &exe,
            &agent.socket_path,
            &id("workload/approved"),
            Duration::from_secs(20)
        )?,
        "the approved binary gets its identity"
    );

    let mtime = std::fs::metadata(&exe)?.modified()?;
    {
        let mut file = std::fs::OpenOptions::new().write(true).open(&exe)?;
        file.write_all(&other)?;
        file.sync_all()?;
        file.set_modified(mtime)?;
    }
    let meta = std::fs::metadata(&exe)?;
    assert_eq!(meta.modified()?, mtime, "mtime restored");
    assert_eq!(meta.len(), approved.len() as u64, "same size");
    assert!(
        !fetch_names(
            &exe,
            &agent.socket_path,
            &id("workload/approved"),
            Duration::ZERO
        )?,
        "the overwritten binary got the approved binary's SVID"
    );
    // The agent did hash the new content: an entry for the other program's digest matches.
    server.create_entry(
        &id("workload/other"),
        &agent.spiffe_id,
        &["--selector", &uid, "--selector", &other_sha],
    )?;
    assert!(
        fetch_names(
            &exe,
            &agent.socket_path,
            &id("workload/other"),
            Duration::from_secs(20)
        )?,
        "the other program gets its own identity"
    );
    Ok(())
}

/// The relay: connects to the agent, waits until the agent has accepted and looked at it,
/// forks a child that pumps bytes between that connection and the test's listener, and then
/// either execs `exe` (the attack; once the trigger file exists, when one is named) or stays
/// python (the control).
const RELAY: &str = r#"
import os, socket, sys, threading, time
agent_path, relay_path, exe = sys.argv[1], sys.argv[2], sys.argv[3]
agent = socket.socket(socket.AF_UNIX)
agent.connect(agent_path)
time.sleep(0.5)
if os.fork() == 0:
    relay = socket.socket(socket.AF_UNIX)
    relay.connect(relay_path)
    def pump(a, b):
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    threading.Thread(target=pump, args=(relay, agent), daemon=True).start()
    pump(agent, relay)
    os._exit(0)
if exe == "-":
    time.sleep(60)
else:
    if len(sys.argv) > 4:
        while not os.path.exists(sys.argv[4]):
            time.sleep(0.02)
    os.execv(exe, [exe, "60"])
"#;

/// Starts the relay, accepts its connection, and waits until the connecting process runs
/// `expect_exe`; returns the process and the stream to the agent through the relay.
async fn relayed(
    agent_socket: &Path,
    dir: &Path,
    exe: &str,
    trigger: Option<&Path>,
    expect_exe: &Path,
) -> Result<(std::process::Child, UnixStream)> {
    let relay_path = dir.join("relay.sock");
    let _ = std::fs::remove_file(&relay_path);
    let listener = UnixListener::bind(&relay_path)?;
    let child = Command::new("python3")
        .arg("-c")
        .arg(RELAY)
        .arg(agent_socket)
        .arg(&relay_path)
        .arg(exe)
        .args(trigger)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .context("the relay did not connect")??;
    let proc_exe = PathBuf::from(format!("/proc/{}/exe", child.id()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(&proc_exe).ok().as_deref() != Some(expect_exe) {
        if Instant::now() > deadline {
            bail!("the connecting process never ran {}", expect_exe.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((child, stream))
}

/// A FetchX509SVID stream over an already connected stream, or the call's status.
async fn stream_over(
    stream: UnixStream,
) -> Result<Result<tonic::Streaming<X509svidResponse>, tonic::Status>> {
    let slot = Arc::new(Mutex::new(Some(stream)));
    let channel = Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let stream = slot.lock().ok().and_then(|mut s| s.take());
            async move {
                stream
                    .map(TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("the relayed stream is used"))
            }
        }))
        .await?;
    let mut client = SpiffeWorkloadApiClient::new(channel);
    Ok(client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .map(tonic::Response::into_inner))
}

/// One FetchX509SVID over an already connected stream: the SPIFFE IDs, or the status.
async fn fetch_over(stream: UnixStream) -> Result<Result<Vec<String>, tonic::Status>> {
    let mut stream = match stream_over(stream).await? {
        Ok(stream) => stream,
        Err(status) => return Ok(Err(status)),
    };
    match tokio::time::timeout(Duration::from_secs(10), stream.message()).await? {
        Ok(Some(message)) => Ok(Ok(ids_of(&message))),
        Ok(None) => bail!("stream ended without a message"),
        Err(status) => Ok(Err(status)),
    }
}

/// Finding 3: a process connects, execs a binary that a `unix:path` entry selects, and a
/// forked child relays the connection. The identity must not go to the connection; a relay
/// whose connecting process did not exec gets the identity of what connected.
#[tokio::test(flavor = "multi_thread")]
async fn exec_after_connect_does_not_get_the_exec_targets_identity() -> Result<()> {
    let (server, agent) = server_and_agent("exec-after-connect")?;
    let dir = tempfile::tempdir()?;
    let approved = dir.path().join("approved-sleep");
    std::fs::copy("/bin/sleep", &approved)?;
    std::fs::set_permissions(&approved, std::fs::Permissions::from_mode(0o755))?;
    let python = std::fs::canonicalize(
        String::from_utf8(
            Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()?
                .stdout,
        )?
        .trim(),
    )?;
    let uid = my_uid_selector();
    for (path, exe) in [
        ("workload/approved", &approved),
        ("workload/python", &python),
    ] {
        let selector = format!("unix:path:{}", exe.display());
        server.create_entry(
            &id(path),
            &agent.spiffe_id,
            &["--selector", &uid, "--selector", &selector],
        )?;
    }
    // Both entries are live once python itself gets its identity through a plain relay.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (mut child, stream) =
            relayed(&agent.socket_path, dir.path(), "-", None, &python).await?;
        let ids = fetch_over(stream).await?;
        let _ = child.kill();
        let _ = child.wait();
        if ids
            .as_ref()
            .is_ok_and(|ids| ids == &[id("workload/python")])
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the control relay never got the python identity: {ids:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The attack: connected as python, now running the approved binary.
    let exe = approved.to_string_lossy().into_owned();
    let (mut child, stream) =
        relayed(&agent.socket_path, dir.path(), &exe, None, &approved).await?;
    let result = fetch_over(stream).await?;
    let _ = child.kill();
    let _ = child.wait();
    match result {
        Err(status) => assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}"),
        Ok(ids) => bail!("the exec'd process's connection got {ids:?}"),
    }

    // The reverse: python holds a stream with its identity, then execs `sleep`; the next
    // message (an entry python matches is added) must not go to the relay.
    let trigger = dir.path().join("exec-now");
    let (mut child, stream) = relayed(
        &agent.socket_path,
        dir.path(),
        &exe,
        Some(&trigger),
        &python,
    )
    .await?;
    let mut held = stream_over(stream).await??;
    let first = tokio::time::timeout(Duration::from_secs(10), held.message()).await??;
    assert_eq!(first.map(|m| ids_of(&m)), Some(vec![id("workload/python")]));
    std::fs::write(&trigger, b"")?;
    let proc_exe = PathBuf::from(format!("/proc/{}/exe", child.id()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(&proc_exe).ok().as_deref() != Some(approved.as_path()) {
        if Instant::now() > deadline {
            bail!("python never exec'd");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let selector = format!("unix:path:{}", python.display());
    server.create_entry(
        &id("workload/python-2"),
        &agent.spiffe_id,
        &["--selector", &uid, "--selector", &selector],
    )?;
    let next = tokio::time::timeout(Duration::from_secs(20), held.message()).await?;
    let _ = child.kill();
    let _ = child.wait();
    match next {
        Err(status) => assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}"),
        Ok(message) => bail!(
            "the stream went on after the exec: {:?}",
            message.map(|m| ids_of(&m))
        ),
    }
    Ok(())
}

/// Finding 11 (DESIGN 3.1): of two SVIDs with one hint only the oldest entry's is sent, in
/// both the X.509 and the JWT answer; the oldest entry comes first, and an entry added later
/// (whose ID sorts first) does not change the default SVID.
#[tokio::test(flavor = "multi_thread")]
async fn hints_are_unique_and_the_oldest_entry_comes_first() -> Result<()> {
    let (server, agent) = server_and_agent("hints")?;
    entry_for_me(&server, &agent, "workload/zz-oldest", &["--hint", "main"])?;
    entry_for_me(
        &server,
        &agent,
        "workload/mm-same-hint",
        &["--hint", "main"],
    )?;
    entry_for_me(&server, &agent, "workload/kk-no-hint", &[])?;
    let first = |m: &X509svidResponse| m.svids.first().map(|s| s.spiffe_id.clone());
    let message = wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        m.svids
            .iter()
            .any(|s| s.spiffe_id == id("workload/kk-no-hint"))
    })
    .await?;
    let hinted: Vec<&str> = message
        .svids
        .iter()
        .filter(|s| s.hint == "main")
        .map(|s| s.spiffe_id.as_str())
        .collect();
    assert_eq!(
        hinted,
        [id("workload/zz-oldest")],
        "one SVID per hint, the oldest"
    );
    assert_eq!(message.svids.len(), 2, "{:?}", ids_of(&message));
    assert_eq!(first(&message), Some(id("workload/zz-oldest")));

    let mut client = mandate_integration::workload::client(&agent.socket_path).await?;
    let jwts = client
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec!["svc".into()],
            spiffe_id: String::new(),
        }))
        .await?
        .into_inner()
        .svids;
    let ids: Vec<&str> = jwts.iter().map(|s| s.spiffe_id.as_str()).collect();
    assert_eq!(ids, [id("workload/zz-oldest"), id("workload/kk-no-hint")]);

    // An unrelated entry added later, whose SPIFFE ID sorts before all others.
    entry_for_me(&server, &agent, "workload/00-newest", &[])?;
    let message = wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        m.svids
            .iter()
            .any(|s| s.spiffe_id == id("workload/00-newest"))
    })
    .await?;
    assert_eq!(
        first(&message),
        Some(id("workload/zz-oldest")),
        "{:?}",
        ids_of(&message)
    );
    let order: Vec<&str> = message.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
    assert_eq!(
        order,
        [
            id("workload/zz-oldest"),
            id("workload/kk-no-hint"),
            id("workload/00-newest")
        ]
    );
    Ok(())
}
