//! The second, independent revocation path (DESIGN 3.4): the trust domain's CRLs, followed on
//! the local agent's `FetchX509Bundles` stream (its `crl` fields), each trusted only once its
//! signature verifies against a CA certificate of the bundle that came with it.
//!
//! [`revoked_serials`] is the pure decision; [`follow`] keeps a [`RevokedSerials`] current.
//! A caller whose certificate serial is listed is refused on every request, whatever the
//! task-status feed says.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mandate_proto::workload::X509BundlesRequest;
use mandate_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tokio::sync::watch;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// The serials listed by the verified CRLs of one bundle message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedSerials {
    serials: HashSet<Vec<u8>>,
    /// How many CRLs verified.
    pub verified_crls: usize,
    /// How many CRLs were dropped because they did not parse or verify.
    pub rejected_crls: usize,
}

impl RevokedSerials {
    /// Whether the certificate serial `serial` (big-endian bytes, as in the certificate) is
    /// listed. Leading zero bytes are ignored.
    pub fn contains(&self, serial: &[u8]) -> bool {
        self.serials.contains(normalize(serial))
    }

    /// How many serials are listed.
    pub fn len(&self) -> usize {
        self.serials.len()
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }
}

/// The serials of the CRLs in `crls` whose signature verifies against one of `authorities`
/// (DER CA certificates) with the same subject as the CRL's issuer. A CRL that does not parse
/// or verify is counted in `rejected_crls` and contributes nothing: an attacker who can put
/// bytes on the stream must not be able to revoke (or un-revoke) anyone.
pub fn revoked_serials<C: AsRef<[u8]>>(crls: &[C], authorities: &[Vec<u8>]) -> RevokedSerials {
    let cas: Vec<X509Certificate<'_>> = authorities
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, cert)| cert))
        .collect();
    let mut out = RevokedSerials::default();
    for crl in crls {
        let Ok((_, crl)) = CertificateRevocationList::from_der(crl.as_ref()) else {
            out.rejected_crls += 1;
            continue;
        };
        let signed_by_ca = cas.iter().any(|ca| {
            ca.subject().as_raw() == crl.issuer().as_raw()
                && crl.verify_signature(ca.public_key()).is_ok()
        });
        if !signed_by_ca {
            out.rejected_crls += 1;
            continue;
        }
        out.verified_crls += 1;
        for revoked in crl.iter_revoked_certificates() {
            out.serials.insert(normalize(revoked.raw_serial()).to_vec());
        }
    }
    out
}

/// The serial of a DER certificate, as its big-endian bytes.
pub(crate) fn certificate_serial(leaf_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(leaf_der).ok()?;
    Some(normalize(cert.tbs_certificate.raw_serial()).to_vec())
}

fn normalize(serial: &[u8]) -> &[u8] {
    let zeros = serial.iter().take_while(|b| **b == 0).count();
    &serial[zeros.min(serial.len().saturating_sub(1))..]
}

/// Follows `FetchX509Bundles` on the agent socket at `socket_path` forever, publishing the
/// verified revocations of each message; reconnects with backoff (`initial` doubling up to
/// `max`).
pub(crate) async fn follow(
    socket_path: PathBuf,
    sender: watch::Sender<Option<Arc<RevokedSerials>>>,
    initial: Duration,
    max: Duration,
) {
    let mut backoff = initial;
    loop {
        match stream_once(&socket_path, &sender).await {
            Ok(true) => backoff = initial,
            Ok(false) => {}
            Err(error) => tracing::debug!(%error, "CRL feed unavailable; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
    }
}

async fn stream_once(
    socket_path: &Path,
    sender: &watch::Sender<Option<Arc<RevokedSerials>>>,
) -> Result<bool, tonic::Status> {
    let channel = crate::status::connect_unix(socket_path)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = SpiffeWorkloadApiClient::new(channel)
        .max_decoding_message_size(crate::status::MAX_FEED_MESSAGE);
    let mut request = tonic::Request::new(X509BundlesRequest {});
    request.metadata_mut().insert(
        mandate_proto::WORKLOAD_HEADER_KEY,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let mut stream = client.fetch_x509_bundles(request).await?.into_inner();
    let mut received_any = false;
    while let Some(message) = stream.message().await? {
        received_any = true;
        let mut authorities = Vec::new();
        for concat in message.bundles.values() {
            authorities.extend(mandate_core::x509::split_der_certs(concat).unwrap_or_default());
        }
        let revoked = revoked_serials(&message.crl, &authorities);
        if revoked.rejected_crls > 0 {
            tracing::warn!(
                rejected = revoked.rejected_crls,
                "ignoring CRLs that are not signed by a CA of the bundle"
            );
        }
        sender.send_replace(Some(Arc::new(revoked)));
    }
    Ok(received_any)
}

#[cfg(test)]
#[path = "revocation_tests.rs"]
mod tests;
