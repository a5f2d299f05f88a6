//! A signing CA: its certificate template (self-signed or intermediate), leaf signing with a
//! reused rcgen `Issuer`, and CRL signing.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PublicKeyData, RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use spiffe::{SpiffeId, TrustDomain};
use time::OffsetDateTime;

use super::{CaKey, Serial, X509Error, validate};
use crate::delegation::{Delegation, delegation_oid_components};
use crate::entry::is_dns_name;
use crate::time::truncate_to_seconds;

/// What goes into a leaf besides its public key. The caller computes the times with
/// [`crate::time::svid_not_before`] and [`crate::time::svid_not_after`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRequest {
    /// The SPIFFE ID, the leaf's one URI SAN.
    pub spiffe_id: SpiffeId,
    /// Extra DNS SANs.
    pub dns_names: Vec<String>,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// The delegation extension to carry, if any.
    pub delegation: Option<Delegation>,
}

/// A signed leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLeaf {
    /// The leaf certificate, DER.
    pub der: Vec<u8>,
    /// Its serial.
    pub serial: Serial,
    /// Its notAfter.
    pub not_after: SystemTime,
}

/// A CA that signs SVIDs. The rcgen issuer is built once and reused for every signature.
#[derive(Debug)]
pub struct Ca {
    /// The CA certificate, DER.
    pub cert_der: Vec<u8>,
    /// The trust domain it signs for.
    pub trust_domain: TrustDomain,
    /// The CA certificate's notBefore.
    pub not_before: SystemTime,
    /// The CA certificate's notAfter.
    pub not_after: SystemTime,
    /// For an intermediate, the upstream certificates (nearest first) to send after it.
    pub upstream_chain: Vec<Vec<u8>>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Builds a self-signed root CA for `trust_domain`, valid from `now - 10 s` for `ttl`.
    ///
    /// # Errors
    /// [`X509Error::Build`] when rcgen refuses to sign.
    pub fn self_signed(
        trust_domain: TrustDomain,
        key: CaKey,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<Self, X509Error> {
        let (params, not_before, not_after) = ca_params(&trust_domain, now, ttl)?;
        let key = key.into_key_pair();
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            trust_domain,
            not_before,
            not_after,
            upstream_chain: Vec::new(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Builds an intermediate CA for `trust_domain`, signed by an upstream CA.
    ///
    /// # Errors
    /// [`X509Error::Parse`] when the upstream certificate does not parse,
    /// [`X509Error::Build`] when rcgen refuses to sign.
    pub fn intermediate(
        trust_domain: TrustDomain,
        key: CaKey,
        upstream_cert_der: &[u8],
        upstream_key: &KeyPair,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<Self, X509Error> {
        // A CA never outlives the CA that signs it: cap its life at the upstream's notAfter.
        let (_, upstream_cert) = x509_parser::parse_x509_certificate(upstream_cert_der)
            .map_err(|e| X509Error::Parse(format!("upstream CA certificate: {e}")))?;
        let upstream_end = upstream_cert.validity().not_after.timestamp();
        let left = crate::time::from_unix_seconds(upstream_end)
            .duration_since(now)
            .map_err(|_| X509Error::UpstreamExpired(upstream_end))?;
        let (mut params, not_before, not_after) = ca_params(&trust_domain, now, ttl.min(left))
            .map_err(|e| match e {
                X509Error::BadValidity if left < ttl => X509Error::UpstreamExpired(upstream_end),
                other => other,
            })?;
        params.use_authority_key_identifier_extension = true;
        let upstream =
            Issuer::from_ca_cert_der(&CertificateDer::from(upstream_cert_der), upstream_key)
                .map_err(|e| X509Error::Parse(e.to_string()))?;
        let key = key.into_key_pair();
        let cert = params.signed_by(&key, &upstream)?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            trust_domain,
            not_before,
            not_after,
            upstream_chain: vec![upstream_cert_der.to_vec()],
            issuer: Issuer::new(params, key),
        })
    }

    /// Reloads a CA from its certificate and PKCS#8 key (e.g. from the server's data dir).
    /// Set [`Ca::upstream_chain`] afterwards for an intermediate.
    ///
    /// # Errors
    /// [`X509Error::NotACa`] when the certificate breaks the CA profile, [`X509Error::Key`]
    /// when the key does not parse, [`X509Error::KeyMismatch`] when it is not the cert's key.
    pub fn from_parts(cert_der: Vec<u8>, key_pkcs8: &[u8]) -> Result<Self, X509Error> {
        let trust_domain = validate::validate_ca(&cert_der).map_err(X509Error::NotACa)?;
        let key = CaKey::from_pkcs8_der(key_pkcs8)?.into_key_pair();
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| X509Error::Parse(e.to_string()))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(X509Error::KeyMismatch);
        }
        let validity = cert.validity();
        let not_before = crate::time::from_unix_seconds(validity.not_before.timestamp());
        let not_after = crate::time::from_unix_seconds(validity.not_after.timestamp());
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der.as_slice()), key)
            .map_err(|e| X509Error::Parse(e.to_string()))?;
        Ok(Self {
            cert_der,
            trust_domain,
            not_before,
            not_after,
            upstream_chain: Vec::new(),
            issuer,
        })
    }

    /// The CA's private key.
    pub fn key(&self) -> &KeyPair {
        self.issuer.key()
    }

    /// The PKCS#8 DER of the CA's private key (secret: mode 0600, never log).
    pub fn key_pkcs8_der(&self) -> Vec<u8> {
        self.issuer.key().serialize_der()
    }

    /// The certificates to send after a leaf: this CA, then its upstream chain.
    pub fn chain(&self) -> Vec<Vec<u8>> {
        let mut chain = Vec::with_capacity(1 + self.upstream_chain.len());
        chain.push(self.cert_der.clone());
        chain.extend(self.upstream_chain.iter().cloned());
        chain
    }

    /// Signs an X509-SVID leaf for `public_key` (DESIGN 3.2): one URI SAN, cA=false,
    /// keyUsage critical digitalSignature only, EKU serverAuth+clientAuth, AKI and SKI, the
    /// delegation extension non-critical when present. Nothing else is taken from any request.
    ///
    /// # Errors
    /// [`X509Error::BadValidity`] when notAfter is not after notBefore, [`X509Error::DnsName`]
    /// for a bad DNS name, [`X509Error::Delegation`] when the delegation cannot be encoded.
    pub fn sign_leaf(
        &self,
        public_key: &impl PublicKeyData,
        req: &LeafRequest,
    ) -> Result<IssuedLeaf, X509Error> {
        let not_before = truncate_to_seconds(req.not_before);
        let not_after = truncate_to_seconds(req.not_after);
        if not_after <= not_before {
            return Err(X509Error::BadValidity);
        }
        let serial = Serial::random();
        let mut params = CertificateParams::default();
        params.distinguished_name = leaf_subject();
        params.not_before = OffsetDateTime::from(not_before);
        params.not_after = OffsetDateTime::from(not_after);
        params.serial_number = Some(serial.to_rcgen());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.subject_alt_names = uri_san(&req.spiffe_id.to_string())?;
        for name in &req.dns_names {
            if !is_dns_name(name) {
                return Err(X509Error::DnsName(name.clone()));
            }
            let ia5 = name
                .as_str()
                .try_into()
                .map_err(|_| X509Error::DnsName(name.clone()))?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        if let Some(delegation) = &req.delegation {
            let der = delegation.to_der().map_err(X509Error::Delegation)?;
            let ext = CustomExtension::from_oid_content(&delegation_oid_components(), der);
            params.custom_extensions.push(ext);
        }
        let cert = params.signed_by(public_key, &self.issuer)?;
        Ok(IssuedLeaf {
            der: cert.der().to_vec(),
            serial,
            not_after,
        })
    }

    /// Signs a CRL listing `revoked` serials with their revocation times.
    ///
    /// # Errors
    /// [`X509Error::Build`] when `next_update` is not after `now` or rcgen refuses.
    pub fn sign_crl(
        &self,
        revoked: &[(Serial, SystemTime)],
        crl_number: u64,
        now: SystemTime,
        next_update: SystemTime,
    ) -> Result<Vec<u8>, X509Error> {
        let params = CertificateRevocationListParams {
            this_update: OffsetDateTime::from(truncate_to_seconds(now)),
            next_update: OffsetDateTime::from(truncate_to_seconds(next_update)),
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|(serial, at)| RevokedCertParams {
                    serial_number: serial.to_rcgen(),
                    revocation_time: OffsetDateTime::from(truncate_to_seconds(*at)),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer)?;
        Ok(crl.der().to_vec())
    }
}

fn ca_params(
    trust_domain: &TrustDomain,
    now: SystemTime,
    ttl: Duration,
) -> Result<(CertificateParams, SystemTime, SystemTime), X509Error> {
    let not_before = crate::time::svid_not_before(now);
    let not_after = truncate_to_seconds(now.checked_add(ttl).ok_or(X509Error::BadValidity)?);
    if not_after <= not_before {
        return Err(X509Error::BadValidity);
    }
    let mut params = CertificateParams::default();
    let serial = Serial::random();
    // The serial in the name keeps every CA's subject unique, so path building never
    // confuses an old CA with its successor.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Mandate");
    dn.push(DnType::CommonName, format!("{trust_domain} CA {serial}"));
    params.distinguished_name = dn;
    params.not_before = OffsetDateTime::from(not_before);
    params.not_after = OffsetDateTime::from(not_after);
    params.serial_number = Some(serial.to_rcgen());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.subject_alt_names = uri_san(&trust_domain.id_string())?;
    Ok((params, not_before, not_after))
}

fn uri_san(uri: &str) -> Result<Vec<SanType>, X509Error> {
    let ia5 = uri
        .try_into()
        .map_err(|e: rcgen::Error| X509Error::Build(e.to_string()))?;
    Ok(vec![SanType::URI(ia5)])
}

fn leaf_subject() -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Mandate");
    dn
}
