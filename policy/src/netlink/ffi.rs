//! Owned handles over libnftnl objects (`nftnl-sys`): allocate, set
//! attributes from byte slices, hand over to a parent, build a netlink payload,
//! free on drop. This is the only module with `unsafe` code in the netlink path
//! besides the socket calls in [`batch`](super::batch); every item that needs
//! it is as small as it can be and says why it is sound.

use std::ffi::{CString, c_char, c_void};
use std::ptr::NonNull;

use nftnl_sys as sys;

/// Turns a string into the NUL-terminated bytes libnftnl copies with
/// `strdup`. Interior NULs are cut at the first one (names from the IR have
/// none; comments were escaped by the compiler).
pub fn strz(s: &str) -> CString {
    let cut = s.split('\0').next().unwrap_or_default();
    CString::new(cut).unwrap_or_default()
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident, $raw:ty, $alloc:path, $free:path, $set:path) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(NonNull<$raw>);

        impl $name {
            /// A fresh, empty object. Aborts like any Rust allocation when
            /// memory runs out.
            #[allow(unsafe_code)]
            pub fn new() -> Self {
                // SAFETY: the allocator takes no arguments and returns an owned
                // object or NULL, which we check.
                let raw = unsafe { $alloc() };
                $name(NonNull::new(raw).expect("libnftnl allocation failed"))
            }

            /// Sets attribute `attr` to a copy of `data`.
            #[allow(unsafe_code)]
            pub fn set(&mut self, attr: u32, data: &[u8]) -> &mut Self {
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                // SAFETY: the object is live and owned; libnftnl copies `len`
                // bytes out of `data`, which is valid for that long.
                unsafe {
                    $set(self.0.as_ptr(), attr as u16, data.as_ptr().cast::<c_void>(), len);
                }
                self
            }

            /// Sets attribute `attr` to a native-endian `u32`.
            pub fn set_u32(&mut self, attr: u32, value: u32) -> &mut Self {
                self.set(attr, &value.to_ne_bytes())
            }

            /// Sets a string attribute (libnftnl copies it up to its NUL).
            pub fn set_str(&mut self, attr: u32, value: &str) -> &mut Self {
                self.set(attr, strz(value).as_bytes_with_nul())
            }

            #[allow(dead_code)]
            fn as_ptr(&self) -> *mut $raw {
                self.0.as_ptr()
            }

            /// Gives up ownership to a parent object that frees it.
            #[allow(dead_code)]
            fn into_raw(self) -> *mut $raw {
                let raw = self.0.as_ptr();
                std::mem::forget(self);
                raw
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::new()
            }
        }

        impl Drop for $name {
            #[allow(unsafe_code)]
            fn drop(&mut self) {
                // SAFETY: we own the object and nothing else refers to it.
                unsafe { $free(self.0.as_ptr()) }
            }
        }
    };
}

handle!(
    /// `struct nftnl_table`.
    Table, sys::nftnl_table, sys::nftnl_table_alloc, sys::nftnl_table_free, sys::nftnl_table_set_data
);
handle!(
    /// `struct nftnl_chain`.
    Chain, sys::nftnl_chain, sys::nftnl_chain_alloc, sys::nftnl_chain_free, sys::nftnl_chain_set_data
);
handle!(
    /// `struct nftnl_rule`.
    Rule, sys::nftnl_rule, sys::nftnl_rule_alloc, sys::nftnl_rule_free, sys::nftnl_rule_set_data
);
handle!(
    /// `struct nftnl_set`.
    Set, sys::nftnl_set, sys::nftnl_set_alloc, sys::nftnl_set_free, sys::nftnl_set_set_data
);
handle!(
    /// `struct nftnl_set_elem`.
    Elem, sys::nftnl_set_elem, sys::nftnl_set_elem_alloc, sys::nftnl_set_elem_free, sys::nftnl_set_elem_set
);

/// `struct nftnl_expr` of one kind (`"cmp"`, `"lookup"`, ...).
#[derive(Debug)]
pub struct Expr(NonNull<sys::nftnl_expr>);

impl Expr {
    /// A fresh expression of kind `name`.
    #[allow(unsafe_code)]
    pub fn new(name: &str) -> Self {
        let name = strz(name);
        // SAFETY: `name` is NUL-terminated and outlives the call; the result
        // is owned or NULL, which we check.
        let raw = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
        Expr(NonNull::new(raw).expect("libnftnl allocation failed"))
    }

    /// Sets attribute `attr` to a copy of `data`.
    #[allow(unsafe_code)]
    pub fn set(&mut self, attr: u32, data: &[u8]) -> &mut Self {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        // SAFETY: the expression is live and owned; `data` is valid for `len` bytes.
        unsafe {
            sys::nftnl_expr_set(self.0.as_ptr(), attr as u16, data.as_ptr().cast(), len);
        }
        self
    }

    /// Sets a native-endian `u32` attribute.
    pub fn set_u32(&mut self, attr: u32, value: u32) -> &mut Self {
        self.set(attr, &value.to_ne_bytes())
    }

    /// Sets a string attribute.
    pub fn set_str(&mut self, attr: u32, value: &str) -> &mut Self {
        self.set(attr, strz(value).as_bytes_with_nul())
    }
}

impl Drop for Expr {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: we own the expression and nothing else refers to it.
        unsafe { sys::nftnl_expr_free(self.0.as_ptr()) }
    }
}

impl Rule {
    /// Appends an expression; the rule owns it from now on.
    #[allow(unsafe_code)]
    pub fn add_expr(&mut self, expr: Expr) {
        let raw = expr.0.as_ptr();
        std::mem::forget(expr);
        // SAFETY: both are live; the rule takes ownership of `raw`.
        unsafe { sys::nftnl_rule_add_expr(self.as_ptr(), raw) }
    }
}

impl Set {
    /// Appends an element; the set owns it from now on.
    #[allow(unsafe_code)]
    pub fn add_elem(&mut self, elem: Elem) {
        // SAFETY: both are live; the set takes ownership of the element.
        unsafe { sys::nftnl_set_elem_add(self.as_ptr(), elem.into_raw()) }
    }
}

/// What a netlink message carries: the object and how libnftnl writes it.
#[derive(Debug)]
pub enum Payload<'a> {
    Table(&'a Table),
    Chain(&'a Chain),
    Rule(&'a Rule),
    Set(&'a Set),
    /// The elements of a set (`NEWSETELEM`/`DELSETELEM`).
    Elems(&'a Set),
}

/// Bytes that one netlink message may take at most in the batch buffer: the
/// batch keeps this much room free before writing a message, and element
/// messages are cut well below it.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Writes one netlink message (header + payload) at the start of `buf` and
/// returns its length.
#[allow(unsafe_code)]
pub fn write_message(
    buf: &mut [u8],
    msg_type: u16,
    family: u16,
    flags: u16,
    seq: u32,
    payload: &Payload<'_>,
) -> usize {
    assert!(buf.len() >= MAX_MESSAGE, "batch buffer without headroom");
    let at = buf.as_mut_ptr().cast::<c_char>();
    // SAFETY: `buf` has MAX_MESSAGE writable bytes, more than any message we
    // build (element lists are chunked, rules are small); the objects are live.
    unsafe {
        let nlh = sys::nftnl_nlmsg_build_hdr(at, msg_type, family, flags, seq);
        match payload {
            Payload::Table(t) => sys::nftnl_table_nlmsg_build_payload(nlh, t.as_ptr()),
            Payload::Chain(c) => sys::nftnl_chain_nlmsg_build_payload(nlh, c.as_ptr()),
            Payload::Rule(r) => sys::nftnl_rule_nlmsg_build_payload(nlh, r.as_ptr()),
            Payload::Set(s) => sys::nftnl_set_nlmsg_build_payload(nlh, s.as_ptr()),
            Payload::Elems(s) => sys::nftnl_set_elems_nlmsg_build_payload(nlh, s.as_ptr()),
        }
    }
    message_len(buf)
}

/// Writes the batch begin (`end == false`) or end message for nf_tables.
#[allow(unsafe_code)]
pub fn write_batch_marker(buf: &mut [u8], seq: u32, end: bool) -> usize {
    assert!(buf.len() >= MAX_MESSAGE, "batch buffer without headroom");
    let at = buf.as_mut_ptr().cast::<c_char>();
    // SAFETY: `buf` has room for the 20-byte message.
    unsafe {
        if end {
            sys::nftnl_batch_end(at, seq);
        } else {
            sys::nftnl_batch_begin(at, seq);
        }
    }
    message_len(buf)
}

/// `nlmsg_len` of the message at the start of `buf`, rounded up to 4.
fn message_len(buf: &[u8]) -> usize {
    let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    len.next_multiple_of(4)
}
