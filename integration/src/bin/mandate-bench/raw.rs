//! The limit for issuance: a raw aws-lc-rs P-256 loop that does what signing one SVID cannot
//! avoid (verify a CSR-sized message, sign a certificate-sized one), on the core the server
//! is pinned to.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde_json::json;

/// Size of the signed part of a bare P-256 CSR (`CertificationRequestInfo`), in bytes.
const CSR_INFO_LEN: usize = 100;
/// Size of the signed part of an SVID leaf (`TBSCertificate`), in bytes.
const TBS_LEN: usize = 480;

/// Runs the loop for `duration` on this thread; returns verify+sign pairs per second.
///
/// Fails when aws-lc-rs cannot make or use a key.
pub(crate) fn measure(duration: Duration) -> Result<f64> {
    let rng = SystemRandom::new();
    let csr_key = new_key(&rng)?;
    let ca_key = new_key(&rng)?;
    let csr_info = vec![0x5a_u8; CSR_INFO_LEN];
    let signature = csr_key
        .sign(&rng, &csr_info)
        .map_err(|_| anyhow::anyhow!("signing failed"))?;
    let public = UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        csr_key.public_key().as_ref().to_vec(),
    );
    let mut tbs = vec![0xa5_u8; TBS_LEN];
    let start = Instant::now();
    let mut count = 0_u64;
    while start.elapsed() < duration {
        for _ in 0..64 {
            public
                .verify(&csr_info, signature.as_ref())
                .map_err(|_| anyhow::anyhow!("verify failed"))?;
            // Vary the message as every certificate differs (serial, key).
            tbs[..8].copy_from_slice(&count.to_be_bytes());
            let sig = ca_key
                .sign(&rng, &tbs)
                .map_err(|_| anyhow::anyhow!("signing failed"))?;
            std::hint::black_box(sig);
            count += 1;
        }
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

fn new_key(rng: &SystemRandom) -> Result<EcdsaKeyPair> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, rng)
        .map_err(|_| anyhow::anyhow!("key generation failed"))?;
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("key parsing failed"))
}

/// The hidden `raw-sign <millis>` subcommand: measures and prints `{"ops_per_s": ..}`.
///
/// Fails when the argument is not a number or the loop fails.
pub(crate) fn child_main(args: &[String]) -> Result<()> {
    let millis: u64 = args.first().context("raw-sign needs <millis>")?.parse()?;
    let ops = measure(Duration::from_millis(millis))?;
    println!("{}", json!({ "ops_per_s": ops }));
    Ok(())
}

/// Runs the loop in a child process pinned to `cpu` with `taskset` (the core the server is
/// pinned to), so both sides of the ratio run on the same core.
///
/// Fails when the child cannot run or prints no rate.
pub(crate) fn pinned(cpu: &str, duration: Duration) -> Result<f64> {
    let exe = crate::own_executable();
    let output = Command::new("taskset")
        .args(["-c", cpu])
        .arg(exe)
        .args(["raw-sign", &duration.as_millis().to_string()])
        .output()
        .context("running taskset")?;
    if !output.status.success() {
        bail!(
            "raw-sign failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    value["ops_per_s"]
        .as_f64()
        .context("raw-sign printed no ops_per_s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_runs() {
        let ops = measure(Duration::from_millis(20)).expect("loop");
        assert!(ops > 0.0);
    }
}
