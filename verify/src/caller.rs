//! The caller: its SPIFFE ID and parsed delegation, taken once from the TLS peer certificate,
//! and the policy that says which SPIFFE IDs must carry a delegation (DESIGN 3.3).

use mandate_core::SpiffeId;
use mandate_core::delegation::{self, Delegation, Link};
use rustls_pki_types::CertificateDer;

use crate::refusal::Refusal;

/// Which callers must carry a delegation.
///
/// A caller whose SPIFFE ID path equals one of the prefixes, or lies below one (`/ai` covers
/// `/ai/procurement` but not `/aid`), is refused when its certificate has no delegation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelegationPolicy {
    required_prefixes: Vec<String>,
}

impl DelegationPolicy {
    /// A policy that requires a delegation under each of `prefixes` (SPIFFE ID paths such as
    /// `/ai`). A trailing `/` is ignored.
    pub fn require_under<I, S>(prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let required_prefixes = prefixes
            .into_iter()
            .map(|p| {
                let p: String = p.into();
                p.trim_end_matches('/').to_owned()
            })
            .collect();
        Self { required_prefixes }
    }

    /// Whether `id` must carry a delegation.
    pub fn requires_delegation(&self, id: &SpiffeId) -> bool {
        let path = id.path();
        self.required_prefixes.iter().any(|prefix| {
            prefix.is_empty()
                || path == prefix
                || path
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

/// Who is calling: the SPIFFE ID of the peer certificate and the delegation it carries, if any.
///
/// Extract it once per connection; then call [`crate::Verifier::authorize`] on every request.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerIdentity {
    spiffe_id: SpiffeId,
    delegation: Option<Delegation>,
    serial: Option<Vec<u8>>,
}

impl CallerIdentity {
    /// Reads the caller from its leaf certificate (DER) and applies `policy`.
    ///
    /// Fails when the certificate has no single SPIFFE ID, when its delegation extension is
    /// present but does not parse (whatever the policy), and when policy requires a delegation
    /// that is absent.
    pub fn from_certificate(leaf_der: &[u8], policy: &DelegationPolicy) -> Result<Self, Refusal> {
        let spiffe_id = spiffe::cert::spiffe_id_from_der(leaf_der)
            .map_err(|e| Refusal::NoSpiffeId(e.to_string()))?;
        let delegation = delegation::from_certificate(leaf_der)
            .map_err(|e| Refusal::DelegationMalformed(e.to_string()))?;
        if delegation.is_none() && policy.requires_delegation(&spiffe_id) {
            return Err(Refusal::DelegationRequired {
                spiffe_id: spiffe_id.to_string(),
            });
        }
        Ok(Self {
            spiffe_id,
            delegation,
            serial: crate::revocation::certificate_serial(leaf_der),
        })
    }

    /// Reads the caller from a verified peer chain (leaf first), as rustls reports it.
    ///
    /// Fails like [`Self::from_certificate`], and with `NoPeerCertificate` for an empty chain.
    pub fn from_peer_chain(
        chain: Option<&[CertificateDer<'_>]>,
        policy: &DelegationPolicy,
    ) -> Result<Self, Refusal> {
        let leaf = chain
            .and_then(|c| c.first())
            .ok_or(Refusal::NoPeerCertificate)?;
        Self::from_certificate(leaf.as_ref(), policy)
    }

    /// Reads the caller from an accepted server-side TLS stream.
    ///
    /// Fails like [`Self::from_peer_chain`].
    pub fn from_tls_stream<IO>(
        stream: &tokio_rustls::server::TlsStream<IO>,
        policy: &DelegationPolicy,
    ) -> Result<Self, Refusal> {
        Self::from_peer_chain(stream.get_ref().1.peer_certificates(), policy)
    }

    /// The caller's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The delegation the caller acts under, if its certificate carries one.
    pub fn delegation(&self) -> Option<&Delegation> {
        self.delegation.as_ref()
    }

    /// The delegation chain of a sub-task's caller (DESIGN 3.8): the earlier hops, oldest
    /// first, each naming the task and the SPIFFE ID that delegated. Empty for a direct
    /// delegation or none.
    pub fn chain(&self) -> &[Link] {
        self.delegation.as_ref().map_or(&[], |d| &d.chain[..])
    }

    /// How many hops the caller is from the principal (0: the task's own agent), when it
    /// carries a delegation.
    pub fn depth(&self) -> Option<u8> {
        self.delegation.as_ref().map(|d| d.task.depth)
    }

    /// The serial of the caller's certificate (big-endian bytes), checked against the CRLs.
    pub fn serial(&self) -> Option<&[u8]> {
        self.serial.as_deref()
    }

    /// A caller built from parts, for services that obtained the identity another way. It
    /// carries no certificate serial, so only the task-status path can refuse it.
    pub fn new(spiffe_id: SpiffeId, delegation: Option<Delegation>) -> Self {
        Self {
            spiffe_id,
            delegation,
            serial: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::new(s).expect("test id")
    }

    #[test]
    fn prefixes_match_whole_path_segments() {
        let policy = DelegationPolicy::require_under(["/ai/", "/agents/procurement"]);
        let cases = [
            ("spiffe://example.org/ai", true),
            ("spiffe://example.org/ai/procurement", true),
            ("spiffe://example.org/aid", false),
            ("spiffe://example.org/agents/procurement/x", true),
            ("spiffe://example.org/agents/procure", false),
            ("spiffe://example.org/po-service", false),
        ];
        for (text, expected) in cases {
            assert_eq!(policy.requires_delegation(&id(text)), expected, "{text}");
        }
    }

    #[test]
    fn empty_policy_requires_nothing() {
        assert!(!DelegationPolicy::default().requires_delegation(&id("spiffe://example.org/ai")));
    }

    #[test]
    fn delegation_is_read_from_the_certificate() {
        let policy = DelegationPolicy::require_under(["/ai"]);
        let deadline = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        let delegation = crate::test_support::sample_delegation(deadline);
        let der = delegation.to_der().expect("der");
        let cert =
            crate::test_support::leaf(Some("spiffe://example.org/ai/procurement"), Some(der));
        let caller = CallerIdentity::from_certificate(&cert, &policy).expect("caller");
        assert_eq!(
            caller.spiffe_id().to_string(),
            "spiffe://example.org/ai/procurement"
        );
        let got = caller.delegation().expect("delegation");
        assert_eq!(got.principal.to_string(), "user:alice@example.org");
        assert_eq!(got.task.id.as_str(), "task-4711");
        assert_eq!(got.actions.len(), 2);
    }

    #[test]
    fn policy_and_malformed_extensions_refuse() {
        use crate::test_support::leaf;
        let policy = DelegationPolicy::require_under(["/ai"]);
        let bare_agent = leaf(Some("spiffe://example.org/ai/procurement"), None);
        assert_eq!(
            CallerIdentity::from_certificate(&bare_agent, &policy).map(|_| ()),
            Err(Refusal::DelegationRequired {
                spiffe_id: "spiffe://example.org/ai/procurement".into()
            })
        );
        let service = leaf(Some("spiffe://example.org/billing"), None);
        let caller = CallerIdentity::from_certificate(&service, &policy).expect("service caller");
        assert!(caller.delegation().is_none());

        // A delegation extension that does not parse is refused whatever the policy says.
        for uri in [
            "spiffe://example.org/ai/procurement",
            "spiffe://example.org/billing",
        ] {
            let garbage = leaf(Some(uri), Some(vec![0x30, 0x03, 0x02, 0x01, 0x07]));
            let refusal = CallerIdentity::from_certificate(&garbage, &policy)
                .map(|_| ())
                .expect_err(uri);
            assert_eq!(refusal.code(), "delegation_malformed");
        }
        let anonymous = leaf(None, None);
        let refusal = CallerIdentity::from_certificate(&anonymous, &policy)
            .map(|_| ())
            .expect_err("no id");
        assert_eq!(refusal.code(), "no_spiffe_id");
    }

    #[test]
    fn no_chain_is_refused() {
        let refusal = CallerIdentity::from_peer_chain(None, &DelegationPolicy::default());
        assert_eq!(refusal.map(|_| ()), Err(Refusal::NoPeerCertificate));
    }
}
