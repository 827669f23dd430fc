//! UPDATE validation (RFC 7606) under each decoding context, and
//! re-encoding whatever was accepted.
#![no_main]

use bgpd::attr::DecodeContext;
use bgpd::prefix::AfiSafi;
use bgpd::update::Update;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the session's negotiated parameters.
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let mut families = vec![AfiSafi::IPV4_UNICAST];
    if flags & 4 != 0 {
        families.push(AfiSafi::IPV6_UNICAST);
    }
    let ctx = DecodeContext {
        four_octet_as: flags & 1 != 0,
        ibgp: flags & 2 != 0,
        families,
    };
    if let Ok(update) = Update::decode(body, &ctx) {
        let _ = update.withdrawals();
        let _ = update.announcements();
    }
});
