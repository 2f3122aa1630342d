//! Platforms (`linux/arm64/v8`): parsing, normalisation and matching as containerd 1.6's
//! `platforms` package does them, and the choice of manifests from an index.
//!
//! * [`Platform::parse`] reads a specifier as `platforms.Parse` does, quirks included:
//!   `linux/arm` and `linux/armhf` parse without a variant, `linux/arm64` without one and
//!   `linux/arm64/v8` with `v8`. Matching normalises, so these are all the same platform.
//! * [`Platform::normalize`] is `platforms.Normalize`: `aarch64`→`arm64` (variant `v8`/`8` →
//!   none), `x86_64`/`x86-64`→`amd64`, `i386`→`386`, `armhf`→`arm/v7`, `armel`→`arm/v6`, `arm`
//!   without variant → `arm/v7`, `macos`→`darwin`, lowercase everywhere. Matching compares
//!   normalised os, architecture and variant.
//! * [`Matcher::only`] is `platforms.Only`: the platform itself, then what it can also run, best
//!   first: `amd64` also runs `386` (and `amd64/v3` runs `v2`, `v1`); `arm/v7` runs `v6`, `v5`;
//!   `arm64` runs `arm/v8` down to `arm/v5`.
//!
//! berth runs on Linux only, so an empty OS normalises to `linux` where Go would use the OS it
//! was built for; and a one-element specifier (`arm64`, `linux`) needs the host platform
//! passed in ([`Platform::parse_with_host`]) where Go reads its own build target.

use core::fmt;

use super::manifest::Descriptor;

/// The OS an empty OS field stands for.
pub const DEFAULT_OS: &str = "linux";

/// A platform: what an image manifest was built for, or what a host runs.
///
/// Empty strings stand for absent fields, as in the OCI JSON and in Go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, …; GOARCH values).
    pub architecture: String,
    /// Operating system (`linux`, `windows`, …; GOOS values).
    pub os: String,
    /// OS version (Windows).
    #[serde(rename = "os.version", skip_serializing_if = "String::is_empty")]
    pub os_version: String,
    /// Required OS features (Windows).
    #[serde(rename = "os.features", skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// CPU variant (`v7`, `v8`, …).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// Why a platform specifier does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The specifier holds `*`.
    #[error("{specifier:?}: wildcards not yet supported")]
    Wildcard {
        /// The specifier (first 100 characters).
        specifier: String,
    },
    /// A `/`-separated component is empty or has characters outside `[A-Za-z0-9_-]`.
    #[error(
        "{component:?} is an invalid component of {specifier:?}: platform specifier component \
         must match ^[A-Za-z0-9_-]+$"
    )]
    Component {
        /// The specifier (first 100 characters).
        specifier: String,
        /// The component (first 100 characters).
        component: String,
    },
    /// More than three components.
    #[error("{specifier:?}: cannot parse platform specifier (expected os/arch[/variant])")]
    TooManyComponents {
        /// The specifier (first 100 characters).
        specifier: String,
    },
    /// A single component that is neither a known OS nor a known architecture.
    #[error("{specifier:?}: unknown operating system or architecture")]
    UnknownOsOrArch {
        /// The specifier.
        specifier: String,
    },
    /// A single component was given where no host platform can fill in the rest.
    #[error("{specifier:?}: a one-element platform needs the host platform; give os/arch")]
    NeedsHost {
        /// The specifier.
        specifier: String,
    },
}

fn shown(s: &str) -> String {
    s.chars().take(100).collect()
}

impl Platform {
    /// A platform of `os` and `architecture`, without variant.
    #[must_use]
    pub fn new(os: &str, architecture: &str) -> Self {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            ..Platform::default()
        }
    }

    /// This platform with `variant`.
    #[must_use]
    pub fn with_variant(mut self, variant: &str) -> Self {
        self.variant = variant.to_owned();
        self
    }

    /// Parses `os/arch[/variant]` as containerd's `platforms.Parse`. A one-element specifier
    /// gives [`PlatformError::NeedsHost`]; see [`Platform::parse_with_host`].
    ///
    /// ```
    /// use berth_core::image::Platform;
    ///
    /// let p = Platform::parse("linux/aarch64/8").unwrap();
    /// assert_eq!(p.to_string(), "linux/arm64/v8");
    /// assert_eq!(p.normalize().to_string(), "linux/arm64");
    /// ```
    pub fn parse(specifier: &str) -> Result<Self, PlatformError> {
        Self::parse_inner(specifier, None)
    }

    /// Parses as [`Platform::parse`], filling a one-element specifier from `host` as Go fills
    /// it from its build target: a known OS (`linux`) takes the host's architecture (and its
    /// variant if the host is `arm` but not `v7`); a known architecture (`arm64`) takes the
    /// host's OS.
    pub fn parse_with_host(specifier: &str, host: &Platform) -> Result<Self, PlatformError> {
        Self::parse_inner(specifier, Some(host))
    }

    fn parse_inner(specifier: &str, host: Option<&Platform>) -> Result<Self, PlatformError> {
        if specifier.contains('*') {
            return Err(PlatformError::Wildcard {
                specifier: shown(specifier),
            });
        }
        let parts: Vec<&str> = specifier.split('/').collect();
        for part in &parts {
            let ok = !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(PlatformError::Component {
                    specifier: shown(specifier),
                    component: shown(part),
                });
            }
        }
        let mut p = Platform::default();
        match parts[..] {
            [one] => {
                let Some(host) = host else {
                    return Err(PlatformError::NeedsHost {
                        specifier: specifier.to_owned(),
                    });
                };
                p.os = normalize_os(one);
                if is_known_os(&p.os) {
                    p.architecture = host.architecture.clone();
                    if p.architecture == "arm" && host.variant != "v7" {
                        p.variant = host.variant.clone();
                    }
                    return Ok(p);
                }
                (p.architecture, p.variant) = normalize_arch(one, "");
                if p.architecture == "arm" && p.variant == "v7" {
                    p.variant.clear();
                }
                if is_known_arch(&p.architecture) {
                    p.os = host.os.clone();
                    return Ok(p);
                }
                Err(PlatformError::UnknownOsOrArch {
                    specifier: specifier.to_owned(),
                })
            }
            [os, arch] => {
                p.os = normalize_os(os);
                (p.architecture, p.variant) = normalize_arch(arch, "");
                if p.architecture == "arm" && p.variant == "v7" {
                    p.variant.clear();
                }
                Ok(p)
            }
            [os, arch, variant] => {
                p.os = normalize_os(os);
                (p.architecture, p.variant) = normalize_arch(arch, variant);
                if p.architecture == "arm64" && p.variant.is_empty() {
                    p.variant = "v8".to_owned();
                }
                Ok(p)
            }
            _ => Err(PlatformError::TooManyComponents {
                specifier: shown(specifier),
            }),
        }
    }

    /// The canonical form containerd compares (`platforms.Normalize`); OS version and features
    /// are kept.
    #[must_use]
    pub fn normalize(&self) -> Platform {
        let (architecture, variant) = normalize_arch(&self.architecture, &self.variant);
        Platform {
            os: normalize_os(&self.os),
            architecture,
            variant,
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
        }
    }

    /// True if both normalise to the same os, architecture and variant (containerd's
    /// `NewMatcher(self).Match(other)`).
    #[must_use]
    pub fn same_as(&self, other: &Platform) -> bool {
        let a = self.normalize();
        let b = other.normalize();
        a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
    }
}

impl fmt::Display for Platform {
    /// containerd's `platforms.Format`: `os/arch[/variant]`, or `unknown` without an OS.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.os.is_empty() {
            return f.write_str("unknown");
        }
        f.write_str(&self.os)?;
        for part in [&self.architecture, &self.variant] {
            if !part.is_empty() {
                write!(f, "/{part}")?;
            }
        }
        Ok(())
    }
}

fn normalize_os(os: &str) -> String {
    if os.is_empty() {
        return DEFAULT_OS.to_owned();
    }
    let os = os.to_lowercase();
    if os == "macos" {
        "darwin".to_owned()
    } else {
        os
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_lowercase();
    let variant = variant.to_lowercase();
    let (a, v): (&str, String) = match arch.as_str() {
        "i386" => ("386", String::new()),
        "x86_64" | "x86-64" => ("amd64", String::new()),
        "aarch64" | "arm64" => match variant.as_str() {
            "8" | "v8" => ("arm64", String::new()),
            _ => ("arm64", variant),
        },
        "armhf" => ("arm", "v7".to_owned()),
        "armel" => ("arm", "v6".to_owned()),
        "arm" => match variant.as_str() {
            "" | "7" => ("arm", "v7".to_owned()),
            "5" | "6" | "8" => ("arm", format!("v{variant}")),
            _ => ("arm", variant),
        },
        _ => return (arch, variant),
    };
    (a.to_owned(), v)
}

fn is_known_os(os: &str) -> bool {
    matches!(
        os,
        "aix"
            | "android"
            | "darwin"
            | "dragonfly"
            | "freebsd"
            | "hurd"
            | "illumos"
            | "ios"
            | "js"
            | "linux"
            | "nacl"
            | "netbsd"
            | "openbsd"
            | "plan9"
            | "solaris"
            | "windows"
            | "zos"
    )
}

fn is_known_arch(arch: &str) -> bool {
    matches!(
        arch,
        "386"
            | "amd64"
            | "amd64p32"
            | "arm"
            | "armbe"
            | "arm64"
            | "arm64be"
            | "loong64"
            | "mips"
            | "mipsle"
            | "mips64"
            | "mips64le"
            | "mips64p32"
            | "mips64p32le"
            | "ppc"
            | "ppc64"
            | "ppc64le"
            | "riscv"
            | "riscv64"
            | "s390"
            | "s390x"
            | "sparc"
            | "sparc64"
            | "wasm"
    )
}

/// containerd's `platformVector`: `p` (normalised) and the platforms it can also run, best
/// first.
fn platform_vector(p: Platform) -> Vec<Platform> {
    let sibling = |architecture: &str, variant: String| Platform {
        architecture: architecture.to_owned(),
        os: p.os.clone(),
        os_version: p.os_version.clone(),
        os_features: p.os_features.clone(),
        variant,
    };
    let version = |v: &str| v.strip_prefix('v').unwrap_or(v).parse::<u32>().ok();
    let mut vector = Vec::new();
    match p.architecture.as_str() {
        "amd64" => {
            if let Some(n) = version(&p.variant).filter(|&n| n > 1) {
                vector.extend((1..n).rev().map(|n| sibling("amd64", format!("v{n}"))));
            }
            vector.push(sibling("386", String::new()));
        }
        "arm" => {
            if let Some(n) = version(&p.variant).filter(|&n| n > 5) {
                vector.extend((5..n).rev().map(|n| sibling("arm", format!("v{n}"))));
            }
        }
        "arm64" => {
            let variant = if p.variant.is_empty() {
                "v8".to_owned()
            } else {
                p.variant.clone()
            };
            vector.extend(platform_vector(sibling("arm", variant)));
        }
        _ => {}
    }
    vector.insert(0, p);
    vector
}

/// Which platforms to take, and which to prefer: containerd's `MatchComparer`s.
///
/// Platforms given to a constructor are normalised once, as `NewMatcher` does.
///
/// ```
/// use berth_core::image::{Matcher, Platform};
///
/// let host = Matcher::only(&Platform::parse("linux/arm/v7").unwrap());
/// assert!(host.matches(&Platform::new("linux", "arm").with_variant("v6")));
/// assert!(!host.matches(&Platform::new("linux", "arm").with_variant("v8")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Matcher {
    /// Every platform, none preferred (`platforms.All`; `--all-platforms`).
    All,
    /// Any of these, the earlier preferred (`platforms.Ordered`).
    Ordered(Vec<Platform>),
    /// Any of these, none preferred among them (`platforms.Any`).
    Any(Vec<Platform>),
}

impl Matcher {
    /// `platforms.Only`: `platform` and what it can also run, best first.
    #[must_use]
    pub fn only(platform: &Platform) -> Self {
        Matcher::Ordered(platform_vector(platform.normalize()))
    }

    /// `platforms.OnlyStrict`: exactly `platform` (after normalisation).
    #[must_use]
    pub fn only_strict(platform: &Platform) -> Self {
        Matcher::Ordered(vec![platform.normalize()])
    }

    /// `platforms.Ordered`: any of `platforms`, the earlier preferred.
    #[must_use]
    pub fn ordered(platforms: &[Platform]) -> Self {
        Matcher::Ordered(platforms.iter().map(Platform::normalize).collect())
    }

    /// `platforms.Any`: any of `platforms`, none preferred.
    #[must_use]
    pub fn any(platforms: &[Platform]) -> Self {
        Matcher::Any(platforms.iter().map(Platform::normalize).collect())
    }

    /// True if `platform` is acceptable.
    #[must_use]
    pub fn matches(&self, platform: &Platform) -> bool {
        match self {
            Matcher::All => true,
            Matcher::Ordered(list) | Matcher::Any(list) => list.iter().any(|m| m.same_as(platform)),
        }
    }

    /// How good a platform is: lower is better; `None` if it does not match.
    #[must_use]
    pub fn rank(&self, platform: &Platform) -> Option<usize> {
        match self {
            Matcher::All => Some(0),
            Matcher::Ordered(list) => list.iter().position(|m| m.same_as(platform)),
            Matcher::Any(list) => list.iter().any(|m| m.same_as(platform)).then_some(0),
        }
    }

    /// containerd's `Less`: `a` is preferred to `b`.
    #[must_use]
    pub fn less(&self, a: &Platform, b: &Platform) -> bool {
        self.sort_key(Some(a)) < self.sort_key(Some(b))
    }

    /// The order containerd sorts descriptors in: by rank, non-matching after matching, and
    /// descriptors without platform last.
    fn sort_key(&self, platform: Option<&Platform>) -> (u8, usize) {
        match platform {
            None => (2, 0),
            Some(p) => match self.rank(p) {
                Some(r) => (0, r),
                None => (1, 0),
            },
        }
    }

    /// containerd's `FilterPlatforms`: the descriptors whose platform matches, plus those
    /// without a platform, in their order.
    #[must_use]
    pub fn filter<'a>(&self, descriptors: &'a [Descriptor]) -> Vec<&'a Descriptor> {
        descriptors
            .iter()
            .filter(|d| d.platform.as_ref().is_none_or(|p| self.matches(p)))
            .collect()
    }

    /// Sorts `descriptors` stably, best platform first and descriptors without a platform
    /// last, as containerd's `LimitManifests` and `images.Manifest` do.
    pub fn sort(&self, descriptors: &mut [&Descriptor]) {
        descriptors.sort_by_key(|d| self.sort_key(d.platform.as_ref()));
    }

    /// The children of an index to fetch: filtered ([`Matcher::filter`]), sorted
    /// ([`Matcher::sort`]), and cut to `limit` if given (containerd's pull path with
    /// `LimitManifests`; `ctr` fetches without a limit, unpack uses the first).
    #[must_use]
    pub fn select<'a>(
        &self,
        manifests: &'a [Descriptor],
        limit: Option<usize>,
    ) -> Vec<&'a Descriptor> {
        let mut chosen = self.filter(manifests);
        self.sort(&mut chosen);
        if let Some(limit) = limit {
            chosen.truncate(limit);
        }
        chosen
    }

    /// The best manifest of an index for this matcher, if any matches.
    #[must_use]
    pub fn best<'a>(&self, manifests: &'a [Descriptor]) -> Option<&'a Descriptor> {
        self.select(manifests, Some(1)).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    fn plat(os: &str, arch: &str, variant: &str) -> Platform {
        Platform::new(os, arch).with_variant(variant)
    }

    #[test]
    fn parses_specifiers_like_containerd() {
        // (specifier, os, arch, variant as parsed, Format of the normalised form)
        let cases = [
            ("linux/amd64", "linux", "amd64", "", "linux/amd64"),
            ("linux/x86_64", "linux", "amd64", "", "linux/amd64"),
            ("linux/x86-64", "linux", "amd64", "", "linux/amd64"),
            ("Linux/AMD64", "linux", "amd64", "", "linux/amd64"),
            ("linux/i386", "linux", "386", "", "linux/386"),
            ("linux/arm64", "linux", "arm64", "", "linux/arm64"),
            ("linux/aarch64", "linux", "arm64", "", "linux/arm64"),
            ("linux/arm64/v8", "linux", "arm64", "v8", "linux/arm64"),
            ("linux/arm64/8", "linux", "arm64", "v8", "linux/arm64"),
            ("linux/arm64/v9", "linux", "arm64", "v9", "linux/arm64/v9"),
            ("linux/arm", "linux", "arm", "", "linux/arm/v7"),
            ("linux/armhf", "linux", "arm", "", "linux/arm/v7"),
            ("linux/armel", "linux", "arm", "v6", "linux/arm/v6"),
            ("linux/arm/v7", "linux", "arm", "v7", "linux/arm/v7"),
            ("linux/arm/7", "linux", "arm", "v7", "linux/arm/v7"),
            ("linux/arm/6", "linux", "arm", "v6", "linux/arm/v6"),
            ("linux/arm/v5", "linux", "arm", "v5", "linux/arm/v5"),
            ("macos/arm64", "darwin", "arm64", "", "darwin/arm64"),
            ("windows/amd64", "windows", "amd64", "", "windows/amd64"),
            ("linux/riscv64", "linux", "riscv64", "", "linux/riscv64"),
            ("plan9/whatever", "plan9", "whatever", "", "plan9/whatever"),
        ];
        for (spec, os, arch, variant, normal) in cases {
            let got = p(spec);
            assert_eq!(got, plat(os, arch, variant), "{spec}");
            assert_eq!(got.normalize().to_string(), normal, "{spec}");
            // normalising is idempotent and what parses back the same
            assert_eq!(got.normalize().normalize(), got.normalize(), "{spec}");
            assert!(p(&got.to_string()).same_as(&got), "{spec}");
        }
    }

    #[test]
    fn one_element_specifiers_use_the_host() {
        let host = plat("linux", "arm64", "");
        assert_eq!(
            Platform::parse_with_host("linux", &host).unwrap(),
            plat("linux", "arm64", "")
        );
        assert_eq!(
            Platform::parse_with_host("amd64", &host).unwrap(),
            plat("linux", "amd64", "")
        );
        assert_eq!(
            Platform::parse_with_host("armhf", &host).unwrap(),
            plat("linux", "arm", "")
        );
        assert_eq!(
            Platform::parse_with_host("armel", &host).unwrap(),
            plat("linux", "arm", "v6")
        );
        let arm6 = plat("linux", "arm", "v6");
        assert_eq!(
            Platform::parse_with_host("windows", &arm6).unwrap(),
            plat("windows", "arm", "v6")
        );
        let arm7 = plat("linux", "arm", "v7");
        assert_eq!(
            Platform::parse_with_host("linux", &arm7).unwrap(),
            plat("linux", "arm", "")
        );
        assert!(matches!(
            Platform::parse_with_host("nonsense", &host),
            Err(PlatformError::UnknownOsOrArch { .. })
        ));
        assert!(matches!(
            Platform::parse("linux"),
            Err(PlatformError::NeedsHost { .. })
        ));
    }

    #[test]
    fn rejects_bad_specifiers() {
        let cases = [
            (
                "linux/*",
                PlatformError::Wildcard {
                    specifier: "linux/*".into(),
                },
            ),
            (
                "",
                PlatformError::Component {
                    specifier: "".into(),
                    component: "".into(),
                },
            ),
            (
                "linux/",
                PlatformError::Component {
                    specifier: "linux/".into(),
                    component: "".into(),
                },
            ),
            (
                "linux/a.b",
                PlatformError::Component {
                    specifier: "linux/a.b".into(),
                    component: "a.b".into(),
                },
            ),
            (
                "linux/é",
                PlatformError::Component {
                    specifier: "linux/é".into(),
                    component: "é".into(),
                },
            ),
            (
                "a/b/c/d",
                PlatformError::TooManyComponents {
                    specifier: "a/b/c/d".into(),
                },
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(Platform::parse(spec), Err(want.clone()), "{spec:?}");
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn display_is_containerd_format() {
        assert_eq!(Platform::default().to_string(), "unknown");
        assert_eq!(plat("linux", "", "").to_string(), "linux");
        assert_eq!(plat("linux", "arm", "v7").to_string(), "linux/arm/v7");
    }

    #[test]
    fn only_matches_what_the_host_can_run() {
        // (host, candidate, matches)
        let cases = [
            ("linux/arm64/v8", plat("linux", "arm64", ""), true),
            ("linux/arm64", plat("linux", "arm64", "v8"), true),
            ("linux/arm64", plat("linux", "aarch64", ""), true),
            ("linux/arm64", plat("linux", "arm", "v8"), true),
            ("linux/arm64", plat("linux", "arm", "v7"), true),
            ("linux/arm64", plat("linux", "arm", "v5"), true),
            ("linux/arm64", plat("linux", "amd64", ""), false),
            ("linux/arm64", plat("windows", "arm64", ""), false),
            ("linux/arm/v7", plat("linux", "arm", ""), true),
            ("linux/arm/v7", plat("linux", "arm", "v6"), true),
            ("linux/arm/v7", plat("linux", "arm", "v5"), true),
            ("linux/arm/v7", plat("linux", "arm", "v8"), false),
            ("linux/arm/v7", plat("linux", "arm64", ""), false),
            ("linux/arm/v6", plat("linux", "arm", "v7"), false),
            ("linux/arm/v6", plat("linux", "armel", ""), true),
            ("linux/arm/v5", plat("linux", "arm", "v6"), false),
            ("linux/amd64", plat("linux", "x86_64", ""), true),
            ("linux/amd64", plat("linux", "386", ""), true),
            ("linux/amd64", plat("linux", "i386", ""), true),
            ("linux/amd64", plat("linux", "amd64", "v2"), false),
            ("linux/amd64/v3", plat("linux", "amd64", "v2"), true),
            ("linux/amd64/v3", plat("linux", "amd64", "v1"), true),
            ("linux/amd64/v3", plat("linux", "amd64", "v4"), false),
            ("linux/386", plat("linux", "amd64", ""), false),
            ("linux/amd64", plat("", "amd64", ""), true),
            ("linux/s390x", plat("linux", "s390x", ""), true),
        ];
        for (host, candidate, want) in cases {
            let m = Matcher::only(&p(host));
            assert_eq!(m.matches(&candidate), want, "{host} runs {candidate:?}");
        }
        let strict = Matcher::only_strict(&p("linux/arm/v7"));
        assert!(strict.matches(&plat("linux", "arm", "")));
        assert!(!strict.matches(&plat("linux", "arm", "v6")));
        assert!(Matcher::All.matches(&plat("plan9", "mips", "")));
    }

    #[test]
    fn only_prefers_the_exact_platform() {
        let m = Matcher::only(&p("linux/arm64"));
        let order = [
            plat("linux", "arm64", ""),
            plat("linux", "arm", "v8"),
            plat("linux", "arm", "v7"),
            plat("linux", "arm", "v6"),
            plat("linux", "arm", "v5"),
        ];
        for (i, a) in order.iter().enumerate() {
            assert_eq!(m.rank(a), Some(i), "{a:?}");
            for b in &order[i + 1..] {
                assert!(m.less(a, b) && !m.less(b, a), "{a:?} before {b:?}");
            }
            assert!(m.less(a, &plat("linux", "amd64", "")));
        }
        let any = Matcher::any(&[p("linux/amd64"), p("linux/arm64")]);
        assert!(!any.less(&plat("linux", "arm64", ""), &plat("linux", "amd64", "")));
        assert!(any.less(&plat("linux", "arm64", ""), &plat("linux", "ppc64le", "")));
        let ordered = Matcher::ordered(&[p("linux/arm64"), p("linux/amd64")]);
        assert!(ordered.less(&plat("linux", "arm64", ""), &plat("linux", "amd64", "")));
        assert!(
            !ordered.matches(&plat("linux", "arm", "v7")),
            "ordered does not expand"
        );
        assert!(!Matcher::All.less(&plat("linux", "arm64", ""), &plat("linux", "amd64", "")));
    }

    fn desc(n: u8, platform: Option<Platform>) -> Descriptor {
        Descriptor {
            platform,
            ..Descriptor::new(
                crate::image::media::OCI_MANIFEST,
                Digest::sha256(&[n]),
                u64::from(n),
            )
        }
    }

    #[test]
    fn selects_manifests_from_an_index_in_containerd_order() {
        let manifests = vec![
            desc(0, Some(plat("linux", "amd64", ""))),
            desc(1, None),
            desc(2, Some(plat("linux", "arm", "v6"))),
            desc(3, Some(plat("linux", "arm", "v7"))),
            desc(4, Some(plat("linux", "arm64", "v8"))),
            desc(5, Some(plat("unknown", "unknown", ""))),
            desc(6, Some(plat("linux", "arm64", ""))),
        ];
        let sizes = |v: Vec<&Descriptor>| v.iter().map(|d| d.size).collect::<Vec<_>>();

        let arm64 = Matcher::only(&p("linux/arm64"));
        assert_eq!(sizes(arm64.filter(&manifests)), [1, 2, 3, 4, 6]);
        // exact first (stable among equals), then arm/v7, arm/v6, then no platform
        assert_eq!(sizes(arm64.select(&manifests, None)), [4, 6, 3, 2, 1]);
        assert_eq!(arm64.best(&manifests).map(|d| d.size), Some(4));

        let arm7 = Matcher::only(&p("linux/arm/v7"));
        assert_eq!(sizes(arm7.select(&manifests, Some(2))), [3, 2]);

        let amd64 = Matcher::only(&p("linux/amd64"));
        assert_eq!(sizes(amd64.select(&manifests, None)), [0, 1]);

        let ppc = Matcher::only(&p("linux/ppc64le"));
        assert_eq!(
            sizes(ppc.select(&manifests, None)),
            [1],
            "a platform-less manifest matches anything"
        );
        assert_eq!(ppc.best(&manifests[..1]), None);

        // all platforms: everything, those without platform last
        assert_eq!(
            sizes(Matcher::All.select(&manifests, None)),
            [0, 2, 3, 4, 5, 6, 1]
        );
    }
}
