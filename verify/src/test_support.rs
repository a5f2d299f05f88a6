//! Test fixtures: a sample delegation and leaf certificates made with rcgen at test time.

use std::time::SystemTime;

use mandate_core::delegation::{Delegation, TaskInfo, delegation_oid_components};
use mandate_core::ids::TaskId;
use mandate_core::task::Action;
use rcgen::{CertificateParams, CustomExtension, KeyPair, SanType};

/// alice's delegation for task-4711: po.draft and po.read, up to 500.00 EUR.
pub(crate) fn sample_delegation(deadline: SystemTime) -> Delegation {
    Delegation {
        principal: "user:alice@example.org".parse().expect("principal"),
        task: TaskInfo {
            id: TaskId::new("task-4711").expect("task id"),
            purpose: "draft purchase order 4711".into(),
            deadline,
            depth: 0,
            max_depth: 0,
        },
        actions: vec![
            Action::new("po.draft").expect("action"),
            Action::new("po.read").expect("action"),
        ],
        value_limit: Some("500.00:EUR".parse().expect("limit")),
        approval: None,
        chain: Vec::new(),
    }
}

/// A self-signed leaf with URI SAN `uri` (when given) and a delegation extension holding
/// `extension` (raw DER content, when given).
pub(crate) fn leaf(uri: Option<&str>, extension: Option<Vec<u8>>) -> Vec<u8> {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    if let Some(uri) = uri {
        params.subject_alt_names = vec![SanType::URI(uri.try_into().expect("uri"))];
    }
    if let Some(content) = extension {
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &delegation_oid_components(),
            content,
        )];
    }
    params.self_signed(&key).expect("sign").der().to_vec()
}
