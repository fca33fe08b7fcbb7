//! Request-argument decoding (`read_call`) reached directly: the first input byte picks the
//! protocol and method, the rest is the argument struct. Whatever decodes cleanly (valid UTF-8)
//! must survive encode -> decode unchanged.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pproxy_wire::codec::{read_header, Reader};
use pproxy_wire::types::{encode_call, read_call};
use pproxy_wire::{Call, Method, Protocol};

const METHODS: [Method; 4] = [
    Method::SendSync,
    Method::SendAsync,
    Method::SendBatchSync,
    Method::SendDelaySync,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let proto = if sel & 1 == 0 {
        Protocol::Compact
    } else {
        Protocol::Binary
    };
    let method = METHODS[usize::from((sel >> 1) & 3)];
    let buf = Bytes::copy_from_slice(rest);
    let mut r = Reader::new(&buf, 0, proto);
    let Ok(call) = read_call(&mut r, method) else {
        return;
    };
    assert!(r.position() <= buf.len());
    if has_invalid_utf8(&call) {
        // Undecodable strings come back as absent plus a flag; no round trip to check.
        return;
    }
    let frame = encode_call(proto, 7, &call);
    let payload = frame.slice(4..);
    let (h, pos) = read_header(&payload).expect("own header decodes");
    assert_eq!(Method::from_name(&h.name), Some(method));
    let mut r2 = Reader::new(&payload, pos, proto);
    let again = read_call(&mut r2, method).expect("own encoding decodes");
    assert_eq!(again, call);
    assert_eq!(r2.remaining(), 0);
});

fn has_invalid_utf8(c: &Call) -> bool {
    match c {
        Call::SendSync(m, _) | Call::SendAsync(m) => m.as_ref().is_some_and(|m| m.invalid_utf8),
        Call::SendBatchSync(ms) => ms.iter().any(|m| m.invalid_utf8),
        Call::SendDelaySync(m, _) => m.as_ref().is_some_and(|m| m.invalid_utf8),
    }
}
