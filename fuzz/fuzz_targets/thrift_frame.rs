//! A client byte stream, cut into frames and decoded the way the server does it
//! (src/server/connection.rs `serve` + src/server/dispatch.rs `handle_frame`), minus the socket.
//!
//! The frame reader itself is async and private; this target re-states its length rules
//! (4-byte big-endian length, <= 0 closes, > maxReadBufferBytes peeks at most 64 KiB for the
//! header and answers 11) over the input, and runs the real decoders on every payload.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pproxy::proto::codec::{message_type, read_header, Reader};
use pproxy::proto::types::{decode_reply, read_call};
use pproxy::proto::Code;
use pproxy::proto::{Call, Method};
use pproxy::server::dispatch::{reply_code, FrameResult};

/// Small, so that inputs of a few KiB also reach the oversized-frame path.
const MAX_READ_BUFFER: usize = 1024;
/// As `OVERSIZE_HEADER_PEEK` in connection.rs.
const OVERSIZE_HEADER_PEEK: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let stream = Bytes::copy_from_slice(data);
    let mut pos = 0;
    while stream.len() - pos >= 4 {
        let len = i32::from_be_bytes(stream[pos..pos + 4].try_into().unwrap());
        pos += 4;
        if len <= 0 {
            return; // connection closed: protocol error
        }
        let len = len as usize;
        if len > MAX_READ_BUFFER {
            let peek = len.min(OVERSIZE_HEADER_PEEK);
            if stream.len() - pos < peek {
                return; // peer closed mid-frame
            }
            let head = stream.slice(pos..pos + peek);
            let Ok((h, _)) = read_header(&head) else {
                return;
            };
            check_reply(reply_code(&h, Code::Illegal), &h.name, h.seqid);
            if stream.len() - pos < len {
                return;
            }
            pos += len;
            continue;
        }
        if stream.len() - pos < len {
            return;
        }
        let payload = stream.slice(pos..pos + len);
        pos += len;
        if !handle(&payload) {
            return;
        }
        // The client-side reply decoder reads the same wire format.
        let _ = decode_reply(&payload);
    }
});

/// `handle_frame` without the handler; false when the connection would close.
fn handle(payload: &Bytes) -> bool {
    let Ok((h, hpos)) = read_header(payload) else {
        return false;
    };
    assert!(hpos <= payload.len());
    if h.mtype != message_type::CALL && h.mtype != message_type::ONEWAY {
        return true;
    }
    let Some(method) = Method::from_name(&h.name) else {
        return true;
    };
    let mut r = Reader::new(payload, hpos, h.protocol);
    if let Ok(call) = read_call(&mut r, method) {
        assert!(r.position() <= payload.len());
        let kind_ok = matches!(
            (method, &call),
            (Method::SendSync, Call::SendSync(..))
                | (Method::SendAsync, Call::SendAsync(..))
                | (Method::SendBatchSync, Call::SendBatchSync(..))
                | (Method::SendDelaySync, Call::SendDelaySync(..))
        );
        assert!(kind_ok, "{method:?} decoded as {call:?}");
        // Every accepted request can be answered; the answer must decode and echo the header.
        check_reply(reply_code(&h, Code::Ok), &h.name, h.seqid);
    }
    true
}

fn check_reply(r: FrameResult, name: &Bytes, seqid: i32) {
    if let FrameResult::Reply(frame) = r {
        let declared = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(declared, frame.len() - 4);
        let (echo, reply) = decode_reply(&frame.slice(4..)).expect("own reply decodes");
        assert_eq!(&echo, name);
        let s = match reply {
            pproxy::proto::types::Reply::Result { seqid, .. } => seqid,
            pproxy::proto::types::Reply::Exception { seqid, .. } => seqid,
        };
        assert_eq!(s, seqid);
    }
}
