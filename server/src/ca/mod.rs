//! The server CA: a P-256 signing CA (self-signed, or an intermediate under an upstream CA)
//! with its ES256 JWT key, rotated with overlap (see [`rotation`]), the CRLs of revoked task
//! serials, and the trust bundle built from all of them.

mod crl;
mod keys;
mod rotation;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use mandate_core::delegation::Delegation;
use mandate_core::jwt::{JwtKey, JwtSvidClaims};
use mandate_core::time::{svid_not_after, svid_not_before, unix_seconds};
use mandate_core::x509::{Ca, LeafRequest, Serial};
use mandate_core::{SpiffeId, TrustDomain};
use rcgen::{KeyPair, PublicKeyData};

use crate::config::Config;
use crate::registry::Registry;
use crate::store::IssuedSerial;
pub use crl::Revoked;
pub use keys::{ensure_private_dir, write_secret};
pub use rotation::ServerIdentity;

/// Errors of the CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Certificate or key work failed.
    #[error("ca: {0}")]
    X509(#[from] mandate_core::x509::X509Error),
    /// JWT work failed.
    #[error("ca: {0}")]
    Jwt(#[from] mandate_core::jwt::JwtError),
    /// Key files could not be read or written.
    #[error("ca key file: {0}")]
    Io(#[from] std::io::Error),
    /// The journal could not be written.
    #[error("ca journal: {0}")]
    Registry(#[from] crate::registry::RegistryError),
    /// The store could not be read.
    #[error("ca journal: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The journal names no usable CA.
    #[error("ca journal is inconsistent: {0}")]
    Journal(String),
}

/// A CA generation with its JWT key.
#[derive(Debug)]
pub struct CaSlotKeys {
    /// Generation number.
    pub id: u64,
    /// The CA.
    pub ca: Ca,
    /// The JWT signing key.
    pub jwt: JwtKey,
    /// The JWT key's `kid`.
    pub kid: String,
}

/// The trust bundle as served to agents (converted to proto at the API edge).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleView {
    /// The trust domain name.
    pub trust_domain: String,
    /// DER roots verifiers trust.
    pub x509_authorities: Vec<Vec<u8>>,
    /// DER CRL of each CA.
    pub crls: Vec<Vec<u8>>,
    /// JWKS JSON.
    pub jwks: Vec<u8>,
    /// Grows on every change.
    pub sequence: u64,
    /// Seconds.
    pub refresh_hint_seconds: i64,
}

/// The CAs in use and what derives from them.
#[derive(Debug)]
pub struct Live {
    /// The CA that signs.
    pub active: Arc<CaSlotKeys>,
    /// Every CA still valid, oldest first (includes `active`).
    pub slots: Vec<Arc<CaSlotKeys>>,
    /// The bundle.
    pub bundle: Arc<BundleView>,
}

/// What to put in an X509-SVID.
#[derive(Debug, Clone)]
pub struct SvidRequest {
    /// Its SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// Requested lifetime.
    pub ttl: Duration,
    /// The task deadline that caps it.
    pub deadline: Option<SystemTime>,
    /// The delegation extension.
    pub delegation: Option<Delegation>,
}

/// An issued X509-SVID.
#[derive(Debug, Clone)]
pub struct SignedSvid {
    /// Leaf first, then the server CA when it is an intermediate.
    pub chain: Vec<Vec<u8>>,
    /// The serial.
    pub serial: Serial,
    /// notAfter.
    pub not_after: SystemTime,
    /// Which CA generation signed it.
    pub ca_id: u64,
}

#[derive(Debug)]
struct Upstream {
    cert_der: Vec<u8>,
    key: KeyPair,
}

/// The CA manager.
#[derive(Debug)]
pub struct CaManager {
    dir: PathBuf,
    trust_domain: TrustDomain,
    ca_ttl: Duration,
    upstream: Option<Upstream>,
    registry: Arc<Registry>,
    live: ArcSwap<Live>,
    revoked: Mutex<Vec<Revoked>>,
    rotate_lock: tokio::sync::Mutex<()>,
    identity: ServerIdentity,
}

impl CaManager {
    /// The live CA set.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// The current bundle.
    pub fn bundle(&self) -> Arc<BundleView> {
        Arc::clone(&self.live.load().bundle)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The server's TLS identity (certificate and roots), kept current by rotation.
    pub fn identity(&self) -> &ServerIdentity {
        &self.identity
    }

    /// Signs an X509-SVID for `public_key` with the active CA. notAfter is capped by the
    /// task deadline and the CA's own notAfter.
    ///
    /// # Errors
    /// [`CaError::X509`] when signing fails (e.g. the deadline already passed).
    pub fn sign_svid(
        &self,
        public_key: &impl PublicKeyData,
        req: &SvidRequest,
        now: SystemTime,
    ) -> Result<SignedSvid, CaError> {
        let live = self.live.load();
        let slot = &live.active;
        let not_after = svid_not_after(now, req.ttl, req.deadline, slot.ca.not_after);
        let leaf = slot.ca.sign_leaf(
            public_key,
            &LeafRequest {
                spiffe_id: req.spiffe_id.clone(),
                dns_names: req.dns_names.clone(),
                not_before: svid_not_before(now),
                not_after,
                delegation: req.delegation.clone(),
            },
        )?;
        let mut chain = vec![leaf.der];
        if self.upstream.is_some() {
            chain.push(slot.ca.cert_der.clone());
        }
        Ok(SignedSvid {
            chain,
            serial: leaf.serial,
            not_after: leaf.not_after,
            ca_id: slot.id,
        })
    }

    /// Mints a JWT-SVID with the active JWT key; `exp` never passes the deadline.
    ///
    /// # Errors
    /// [`CaError::Jwt`] when signing fails.
    pub fn mint_jwt(
        &self,
        sub: SpiffeId,
        audience: Vec<String>,
        ttl: Duration,
        deadline: Option<SystemTime>,
        delegation: Option<Delegation>,
        now: SystemTime,
    ) -> Result<(String, i64), CaError> {
        let live = self.live.load();
        let exp = svid_not_after(now, ttl, deadline, live.active.ca.not_after);
        let claims = JwtSvidClaims {
            sub,
            aud: audience,
            exp: unix_seconds(exp),
            iat: unix_seconds(now),
            delegation,
        };
        let token = live.active.jwt.mint(&claims)?;
        Ok((token, claims.exp))
    }

    /// Revokes `serials` (a task closed or expired) and re-signs every CA's CRL.
    ///
    /// # Errors
    /// [`CaError::X509`] when a CRL cannot be signed.
    pub fn revoke(&self, serials: &[IssuedSerial], now: SystemTime) -> Result<(), CaError> {
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        crl::add(&mut revoked, serials, now);
        let live = self.live.load();
        let next = self.build_live(Arc::clone(&live.active), live.slots.clone(), &revoked, now)?;
        self.live.store(Arc::new(next));
        Ok(())
    }

    /// True when `serial` is listed in the CRLs (for tests and metrics).
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|r| r.serial.to_string() == serial)
    }

    fn build_live(
        &self,
        active: Arc<CaSlotKeys>,
        slots: Vec<Arc<CaSlotKeys>>,
        revoked: &[Revoked],
        now: SystemTime,
    ) -> Result<Live, CaError> {
        let live = assemble(
            &self.trust_domain,
            self.ca_ttl,
            self.upstream.as_ref().map(|u| u.cert_der.as_slice()),
            (active, slots),
            revoked,
            self.live_sequence(),
            now,
        )?;
        self.identity.set_roots(&live.bundle.x509_authorities);
        Ok(live)
    }

    fn live_sequence(&self) -> u64 {
        self.live.load().bundle.sequence
    }
}

/// Builds the CA manager from `config`: loads the journal or creates the first CA, then
/// rotates if due. Call [`CaManager::spawn_rotation`] afterwards.
///
/// # Errors
/// A [`CaError`] when keys or the journal cannot be read or written.
pub async fn open(config: &Config, registry: Arc<Registry>) -> Result<Arc<CaManager>, CaError> {
    rotation::open(config, registry).await
}

/// Builds the live set: each CA's CRL, the roots, the JWKS and a grown sequence.
fn assemble(
    trust_domain: &TrustDomain,
    ca_ttl: Duration,
    upstream_root: Option<&[u8]>,
    (active, slots): (Arc<CaSlotKeys>, Vec<Arc<CaSlotKeys>>),
    revoked: &[Revoked],
    previous_sequence: u64,
    now: SystemTime,
) -> Result<Live, CaError> {
    let sequence = crl::next_sequence(previous_sequence, now);
    let mut crls = Vec::with_capacity(slots.len());
    for slot in &slots {
        crls.push(crl::sign(&slot.ca, slot.id, revoked, sequence, now)?);
    }
    let x509_authorities = match upstream_root {
        Some(root) => vec![root.to_vec()],
        None => slots.iter().map(|s| s.ca.cert_der.clone()).collect(),
    };
    let refresh_hint = (ca_ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(300));
    let keys = slots.iter().map(|s| s.jwt.public_jwk()).collect();
    let jwks = mandate_core::jwt::Jwks::new(keys, sequence, refresh_hint).to_json_bytes();
    let bundle = BundleView {
        trust_domain: trust_domain.to_string(),
        x509_authorities,
        crls,
        jwks,
        sequence,
        refresh_hint_seconds: i64::try_from(refresh_hint.as_secs()).unwrap_or(300),
    };
    Ok(Live {
        active,
        slots,
        bundle: Arc::new(bundle),
    })
}

#[cfg(test)]
mod tests;
