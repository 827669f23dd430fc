//! OPEN and capability decoding, and negotiation against a fixed local OPEN.
#![no_main]

use std::net::Ipv4Addr;

use bgpd::capability::{self, Capability};
use bgpd::open::{self, Open};
use bgpd::prefix::AfiSafi;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = capability::decode_list(data);
    if let Ok(remote) = Open::decode(data) {
        let local = Open::new(
            65001,
            90,
            Ipv4Addr::new(10, 0, 0, 1),
            vec![
                Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
                Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
                Capability::RouteRefresh,
                Capability::FourOctetAs(65001),
            ],
        );
        let _ = open::negotiate(&local, &remote, remote.asn());
        // What we decoded, we can encode.
        let _ = remote.encode();
    }
});
