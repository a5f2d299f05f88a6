//! The CLI over the network (DESIGN 3.9): every subcommand through `--server-address` and
//! `--endpoint`, text and JSON, and the mTLS listener trusting the bundle as it is now: an SVID
//! from the CA prepared at half life gets through as soon as that CA is in the bundle.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod admin_support;

use std::time::{Duration, Instant, SystemTime};

use admin_support::*;
use anyhow::{Result, bail};
use mandate_core::x509::{Ca, parse_pem_certs};
use mandate_integration::{bin, run};

#[tokio::test(flavor = "multi_thread")]
async fn every_cli_subcommand_reaches_the_remote_api() -> Result<()> {
    let setup = RemoteAdmin::start("cli").await?;
    let parent = setup.agent.spiffe_id.clone();
    let ok = |args: &[&str]| -> Result<String> {
        let out = setup.cli(OPERATOR, args)?;
        anyhow::ensure!(out.success(), "{args:?}: {}", out.stderr);
        Ok(out.stdout.trim().to_owned())
    };
    assert_eq!(ok(&["healthcheck"])?, "ok");
    assert!(ok(&["bundle", "show"])?.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!ok(&["token", "generate", "--ttl", "1m"])?.is_empty());
    let task = ok(&[
        "task",
        "open",
        "--principal",
        "user:a",
        "--purpose",
        "p",
        "--action",
        "a",
    ])?;
    let entry = ok(&[
        "entry",
        "create",
        "--spiffe-id",
        &id("ai/cli"),
        "--parent-id",
        &parent,
        "--selector",
        "unix:uid:4242",
        "--task",
        &task,
    ])?;
    for (args, key) in [
        (vec!["entry", "list"], None),
        (vec!["entry", "show", entry.as_str()], Some("id")),
        (vec!["task", "list"], None),
        (vec!["task", "show", task.as_str()], Some("id")),
        (vec!["agent", "list"], None),
        (vec!["audit", "list", "--limit", "3"], None),
        (vec!["audit", "verify"], Some("ok")),
    ] {
        let mut json_args = args.clone();
        json_args.extend(["--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&ok(&json_args)?)?;
        match key {
            Some(key) => assert!(v.get(key).is_some(), "{args:?}: {v}"),
            None => assert!(!v.as_array().unwrap().is_empty(), "{args:?}: {v}"),
        }
        assert!(!ok(&args)?.is_empty(), "{args:?} text");
    }
    assert_eq!(ok(&["entry", "delete", &entry])?, entry);
    assert_eq!(ok(&["task", "close", &task])?, task);
    let out = setup.cli(OPERATOR, &["agent", "evict", &id("mandate/agent/nobody")])?;
    assert!(!out.success() && out.stdout.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callers_spiffe_id_may_follow_the_subcommand() -> Result<()> {
    let setup = RemoteAdmin::start("caller-flag").await?;
    let endpoint = setup.agent.endpoint();
    let open_as = |caller: &str| {
        let caller = id(caller);
        let args = [
            "task",
            "open",
            "--principal",
            "user:a",
            "--purpose",
            "p",
            "--action",
            "a",
            "--spiffe-id",
            &caller,
            "--server-address",
            &setup.address,
            "--endpoint",
            &endpoint,
        ];
        run(&bin("mandate-server"), &args, &[])
    };
    let out = open_as(APPROVER)?;
    assert!(!out.success() && out.stdout.is_empty());
    assert!(
        out.stderr.contains("approver role may not call OpenTask"),
        "{}",
        out.stderr
    );
    let out = open_as(BROKER)?;
    assert!(out.success(), "{}", out.stderr);
    // Under `entry create`, --spiffe-id is still the entry's own ID.
    let parent = setup.agent.spiffe_id.clone();
    let entry = setup.cli(
        OPERATOR,
        &[
            "entry",
            "create",
            "--spiffe-id",
            &id("ai/named"),
            "--parent-id",
            &parent,
            "--selector",
            "unix:uid:4242",
            "--output",
            "json",
        ],
    )?;
    let entry: serde_json::Value = serde_json::from_str(&entry.stdout)?;
    assert_eq!(entry["spiffe_id"], id("ai/named").as_str());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_trusts_the_bundle_as_it_is_now() -> Result<()> {
    // A 36 s CA: the next one is prepared and joins the bundle at half life.
    let setup = RemoteAdmin::start_with("rotation", "ca_ttl = \"36s\"").await?;
    let bundle = || -> Result<Vec<Vec<u8>>> {
        let v = setup.server.cli_json(&["bundle", "show"])?;
        let pems: Vec<String> = serde_json::from_value(v["x509_authorities"].clone())?;
        Ok(pems
            .iter()
            .flat_map(|p| parse_pem_certs(p).unwrap_or_default())
            .collect())
    };
    let first = bundle()?;
    assert_eq!(first.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let next = loop {
        if let Some(ca) = bundle()?.into_iter().find(|c| !first.contains(c)) {
            break ca;
        }
        if Instant::now() > deadline {
            bail!("no second CA within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // An operator SVID signed by the new CA, which the listener did not know at start.
    let key = std::fs::read(setup.server.data_dir.join("ca").join("ca-2.key"))?;
    let next_ca = Ca::from_parts(next, &key)?;
    let now = SystemTime::now();
    let svid = leaf(&next_ca, &id(OPERATOR), now, now + Duration::from_secs(10))?;
    health_with(&setup, Some(svid)).await.unwrap();
    // The CLI still reaches the server, whose own SVID may come from either CA.
    let out = setup.cli(OPERATOR, &["healthcheck"])?;
    assert!(out.success(), "{}", out.stderr);
    Ok(())
}
