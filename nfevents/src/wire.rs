//! Netlink framing for nfnetlink, both ways: the messages of a received
//! buffer ([`messages`]), their netfilter header and attributes
//! ([`Attrs`]), and requests built attribute by attribute ([`Request`]).
//! Decoding is panic-free on any bytes: a bad length is an [`Error`]
//! naming the byte offset.
//!
//! ```text
//! nlmsghdr (16) │ nfgenmsg (4): family, version, res_id │ attribute (len, type, value, pad to 4) …
//! ```

/// A decoding error, with the offset of the byte at fault in the buffer
/// (or message) decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("byte {offset}: {what} is {len} bytes, {available} left")]
    Truncated {
        offset: usize,
        what: &'static str,
        len: usize,
        available: usize,
    },
    #[error("byte {offset}: {what}")]
    Invalid { offset: usize, what: &'static str },
}

/// The netlink header's size.
pub const NLMSG_HDRLEN: usize = 16;
/// nfgenmsg's size.
pub const NFGENMSG_LEN: usize = 4;
/// Netlink's own message types.
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`, `NLM_F_ACK`, `NLM_F_DUMP` (`ROOT | MATCH`).
pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;
pub const NLM_F_DUMP: u16 = 0x300;
/// An attribute type's flag bits (nested, network byte order).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// One netlink message of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// Where it starts in the buffer, for errors.
    pub offset: usize,
    /// What follows the netlink header.
    pub body: &'a [u8],
}

impl<'a> Message<'a> {
    /// The nfnetlink subsystem (`kind >> 8`) and message (`kind & 0xff`).
    pub fn subsystem(&self) -> (u8, u8) {
        ((self.kind >> 8) as u8, self.kind as u8)
    }

    /// The netfilter header (family, resource ID: a group or queue number)
    /// and the attributes after it.
    pub fn netfilter(&self) -> Result<(u8, u16, Attrs<'a>), Error> {
        let Some(head) = self.body.get(..NFGENMSG_LEN) else {
            return Err(Error::Truncated {
                offset: self.offset + NLMSG_HDRLEN,
                what: "nfgenmsg",
                len: NFGENMSG_LEN,
                available: self.body.len(),
            });
        };
        let family = head[0];
        let res_id = u16::from_be_bytes([head[2], head[3]]);
        let attrs = Attrs {
            bytes: &self.body[NFGENMSG_LEN..],
            offset: self.offset + NLMSG_HDRLEN + NFGENMSG_LEN,
        };
        Ok((family, res_id, attrs))
    }

    /// For an `NLMSG_ERROR`: the errno (0 is an acknowledgement).
    pub fn error_code(&self) -> Option<i32> {
        let b = self.body.get(..4)?;
        Some(-i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn u32_ne(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

fn u16_ne(b: &[u8]) -> u16 {
    u16::from_ne_bytes([b[0], b[1]])
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The netlink messages of a received buffer, in order; a bad length ends
/// the iteration with an error.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<Message<'_>, Error>> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        if offset >= buf.len() {
            return None;
        }
        let rest = &buf[offset..];
        let result = (|| {
            let head = rest.get(..NLMSG_HDRLEN).ok_or(Error::Truncated {
                offset,
                what: "netlink header",
                len: NLMSG_HDRLEN,
                available: rest.len(),
            })?;
            let len = u32_ne(&head[0..4]) as usize;
            if len < NLMSG_HDRLEN {
                return Err(Error::Invalid {
                    offset,
                    what: "netlink message shorter than its header",
                });
            }
            let body = rest.get(NLMSG_HDRLEN..len).ok_or(Error::Truncated {
                offset,
                what: "netlink message",
                len,
                available: rest.len(),
            })?;
            Ok((
                Message {
                    kind: u16_ne(&head[4..6]),
                    flags: u16_ne(&head[6..8]),
                    seq: u32_ne(&head[8..12]),
                    offset,
                    body,
                },
                len,
            ))
        })();
        match result {
            Ok((message, len)) => {
                offset += align4(len);
                Some(Ok(message))
            }
            Err(e) => {
                offset = buf.len();
                Some(Err(e))
            }
        }
    })
}

/// A run of netlink attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs<'a> {
    bytes: &'a [u8],
    /// Where they start in the buffer, for errors.
    offset: usize,
}

/// One attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// The type, without the nested and byte-order flags.
    pub kind: u16,
    pub offset: usize,
    pub value: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The attributes nested in this one.
    pub fn nested(&self) -> Attrs<'a> {
        Attrs {
            bytes: self.value,
            offset: self.offset + 4,
        }
    }

    fn exact<const N: usize>(&self, what: &'static str) -> Result<[u8; N], Error> {
        self.value
            .get(..N)
            .and_then(|b| b.try_into().ok())
            .ok_or(Error::Truncated {
                offset: self.offset,
                what,
                len: N,
                available: self.value.len(),
            })
    }

    pub fn u8(&self, what: &'static str) -> Result<u8, Error> {
        Ok(self.exact::<1>(what)?[0])
    }

    /// A big-endian (network order) u16, as nfnetlink sends them.
    pub fn be16(&self, what: &'static str) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.exact(what)?))
    }

    pub fn be32(&self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.exact(what)?))
    }

    pub fn be64(&self, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.exact(what)?))
    }

    /// A NUL-terminated (or not) string, lossily decoded.
    pub fn string(&self) -> String {
        let bytes = self.value.split(|&b| b == 0).next().unwrap_or_default();
        String::from_utf8_lossy(bytes).into_owned()
    }
}

impl<'a> Attrs<'a> {
    /// An empty run (for messages without attributes).
    pub fn empty() -> Self {
        Attrs {
            bytes: &[],
            offset: 0,
        }
    }

    /// Every attribute, in order; a bad length ends it with an error.
    pub fn iter(&self) -> impl Iterator<Item = Result<Attr<'a>, Error>> + use<'a> {
        let (bytes, base) = (self.bytes, self.offset);
        let mut at = 0;
        std::iter::from_fn(move || {
            if at + 4 > bytes.len() {
                // Trailing padding shorter than a header is not an error.
                return None;
            }
            let offset = base + at;
            let len = u16_ne(&bytes[at..at + 2]) as usize;
            let kind = u16_ne(&bytes[at + 2..at + 4]) & NLA_TYPE_MASK;
            if len < 4 {
                at = bytes.len();
                return Some(Err(Error::Invalid {
                    offset,
                    what: "attribute shorter than its header",
                }));
            }
            let Some(value) = bytes.get(at + 4..at + len) else {
                let available = bytes.len() - at;
                at = bytes.len();
                return Some(Err(Error::Truncated {
                    offset,
                    what: "attribute",
                    len,
                    available,
                }));
            };
            at += align4(len);
            Some(Ok(Attr {
                kind,
                offset,
                value,
            }))
        })
    }

    /// Calls `f` with each attribute, stopping at the first error.
    pub fn each(&self, mut f: impl FnMut(Attr<'a>) -> Result<(), Error>) -> Result<(), Error> {
        for attr in self.iter() {
            f(attr?)?;
        }
        Ok(())
    }
}

/// An nfnetlink request, built attribute by attribute.
#[derive(Debug, Clone)]
pub struct Request {
    buf: Vec<u8>,
    /// Open nested attributes: where their headers are.
    open: Vec<usize>,
}

impl Request {
    /// A request of `kind` (subsystem << 8 | message) with `flags`, for
    /// `family` and resource `res_id`.
    pub fn new(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port ID: the kernel's
        buf.extend_from_slice(&[family, 0]); // version NFNETLINK_V0
        buf.extend_from_slice(&res_id.to_be_bytes());
        Request {
            buf,
            open: Vec::new(),
        }
    }

    /// Appends an attribute.
    pub fn attr(mut self, kind: u16, value: &[u8]) -> Self {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// Opens a nested attribute; [`Request::end_nested`] closes it.
    pub fn nested(mut self, kind: u16) -> Self {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | 0x8000).to_ne_bytes());
        self
    }

    pub fn end_nested(mut self) -> Self {
        if let Some(at) = self.open.pop() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The message's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_as_its_message_and_attributes() {
        let bytes = Request::new(0x0401, NLM_F_REQUEST | NLM_F_ACK, 7, 2, 9)
            .attr(1, &[1, 0, 0, 0])
            .nested(3)
            .attr(1, &5u32.to_be_bytes())
            .end_nested()
            .attr(10, b"abc\0")
            .finish();
        let all: Vec<_> = messages(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 1);
        let m = all[0];
        assert_eq!((m.subsystem(), m.seq, m.flags), ((4, 1), 7, 5));
        let (family, res_id, attrs) = m.netfilter().unwrap();
        assert_eq!((family, res_id), (2, 9));
        let attrs: Vec<Attr<'_>> = attrs.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(attrs.len(), 3);
        let inner: Vec<_> = attrs[1].nested().iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(inner[0].be32("x").unwrap(), 5);
        assert_eq!(attrs[2].string(), "abc");
    }

    #[test]
    fn bad_lengths_are_errors_naming_the_byte() {
        let mut bytes = Request::new(0x0400, 0, 0, 2, 0).attr(1, &[0; 8]).finish();
        // The attribute claims 40 bytes.
        bytes[20] = 40;
        let m = messages(&bytes).next().unwrap().unwrap();
        let err = m.netfilter().unwrap().2.iter().next().unwrap().unwrap_err();
        assert_eq!(
            err,
            Error::Truncated {
                offset: 20,
                what: "attribute",
                len: 40,
                available: 12
            }
        );
        let err = messages(&bytes[..10]).next().unwrap().unwrap_err();
        assert!(
            err.to_string().starts_with("byte 0: netlink header"),
            "{err}"
        );
    }

    #[test]
    fn no_bytes_make_the_decoder_panic() {
        // A fixed pseudo-random walk over lengths and contents.
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = (x % 96) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (x.rotate_left(i as u32) & 0xff) as u8)
                .collect();
            for m in messages(&bytes).flatten() {
                if let Ok((_, _, attrs)) = m.netfilter() {
                    for a in attrs.iter().flatten() {
                        let _ = a.nested().iter().count();
                        let _ = (a.be16("x"), a.be32("x"), a.be64("x"), a.string());
                    }
                }
            }
        }
    }
}
