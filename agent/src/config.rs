//! The agent's configuration: command-line flags merged over an optional TOML file, checked
//! before anything is opened (STYLE 10).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default address of mandate-server's agent API.
pub const DEFAULT_SERVER_ADDRESS: &str = "127.0.0.1:8081";
/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = ".data/agent";
/// The default Workload API socket.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/mandate-agent/public/api.sock";

/// Errors in the configuration; `main` maps every one of them to exit code 64.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or holds an unknown key.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line.
        message: String,
    },
    /// The server address is not `HOST:PORT`.
    #[error("invalid server address {0:?}: expected HOST:PORT without a scheme")]
    ServerAddress(String),
    /// The log level is not a valid filter.
    #[error("invalid log level {0:?}")]
    LogLevel(String),
    /// A path setting is empty.
    #[error("{0} must not be empty")]
    EmptyPath(&'static str),
}

/// The keys of the TOML config file: the flag names in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `HOST:PORT` of the server's agent API.
    pub server_address: Option<String>,
    /// PEM file with the trust bundle, needed for the first attestation.
    pub trust_bundle: Option<PathBuf>,
    /// A join token for the first attestation.
    pub join_token: Option<String>,
    /// The Workload API socket.
    pub socket_path: Option<String>,
    /// The data directory.
    pub data_dir: Option<PathBuf>,
    /// A tracing filter such as `info` or `mandate_agent=debug`.
    pub log_level: Option<String>,
}

impl FileConfig {
    /// Reads and parses a TOML config file.
    ///
    /// # Errors
    /// When the file cannot be read, is not TOML, or holds an unknown key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().replace('\n', " "),
        })
    }
}

/// The flags of `mandate-agent run` as given (None when absent).
#[derive(Debug, Default, Clone)]
pub struct RunFlags {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--server-address`.
    pub server_address: Option<String>,
    /// `--trust-bundle`.
    pub trust_bundle: Option<PathBuf>,
    /// `--join-token` / `MANDATE_JOIN_TOKEN`.
    pub join_token: Option<String>,
    /// `--socket-path` / `SPIFFE_ENDPOINT_SOCKET`.
    pub socket_path: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

/// The checked configuration of a running agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `HOST:PORT` of the server (kept as text: the host may be a name).
    pub server_address: String,
    /// The trust bundle PEM for the first attestation.
    pub trust_bundle: Option<PathBuf>,
    /// The join token for the first attestation.
    pub join_token: Option<String>,
    /// The Workload API socket path.
    pub socket_path: PathBuf,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The tracing filter.
    pub log_level: String,
}

impl AgentConfig {
    /// Merges flags over the config file over the defaults and checks the result.
    ///
    /// # Errors
    /// Any [`ConfigError`]: unreadable or invalid file, bad address, empty paths.
    pub fn resolve(flags: RunFlags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let server_address = flags
            .server_address
            .or(file.server_address)
            .unwrap_or_else(|| DEFAULT_SERVER_ADDRESS.to_owned());
        check_address(&server_address)?;
        let socket = flags
            .socket_path
            .or(file.socket_path)
            .unwrap_or_else(|| DEFAULT_SOCKET_PATH.to_owned());
        let socket_path = socket_path_from(&socket)?;
        let data_dir = flags
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::EmptyPath("data_dir"));
        }
        let log_level = file.log_level.unwrap_or_else(|| "info".to_owned());
        tracing_subscriber::EnvFilter::try_new(&log_level)
            .map_err(|_| ConfigError::LogLevel(log_level.clone()))?;
        let join_token = flags
            .join_token
            .or(file.join_token)
            .filter(|t| !t.trim().is_empty());
        Ok(Self {
            server_address,
            trust_bundle: flags.trust_bundle.or(file.trust_bundle),
            join_token,
            socket_path,
            data_dir,
            log_level,
        })
    }
}

/// Turns a socket setting (`/path` or `unix:///path`) into a path.
///
/// # Errors
/// When the setting is empty.
pub fn socket_path_from(setting: &str) -> Result<PathBuf, ConfigError> {
    let path = setting
        .strip_prefix("unix://")
        .or_else(|| setting.strip_prefix("unix:"))
        .unwrap_or(setting);
    if path.is_empty() {
        return Err(ConfigError::EmptyPath("socket_path"));
    }
    Ok(PathBuf::from(path))
}

fn check_address(address: &str) -> Result<(), ConfigError> {
    if address.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || ConfigError::ServerAddress(address.to_owned());
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains('/') || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_rejects_unknown_keys() {
        let err = FileConfig::parse("bogus = 1\n", Path::new("a.toml")).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn flags_win_over_file_and_defaults_fill_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "server_address = \"10.0.0.1:9000\"\ndata_dir = \"/d\"\n",
        )
        .unwrap();
        let cfg = AgentConfig::resolve(RunFlags {
            config: Some(path),
            data_dir: Some(PathBuf::from("/flag")),
            ..RunFlags::default()
        })
        .unwrap();
        assert_eq!(cfg.server_address, "10.0.0.1:9000");
        assert_eq!(cfg.data_dir, PathBuf::from("/flag"));
        assert_eq!(cfg.socket_path, PathBuf::from(DEFAULT_SOCKET_PATH));
    }

    #[test]
    fn addresses_and_sockets() {
        for ok in ["127.0.0.1:8081", "localhost:1", "[::1]:80"] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in ["http://x:1", "x", ":80", "host:notaport"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        assert_eq!(
            socket_path_from("unix:///a/b").unwrap(),
            PathBuf::from("/a/b")
        );
        assert_eq!(socket_path_from("/a/b").unwrap(), PathBuf::from("/a/b"));
        assert!(socket_path_from("unix://").is_err());
    }
}
