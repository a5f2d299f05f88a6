//! Fuzzes CSR intake (DESIGN 3.2): parse, check the self-signature, take only the key, then
//! sign a leaf for it as the server does and check the leaf against the SVID profile.
//!
//! Input: the first byte picks a mode. 0: the rest is the CSR as is. Otherwise the rest is a
//! list of (position, byte) edits applied to a valid P-256 CSR. An accepted CSR must never
//! yield a different key than the one that signed it, and the leaf must pass the profile
//! check whatever the CSR asked for.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use mandate_core::csr::public_key_from_csr;
use mandate_core::x509::{
    Ca, CaKey, LeafRequest, csr_request, generate_p256_keypair, validate_leaf,
};
use mandate_core::{SpiffeId, TrustDomain};

struct Fixture {
    ca: Ca,
    csr: Vec<u8>,
    spki: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let td = TrustDomain::new("example.org").expect("valid");
        let now = SystemTime::now();
        let ca = Ca::self_signed(
            td,
            CaKey::generate().expect("key"),
            now,
            Duration::from_secs(86_400),
        )
        .expect("ca");
        let key = generate_p256_keypair().expect("key");
        let csr = csr_request(&key).expect("csr");
        let spki = public_key_from_csr(&csr)
            .expect("valid csr")
            .spki_der()
            .to_vec();
        Fixture { ca, csr, spki }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let mutated = mode != 0;
    let input = if mutated {
        let mut csr = f.csr.clone();
        for edit in rest.chunks_exact(3) {
            let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % csr.len();
            csr[at] = edit[2];
        }
        csr
    } else {
        rest.to_vec()
    };
    let Ok(key) = public_key_from_csr(&input) else {
        return;
    };
    if mutated {
        assert_eq!(
            key.spki_der(),
            f.spki.as_slice(),
            "an edited CSR yielded another key"
        );
    }
    let now = SystemTime::now();
    let request = LeafRequest {
        spiffe_id: SpiffeId::new("spiffe://example.org/fuzz").expect("valid"),
        dns_names: Vec::new(),
        not_before: now - Duration::from_secs(10),
        not_after: now + Duration::from_secs(300),
        delegation: None,
    };
    let leaf =
        f.ca.sign_leaf(&key, &request)
            .expect("an accepted key can be certified");
    let info = validate_leaf(&leaf.der).expect("every leaf follows the SVID profile");
    assert_eq!(info.spiffe_id, request.spiffe_id);
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf.der).expect("parses");
    assert_eq!(
        cert.public_key().raw,
        key.spki_der(),
        "the leaf certifies the CSR's key"
    );
});
