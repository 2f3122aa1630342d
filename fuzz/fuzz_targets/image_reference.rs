//! `Reference::parse` (and the platform and media-type parsers, which take the same kind of
//! short user strings) on arbitrary strings: never panics; a parsed reference is canonical in
//! the sense that its `Display` parses back to an equal reference and prints the same; the
//! accessors agree with the printed form.
#![no_main]

use berth_core::image::labels;
use berth_core::image::{classify, Platform, Reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match Reference::parse(s) {
        Ok(r) => {
            let printed = r.to_string();
            let again = Reference::parse(&printed).expect("Display of a reference parses");
            assert_eq!(again, r, "{s:?} printed as {printed:?}");
            assert_eq!(again.to_string(), printed);
            assert!(
                r.tag().is_some() || r.digest().is_some(),
                "parse adds a default tag"
            );
            assert!(printed.starts_with(&r.name()));
            assert_eq!(r.name(), format!("{}/{}", r.domain(), r.path()));
            assert!(r.name().len() <= 255);
            assert!(!r.domain().is_empty() && !r.path().is_empty());
            assert!(!r.registry_host().is_empty());
            // the familiar form parses (to the same reference, bar upstream's known exception)
            let familiar = r.familiar();
            let _ = Reference::parse(&familiar);
            assert_eq!(r.docker_ref().digest(), r.digest());
            let _ = labels::distribution_source_key(&r);
            // the untagged form agrees
            let named = Reference::parse_named(s).expect("parse_named accepts what parse does");
            assert_eq!((named.domain(), named.path()), (r.domain(), r.path()));
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(Reference::parse_named(s).is_err());
        }
    }
    // platform specifiers and media types come from the same places (CLI flags, JSON)
    if let Ok(p) = Platform::parse(s) {
        let n = p.normalize();
        assert_eq!(n.normalize(), n, "normalising is idempotent");
        assert!(p.same_as(&n));
        let _ = p.to_string();
    }
    let _ = classify(s).map_err(|e| e.to_string());
});
