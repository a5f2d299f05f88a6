//! The delegation journey, issuance side, against the real binaries: a task-bound SVID carries
//! the extension and the JWT claim, never outlives the task, waits for approval, and a CSR
//! cannot smuggle in a delegation of its own.

mod delegation_support;
#[path = "server_support/mod.rs"]
mod server_support;

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use delegation_support::{
    AI_ID, bind_to_task, block_on, first_x509, jwt_and_jwks, leaf_of, open_task, start,
    task_deadline, unix,
};
use mandate_core::delegation::{Delegation, TaskInfo, delegation_oid_components};
use mandate_core::x509::{generate_p256_keypair, validate_leaf};

/// The AI workload's X509-SVID from the Workload API, waiting up to 10 s for it to appear.
async fn ai_leaf(agent: &mandate_integration::Agent) -> Result<Vec<u8>> {
    let started = std::time::Instant::now();
    loop {
        let message = first_x509(agent, Duration::from_secs(2)).await?;
        if let Some(svid) = message
            .iter()
            .flat_map(|m| &m.svids)
            .find(|s| s.spiffe_id == AI_ID)
        {
            return leaf_of(&svid.x509_svid);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "no SVID for {AI_ID} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_task_bound_svid_carries_the_extension_and_the_jwt_claim_within_the_deadline() -> Result<()> {
    let (server, agent) = start()?;
    // A deadline shorter than the default X.509 TTL (1 h) and JWT TTL (5 m): it must cap both.
    let task = open_task(&server, &["--deadline", "2m", "--max-depth", "1"])?;
    bind_to_task(&server, &agent, &task)?;
    let deadline = task_deadline(&server, &task)?;
    block_on(async {
        let leaf = ai_leaf(&agent).await?;
        let info = validate_leaf(&leaf).context("the SVID follows the profile")?;
        let delegation = info
            .delegation
            .context("the SVID carries the delegation extension")?;
        assert_eq!(delegation.principal.to_string(), "user:alice@example.org");
        assert_eq!(delegation.task.id.as_str(), task);
        assert_eq!(delegation.task.purpose, "draft purchase order 4711");
        assert_eq!((delegation.task.depth, delegation.task.max_depth), (0, 1));
        let actions: Vec<&str> = delegation.actions.iter().map(|a| a.as_str()).collect();
        assert_eq!(actions, ["po.draft", "po.read"]);
        assert_eq!(
            delegation.value_limit.map(|v| v.to_string()).as_deref(),
            Some("500.00:EUR")
        );
        assert_eq!(unix(delegation.task.deadline), deadline);
        assert!(
            unix(info.not_after) <= deadline,
            "notAfter {} after deadline {deadline}",
            unix(info.not_after)
        );
        assert!(
            unix(info.not_after) > unix(SystemTime::now()) + 60,
            "notAfter is the deadline, not earlier"
        );

        // The extension is non-critical and under the one OID.
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf)?;
        let oid = mandate_core::delegation::DELEGATION_OID;
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .context("extension by OID")?;
        assert!(
            !ext.critical,
            "the delegation extension must be non-critical"
        );

        let (token, jwks) = jwt_and_jwks(&agent, "po-service").await?;
        let claims = mandate_core::jwt::verify(&token, &jwks, "po-service", SystemTime::now())?;
        assert_eq!(claims.sub.to_string(), AI_ID);
        assert!(
            claims.exp <= deadline,
            "exp {} after deadline {deadline}",
            claims.exp
        );
        let claim = claims
            .delegation
            .context("the JWT carries the delegation claim")?;
        assert_eq!(claim, delegation, "the claim mirrors the extension");
        Ok(())
    })
}

#[test]
fn a_task_that_needs_approval_yields_no_identity_until_approved() -> Result<()> {
    let (server, agent) = start()?;
    let task = open_task(&server, &["--require-approval"])?;
    assert_eq!(
        server.cli_json(&["task", "show", &task])?["state"],
        "pending"
    );
    bind_to_task(&server, &agent, &task)?;
    block_on(async {
        // Give the entry time to reach the agent: still nothing for the workload.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = first_x509(&agent, Duration::from_secs(2)).await?;
        let has_ai = before.is_some_and(|m| m.svids.iter().any(|s| s.spiffe_id == AI_ID));
        assert!(!has_ai, "a pending task must not yield an SVID");

        server.cli_ok(&["task", "approve", &task, "--approver", "bob@example.org"])?;
        let leaf = ai_leaf(&agent).await?;
        let delegation = validate_leaf(&leaf)?
            .delegation
            .context("delegation after approval")?;
        let approval = delegation
            .approval
            .context("the delegation records the approval")?;
        assert_eq!(approval.approver, "bob@example.org");
        Ok(())
    })
}

#[test]
fn a_csr_with_a_forged_delegation_gets_only_the_servers_delegation() -> Result<()> {
    let server = mandate_integration::Server::start()?;
    let task = open_task(&server, &[])?;
    block_on(async {
        let mut agent = server_support::attest(&server, None).await?;
        let bound = server.create_entry(
            AI_ID,
            &agent.id,
            &["--selector", "unix:uid:4242", "--task", &task],
        )?;
        let plain = server.create_entry(
            "spiffe://example.org/plain",
            &agent.id,
            &["--selector", "unix:uid:4243"],
        )?;

        // A well-formed delegation for mallory, granting everything, placed in the CSR.
        let mut forged = Delegation {
            principal: "user:mallory@example.org".parse()?,
            task: TaskInfo {
                id: task.parse()?,
                purpose: "forged".into(),
                deadline: SystemTime::now() + Duration::from_secs(30 * 24 * 3600),
                depth: 0,
                max_depth: 9,
            },
            actions: vec!["po.approve".parse()?, "po.draft".parse()?],
            value_limit: Some("999999.00:EUR".parse()?),
            approval: None,
            chain: Vec::new(),
        };
        let key = generate_p256_keypair()?;
        let mut params = rcgen::CertificateParams::default();
        params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &delegation_oid_components(),
            forged.to_der()?,
        )];
        let csr = params.serialize_request(&key)?.der().to_vec();

        let (code, chain) = agent.sign_csr(&bound, csr.clone()).await?;
        assert_eq!(code, 0, "the bound entry is signed");
        let got = validate_leaf(&chain[0])?
            .delegation
            .context("the server's delegation")?;
        assert_eq!(got.principal.to_string(), "user:alice@example.org");
        assert_eq!(got.task.purpose, "draft purchase order 4711");
        assert!(
            got.actions.iter().all(|a| a.as_str() != "po.approve"),
            "no forged action"
        );
        forged.task.purpose = got.task.purpose.clone();
        assert_ne!(got, forged);

        let (code, chain) = agent.sign_csr(&plain, csr).await?;
        assert_eq!(code, 0, "the plain entry is signed");
        assert!(
            validate_leaf(&chain[0])?.delegation.is_none(),
            "no delegation for an entry without a task"
        );
        Ok(())
    })
}
