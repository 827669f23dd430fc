//! [`CniError`]: every failure of a plugin, carrying the CNI error code the
//! spec assigns it (or one of ours, 100 and up) and a message naming the
//! field or value at fault; rendered as the spec's error JSON.

use serde::Serialize;

/// The error codes of CNI spec 1.0.0/1.1.0 we use, and ours (100+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    /// 1: the requested `cniVersion` is not one this plugin supports.
    IncompatibleVersion = 1,
    /// 4: a required environment variable is missing or invalid.
    InvalidEnv = 4,
    /// 6: stdin is not decodable (not JSON, or a result that cannot be read).
    Decode = 6,
    /// 7: the network configuration does not validate.
    InvalidConfig = 7,
    /// 11: a transient failure (datastore conflicts); the runtime may retry.
    TryAgain = 11,
    /// 50 (1.1 STATUS): the plugin cannot serve requests now.
    NotAvailable = 50,
    /// 100: a kernel (netlink) operation failed.
    Netlink = 100,
    /// 101: the datastore failed or refused a write.
    Datastore = 101,
    /// 102: IPAM could not assign or release addresses.
    Ipam = 102,
    /// 103: the delegated IPAM plugin could not be run or failed.
    IpamPlugin = 103,
    /// 104: CHECK found the container's networking not as ADD left it.
    CheckFailed = 104,
    /// 105: ADD for a container that already has an endpoint.
    AlreadyAdded = 105,
}

/// A failure, as the runtime will see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", details.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: Option<String>,
}

impl CniError {
    /// An error with `code` and a message.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code: code as u32,
            msg: msg.into(),
            details: None,
        }
    }

    /// An error with details (the underlying cause).
    pub fn with_details(code: Code, msg: impl Into<String>, details: impl ToString) -> Self {
        Self {
            code: code as u32,
            msg: msg.into(),
            details: Some(details.to_string()),
        }
    }

    /// A configuration error naming the field at fault.
    pub fn config(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(Code::InvalidConfig, format!("{field}: {problem}"))
    }

    /// A missing or bad environment variable.
    pub fn env(var: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(Code::InvalidEnv, format!("{var}: {problem}"))
    }

    /// The error JSON of the spec, for the given `cniVersion`.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            details: Option<&'a str>,
        }
        serde_json::to_value(Out {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: self.details.as_deref(),
        })
        .expect("the error JSON serialises")
    }
}

impl From<datastore::Error> for CniError {
    fn from(e: datastore::Error) -> Self {
        let code = match e {
            datastore::Error::Conflict { .. } => Code::TryAgain,
            datastore::Error::Config { .. } => Code::InvalidConfig,
            _ => Code::Datastore,
        };
        CniError::new(code, e.to_string())
    }
}

impl From<datastore::ipam::IpamError> for CniError {
    fn from(e: datastore::ipam::IpamError) -> Self {
        use datastore::ipam::IpamError;
        let code = match &e {
            IpamError::TooManyConflicts { .. } => Code::TryAgain,
            IpamError::Datastore(_) => Code::Datastore,
            _ => Code::Ipam,
        };
        CniError::new(code, e.to_string())
    }
}

/// Result alias of this crate.
pub type Result<T, E = CniError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_carries_version_code_message_and_details() {
        let e = CniError::with_details(Code::Ipam, "no address", "pool 10.0.0.0/30 full");
        assert_eq!(
            e.to_json("1.0.0"),
            serde_json::json!({"cniVersion": "1.0.0", "code": 102, "msg": "no address", "details": "pool 10.0.0.0/30 full"})
        );
        let plain = CniError::config("ipam.type", "is required").to_json("1.0.0");
        assert_eq!(plain["code"], 7);
        assert!(plain.get("details").is_none());
    }
}
