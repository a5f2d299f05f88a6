//! CA lifecycle as SPIRE does it: load or create the CA at start, prepare the next CA at half
//! of the active one's life, activate it when a sixth remains, keep both in the bundle until
//! the old one expires. Also keeps the server's own TLS SVID fresh.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use mandate_core::jwt::JwtKey;
use mandate_core::time::{CaPhase, ca_phase, from_unix_seconds, should_rotate, unix_seconds};
use mandate_core::tls::SharedRoots;
use mandate_core::x509::{Ca, CaKey, generate_p256_keypair, parse_pem_certs};
use mandate_core::{SpiffeId, TrustDomain};
use rcgen::KeyPair;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::keys::{ensure_private_dir, read_secret, write_secret};
use super::{CaError, CaManager, CaSlotKeys, SvidRequest, Upstream, assemble};
use crate::config::{Config, UpstreamCa};
use crate::registry::{Plan, Registry};
use crate::store::{CaJournal, CaSlot, Change, WriteOp};

/// Lifetime of the server's TLS SVID.
const SERVER_SVID_TTL: Duration = Duration::from_secs(3600);

/// The server's TLS identity for the agent API.
#[derive(Debug, Default)]
pub struct ServerIdentity {
    roots: SharedRoots,
    cert: ArcSwapOption<CertifiedKey>,
    validity: Mutex<Option<(SystemTime, SystemTime)>>,
}

impl ServerIdentity {
    /// The roots agents' certificates are checked against.
    pub fn roots(&self) -> SharedRoots {
        Arc::clone(&self.roots)
    }

    /// The current certificate and key.
    pub fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        self.cert.load_full()
    }

    pub(super) fn set_roots(&self, roots: &[Vec<u8>]) {
        let mut guard = self.roots.write().unwrap_or_else(|e| e.into_inner());
        *guard = roots
            .iter()
            .map(|r| CertificateDer::from(r.clone()))
            .collect();
    }

    fn due(&self, now: SystemTime) -> bool {
        match *self.validity.lock().unwrap_or_else(|e| e.into_inner()) {
            None => true,
            Some((nb, na)) => should_rotate(now, nb, na, Duration::ZERO),
        }
    }
}

pub(super) async fn open(
    config: &Config,
    registry: Arc<Registry>,
) -> Result<Arc<CaManager>, CaError> {
    let dir = config.data_dir.join("ca");
    ensure_private_dir(&dir)?;
    let upstream = config.upstream.as_ref().map(parse_upstream).transpose()?;
    let now = SystemTime::now();
    let journal = registry.store().ca_journal()?.unwrap_or_default();
    let mut slots = Vec::new();
    for slot in journal
        .slots
        .iter()
        .filter(|s| from_unix_seconds(s.not_after) > now)
    {
        slots.push(Arc::new(load_slot(&dir, slot, upstream.as_ref())?));
    }
    let fresh = slots.is_empty();
    if fresh {
        let id = journal.slots.iter().map(|s| s.id).max().unwrap_or(0) + 1;
        let td = config.trust_domain.clone();
        slots.push(Arc::new(create_slot(
            &dir,
            id,
            td,
            config.ca_ttl,
            upstream.as_ref(),
            now,
        )?));
    }
    let active = slots
        .iter()
        .find(|s| s.id == journal.active)
        .or(slots.last())
        .cloned()
        .ok_or_else(|| CaError::Journal("no CA".into()))?;
    let identity = ServerIdentity::default();
    let live = assemble(
        &config.trust_domain,
        config.ca_ttl,
        upstream.as_ref().map(|u| u.cert_der.as_slice()),
        (active, slots),
        &[],
        0,
        now,
    )?;
    identity.set_roots(&live.bundle.x509_authorities);
    let manager = Arc::new(CaManager {
        dir,
        trust_domain: config.trust_domain.clone(),
        ca_ttl: config.ca_ttl,
        upstream,
        registry,
        live: ArcSwap::from_pointee(live),
        revoked: Mutex::new(Vec::new()),
        rotate_lock: tokio::sync::Mutex::new(()),
        identity,
    });
    if fresh {
        manager.persist(&manager.live(), now).await?;
    }
    manager.rotate(now).await?;
    manager.reissue_server_cert(now)?;
    Ok(manager)
}

impl CaManager {
    /// Applies the rotation decision for `now`: prepare, activate, drop expired CAs.
    ///
    /// # Errors
    /// Key generation, key files or the journal failed.
    pub async fn rotate(&self, now: SystemTime) -> Result<(), CaError> {
        let _guard = self.rotate_lock.lock().await;
        let live = self.live();
        let mut slots: Vec<_> = live
            .slots
            .iter()
            .filter(|s| s.ca.not_after > now)
            .cloned()
            .collect();
        let mut changed = slots.len() != live.slots.len();
        let mut active = Arc::clone(&live.active);
        let newer = slots.iter().find(|s| s.id > active.id).cloned();
        let phase = ca_phase(now, active.ca.not_before, active.ca.not_after);
        let next_id = slots.iter().map(|s| s.id).max().unwrap_or(active.id) + 1;
        match (phase, newer) {
            (CaPhase::Active, _) | (CaPhase::PrepareNext, Some(_)) => {}
            (CaPhase::PrepareNext, None) => {
                tracing::info!(id = next_id, "preparing next CA");
                slots.push(Arc::new(self.create(next_id, now)?));
                changed = true;
            }
            (_, newer) => {
                let next = match newer {
                    Some(n) => n,
                    None => {
                        let n = Arc::new(self.create(next_id, now)?);
                        slots.push(Arc::clone(&n));
                        n
                    }
                };
                tracing::info!(id = next.id, "activating next CA");
                active = next;
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        let activated = active.id != live.active.id;
        let next = {
            let revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
            self.build_live(active, slots, &revoked, now)?
        };
        self.persist(&next, now).await?;
        self.live.store(Arc::new(next));
        if activated {
            self.reissue_server_cert(now)?;
        }
        Ok(())
    }

    /// Runs rotation forever, waking at the next phase boundary of any CA or of the
    /// server's TLS SVID.
    pub fn spawn_rotation(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let now = SystemTime::now();
                if let Err(e) = this.rotate(now).await {
                    tracing::error!(error = %e, "CA rotation failed");
                }
                if this.identity.due(now)
                    && let Err(e) = this.reissue_server_cert(now)
                {
                    tracing::error!(error = %e, "server certificate renewal failed");
                }
                tokio::time::sleep(this.next_wake(SystemTime::now())).await;
            }
        })
    }

    fn next_wake(&self, now: SystemTime) -> Duration {
        let live = self.live();
        let a = &live.active.ca;
        let life = a.not_after.duration_since(a.not_before).unwrap_or_default();
        let mut points = vec![a.not_before + life / 2, a.not_after - life / 6];
        points.extend(live.slots.iter().map(|s| s.ca.not_after));
        if let Some((nb, na)) = *self
            .identity
            .validity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            points.push(nb + na.duration_since(nb).unwrap_or_default() / 2);
        }
        points
            .into_iter()
            .filter_map(|p| p.duration_since(now).ok())
            .filter(|d| !d.is_zero())
            .min()
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(200), Duration::from_secs(3600))
    }

    /// Issues a fresh TLS SVID `spiffe://<td>/mandate/server` (DNS SAN `localhost`).
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn reissue_server_cert(&self, now: SystemTime) -> Result<(), CaError> {
        let key = generate_p256_keypair()?;
        let id = format!("{}/mandate/server", self.trust_domain.id_string());
        let spiffe_id = SpiffeId::new(&id)
            .map_err(|e| CaError::Journal(format!("server SPIFFE ID {id}: {e}")))?;
        let req = SvidRequest {
            spiffe_id,
            dns_names: vec!["localhost".into()],
            ttl: SERVER_SVID_TTL,
            deadline: None,
            delegation: None,
        };
        let signed = self.sign_svid(&key, &req, now)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&der)
            .map_err(|e| CaError::Journal(format!("server key: {e}")))?;
        let chain = signed.chain.into_iter().map(CertificateDer::from).collect();
        self.identity
            .cert
            .store(Some(Arc::new(CertifiedKey::new(chain, signer))));
        *self
            .identity
            .validity
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            Some((mandate_core::time::svid_not_before(now), signed.not_after));
        Ok(())
    }

    fn create(&self, id: u64, now: SystemTime) -> Result<CaSlotKeys, CaError> {
        let td = self.trust_domain.clone();
        create_slot(&self.dir, id, td, self.ca_ttl, self.upstream.as_ref(), now)
    }

    async fn persist(&self, live: &super::Live, now: SystemTime) -> Result<(), CaError> {
        let journal = CaJournal {
            slots: live.slots.iter().map(|s| journal_slot(s)).collect(),
            active: live.active.id,
        };
        self.registry
            .write(now, |_| {
                let plan = Plan {
                    ops: vec![WriteOp::PutCaJournal(journal)],
                    changes: vec![Change::Bundle],
                    audit: Vec::new(),
                };
                Ok((plan, ()))
            })
            .await?;
        Ok(())
    }
}

fn journal_slot(s: &CaSlotKeys) -> CaSlot {
    CaSlot {
        id: s.id,
        cert_der: s.ca.cert_der.clone(),
        key_file: format!("ca-{}.key", s.id),
        jwt_kid: s.kid.clone(),
        jwt_key_file: format!("jwt-{}.key", s.id),
        not_before: unix_seconds(s.ca.not_before),
        not_after: unix_seconds(s.ca.not_after),
    }
}

fn parse_upstream(u: &UpstreamCa) -> Result<Upstream, CaError> {
    let cert_der = parse_pem_certs(&u.cert_pem)?
        .into_iter()
        .next()
        .ok_or_else(|| CaError::Journal("upstream_ca_cert holds no certificate".into()))?;
    let key = KeyPair::from_pem(&u.key_pem)
        .map_err(|e| CaError::Journal(format!("upstream_ca_key: {e}")))?;
    Ok(Upstream { cert_der, key })
}

fn create_slot(
    dir: &Path,
    id: u64,
    trust_domain: TrustDomain,
    ttl: Duration,
    upstream: Option<&Upstream>,
    now: SystemTime,
) -> Result<CaSlotKeys, CaError> {
    let key = CaKey::generate()?;
    let ca = match upstream {
        None => Ca::self_signed(trust_domain, key, now, ttl)?,
        Some(up) => Ca::intermediate(trust_domain, key, &up.cert_der, &up.key, now, ttl)?,
    };
    let jwt = JwtKey::generate()?;
    let jwt_der = jwt.pkcs8_der()?;
    let kid = jwt.kid().to_owned();
    write_secret(dir, &format!("ca-{id}.key"), &ca.key_pkcs8_der())?;
    write_secret(dir, &format!("jwt-{id}.key"), &jwt_der)?;
    Ok(CaSlotKeys { id, ca, jwt, kid })
}

fn load_slot(
    dir: &Path,
    slot: &CaSlot,
    upstream: Option<&Upstream>,
) -> Result<CaSlotKeys, CaError> {
    let key = read_secret(dir, &slot.key_file)?;
    let mut ca = Ca::from_parts(slot.cert_der.clone(), &key)?;
    if let Some(up) = upstream {
        ca.upstream_chain = vec![up.cert_der.clone()];
    }
    let jwt_der = read_secret(dir, &slot.jwt_key_file)?;
    let jwt = JwtKey::from_pkcs8_der(&jwt_der, slot.jwt_kid.clone())?;
    Ok(CaSlotKeys {
        id: slot.id,
        ca,
        jwt,
        kid: slot.jwt_kid.clone(),
    })
}
