//! Server configuration: the TOML file, the `run` flags that override it, and the checked
//! [`Config`] built from both before anything is bound or opened (STYLE 10).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mandate_core::TrustDomain;
use mandate_core::task::ValueLimit;
use serde::Deserialize;

use crate::admin_api::roles::{AdminIds, AllowedPath, Role, RoleError};

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = ".data/server";
/// Default agent API address.
pub const DEFAULT_BIND_ADDRESS: &str = "127.0.0.1:8081";
/// Default admin socket path.
pub const DEFAULT_ADMIN_SOCKET: &str = "/tmp/mandate-server/private/admin.sock";
/// Default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "example.org";

/// Errors in the configuration; each exits with code 64 and one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, on one line.
        message: String,
    },
    /// One setting has a bad value.
    #[error("invalid {key}: {message}")]
    Value {
        /// The setting.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The TOML config file; keys are the `run` flag names in snake_case (DESIGN 3.6, 3.9).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The trust domain.
    pub trust_domain: Option<String>,
    /// The data directory.
    pub data_dir: Option<PathBuf>,
    /// The agent API address, `HOST:PORT`.
    pub bind_address: Option<String>,
    /// The admin socket path.
    pub admin_socket: Option<PathBuf>,
    /// CA lifetime, e.g. `24h`.
    pub ca_ttl: Option<String>,
    /// Default X509-SVID lifetime.
    pub default_x509_svid_ttl: Option<String>,
    /// Default JWT-SVID lifetime.
    pub default_jwt_svid_ttl: Option<String>,
    /// Agent SVID lifetime.
    pub agent_svid_ttl: Option<String>,
    /// PEM certificate of an upstream CA; the server CA becomes its intermediate.
    pub upstream_ca_cert: Option<PathBuf>,
    /// PEM private key of the upstream CA.
    pub upstream_ca_key: Option<PathBuf>,
    /// Action globs whose tasks need approval.
    pub approval_required_actions: Option<Vec<String>>,
    /// Value limit from which tasks need approval, e.g. `1000.00:EUR`.
    pub approval_value_threshold: Option<String>,
    /// Address of the optional HTTP listener for `/metrics`, `/live`, `/ready`.
    pub metrics_address: Option<String>,
    /// Tracing filter, e.g. `info`.
    pub log_level: Option<String>,
    /// `[store]`: sled (the default) or PostgreSQL (DESIGN 4).
    pub store: Option<crate::store::StoreSection>,
    /// Address of the optional mTLS admin listener, `HOST:PORT` (DESIGN 3.9).
    pub admin_bind_address: Option<String>,
    /// Who may call the mTLS admin listener, and with which role.
    pub admin_ids: Option<Vec<AdminIdConfig>>,
}

/// One `[[admin_ids]]` table (DESIGN 3.9).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminIdConfig {
    /// The caller's SPIFFE ID.
    pub spiffe_id: String,
    /// Its role.
    pub role: RoleName,
    /// For a task broker: where its entries' SPIFFE IDs may lie, e.g. `/ai/`.
    #[serde(default)]
    pub allowed_paths: Vec<String>,
}

/// The role names of `[[admin_ids]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    /// `operator`.
    Operator,
    /// `task-broker`.
    TaskBroker,
    /// `approver`.
    Approver,
}

/// `run` flags; each one wins over the config file.
#[derive(Debug, Default, Clone)]
pub struct FlagOverrides {
    /// `--trust-domain`.
    pub trust_domain: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--bind-address`.
    pub bind_address: Option<String>,
    /// `--admin-socket` (or env).
    pub admin_socket: Option<PathBuf>,
    /// `--metrics-address`.
    pub metrics_address: Option<String>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--admin-bind-address`.
    pub admin_bind_address: Option<String>,
}

/// Upstream CA material read from PEM files.
#[derive(Debug, Clone)]
pub struct UpstreamCa {
    /// The upstream certificate PEM.
    pub cert_pem: String,
    /// The upstream private key PEM.
    pub key_pem: String,
}

/// The checked server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The agent API address.
    pub bind_address: SocketAddr,
    /// The admin socket path.
    pub admin_socket: PathBuf,
    /// CA lifetime.
    pub ca_ttl: Duration,
    /// Default X509-SVID lifetime.
    pub default_x509_svid_ttl: Duration,
    /// Default JWT-SVID lifetime.
    pub default_jwt_svid_ttl: Duration,
    /// Agent SVID lifetime.
    pub agent_svid_ttl: Duration,
    /// Upstream CA, when the server CA is an intermediate.
    pub upstream: Option<UpstreamCa>,
    /// Action globs whose tasks need approval.
    pub approval_required_actions: Vec<glob::Pattern>,
    /// Value limit from which tasks need approval.
    pub approval_value_threshold: Option<ValueLimit>,
    /// HTTP listener for metrics and health.
    pub metrics_address: Option<SocketAddr>,
    /// Tracing filter.
    pub log_level: String,
    /// Where the state is kept.
    pub store: crate::store::StoreConfig,
    /// The mTLS admin listener, when enabled.
    pub admin_bind_address: Option<SocketAddr>,
    /// Its callers and their roles.
    pub admin_ids: AdminIds,
}

impl Config {
    /// Reads `path` (when given) and merges `flags` over it.
    ///
    /// # Errors
    /// A [`ConfigError`] for an unreadable file, bad TOML, an unknown key or a bad value.
    pub fn load(path: Option<&Path>, flags: FlagOverrides) -> Result<Self, ConfigError> {
        let file = match path {
            Some(p) => parse_file(p)?,
            None => FileConfig::default(),
        };
        Self::resolve(file, flags)
    }

    /// Merges `flags` over `file` and checks every value.
    ///
    /// # Errors
    /// A [`ConfigError::Value`] naming the first bad setting.
    pub fn resolve(file: FileConfig, flags: FlagOverrides) -> Result<Self, ConfigError> {
        let td_text = flags
            .trust_domain
            .or(file.trust_domain)
            .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_owned());
        let trust_domain = TrustDomain::new(&td_text).map_err(|e| value("trust_domain", e))?;
        let bind_text = flags
            .bind_address
            .or(file.bind_address)
            .unwrap_or_else(|| DEFAULT_BIND_ADDRESS.to_owned());
        let bind_address = parse_address("bind_address", &bind_text)?;
        let metrics_address = match flags.metrics_address.or(file.metrics_address) {
            Some(text) if !text.is_empty() => Some(parse_address("metrics_address", &text)?),
            _ => None,
        };
        let admin_bind_address = match flags.admin_bind_address.or(file.admin_bind_address) {
            Some(text) if !text.is_empty() => Some(parse_address("admin_bind_address", &text)?),
            _ => None,
        };
        let admin_ids = admin_ids(&trust_domain, file.admin_ids.unwrap_or_default())
            .map_err(|e| value("admin_ids", e))?;
        if admin_bind_address.is_some() && admin_ids.is_empty() {
            return Err(value(
                "admin_bind_address",
                "it is set but no [[admin_ids]] may call it",
            ));
        }
        let upstream = match (file.upstream_ca_cert, file.upstream_ca_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(UpstreamCa {
                cert_pem: read_pem("upstream_ca_cert", &cert)?,
                key_pem: read_pem("upstream_ca_key", &key)?,
            }),
            _ => {
                return Err(ConfigError::Value {
                    key: "upstream_ca_cert",
                    message: "upstream_ca_cert and upstream_ca_key must be given together".into(),
                });
            }
        };
        let store = crate::store::StoreConfig::resolve(
            file.store,
            std::env::var(crate::store::DATABASE_URL_ENV).ok(),
        )?;
        let approval_required_actions = file
            .approval_required_actions
            .unwrap_or_default()
            .iter()
            .map(|g| glob::Pattern::new(g).map_err(|e| value("approval_required_actions", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let approval_value_threshold = file
            .approval_value_threshold
            .map(|t| {
                t.parse::<ValueLimit>()
                    .map_err(|e| value("approval_value_threshold", e))
            })
            .transpose()?;
        Ok(Self {
            trust_domain,
            data_dir: flags
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            bind_address,
            admin_socket: flags
                .admin_socket
                .or(file.admin_socket)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ADMIN_SOCKET)),
            ca_ttl: duration("ca_ttl", file.ca_ttl, Duration::from_secs(24 * 3600))?,
            default_x509_svid_ttl: duration(
                "default_x509_svid_ttl",
                file.default_x509_svid_ttl,
                Duration::from_secs(3600),
            )?,
            default_jwt_svid_ttl: duration(
                "default_jwt_svid_ttl",
                file.default_jwt_svid_ttl,
                Duration::from_secs(300),
            )?,
            agent_svid_ttl: duration(
                "agent_svid_ttl",
                file.agent_svid_ttl,
                Duration::from_secs(3600),
            )?,
            upstream,
            approval_required_actions,
            approval_value_threshold,
            metrics_address,
            store,
            log_level: flags
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_owned()),
            admin_bind_address,
            admin_ids,
        })
    }
}

/// Checks the `[[admin_ids]]` tables: IDs of the trust domain, paths only for brokers.
fn admin_ids(
    trust_domain: &TrustDomain,
    tables: Vec<AdminIdConfig>,
) -> Result<AdminIds, RoleError> {
    let mut ids = Vec::with_capacity(tables.len());
    for table in tables {
        let role = match table.role {
            RoleName::TaskBroker if table.allowed_paths.is_empty() => {
                return Err(RoleError::NoPaths(table.spiffe_id));
            }
            RoleName::TaskBroker => Role::TaskBroker {
                allowed_paths: table
                    .allowed_paths
                    .iter()
                    .map(|p| AllowedPath::new(p))
                    .collect::<Result<_, _>>()?,
            },
            _ if !table.allowed_paths.is_empty() => {
                return Err(RoleError::PathsWithoutBroker(table.spiffe_id));
            }
            RoleName::Operator => Role::Operator,
            RoleName::Approver => Role::Approver,
        };
        ids.push((table.spiffe_id, role));
    }
    AdminIds::new(trust_domain, ids)
}

fn parse_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.message().replace('\n', " "),
    })
}

fn value(key: &'static str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Value {
        key,
        message: e.to_string().replace('\n', " "),
    }
}

fn parse_address(key: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    if text.contains("://") {
        return Err(value(
            key,
            format!("{text:?} must be HOST:PORT without a scheme"),
        ));
    }
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    std::net::ToSocketAddrs::to_socket_addrs(text)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| value(key, format!("{text:?} is not a HOST:PORT address")))
}

fn duration(
    key: &'static str,
    text: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(t) => mandate_core::time::parse_duration(&t).map_err(|e| value(key, e)),
    }
}

fn read_pem(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| value(key, format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file() {
        let file: FileConfig =
            toml::from_str("trust_domain = \"a.org\"\nbind_address = \"127.0.0.1:1\"").unwrap();
        let flags = FlagOverrides {
            trust_domain: Some("b.org".into()),
            ..FlagOverrides::default()
        };
        let cfg = Config::resolve(file, flags).unwrap();
        assert_eq!(cfg.trust_domain.to_string(), "b.org");
        assert_eq!(cfg.bind_address.port(), 1);
        assert_eq!(cfg.ca_ttl, Duration::from_secs(86400));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<FileConfig>("nope = 1").is_err());
        let file: FileConfig = toml::from_str("ca_ttl = \"forever\"").unwrap();
        let err = Config::resolve(file, FlagOverrides::default()).unwrap_err();
        assert!(err.to_string().starts_with("invalid ca_ttl"), "{err}");
        let file: FileConfig = toml::from_str("bind_address = \"http://x:1\"").unwrap();
        assert!(Config::resolve(file, FlagOverrides::default()).is_err());
    }

    #[test]
    fn admin_ids_table() {
        let broker =
            "[[admin_ids]]\nspiffe_id = \"spiffe://example.org/broker\"\nrole = \"task-broker\"\n";
        // (config, accepted or the start of the one-line error)
        let cases = [
            (format!("{broker}allowed_paths = [\"/ai/\"]"), Ok(())),
            (
                format!("admin_bind_address = \"127.0.0.1:0\"\n{broker}allowed_paths = [\"/ai/\"]"),
                Ok(()),
            ),
            (broker.to_owned(), Err("invalid admin_ids: the task-broker")),
            (format!("{broker}allowed_paths = [\"ai\"]"), Err("invalid admin_ids: allowed path")),
            (
                "[[admin_ids]]\nspiffe_id = \"spiffe://example.org/a\"\nrole = \"approver\"\nallowed_paths = [\"/x\"]".into(),
                Err("invalid admin_ids: allowed_paths is only"),
            ),
            (
                "[[admin_ids]]\nspiffe_id = \"example.org/ops\"\nrole = \"operator\"".into(),
                Err("invalid admin_ids: invalid"),
            ),
            (
                "[[admin_ids]]\nspiffe_id = \"spiffe://other.org/ops\"\nrole = \"operator\"".into(),
                Err("invalid admin_ids: spiffe://other.org/ops is not in the trust domain"),
            ),
            (
                "admin_bind_address = \"127.0.0.1:0\"".into(),
                Err("invalid admin_bind_address"),
            ),
        ];
        for (text, want) in cases {
            let file: FileConfig = toml::from_str(&text).unwrap();
            let got = Config::resolve(file, FlagOverrides::default());
            match (got, want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(prefix)) => {
                    let line = e.to_string();
                    assert!(
                        line.starts_with(prefix) && !line.contains('\n'),
                        "{text}: {line}"
                    );
                }
                (got, want) => panic!("{text}: {got:?} but wanted {want:?}"),
            }
        }
        let unknown = "[[admin_ids]]\nspiffe_id = \"spiffe://example.org/x\"\nrole = \"root\"";
        let err = toml::from_str::<FileConfig>(unknown).unwrap_err();
        assert!(err.message().contains("unknown variant `root`"), "{err}");
    }
}
