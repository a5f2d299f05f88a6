//! The immutable view of the cache that the Workload API reads: identities with their
//! precomputed protobuf payloads, the bundle payloads, a selector index, and the closed-task
//! set. A new one is built on every change and published through a `tokio::sync::watch`, so a
//! request never takes a lock held by the sync side.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use mandate_core::selector::{Selector, SelectorKind};
use mandate_proto::workload::{JwtBundlesResponse, X509BundlesResponse, X509svid};

use super::closed::ClosedTasks;
use super::model::BundleData;

/// One identity the agent can serve: an entry with a valid SVID and an open task.
#[derive(Debug)]
pub struct Identity {
    /// The entry ID.
    pub entry_id: String,
    /// The SPIFFE ID.
    pub spiffe_id: String,
    /// The entry's selectors (sorted, deduplicated).
    pub selectors: Vec<Selector>,
    /// The hint.
    pub hint: String,
    /// The entry's creation time (unix seconds) and store revision: the sort key.
    pub created: (i64, u64),
    /// The task, when bound to one.
    pub task_id: Option<String>,
    /// The precomputed Workload API payload.
    pub x509: X509svid,
    /// notAfter of the SVID.
    pub not_after: SystemTime,
    /// Unique per payload; changes whenever the payload changes.
    pub version: u64,
}

/// Which selector kinds some entry uses, so attestation gathers only those.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NeededKinds {
    /// Some entry uses `unix:gid`, which may name a supplementary group (read from `/proc`).
    pub gid: bool,
    /// Some entry uses `unix:user`.
    pub user: bool,
    /// Some entry uses `unix:group`.
    pub group: bool,
    /// Some entry uses `unix:path`.
    pub path: bool,
    /// Some entry uses `unix:sha256`.
    pub sha256: bool,
}

/// Precomputed bundle payloads.
#[derive(Debug, Default)]
pub struct BundlePayloads {
    /// The bundle as the server sent it.
    pub data: Option<BundleData>,
    /// `FetchX509Bundles` answer.
    pub x509: X509BundlesResponse,
    /// `FetchJWTBundles` answer.
    pub jwt: JwtBundlesResponse,
    /// The CRLs for `X509SVIDResponse.crl`.
    pub crls: Vec<prost::bytes::Bytes>,
    /// Unique per bundle content.
    pub version: u64,
}

/// The published view.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Identities, oldest entry first (creation time, revision, then entry ID).
    pub identities: Vec<Arc<Identity>>,
    /// For each selector, the indexes of the identities that use it.
    pub index: HashMap<Selector, Vec<u32>>,
    /// What attestation must gather.
    pub needed: NeededKinds,
    /// The bundle payloads.
    pub bundle: Arc<BundlePayloads>,
    /// The trust domain's closed set: closed or expired tasks whose deadline has not passed.
    pub closed_tasks: Arc<ClosedTasks>,
    /// Grows whenever `closed_tasks` changes.
    pub closed_sequence: u64,
}

impl Snapshot {
    /// Builds a snapshot and its index from identities (sorted here).
    pub fn build(
        mut identities: Vec<Arc<Identity>>,
        bundle: Arc<BundlePayloads>,
        closed_tasks: Arc<ClosedTasks>,
        closed_sequence: u64,
    ) -> Self {
        identities.sort_by(|a, b| (a.created, &a.entry_id).cmp(&(b.created, &b.entry_id)));
        let mut index: HashMap<Selector, Vec<u32>> = HashMap::new();
        let mut needed = NeededKinds::default();
        for (i, identity) in identities.iter().enumerate() {
            for selector in &identity.selectors {
                match selector.kind() {
                    SelectorKind::Gid => needed.gid = true,
                    SelectorKind::User => needed.user = true,
                    SelectorKind::Group => needed.group = true,
                    SelectorKind::Path => needed.path = true,
                    SelectorKind::Sha256 => needed.sha256 = true,
                    _ => {}
                }
                // At most u32::MAX identities: far beyond the agent's scale.
                index.entry(selector.clone()).or_default().push(i as u32);
            }
        }
        Self {
            identities,
            index,
            needed,
            bundle,
            closed_tasks,
            closed_sequence,
        }
    }

    /// The identities whose selectors are all among `caller` (DESIGN 3.1), oldest entry
    /// first, so the default (first) SVID does not change when an unrelated entry is added.
    /// Of several with one non-empty hint only the oldest is kept: hints are unique within a
    /// response ([Workload API spec, X509-SVID hints](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Workload_API.md)).
    pub fn matching(&self, caller: &[Selector]) -> Vec<Arc<Identity>> {
        let mut hits: HashMap<u32, usize> = HashMap::new();
        for selector in caller {
            if let Some(ids) = self.index.get(selector) {
                for &i in ids {
                    *hits.entry(i).or_default() += 1;
                }
            }
        }
        let mut matched: Vec<u32> = hits
            .into_iter()
            .filter(|&(i, n)| {
                self.identities
                    .get(i as usize)
                    .is_some_and(|id| !id.selectors.is_empty() && id.selectors.len() == n)
            })
            .map(|(i, _)| i)
            .collect();
        matched.sort_unstable();
        let mut hints = std::collections::HashSet::new();
        matched
            .into_iter()
            .filter_map(|i| self.identities.get(i as usize).cloned())
            .filter(|identity| identity.hint.is_empty() || hints.insert(identity.hint.clone()))
            .collect()
    }
}

/// Builds the bundle payloads.
pub fn bundle_payloads(data: Option<BundleData>, version: u64) -> BundlePayloads {
    let Some(data) = data else {
        return BundlePayloads {
            version,
            ..BundlePayloads::default()
        };
    };
    let concat = data.authorities.concat().into();
    let crls: Vec<prost::bytes::Bytes> = data.crls.iter().map(|c| c.clone().into()).collect();
    let x509 = X509BundlesResponse {
        crl: crls.clone(),
        bundles: HashMap::from([(data.trust_domain_id.clone(), concat)]),
    };
    let jwt = JwtBundlesResponse {
        bundles: HashMap::from([(data.trust_domain_id.clone(), data.jwks.clone())]),
    };
    BundlePayloads {
        crls,
        data: Some(data),
        x509,
        jwt,
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(id: &str, selectors: &[&str]) -> Arc<Identity> {
        aged(id, selectors, "", (0, 0))
    }

    fn aged(id: &str, selectors: &[&str], hint: &str, created: (i64, u64)) -> Arc<Identity> {
        let mut selectors: Vec<Selector> = selectors.iter().map(|s| s.parse().unwrap()).collect();
        selectors.sort();
        Arc::new(Identity {
            entry_id: id.into(),
            spiffe_id: format!("spiffe://example.org/{id}"),
            selectors,
            hint: hint.into(),
            created,
            task_id: None,
            x509: X509svid::default(),
            not_after: SystemTime::now(),
            version: 1,
        })
    }

    #[test]
    fn an_entry_matches_only_when_all_its_selectors_are_present() {
        let snap = Snapshot::build(
            vec![
                identity("b", &["unix:uid:1001", "unix:gid:50"]),
                identity("a", &["unix:uid:1001"]),
                identity("c", &["unix:uid:0"]),
                identity("d", &["unix:user:bob"]),
            ],
            Arc::new(BundlePayloads::default()),
            Arc::default(),
            1,
        );
        assert!(snap.needed.user && !snap.needed.sha256);
        let caller: Vec<Selector> = ["unix:uid:1001", "unix:gid:7"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let ids: Vec<_> = snap
            .matching(&caller)
            .iter()
            .map(|i| i.entry_id.clone())
            .collect();
        assert_eq!(ids, vec!["a"]);
        let caller: Vec<Selector> = ["unix:gid:50", "unix:uid:1001"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let ids: Vec<_> = snap
            .matching(&caller)
            .iter()
            .map(|i| i.entry_id.clone())
            .collect();
        assert_eq!(ids, vec!["a", "b"]);
        assert!(snap.matching(&[]).is_empty());
    }

    #[test]
    fn oldest_entry_first_and_one_svid_per_hint() {
        let uid = ["unix:uid:7"];
        let build = |identities| {
            Snapshot::build(
                identities,
                Arc::new(BundlePayloads::default()),
                Arc::default(),
                1,
            )
        };
        let order = |snap: &Snapshot| -> Vec<String> {
            let caller: Vec<Selector> = uid.iter().map(|s| s.parse().unwrap()).collect();
            snap.matching(&caller)
                .iter()
                .map(|i| i.entry_id.clone())
                .collect()
        };
        let old = aged("zz-old", &uid, "main", (100, 5));
        let dup = aged("aa-dup", &uid, "main", (200, 9));
        let plain = aged("mm-plain", &uid, "", (150, 7));
        let snap = build(vec![dup.clone(), plain.clone(), old.clone()]);
        assert_eq!(
            order(&snap),
            ["zz-old", "mm-plain"],
            "the younger `main` is dropped"
        );
        // An unrelated younger entry, whose ID sorts first, leaves the default SVID alone.
        let added = aged("00-new", &uid, "", (300, 11));
        let snap = build(vec![added, dup, plain, old]);
        assert_eq!(order(&snap), ["zz-old", "mm-plain", "00-new"]);
    }
}
