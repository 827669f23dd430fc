//! Message framing (RFC 4271 §4.1): split a byte stream into messages and
//! check each header before anything looks at the body.
//!
//! Checks, in the order RFC 4271 §6.1 lists them: the marker must be all
//! ones (else 1/1 Connection Not Synchronized), the length must lie in
//! `19..=max` where `max` is 4096, or 65535 once the Extended Message
//! capability (RFC 8654) is negotiated (else 1/2 Bad Message Length, data =
//! the length), the type must be known (else 1/3 Bad Message Type, data = the
//! type), and the length must fit the type: OPEN ≥ 29, UPDATE ≥ 23,
//! NOTIFICATION ≥ 21, KEEPALIVE = 19, ROUTE-REFRESH = 23 (RFC 2918 §3).
//! The body is not parsed here.

use crate::notification::{Notification, code, header};

pub const MARKER: [u8; 16] = [0xff; 16];
pub const HEADER_LEN: usize = 19;
/// RFC 4271 §4.1.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// RFC 8654 §3, once both sides advertised the Extended Message capability.
pub const EXTENDED_MAX_MESSAGE_LEN: usize = 65535;

/// Message types (RFC 4271 §4.1, RFC 2918 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Open = 1,
    Update = 2,
    Notification = 3,
    Keepalive = 4,
    RouteRefresh = 5,
}

impl MessageType {
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => MessageType::Open,
            2 => MessageType::Update,
            3 => MessageType::Notification,
            4 => MessageType::Keepalive,
            5 => MessageType::RouteRefresh,
            _ => return None,
        })
    }

    /// The length range a message of this type may have, `max` aside.
    fn length_fits(self, length: usize) -> bool {
        match self {
            MessageType::Open => length >= 29,
            MessageType::Update => length >= 23,
            MessageType::Notification => length >= 21,
            MessageType::Keepalive => length == HEADER_LEN,
            MessageType::RouteRefresh => length == 23,
        }
    }
}

/// One framed message, borrowing its body from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: MessageType,
    pub body: &'a [u8],
}

fn bad_length(length: u16) -> Notification {
    Notification::new(
        code::MESSAGE_HEADER,
        header::BAD_MESSAGE_LENGTH,
        length.to_be_bytes(),
    )
}

/// Reads the first message of `buf`. `Ok(None)` means more bytes are needed;
/// `Ok(Some((frame, n)))` consumed `n` bytes. The header is judged as soon as
/// its 19 bytes are in, so a bad header fails without waiting for a body.
pub fn split(buf: &[u8], max_len: usize) -> Result<Option<(Frame<'_>, usize)>, Notification> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if head[..16] != MARKER {
        return Err(Notification::new(
            code::MESSAGE_HEADER,
            header::CONNECTION_NOT_SYNCHRONIZED,
            [],
        ));
    }
    let length = u16::from_be_bytes([head[16], head[17]]);
    let len = usize::from(length);
    if !(HEADER_LEN..=max_len).contains(&len) {
        return Err(bad_length(length));
    }
    let kind = MessageType::from_code(head[18]).ok_or_else(|| {
        Notification::new(code::MESSAGE_HEADER, header::BAD_MESSAGE_TYPE, [head[18]])
    })?;
    if !kind.length_fits(len) {
        return Err(bad_length(length));
    }
    Ok(buf
        .get(HEADER_LEN..len)
        .map(|body| (Frame { kind, body }, len)))
}

/// Prepends the header to `body`. The caller keeps bodies within the
/// negotiated maximum; a body beyond 65516 bytes is a bug and panics here
/// rather than going out with a wrapped length.
pub fn encode_message(kind: MessageType, body: &[u8]) -> Vec<u8> {
    let length = u16::try_from(HEADER_LEN + body.len()).expect("BGP message body over 65516 bytes");
    let mut out = Vec::with_capacity(usize::from(length));
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&length.to_be_bytes());
    out.push(kind as u8);
    out.extend_from_slice(body);
    out
}

/// The KEEPALIVE message (RFC 4271 §4.4): a bare header.
pub fn keepalive() -> Vec<u8> {
    encode_message(MessageType::Keepalive, &[])
}

/// A ROUTE-REFRESH request (RFC 2918 §3): AFI, reserved, SAFI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: crate::prefix::AfiSafi,
}

impl RouteRefresh {
    pub fn encode(&self) -> Vec<u8> {
        let [a, b] = self.family.afi.to_be_bytes();
        encode_message(MessageType::RouteRefresh, &[a, b, 0, self.family.safi])
    }

    /// Decodes the 4-byte body (length was checked by [`split`]).
    pub fn decode(body: &[u8]) -> Result<Self, Notification> {
        match body {
            [a, b, _reserved, safi] => Ok(RouteRefresh {
                family: crate::prefix::AfiSafi::new(u16::from_be_bytes([*a, *b]), *safi),
            }),
            _ => Err(bad_length(
                u16::try_from(body.len() + HEADER_LEN).unwrap_or(u16::MAX),
            )),
        }
    }
}

/// The most one read of a connection takes: four messages of the usual
/// size. The reader's buffer of this size is on its stack, for the read
/// only (see [`Framer::push`]).
pub const READ_CHUNK: usize = 16 * 1024;

/// Accumulates bytes read from a connection and hands out whole messages.
#[derive(Debug, Clone)]
pub struct Framer {
    buf: Vec<u8>,
    max_len: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            buf: Vec::new(),
            max_len: MAX_MESSAGE_LEN,
        }
    }
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    #[cfg(any(test, feature = "testing"))]
    /// Raises the limit to 65535 once Extended Message is negotiated.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Appends bytes read from the connection. The framer keeps only what
    /// does not make a whole message yet: between messages it holds no
    /// buffer, so that a quiet session costs no read buffer (a hundred
    /// peers, a hundred buffers).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message as `(type, body)`, or `None` if incomplete.
    /// After an error the stream is unsynchronised; the session must close.
    pub fn next_message(&mut self) -> Result<Option<(MessageType, Vec<u8>)>, Notification> {
        let Some((frame, used)) = split(&self.buf, self.max_len)? else {
            return Ok(None);
        };
        let out = (frame.kind, frame.body.to_vec());
        self.buf.drain(..used);
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framer_keeps_only_a_partial_message_and_no_buffer_between_messages() {
        let mut f = Framer::new();
        // A burst of 100 KEEPALIVEs read at once, and ten bytes of one more.
        let burst: Vec<u8> = (0..100).flat_map(|_| keepalive()).collect();
        f.push(&burst);
        f.push(&keepalive()[..10]);
        let mut n = 0;
        while let Some((kind, _)) = f.next_message().unwrap() {
            assert_eq!(kind, MessageType::Keepalive);
            n += 1;
        }
        assert_eq!(n, 100);
        // The first ten bytes of one more wait for the rest of it.
        assert_eq!(f.buf.len(), 10);
        f.push(&keepalive()[10..]);
        assert!(f.next_message().unwrap().is_some());
        // Between messages, no buffer at all.
        assert_eq!(f.buf.capacity(), 0);
        assert!(f.next_message().unwrap().is_none());
    }

    fn header(length: u16, kind: u8) -> Vec<u8> {
        let mut m = MARKER.to_vec();
        m.extend_from_slice(&length.to_be_bytes());
        m.push(kind);
        m
    }

    #[test]
    fn keepalive_is_a_bare_19_byte_header() {
        assert_eq!(keepalive(), header(19, 4));
        let ka = keepalive();
        let (frame, used) = split(&ka, MAX_MESSAGE_LEN).unwrap().unwrap();
        assert_eq!(
            (frame.kind, frame.body, used),
            (MessageType::Keepalive, &[][..], 19)
        );
    }

    #[test]
    fn incomplete_header_or_body_asks_for_more_bytes() {
        assert_eq!(split(&MARKER, MAX_MESSAGE_LEN), Ok(None));
        assert_eq!(split(&header(23, 5), MAX_MESSAGE_LEN), Ok(None));
    }

    #[test]
    fn marker_not_all_ones_is_connection_not_synchronized() {
        let mut m = keepalive();
        m[3] = 0xfe;
        assert_eq!(split(&m, MAX_MESSAGE_LEN), Err(Notification::new(1, 1, [])));
    }

    #[test]
    fn length_below_19_is_bad_message_length_with_the_length_as_data() {
        assert_eq!(
            split(&header(18, 4), MAX_MESSAGE_LEN),
            Err(Notification::new(1, 2, [0, 18]))
        );
        assert_eq!(
            split(&header(0, 2), MAX_MESSAGE_LEN),
            Err(Notification::new(1, 2, [0, 0]))
        );
    }

    #[test]
    fn length_over_4096_is_bad_unless_extended_messages_were_negotiated() {
        assert_eq!(
            split(&header(4097, 2), MAX_MESSAGE_LEN),
            Err(Notification::new(1, 2, [0x10, 0x01]))
        );
        assert_eq!(split(&header(4097, 2), EXTENDED_MAX_MESSAGE_LEN), Ok(None));
    }

    #[test]
    fn unknown_type_is_bad_message_type_with_the_type_as_data() {
        assert_eq!(
            split(&header(19, 9), MAX_MESSAGE_LEN),
            Err(Notification::new(1, 3, [9]))
        );
    }

    #[test]
    fn length_that_does_not_fit_the_type_is_bad_message_length() {
        assert_eq!(
            split(&header(20, 4), MAX_MESSAGE_LEN),
            Err(Notification::new(1, 2, [0, 20]))
        );
        assert_eq!(
            split(&header(28, 1), MAX_MESSAGE_LEN),
            Err(Notification::new(1, 2, [0, 28]))
        );
        assert_eq!(
            split(&header(22, 2), MAX_MESSAGE_LEN),
            Err(Notification::new(1, 2, [0, 22]))
        );
        assert_eq!(
            split(&header(20, 3), MAX_MESSAGE_LEN),
            Err(Notification::new(1, 2, [0, 20]))
        );
        assert_eq!(
            split(&header(24, 5), MAX_MESSAGE_LEN),
            Err(Notification::new(1, 2, [0, 24]))
        );
    }

    #[test]
    fn framer_splits_a_stream_fed_in_arbitrary_pieces() {
        let rr = RouteRefresh {
            family: crate::prefix::AfiSafi::IPV6_UNICAST,
        }
        .encode();
        let stream: Vec<u8> = [keepalive(), rr.clone(), keepalive()].concat();
        let mut framer = Framer::new();
        let mut got = Vec::new();
        for chunk in stream.chunks(7) {
            framer.push(chunk);
            while let Some(m) = framer.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(
            got,
            vec![
                (MessageType::Keepalive, vec![]),
                (MessageType::RouteRefresh, vec![0, 2, 0, 1]),
                (MessageType::Keepalive, vec![])
            ]
        );
        assert_eq!(
            RouteRefresh::decode(&got[1].1).unwrap().family,
            crate::prefix::AfiSafi::IPV6_UNICAST
        );
    }
}
