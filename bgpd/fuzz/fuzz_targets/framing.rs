//! Framing: a byte stream cut at arbitrary points into the framer, plus the
//! one-shot splitter, NOTIFICATION and ROUTE-REFRESH decoders.
#![no_main]

use bgpd::Notification;
use bgpd::wire::{self, Framer, HEADER_LEN, MAX_MESSAGE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::split(data, MAX_MESSAGE_LEN);
    let _ = Notification::decode(data);
    let _ = wire::RouteRefresh::decode(data);
    // The first byte picks where the stream is cut in two.
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut framer = Framer::new();
    for chunk in [&data[..cut], &data[cut..]] {
        framer.push(chunk);
        while let Ok(Some((_, body))) = framer.next_message() {
            assert!(body.len() + HEADER_LEN <= MAX_MESSAGE_LEN);
        }
    }
});
