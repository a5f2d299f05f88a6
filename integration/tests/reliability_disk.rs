//! The server's data dir on a full disk (a small tmpfs, so root only): writes fail with a
//! clear error, nothing acknowledged is lost, and the store and audit chain are intact once
//! the data is moved to a disk with room.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use mandate_integration::{Server, workload};
use mandate_proto::admin::CreateEntryRequest;
use mandate_proto::admin::admin_client::AdminClient;

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(at)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(at)
            .status()?;
        ensure!(status.success(), "mount tmpfs failed");
        Ok(Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()?;
    ensure!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn request(i: usize) -> CreateEntryRequest {
    CreateEntryRequest {
        spiffe_id: format!("spiffe://example.org/disk/{i}"),
        parent_id: "spiffe://example.org/node/disk".into(),
        selectors: vec![format!("unix:uid:{i}")],
        hint: "h".repeat(256),
        ..CreateEntryRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_data_disk_gives_a_clear_error_and_no_corruption() -> Result<()> {
    if !Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
    {
        println!("skipped: mounting a small tmpfs needs root");
        return Ok(());
    }
    let mut server = Server::start()?;
    server.stop()?;
    let used = dir_size(&server.data_dir);
    // 2 MiB, or 1 MiB more than a fresh store if that is bigger.
    let size_kib = (used / 1024 + 1024).max(2048);
    let mount = Tmpfs::mount(&server.dir.path().join("full"), &format!("{size_kib}k"))?;
    copy_dir(&server.data_dir, &mount.0)?;
    let original = std::mem::replace(&mut server.data_dir, mount.0.clone());
    server.restart()?;
    println!("fresh store {} KiB on a {size_kib} KiB tmpfs", used / 1024);

    let mut admin = AdminClient::new(workload::channel(&server.admin_socket).await?);
    let mut acked = BTreeSet::new();
    let mut first_error = None;
    let started = Instant::now();
    for i in 0..50_000 {
        match admin.create_entry(request(i)).await {
            Ok(reply) => {
                acked.insert(reply.into_inner().id);
            }
            Err(status) => {
                first_error = Some(status);
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!("the disk never filled: {} entries in 90 s", acked.len());
        }
    }
    let status = first_error.context("a write must fail on a full disk")?;
    println!(
        "disk full after {} entries: {:?} {:?}",
        acked.len(),
        status.code(),
        status.message()
    );
    assert_ne!(status.code(), tonic::Code::Ok);
    assert!(!status.message().is_empty(), "the error says what is wrong");
    // The CLI says it in one line and prints nothing on stdout.
    let out = server.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/disk/cli",
        "--parent-id",
        "spiffe://example.org/node/disk",
        "--selector",
        "unix:uid:1",
    ])?;
    let alive = server.cli(&["healthcheck"])?.success();
    println!(
        "cli on a full disk: code {} stderr {:?}; server alive: {alive}",
        out.code,
        out.stderr.trim()
    );
    assert!(!out.success() && out.stdout.trim().is_empty(), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);

    // Move the data to a disk with room: everything acknowledged is there, the audit holds.
    server.kill9();
    let rescued = server.dir.path().join("rescued");
    copy_dir(&mount.0, &rescued)?;
    drop(mount);
    server.data_dir = rescued;
    server.restart()?;
    let list = server.cli_json(&["entry", "list"])?;
    let present: BTreeSet<String> = list
        .as_array()
        .context("array")?
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<_> = acked.difference(&present).collect();
    assert!(lost.is_empty(), "{} acknowledged entries lost", lost.len());
    let audit = server.cli_json(&["audit", "verify"])?;
    assert_eq!(audit["ok"], true, "audit after a full disk: {audit}");
    // And the store takes writes again.
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/disk/after",
        "--parent-id",
        "spiffe://example.org/node/disk",
        "--selector",
        "unix:uid:1",
    ])?;
    drop(original);
    Ok(())
}
