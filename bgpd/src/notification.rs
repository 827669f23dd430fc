//! The NOTIFICATION message (RFC 4271 §4.5) and the names of its error codes
//! and subcodes (RFC 4271 §4.5, RFC 4486 / RFC 8203 Cease, RFC 6608 FSM,
//! RFC 7313 ROUTE-REFRESH).
//!
//! Every decoder of this crate fails with a [`Notification`]: the error *is*
//! the message the session sends before closing, so the code and subcode are
//! chosen where the fault is found and never guessed later.

/// Error codes (RFC 4271 §4.5).
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;
}

/// Message Header Error subcodes (RFC 4271 §6.1).
pub mod header {
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// OPEN Message Error subcodes (RFC 4271 §6.2, RFC 5492 §5).
pub mod open {
    pub const UNSPECIFIC: u8 = 0;
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
}

/// UPDATE Message Error subcodes (RFC 4271 §6.3).
pub mod update {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Finite State Machine Error subcodes (RFC 6608).
pub mod fsm {
    pub const UNSPECIFIED: u8 = 0;
    pub const UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    pub const UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
}

/// Cease subcodes (RFC 4486, RFC 8203).
pub mod cease {
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
}

/// A NOTIFICATION: error code, subcode and data (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{} / {} ({}/{}){}", code_name(self.code), subcode_name(self.code, self.subcode), self.code, self.subcode, DataHex(&self.data))]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

struct DataHex<'a>(&'a [u8]);

impl std::fmt::Display for DataHex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str(", data ")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Notification {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// The body of the NOTIFICATION message (without the 19-byte header).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.data.len());
        out.push(self.code);
        out.push(self.subcode);
        out.extend_from_slice(&self.data);
        out
    }

    /// The full NOTIFICATION message, data truncated to fit `max_len`
    /// (RFC 4271 §4.5 lets the data be cut; sending nothing would be worse).
    pub fn encode(&self, max_len: usize) -> Vec<u8> {
        let mut body = self.encode_body();
        body.truncate(max_len.saturating_sub(crate::wire::HEADER_LEN));
        crate::wire::encode_message(crate::wire::MessageType::Notification, &body)
    }

    /// Decodes a NOTIFICATION body. The framing layer has already checked the
    /// minimum length of 21, so a short body is reported as a bad length.
    pub fn decode(body: &[u8]) -> Result<Self, Notification> {
        match body {
            [code, subcode, data @ ..] => Ok(Notification::new(*code, *subcode, data)),
            _ => Err(Notification::new(
                code::MESSAGE_HEADER,
                header::BAD_MESSAGE_LENGTH,
                u16::try_from(body.len() + crate::wire::HEADER_LEN)
                    .unwrap_or(u16::MAX)
                    .to_be_bytes(),
            )),
        }
    }

    /// The Administrative Shutdown / Reset communication (RFC 8203 §2), when
    /// this is such a Cease and its data is well formed.
    pub fn shutdown_communication(&self) -> Option<String> {
        if self.code != code::CEASE
            || !matches!(
                self.subcode,
                cease::ADMINISTRATIVE_SHUTDOWN | cease::ADMINISTRATIVE_RESET
            )
        {
            return None;
        }
        let (&len, text) = self.data.split_first()?;
        let text = text.get(..usize::from(len))?;
        std::str::from_utf8(text).ok().map(str::to_owned)
    }
}

/// The name of an error code (RFC 4271 §4.5 and the IANA registry).
pub fn code_name(c: u8) -> &'static str {
    match c {
        code::MESSAGE_HEADER => "Message Header Error",
        code::OPEN_MESSAGE => "OPEN Message Error",
        code::UPDATE_MESSAGE => "UPDATE Message Error",
        code::HOLD_TIMER_EXPIRED => "Hold Timer Expired",
        code::FSM => "Finite State Machine Error",
        code::CEASE => "Cease",
        code::ROUTE_REFRESH => "ROUTE-REFRESH Message Error",
        _ => "Unknown error code",
    }
}

/// The name of a subcode within its code.
pub fn subcode_name(c: u8, s: u8) -> &'static str {
    match (c, s) {
        (code::MESSAGE_HEADER, header::CONNECTION_NOT_SYNCHRONIZED) => {
            "Connection Not Synchronized"
        }
        (code::MESSAGE_HEADER, header::BAD_MESSAGE_LENGTH) => "Bad Message Length",
        (code::MESSAGE_HEADER, header::BAD_MESSAGE_TYPE) => "Bad Message Type",
        (code::OPEN_MESSAGE, open::UNSUPPORTED_VERSION) => "Unsupported Version Number",
        (code::OPEN_MESSAGE, open::BAD_PEER_AS) => "Bad Peer AS",
        (code::OPEN_MESSAGE, open::BAD_BGP_IDENTIFIER) => "Bad BGP Identifier",
        (code::OPEN_MESSAGE, open::UNSUPPORTED_OPTIONAL_PARAMETER) => {
            "Unsupported Optional Parameter"
        }
        (code::OPEN_MESSAGE, open::UNACCEPTABLE_HOLD_TIME) => "Unacceptable Hold Time",
        (code::OPEN_MESSAGE, open::UNSUPPORTED_CAPABILITY) => "Unsupported Capability",
        (code::UPDATE_MESSAGE, update::MALFORMED_ATTRIBUTE_LIST) => "Malformed Attribute List",
        (code::UPDATE_MESSAGE, update::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE) => {
            "Unrecognized Well-known Attribute"
        }
        (code::UPDATE_MESSAGE, update::MISSING_WELL_KNOWN_ATTRIBUTE) => {
            "Missing Well-known Attribute"
        }
        (code::UPDATE_MESSAGE, update::ATTRIBUTE_FLAGS_ERROR) => "Attribute Flags Error",
        (code::UPDATE_MESSAGE, update::ATTRIBUTE_LENGTH_ERROR) => "Attribute Length Error",
        (code::UPDATE_MESSAGE, update::INVALID_ORIGIN_ATTRIBUTE) => "Invalid ORIGIN Attribute",
        (code::UPDATE_MESSAGE, update::INVALID_NEXT_HOP_ATTRIBUTE) => "Invalid NEXT_HOP Attribute",
        (code::UPDATE_MESSAGE, update::OPTIONAL_ATTRIBUTE_ERROR) => "Optional Attribute Error",
        (code::UPDATE_MESSAGE, update::INVALID_NETWORK_FIELD) => "Invalid Network Field",
        (code::UPDATE_MESSAGE, update::MALFORMED_AS_PATH) => "Malformed AS_PATH",
        (code::FSM, fsm::UNEXPECTED_IN_OPEN_SENT) => "Receive Unexpected Message in OpenSent State",
        (code::FSM, fsm::UNEXPECTED_IN_OPEN_CONFIRM) => {
            "Receive Unexpected Message in OpenConfirm State"
        }
        (code::FSM, fsm::UNEXPECTED_IN_ESTABLISHED) => {
            "Receive Unexpected Message in Established State"
        }
        (code::CEASE, cease::MAX_PREFIXES) => "Maximum Number of Prefixes Reached",
        (code::CEASE, cease::ADMINISTRATIVE_SHUTDOWN) => "Administrative Shutdown",
        (code::CEASE, cease::PEER_DECONFIGURED) => "Peer De-configured",
        (code::CEASE, cease::ADMINISTRATIVE_RESET) => "Administrative Reset",
        (code::CEASE, cease::CONNECTION_REJECTED) => "Connection Rejected",
        (code::CEASE, cease::OTHER_CONFIGURATION_CHANGE) => "Other Configuration Change",
        (code::CEASE, cease::CONNECTION_COLLISION_RESOLUTION) => "Connection Collision Resolution",
        (code::CEASE, cease::OUT_OF_RESOURCES) => "Out of Resources",
        (_, 0) => "Unspecific",
        _ => "Unknown subcode",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_body_round_trips() {
        let n = Notification::new(
            code::UPDATE_MESSAGE,
            update::ATTRIBUTE_LENGTH_ERROR,
            [3, 5, 1, 2, 3, 4, 5],
        );
        assert_eq!(n.encode_body(), [3, 5, 3, 5, 1, 2, 3, 4, 5]);
        assert_eq!(Notification::decode(&n.encode_body()), Ok(n));
    }

    #[test]
    fn display_names_code_and_subcode_and_shows_data_in_hex() {
        let n = Notification::new(
            code::MESSAGE_HEADER,
            header::BAD_MESSAGE_LENGTH,
            [0x00, 0x12],
        );
        assert_eq!(
            n.to_string(),
            "Message Header Error / Bad Message Length (1/2), data 0012"
        );
    }

    #[test]
    fn body_shorter_than_two_bytes_is_a_bad_length() {
        let err = Notification::decode(&[6]).unwrap_err();
        assert_eq!((err.code, err.subcode, err.data), (1, 2, vec![0, 20]));
    }

    #[test]
    fn shutdown_communication_is_read_from_cease_data() {
        let n = Notification::new(code::CEASE, cease::ADMINISTRATIVE_SHUTDOWN, *b"\x05maint");
        assert_eq!(n.shutdown_communication().as_deref(), Some("maint"));
        let overlong =
            Notification::new(code::CEASE, cease::ADMINISTRATIVE_SHUTDOWN, *b"\x09maint");
        assert_eq!(overlong.shutdown_communication(), None);
    }

    #[test]
    fn encode_truncates_data_to_the_maximum_message_size() {
        let n = Notification::new(
            code::UPDATE_MESSAGE,
            update::MALFORMED_ATTRIBUTE_LIST,
            vec![0xab; 5000],
        );
        assert_eq!(n.encode(4096).len(), 4096);
    }
}
