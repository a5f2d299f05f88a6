//! Unit tests of the `:authority` shim: patching, pass-through, and the per-connection buffer bound.

use super::*;

fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        kind,
        flags,
        0,
        0,
        0,
        1,
    ];
    f.extend_from_slice(payload);
    f
}

#[test]
fn rewrites_a_raw_authority_literal_and_nothing_else() {
    let value = b"tmp%2Fapi.sock";
    // :method POST (indexed 3), :authority literal inc-indexing name idx 1, raw value,
    // then a literal-without-indexing new name "x-a" = "%%".
    let mut block = vec![0x83, 0x41, value.len() as u8];
    block.extend_from_slice(value);
    block.extend_from_slice(&[0x00, 0x03, b'x', b'-', b'a', 0x02, b'%', b'%']);
    let mut fix = AuthorityFix::new(());
    fix.pending.extend_from_slice(&[b'P'; PREFACE_LEN]);
    fix.pending.extend(frame(TYPE_HEADERS, 0x4, &block));
    fix.pending.extend(frame(0, 0, b"%%data"));
    fix.process();
    let out = &fix.ready[PREFACE_LEN..];
    let headers = &out[FRAME_HEADER_LEN..FRAME_HEADER_LEN + block.len()];
    assert_eq!(&headers[3..3 + value.len()], b"tmp-2Fapi.sock");
    assert_eq!(
        &headers[3 + value.len()..],
        &block[3 + value.len()..],
        "other fields untouched"
    );
    assert!(out.ends_with(b"%%data"));
}

/// Feeds `input` in reads of `READ_CHUNK` as `poll_read` does, draining `ready` after each;
/// returns what went out and the most the shim held at once.
fn feed(fix: &mut AuthorityFix<()>, input: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut peak = 0;
    for chunk in input.chunks(READ_CHUNK) {
        fix.pending.extend_from_slice(chunk);
        fix.process();
        peak = peak.max(fix.buffered());
        out.append(&mut fix.ready);
    }
    (out, peak)
}

#[test]
fn a_huge_declared_frame_streams_through_without_being_held() {
    // Finding 4: a frame declaring 16 MiB was held whole before h2 saw its header.
    for kind in [TYPE_HEADERS, 0, TYPE_CONTINUATION] {
        let mut input = vec![b'P'; PREFACE_LEN];
        input.extend_from_slice(&[0xff, 0xff, 0xff, kind, 0, 0, 0, 0, 1]);
        input.extend(std::iter::repeat_n(b'%', 4 << 20));
        let mut fix = AuthorityFix::new(());
        let (out, peak) = feed(&mut fix, &input);
        assert!(peak <= MAX_BUFFERED, "held {peak} bytes for kind {kind}");
        assert_eq!(out, input, "passed through unchanged");
    }
}

#[test]
fn a_header_frame_at_the_limit_is_still_patched_and_held_within_the_bound() {
    let value = b"a%2Fb";
    let mut block = vec![0x41, value.len() as u8];
    block.extend_from_slice(value);
    // Pad to the frame limit with bytes that parse as table size updates (never touched).
    block.resize(MAX_FRAME_SIZE as usize, b'%');
    let mut input = vec![b'P'; PREFACE_LEN];
    input.extend(frame(TYPE_HEADERS, 0x4, &block));
    let mut fix = AuthorityFix::new(());
    let (out, peak) = feed(&mut fix, &input);
    assert!(peak <= MAX_BUFFERED, "held {peak} bytes");
    assert_eq!(out.len(), input.len());
    let at = PREFACE_LEN + FRAME_HEADER_LEN + 2;
    assert_eq!(&out[at..at + value.len()], b"a-2Fb");
}

#[test]
fn rewrites_a_literal_name_authority_as_grpc_core_sends_it() {
    let mut block = vec![0x40, 10];
    block.extend_from_slice(b":authority");
    block.push(7);
    block.extend_from_slice(b"a%2Fb/c");
    block.push(0x86);
    patch_headers(&mut block, TYPE_HEADERS, 0);
    assert_eq!(&block[13..20], b"a-2Fb-c");
    assert_eq!(block[20], 0x86);
}

#[test]
fn huffman_values_and_valid_names_are_left_alone() {
    let mut block = vec![0x41, 0x80 | 2, 0xff, 0xff];
    patch_headers(&mut block, TYPE_HEADERS, 0);
    assert_eq!(block, vec![0x41, 0x82, 0xff, 0xff]);
    let mut block = vec![0x41, 9];
    block.extend_from_slice(b"localhost");
    let copy = block.clone();
    patch_headers(&mut block, TYPE_HEADERS, 0);
    assert_eq!(block, copy);
    // Truncated input never panics.
    patch_headers(&mut [0x41, 0x7f, 0xff], TYPE_HEADERS, 0);
    patch_headers(&mut [0x28], TYPE_HEADERS, FLAG_PADDED | FLAG_PRIORITY);
}
