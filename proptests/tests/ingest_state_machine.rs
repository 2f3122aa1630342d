//! State-machine property test of the `Ingest` machine against its reference model, on the
//! in-memory fault-injecting host. See `berth_proptests::{model, harness}` for the commands and
//! the invariants checked after every step.

use berth_proptests::strategy::IngestSut;
use proptest::test_runner::Config;
use proptest_state_machine::prop_state_machine;

/// 2048 cases of up to 64 commands unless `PROPTEST_CASES` says otherwise (about 4 s in a
/// debug build). Commands that run into a known open core bug are not generated unless
/// `BERTH_KNOWN_BUGS=1` (see `model::KNOWN_CORE_BUGS` and `tests/core_bugs.rs`).
fn config() -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 2048;
    }
    config
}

prop_state_machine! {
    #![proptest_config(config())]

    #[test]
    fn ingest_matches_model(sequential 1..64 => IngestSut);
}
