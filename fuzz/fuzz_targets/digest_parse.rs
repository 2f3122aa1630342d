//! `Digest::parse` on arbitrary strings: never panics, and what parses is canonical: its
//! `Display` is the input itself and parses back to the same value.
#![no_main]

use berth_core::Digest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match Digest::parse(s) {
        Ok(d) => {
            let printed = d.to_string();
            assert_eq!(
                printed, s,
                "parsing is strict: only the canonical form parses"
            );
            assert_eq!(Digest::parse(&printed), Ok(d));
            assert_eq!(printed.parse::<Digest>(), Ok(d));
            assert_eq!(Digest::from_raw(d.algorithm(), d.raw()), Some(d));
            assert_eq!(format!("{}:{}", d.algorithm(), d.hex()), printed);
        }
        Err(e) => {
            // Error messages quote the input: they must not panic on any of it.
            let _ = e.to_string();
        }
    }
});
