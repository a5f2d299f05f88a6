//! Property tests of the server's and the agent's config parsers, through their public
//! functions (the TOML file types and `resolve`): any file text or flag value yields a checked
//! config or a one-line typed error, never a panic, and well-formed values come back as given.

use std::time::Duration;

use mandate_agent::config::{AgentConfig, FileConfig as AgentFile, RunFlags, socket_path_from};
use mandate_server::config::{Config, FileConfig as ServerFile, FlagOverrides};
use proptest::prelude::*;

/// TOML-ish text: real keys with hostile values, plus noise.
fn server_toml() -> impl Strategy<Value = String> {
    let key = proptest::sample::select(vec![
        "trust_domain",
        "bind_address",
        "ca_ttl",
        "default_x509_svid_ttl",
        "default_jwt_svid_ttl",
        "agent_svid_ttl",
        "approval_required_actions",
        "approval_value_threshold",
        "metrics_address",
        "log_level",
        "upstream_ca_cert",
        "data_dir",
        "bogus",
    ]);
    let value = prop_oneof![
        "\"[a-z0-9.:/ -]{0,20}\"",
        "\"\\PC{0,20}\"",
        "[0-9]{1,5}",
        Just("[\"po.*\", \"[\"]".to_owned()),
        Just("true".to_owned()),
        "\\PC{0,10}",
    ];
    proptest::collection::vec((key, value), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect()
    })
}

fn one_line(message: &str) -> bool {
    !message.is_empty() && !message.contains('\n')
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any server config text parses to a checked config or a typed one-line error.
    #[test]
    fn server_config_any_text(text in server_toml()) {
        match toml::from_str::<ServerFile>(&text) {
            Err(e) => prop_assert!(!e.message().is_empty()),
            Ok(file) => {
                if let Err(e) = Config::resolve(file, FlagOverrides::default()) {
                    prop_assert!(one_line(&e.to_string()), "{e}");
                }
            }
        }
    }

    /// Well-formed TTLs and addresses come back as written.
    #[test]
    fn server_config_values_round_trip(
        secs in proptest::collection::vec(1_u64..=30 * 86_400, 4),
        port in 1_u16..,
        td in "[a-z0-9]{1,10}(\\.[a-z0-9-]{1,10}){0,2}",
    ) {
        let d = |s: u64| if s.is_multiple_of(60) { format!("{}m", s / 60) } else { format!("{s}s") };
        let text = format!(
            "trust_domain = \"{td}\"\nbind_address = \"127.0.0.1:{port}\"\nca_ttl = \"{}\"\n\
             default_x509_svid_ttl = \"{}\"\ndefault_jwt_svid_ttl = \"{}\"\nagent_svid_ttl = \"{}\"\n",
            d(secs[0]), d(secs[1]), d(secs[2]), d(secs[3]),
        );
        let file: ServerFile = toml::from_str(&text).expect("valid TOML");
        let config = Config::resolve(file, FlagOverrides::default()).expect("valid config");
        prop_assert_eq!(config.trust_domain.to_string(), td);
        prop_assert_eq!(config.bind_address.port(), port);
        prop_assert_eq!(
            [config.ca_ttl, config.default_x509_svid_ttl, config.default_jwt_svid_ttl, config.agent_svid_ttl],
            [0, 1, 2, 3].map(|i| Duration::from_secs(secs[i]))
        );
    }

    /// Any agent config text or flag value yields a config or a one-line error.
    #[test]
    fn agent_config_any_input(
        text in "(server_address|socket_path|data_dir|join_token|log_level|bogus) = (\"\\PC{0,20}\"|[0-9]{1,3})\n",
        address in "[a-z0-9.:/\\[\\]]{0,24}|\\PC{0,24}",
        socket in "(unix://|unix:)?\\PC{0,24}",
    ) {
        let _ = toml::from_str::<AgentFile>(&text);
        let _ = socket_path_from(&socket);
        let flags = RunFlags {
            server_address: Some(address.clone()),
            socket_path: Some(socket.clone()),
            data_dir: Some("/tmp/mandate-proptest".into()),
            ..RunFlags::default()
        };
        match AgentConfig::resolve(flags) {
            Ok(config) => {
                prop_assert_eq!(config.server_address, address);
                prop_assert!(!config.socket_path.as_os_str().is_empty());
            }
            Err(e) => prop_assert!(one_line(&e.to_string()), "{e}"),
        }
    }
}
