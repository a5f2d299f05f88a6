//! Unit tests of unix attestation: `/proc` parsing, this process attested, changes since connect.

use super::*;

#[test]
fn parses_stat_with_tricky_comm() {
    let stat =
        "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
    assert_eq!(parse_start_time(stat), Some(987_654));
    assert_eq!(parse_start_time("garbage"), None);
}

#[test]
fn parses_status() {
    let status = "Name:\tx\nUid:\t1000\t1001\t1001\t1001\nGid:\t5\t5\t5\t5\nGroups:\t4 24 27 \n";
    assert_eq!(parse_status(status), Some((1001, vec![4, 24, 27])));
    assert_eq!(parse_status("Name: x\n"), None);
}

#[test]
fn attests_this_process() {
    let attestor = UnixAttestor::default();
    let cred = PeerCred {
        pid: std::process::id() as i32,
        uid: std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap(),
        gid: 0,
    };
    let me = PeerAtAccept::observe(Path::new("/proc"), cred);
    let needed = NeededKinds {
        gid: true,
        user: true,
        group: true,
        path: true,
        sha256: true,
    };
    let selectors = attestor.attest(&me, needed).unwrap();
    let text: Vec<String> = selectors.iter().map(ToString::to_string).collect();
    assert!(text.contains(&format!("unix:uid:{}", cred.uid)), "{text:?}");
    assert!(
        text.iter().any(|s| s.starts_with("unix:path:/")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|s| s.starts_with("unix:sha256:")),
        "{text:?}"
    );
    // A wrong uid is a race: no identity.
    let wrong = PeerAtAccept {
        cred: PeerCred {
            uid: cred.uid + 1,
            ..cred
        },
        ..me.clone()
    };
    assert!(matches!(
        attestor.attest(&wrong, needed),
        Err(AttestError::Raced(_))
    ));
    // Another start time (the pid was reused) or another executable (an exec since the
    // connect): no identity.
    let reused = PeerAtAccept {
        start_time: me.start_time.map(|t| t + 1),
        ..me.clone()
    };
    let exec = PeerAtAccept {
        exe: Some(PathBuf::from("/usr/bin/other")),
        ..me.clone()
    };
    for changed in [reused, exec] {
        assert!(matches!(
            attestor.attest(&changed, needed),
            Err(AttestError::ChangedSinceConnect(_))
        ));
    }
}

#[test]
fn uid_only_entries_need_no_proc() {
    // A proc root that does not exist: any read of it would fail the attestation.
    let attestor = UnixAttestor::new(PathBuf::from("/nonexistent-proc"), NameTables::system());
    let cred = PeerAtAccept {
        cred: PeerCred {
            pid: 1,
            uid: 4242,
            gid: 77,
        },
        start_time: None,
        exe: None,
    };
    let selectors = attestor.attest(&cred, NeededKinds::default()).unwrap();
    let text: Vec<String> = selectors.iter().map(ToString::to_string).collect();
    assert_eq!(text, ["unix:uid:4242", "unix:gid:77"]);
    let needs_groups = NeededKinds {
        gid: true,
        ..NeededKinds::default()
    };
    assert!(matches!(
        attestor.attest(&cred, needs_groups),
        Err(AttestError::Proc { pid: 1, .. })
    ));
}
