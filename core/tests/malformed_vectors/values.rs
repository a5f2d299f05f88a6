//! The malformed vectors with a value out of range or mis-typed in the task, the actions and
//! the optional fields (value limit, approval, chain).

use super::{
    DEADLINE, PURPOSE, Parts, actions, approval, cat, chain, int, principal, task, tlv, utf8,
    value_limit_content,
};

/// Adds each vector through `add(file stem, what is wrong, bytes)`.
pub(super) fn add_value_vectors(add: &mut impl FnMut(&'static str, &'static str, Vec<u8>)) {
    let g = Parts::golden;
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
}
