//! Test fixtures shared by unit tests: a config on a temp dir and the real sled store.

use std::sync::Arc;
use std::time::Duration;

use crate::ca::{self, CaManager};
use crate::config::{Config, FileConfig, FlagOverrides};
use crate::registry::Registry;
use crate::store::{SledStore, Store};

/// A config whose data dir is `dir`.
pub(crate) fn config(dir: &std::path::Path, ca_ttl: Duration) -> Config {
    let mut c = Config::resolve(
        FileConfig {
            data_dir: Some(dir.to_owned()),
            ..FileConfig::default()
        },
        FlagOverrides::default(),
    )
    .unwrap();
    c.ca_ttl = ca_ttl;
    c
}

/// A registry and CA manager on `dir`.
pub(crate) async fn registry_and_ca(
    dir: &std::path::Path,
    ca_ttl: Duration,
) -> (Arc<Registry>, Arc<CaManager>) {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.join("store")).unwrap());
    let registry = Arc::new(Registry::open(store).unwrap());
    let ca = ca::open(&config(dir, ca_ttl), Arc::clone(&registry))
        .await
        .unwrap();
    (registry, ca)
}
