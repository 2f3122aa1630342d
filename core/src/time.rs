//! Time as an input: the `Instant` newtype the driver hands to every machine.

use core::fmt;

/// A point in wall-clock time, in nanoseconds since the Unix epoch.
///
/// The core never reads a clock. The driver reads one and passes the value in with every input;
/// machines only compare and store it. A plain `u64` keeps it trivially copyable across the C ABI.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[repr(transparent)]
pub struct Instant(pub u64);

impl Instant {
    /// The Unix epoch.
    pub const EPOCH: Instant = Instant(0);

    /// Builds an instant from whole seconds and nanoseconds since the epoch.
    #[must_use]
    pub const fn from_secs_nanos(secs: u64, nanos: u32) -> Self {
        Instant(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(nanos as u64),
        )
    }

    /// Nanoseconds since the epoch.
    #[must_use]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch.
    #[must_use]
    pub const fn secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// The sub-second part, in nanoseconds.
    #[must_use]
    pub const fn subsec_nanos(self) -> u32 {
        (self.0 % 1_000_000_000) as u32
    }

    /// This instant plus `nanos`, saturating.
    #[must_use]
    pub const fn add_nanos(self, nanos: u64) -> Self {
        Instant(self.0.saturating_add(nanos))
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.secs(), self.subsec_nanos())
    }
}
