//! Malformed and non-canonical delegation vectors: each file in `tests/data/malformed/` is a
//! DER extension value that every Mandate decoder (Rust, Go, Python) must refuse. The files are
//! built here, field by field, from the golden vector's parts with one thing wrong each, and
//! `tests/data/malformed/README.md` says what. Run with `MANDATE_REGENERATE_MALFORMED=1` to
//! rewrite them; otherwise this test asserts the committed files are exactly what it builds and
//! that the Rust decoder refuses every one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mandate_core::delegation::Delegation;

/// One DER TLV with a minimal definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn utf8(text: &str) -> Vec<u8> {
    tlv(0x0c, text.as_bytes())
}

fn int(value: &[u8]) -> Vec<u8> {
    tlv(0x02, value)
}

fn time(text: &str) -> Vec<u8> {
    tlv(0x18, text.as_bytes())
}

/// The golden vector's fields as separate DER pieces; each vector changes one of them.
#[derive(Clone)]
struct Parts {
    version: Vec<u8>,
    principal: Vec<u8>,
    task: Vec<u8>,
    actions: Vec<u8>,
    optional: Vec<u8>,
}

fn principal(kind: u8, id: &str) -> Vec<u8> {
    tlv(0x30, &cat(&[tlv(0x0a, &[kind]), utf8(id)]))
}

fn task(id: &str, purpose: &str, deadline: &str, depth: &[u8], max_depth: &[u8]) -> Vec<u8> {
    tlv(
        0x30,
        &cat(&[
            utf8(id),
            utf8(purpose),
            time(deadline),
            int(depth),
            int(max_depth),
        ]),
    )
}

const PURPOSE: &str = "draft purchase orders for office supplies";
const DEADLINE: &str = "20261201120000Z";

fn actions(names: &[&str]) -> Vec<u8> {
    tlv(
        0x30,
        &names.iter().map(|n| utf8(n)).collect::<Vec<_>>().concat(),
    )
}

fn value_limit_content(currency: &[u8]) -> Vec<u8> {
    cat(&[int(&[0x00, 0xc3, 0x50]), tlv(0x13, currency)])
}

fn approval() -> Vec<u8> {
    tlv(
        0xa1,
        &cat(&[utf8("bob@example.org"), time("20261122093000Z")]),
    )
}

fn link() -> Vec<u8> {
    tlv(
        0x30,
        &cat(&[
            principal(1, "procurement-portal"),
            utf8("task-parent-0"),
            tlv(0x16, b"spiffe://example.org/agents/planner"),
        ]),
    )
}

fn chain(links: usize) -> Vec<u8> {
    tlv(0xa2, &vec![link(); links].concat())
}

impl Parts {
    fn golden() -> Self {
        Self {
            version: int(&[1]),
            principal: principal(0, "alice@example.org"),
            task: task("task-golden-1", PURPOSE, DEADLINE, &[1], &[2]),
            actions: actions(&["po.draft", "po.submit"]),
            optional: cat(&[
                tlv(0xa0, &value_limit_content(b"EUR")),
                approval(),
                chain(1),
            ]),
        }
    }

    fn content(&self) -> Vec<u8> {
        cat(&[
            self.version.clone(),
            self.principal.clone(),
            self.task.clone(),
            self.actions.clone(),
            self.optional.clone(),
        ])
    }

    fn der(&self) -> Vec<u8> {
        tlv(0x30, &self.content())
    }

    fn with(mut self, change: impl FnOnce(&mut Self)) -> Vec<u8> {
        change(&mut self);
        self.der()
    }
}

/// Every malformed vector: file stem, what is wrong with it, and its bytes.
fn vectors() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let g = Parts::golden;
    let golden = g().der();
    let mut v: Vec<(&'static str, &'static str, Vec<u8>)> = Vec::new();
    let mut add = |name, what, der| v.push((name, what, der));

    add(
        "version-2",
        "version is 2, only 1 is accepted",
        g().with(|p| p.version = int(&[2])),
    );
    add(
        "version-0",
        "version is 0",
        g().with(|p| p.version = int(&[0])),
    );
    add(
        "version-leading-zero",
        "version INTEGER 1 written as 02 02 00 01 (non-minimal)",
        g().with(|p| p.version = int(&[0, 1])),
    );
    let mut trailing = golden.clone();
    trailing.push(0x00);
    add(
        "trailing-byte",
        "one 0x00 byte after the outer SEQUENCE",
        trailing,
    );
    let mut twice = golden.clone();
    twice.extend_from_slice(&golden);
    add("trailing-copy", "the golden value twice in a row", twice);
    add(
        "truncated",
        "the golden value without its last byte",
        golden[..golden.len() - 1].to_vec(),
    );
    add("empty", "zero bytes", Vec::new());
    let mut set = golden.clone();
    set[0] = 0x31;
    add("outer-set", "outer tag is SET (0x31), not SEQUENCE", set);
    let content = g().content();
    let mut long_len = vec![0x30, 0x83, 0x00];
    long_len.extend([(content.len() >> 8) as u8, content.len() as u8]);
    long_len.extend_from_slice(&content);
    add(
        "length-not-minimal",
        "outer length in 3 bytes (83 00 01 06) instead of 2",
        long_len,
    );
    let mut indefinite = vec![0x30, 0x80];
    indefinite.extend_from_slice(&content);
    indefinite.extend([0x00, 0x00]);
    add(
        "indefinite-length",
        "outer SEQUENCE with BER indefinite length (30 80 ... 00 00)",
        indefinite,
    );
    add(
        "principal-short-long-length",
        "principal id length 0x11 written as 81 11",
        g().with(|p| {
            let mut id = vec![0x0c, 0x81, 17];
            id.extend_from_slice(b"alice@example.org");
            p.principal = tlv(0x30, &cat(&[tlv(0x0a, &[0]), id]));
        }),
    );
    add(
        "kind-3",
        "principal kind ENUMERATED 3 (only 0, 1, 2 exist)",
        g().with(|p| p.principal = principal(3, "alice@example.org")),
    );
    add(
        "kind-as-integer",
        "principal kind tagged INTEGER (0x02), not ENUMERATED",
        g().with(|p| {
            p.principal = tlv(0x30, &cat(&[int(&[0]), utf8("alice@example.org")]));
        }),
    );
    add(
        "principal-id-empty",
        "principal id is empty (SIZE 1..256)",
        g().with(|p| p.principal = principal(0, "")),
    );
    add(
        "principal-id-257",
        "principal id is 257 bytes (SIZE 1..256)",
        g().with(|p| p.principal = principal(0, &"a".repeat(257))),
    );
    add(
        "principal-id-control",
        "principal id holds a newline (control character)",
        g().with(|p| p.principal = principal(0, "alice\n@example.org")),
    );
    add(
        "principal-id-bad-utf8",
        "principal id UTF8String holds the byte 0xff",
        g().with(|p| {
            p.principal = tlv(0x30, &cat(&[tlv(0x0a, &[0]), tlv(0x0c, b"alice\xff")]));
        }),
    );
    add(
        "workload-not-spiffe",
        "principal kind workload whose id is not a SPIFFE ID",
        g().with(|p| p.principal = principal(2, "alice@example.org")),
    );
    add(
        "workload-uppercase-td",
        "workload principal spiffe://Example.org/x (trust domain not lower case)",
        g().with(|p| p.principal = principal(2, "spiffe://Example.org/x")),
    );
    add(
        "task-id-empty",
        "task id is empty",
        g().with(|p| p.task = task("", PURPOSE, DEADLINE, &[1], &[2])),
    );
    add(
        "task-id-65",
        "task id is 65 characters (at most 64)",
        g().with(|p| p.task = task(&"t".repeat(65), PURPOSE, DEADLINE, &[1], &[2])),
    );
    add(
        "task-id-space",
        "task id holds a space (allowed: A-Z a-z 0-9 . _ : -)",
        g().with(|p| p.task = task("task golden", PURPOSE, DEADLINE, &[1], &[2])),
    );
    add(
        "purpose-257",
        "purpose is 257 bytes (SIZE 0..256)",
        g().with(|p| p.task = task("task-golden-1", &"p".repeat(257), DEADLINE, &[1], &[2])),
    );
    add(
        "deadline-no-z",
        "deadline GeneralizedTime without Z (local time)",
        g().with(|p| p.task = task("task-golden-1", PURPOSE, "20261201120000", &[1], &[2])),
    );
    add(
        "deadline-fraction",
        "deadline with fractional seconds (20261201120000.5Z)",
        g().with(|p| p.task = task("task-golden-1", PURPOSE, "20261201120000.5Z", &[1], &[2])),
    );
    add(
        "deadline-offset",
        "deadline with a +0100 offset instead of Z",
        g().with(|p| p.task = task("task-golden-1", PURPOSE, "20261201120000+0100", &[1], &[2])),
    );
    add(
        "deadline-no-seconds",
        "deadline without seconds (202612011200Z)",
        g().with(|p| p.task = task("task-golden-1", PURPOSE, "202612011200Z", &[1], &[2])),
    );
    add(
        "deadline-feb-30",
        "deadline on 30 February",
        g().with(|p| p.task = task("task-golden-1", PURPOSE, "20260230120000Z", &[1], &[2])),
    );
    add(
        "deadline-utctime",
        "deadline tagged UTCTime (0x17), not GeneralizedTime",
        g().with(|p| {
            p.task = tlv(
                0x30,
                &cat(&[
                    utf8("task-golden-1"),
                    utf8(PURPOSE),
                    tlv(0x17, b"261201120000Z"),
                    int(&[1]),
                    int(&[2]),
                ]),
            );
        }),
    );
    add(
        "depth-over-max",
        "depth 3 with maxDepth 2",
        g().with(|p| p.task = task("task-golden-1", PURPOSE, DEADLINE, &[3], &[2])),
    );
    add(
        "depth-256",
        "depth 256 (INTEGER 0..255)",
        g().with(|p| p.task = task("task-golden-1", PURPOSE, DEADLINE, &[1, 0], &[2])),
    );
    add(
        "depth-negative",
        "depth -1",
        g().with(|p| p.task = task("task-golden-1", PURPOSE, DEADLINE, &[0xff], &[2])),
    );
    add(
        "max-depth-leading-zero",
        "maxDepth 2 written as 02 02 00 02 (non-minimal)",
        g().with(|p| p.task = task("task-golden-1", PURPOSE, DEADLINE, &[1], &[0, 2])),
    );
    let many: Vec<String> = (0..65).map(|i| format!("a{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    add(
        "actions-65",
        "65 actions (SIZE 0..64)",
        g().with(|p| p.actions = actions(&many)),
    );
    add(
        "action-empty",
        "an empty action name",
        g().with(|p| p.actions = actions(&["po.draft", ""])),
    );
    add(
        "action-space",
        "an action name with a space",
        g().with(|p| p.actions = actions(&["po draft"])),
    );
    add(
        "action-printable",
        "an action tagged PrintableString (0x13), not UTF8String",
        g().with(|p| p.actions = tlv(0x30, &tlv(0x13, b"po.draft"))),
    );
    add(
        "currency-2",
        "currency EU (SIZE 3)",
        g().with(|p| {
            p.optional = cat(&[tlv(0xa0, &value_limit_content(b"EU")), approval(), chain(1)])
        }),
    );
    add(
        "currency-lowercase",
        "currency eur (ISO 4217: upper case)",
        g().with(|p| {
            p.optional = cat(&[
                tlv(0xa0, &value_limit_content(b"eur")),
                approval(),
                chain(1),
            ])
        }),
    );
    add(
        "currency-utf8",
        "currency tagged UTF8String, not PrintableString",
        g().with(|p| {
            p.optional = cat(&[
                tlv(0xa0, &cat(&[int(&[0x00, 0xc3, 0x50]), utf8("EUR")])),
                approval(),
                chain(1),
            ]);
        }),
    );
    add(
        "amount-leading-zero",
        "amountMinor 50000 written with a redundant 00 byte",
        g().with(|p| {
            p.optional = cat(&[
                tlv(
                    0xa0,
                    &cat(&[int(&[0x00, 0x00, 0xc3, 0x50]), tlv(0x13, b"EUR")]),
                ),
                approval(),
                chain(1),
            ]);
        }),
    );
    add(
        "amount-over-i64",
        "amountMinor 2^63 (over the signed 64-bit range)",
        g().with(|p| {
            p.optional = cat(&[
                tlv(
                    0xa0,
                    &cat(&[int(&[0x00, 0x80, 0, 0, 0, 0, 0, 0, 0]), tlv(0x13, b"EUR")]),
                ),
                approval(),
                chain(1),
            ]);
        }),
    );
    add(
        "value-limit-explicit",
        "valueLimit as EXPLICIT [0] around a SEQUENCE (the module is IMPLICIT)",
        g().with(|p| {
            p.optional = cat(&[
                tlv(0xa0, &tlv(0x30, &value_limit_content(b"EUR"))),
                approval(),
                chain(1),
            ]);
        }),
    );
    add(
        "value-limit-untagged",
        "valueLimit as a bare SEQUENCE without its [0] tag",
        g().with(|p| {
            p.optional = cat(&[
                tlv(0x30, &value_limit_content(b"EUR")),
                approval(),
                chain(1),
            ]);
        }),
    );
    add(
        "value-limit-primitive-tag",
        "valueLimit tagged primitive [0] (0x80), not constructed (0xa0)",
        g().with(|p| {
            p.optional = cat(&[
                tlv(0x80, &value_limit_content(b"EUR")),
                approval(),
                chain(1),
            ]);
        }),
    );
    add(
        "optional-out-of-order",
        "approval [1] before valueLimit [0]",
        g().with(|p| {
            p.optional = cat(&[
                approval(),
                tlv(0xa0, &value_limit_content(b"EUR")),
                chain(1),
            ]);
        }),
    );
    add(
        "value-limit-twice",
        "valueLimit [0] present twice",
        g().with(|p| {
            let limit = tlv(0xa0, &value_limit_content(b"EUR"));
            p.optional = cat(&[limit.clone(), limit, approval(), chain(1)]);
        }),
    );
    add(
        "unknown-field",
        "an extra [3] field after the chain",
        g().with(|p| {
            p.optional = cat(&[
                tlv(0xa0, &value_limit_content(b"EUR")),
                approval(),
                chain(1),
                tlv(0x83, &[0]),
            ]);
        }),
    );
    add(
        "chain-empty",
        "chain [2] present with no links (SIZE 1..8)",
        g().with(|p| {
            p.optional = cat(&[
                tlv(0xa0, &value_limit_content(b"EUR")),
                approval(),
                chain(0),
            ]);
        }),
    );
    add(
        "chain-9",
        "chain of 9 links (SIZE 1..8)",
        g().with(|p| {
            p.optional = cat(&[
                tlv(0xa0, &value_limit_content(b"EUR")),
                approval(),
                chain(9),
            ]);
        }),
    );
    add(
        "actor-not-ascii",
        "link actor IA5String holds the byte 0xe9",
        g().with(|p| {
            let bad = tlv(
                0x30,
                &cat(&[
                    principal(1, "procurement-portal"),
                    utf8("task-parent-0"),
                    tlv(0x16, b"caf\xe9"),
                ]),
            );
            p.optional = cat(&[
                tlv(0xa0, &value_limit_content(b"EUR")),
                approval(),
                tlv(0xa2, &bad),
            ]);
        }),
    );
    add(
        "link-task-id-bad",
        "link taskId holds a slash",
        g().with(|p| {
            let bad = tlv(
                0x30,
                &cat(&[
                    principal(1, "procurement-portal"),
                    utf8("task/parent"),
                    tlv(0x16, b"spiffe://example.org/agents/planner"),
                ]),
            );
            p.optional = cat(&[
                tlv(0xa0, &value_limit_content(b"EUR")),
                approval(),
                tlv(0xa2, &bad),
            ]);
        }),
    );
    v
}

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
