//! Malformed and non-canonical delegation vectors: each file in `tests/data/malformed/` is a
//! DER extension value that every Mandate decoder (Rust, Go, Python) must refuse. The files are
//! built in `malformed_vectors/`, field by field, from the golden vector's parts with one thing
//! wrong each, and `tests/data/malformed/README.md` says what. Run with
//! `MANDATE_REGENERATE_MALFORMED=1` to rewrite them; otherwise this test asserts the committed
//! files are exactly what it builds and that the Rust decoder refuses every one.

mod malformed_vectors;

use std::collections::BTreeMap;
use std::path::PathBuf;

use mandate_core::delegation::Delegation;

use malformed_vectors::{Parts, vectors};

fn malformed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/malformed")
}

fn readme(vectors: &[(&str, &str, Vec<u8>)]) -> String {
    let mut text = String::from(
        "# Malformed delegation vectors\n\n\
         Each `.der` file here is a delegation extension value (DESIGN 3.3) that every Mandate \
         decoder MUST refuse.\nThey are written by `core/tests/malformed.rs` (run it with \
         `MANDATE_REGENERATE_MALFORMED=1`), which\nbuilds each one from the golden vector's \
         fields (`../delegation-golden.der`) with one thing wrong,\nand asserts the Rust decoder \
         refuses each. The Go and Python SDKs assert the same over this directory.\n\n\
         | file | what is wrong |\n|---|---|\n",
    );
    for (name, what, _) in vectors {
        text.push_str(&format!("| `{name}.der` | {what} |\n"));
    }
    text
}

#[test]
fn the_builder_reproduces_the_golden_vector() {
    let committed =
        std::fs::read(malformed_dir().with_file_name("delegation-golden.der")).expect("golden");
    assert_eq!(Parts::golden().der(), committed);
}

#[test]
fn every_malformed_vector_is_committed_and_refused() {
    let vectors = vectors();
    let dir = malformed_dir();
    if std::env::var_os("MANDATE_REGENERATE_MALFORMED").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (name, _, der) in &vectors {
            std::fs::write(dir.join(format!("{name}.der")), der).expect("write vector");
        }
        std::fs::write(dir.join("README.md"), readme(&vectors)).expect("write readme");
    }
    let committed: BTreeMap<String, Vec<u8>> = std::fs::read_dir(&dir)
        .expect("malformed dir is committed")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "der"))
        .map(|p| {
            let stem = p.file_stem().expect("stem").to_string_lossy().into_owned();
            (stem, std::fs::read(&p).expect("read vector"))
        })
        .collect();
    assert_eq!(
        committed.len(),
        vectors.len(),
        "committed files and vectors differ"
    );
    let readme_text = std::fs::read_to_string(dir.join("README.md")).expect("README");
    assert_eq!(readme_text, readme(&vectors), "README is stale");
    for (name, what, der) in &vectors {
        assert_eq!(
            committed.get(*name),
            Some(der),
            "{name}.der differs from the builder"
        );
        let result = Delegation::from_der(der);
        assert!(result.is_err(), "{name} ({what}) was accepted: {result:?}");
    }
}
