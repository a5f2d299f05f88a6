//! The `[store]` section of the server config (DESIGN 4): which backend holds the state,
//! sled in the data dir (the default) or PostgreSQL at a URL that `MANDATE_DATABASE_URL`
//! provides or overrides. Checked with the rest of the config, before anything is bound or
//! opened, so a bad kind or URL exits 64 with one line.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::{PgStore, SledStore, Store, StoreError};
use crate::config::ConfigError;

/// The environment variable that provides or overrides `[store] url`.
pub const DATABASE_URL_ENV: &str = "MANDATE_DATABASE_URL";

/// `[store]` as written in the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sled` (the default) or `postgres`.
    pub kind: Option<StoreKind>,
    /// For `postgres`: `postgres://user@host:port/db` or a `key=value` connection string.
    pub url: Option<String>,
}

/// The backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded store in the data dir.
    Sled,
    /// A PostgreSQL database (14 or newer).
    Postgres,
}

/// The checked store setting.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// sled in `<data dir>/store`.
    Sled,
    /// PostgreSQL at this URL.
    Postgres {
        /// The connection URL (it may hold a password: never logged).
        url: String,
    },
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sled => f.write_str("Sled"),
            Self::Postgres { .. } => f.write_str("Postgres { url: <hidden> }"),
        }
    }
}

impl StoreConfig {
    /// Checks `section` with `env_url`, the value of [`DATABASE_URL_ENV`] when set, which
    /// wins over `url`. Without a section the store is sled.
    ///
    /// # Errors
    /// [`ConfigError::Value`] for a `postgres` store without a URL or with one that does not
    /// parse, and for a `url` given to a sled store.
    pub fn resolve(
        section: Option<StoreSection>,
        env_url: Option<String>,
    ) -> Result<Self, ConfigError> {
        let section = section.unwrap_or_default();
        match section.kind.unwrap_or(StoreKind::Sled) {
            StoreKind::Sled => match section.url {
                Some(_) => Err(invalid("store.url", "is only for kind = \"postgres\"")),
                None => Ok(Self::Sled),
            },
            StoreKind::Postgres => {
                let from_env = env_url.filter(|u| !u.is_empty());
                let key = if from_env.is_some() {
                    DATABASE_URL_ENV
                } else {
                    "store.url"
                };
                let Some(url) = from_env.or(section.url) else {
                    return Err(invalid(
                        "store.url",
                        &format!(
                            "kind = \"postgres\" needs url = \"postgres://…\" or {DATABASE_URL_ENV}"
                        ),
                    ));
                };
                check_url(&url).map_err(|message| invalid(key, &message))?;
                Ok(Self::Postgres { url })
            }
        }
    }

    /// Opens the store: sled in `store_dir`, or the database (migrating its schema).
    ///
    /// # Errors
    /// The backend could not be opened, or holds a schema this build does not know.
    pub fn open(&self, store_dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            Self::Sled => Arc::new(SledStore::open(store_dir)?),
            Self::Postgres { url } => Arc::new(PgStore::open_exclusive(url)?),
        })
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let looks_like_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if url.contains("://") && !looks_like_url {
        return Err("must start with postgres:// or postgresql://".into());
    }
    url.parse::<tokio_postgres::Config>()
        .map(drop)
        .map_err(|e| format!("does not parse: {e}"))
}

fn invalid(key: &'static str, message: &str) -> ConfigError {
    ConfigError::Value {
        key,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Option<StoreSection> {
        Some(toml::from_str(text).unwrap())
    }

    #[test]
    fn sled_is_the_default_and_postgres_needs_a_url() {
        assert_eq!(StoreConfig::resolve(None, None).unwrap(), StoreConfig::Sled);
        assert_eq!(
            StoreConfig::resolve(None, Some("postgres://x/db".into())).unwrap(),
            StoreConfig::Sled
        );
        let pg = section("kind = \"postgres\"\nurl = \"postgres://u@127.0.0.1:5432/m\"");
        assert_eq!(
            StoreConfig::resolve(pg.clone(), None).unwrap(),
            StoreConfig::Postgres {
                url: "postgres://u@127.0.0.1:5432/m".into()
            }
        );
        // The environment wins over the file.
        assert_eq!(
            StoreConfig::resolve(pg, Some("postgres://e@127.0.0.1/n".into())).unwrap(),
            StoreConfig::Postgres {
                url: "postgres://e@127.0.0.1/n".into()
            }
        );
        let no_url = StoreConfig::resolve(section("kind = \"postgres\""), None).unwrap_err();
        assert!(
            no_url.to_string().starts_with("invalid store.url: "),
            "{no_url}"
        );
        let env_only =
            StoreConfig::resolve(section("kind = \"postgres\""), Some("host=/tmp".into()));
        assert!(env_only.is_ok());
    }

    #[test]
    fn bad_kinds_urls_and_keys_are_refused() {
        assert!(toml::from_str::<StoreSection>("kind = \"mysql\"").is_err());
        assert!(toml::from_str::<StoreSection>("kind = \"sled\"\npath = \"x\"").is_err());
        for url in ["mysql://x/db", "postgres://u@h:notaport/db", "host"] {
            let text = format!("kind = \"postgres\"\nurl = \"{url}\"");
            let err = StoreConfig::resolve(section(&text), None).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid store.url: "),
                "{url}: {err}"
            );
        }
        let err = StoreConfig::resolve(section("kind = \"postgres\""), Some("mysql://x".into()))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid MANDATE_DATABASE_URL: "),
            "{err}"
        );
        let err = StoreConfig::resolve(section("url = \"postgres://x/db\""), None).unwrap_err();
        assert!(err.to_string().contains("only for kind"), "{err}");
    }
}
