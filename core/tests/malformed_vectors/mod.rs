//! The builder of the malformed delegation vectors: the golden vector's fields as separate DER
//! pieces, and the vectors that break its encoding or its principal (`values.rs` has the rest).

mod values;

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
pub(crate) struct Parts {
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
    pub(crate) fn golden() -> Self {
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

    pub(crate) fn der(&self) -> Vec<u8> {
        tlv(0x30, &self.content())
    }

    fn with(mut self, change: impl FnOnce(&mut Self)) -> Vec<u8> {
        change(&mut self);
        self.der()
    }
}

/// Every malformed vector: file stem, what is wrong with it, and its bytes.
pub(crate) fn vectors() -> Vec<(&'static str, &'static str, Vec<u8>)> {
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
    values::add_value_vectors(&mut add);
    v
}
