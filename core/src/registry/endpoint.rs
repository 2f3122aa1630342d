//! Where a registry is reached: the base URL for a reference's domain, and the distribution API
//! URLs under it (`/v2/<repo>/manifests/<ref>`, `/blobs/<digest>`, `/blobs/uploads/`).

use super::url::{Scheme, Url, UrlError};
use crate::image::media;
use crate::image::reference::registry_api_host;
use crate::Digest;

/// The `Accept` header containerd sends when it resolves a manifest by tag: Docker schema 2
/// manifest and manifest list, OCI manifest and index, then anything.
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, */*";

// The list above spelled with the media module's names, checked at compile time.
const _: () = {
    const fn eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
    assert!(eq(
        media::DOCKER_MANIFEST,
        "application/vnd.docker.distribution.manifest.v2+json"
    ));
    assert!(eq(
        media::DOCKER_MANIFEST_LIST,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    ));
    assert!(eq(
        media::OCI_MANIFEST,
        "application/vnd.oci.image.manifest.v1+json"
    ));
    assert!(eq(
        media::OCI_INDEX,
        "application/vnd.oci.image.index.v1+json"
    ));
};

/// Which hosts are spoken to over plain HTTP.
///
/// Like containerd's `ctr`: loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`, any port)
/// always use plain HTTP; `--plain-http` makes every host plain HTTP; `insecure` lists further
/// hosts (`host` or `host:port`, compared case-insensitively; a bare `host` matches any port).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    /// `--plain-http`: every host over plain HTTP.
    pub plain_http: bool,
    /// Hosts spoken to over plain HTTP (`registry.lan`, `10.0.0.5:5000`).
    pub insecure: Vec<String>,
}

impl Hosts {
    /// The endpoint serving a reference domain (`docker.io`, `127.0.0.1:5000`). Fails only
    /// for a domain that is not `host[:port]` (every parsed reference's domain is).
    ///
    /// ```
    /// use berth_core::registry::Hosts;
    ///
    /// let hosts = Hosts::default();
    /// let url = |d| hosts.endpoint(d).unwrap().base().to_string();
    /// assert_eq!(url("docker.io"), "https://registry-1.docker.io/");
    /// assert_eq!(url("localhost:5000"), "http://localhost:5000/");
    /// assert_eq!(url("ghcr.io"), "https://ghcr.io/");
    /// ```
    pub fn endpoint(&self, domain: &str) -> Result<Endpoint, UrlError> {
        let host = registry_api_host(domain);
        let scheme = if self.is_plain_http(host) {
            Scheme::Http
        } else {
            Scheme::Https
        };
        Endpoint::new(scheme, host)
    }

    /// True if `host` (`host[:port]`) is spoken to over plain HTTP.
    #[must_use]
    pub fn is_plain_http(&self, host: &str) -> bool {
        if self.plain_http || is_loopback(host) {
            return true;
        }
        let bare = strip_port(host);
        self.insecure
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host) || h.eq_ignore_ascii_case(bare))
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(i) => &host[..i + 2],
            None => host,
        };
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// containerd's `MatchLocalhost`: `localhost`, `127.x.y.z` and `[::1]`, with any port.
#[must_use]
pub fn is_loopback(host: &str) -> bool {
    let h = strip_port(host);
    if h.eq_ignore_ascii_case("localhost") || h == "[::1]" {
        return true;
    }
    let parts: Vec<&str> = h.split('.').collect();
    parts.len() == 4
        && parts[0] == "127"
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
}

/// A registry's API endpoint: scheme and `host[:port]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    base: Url,
}

impl Endpoint {
    /// The endpoint `scheme://host/`; `host` must be `host[:port]`.
    pub fn new(scheme: Scheme, host: &str) -> Result<Endpoint, UrlError> {
        Ok(Endpoint {
            base: Url::from_parts(scheme, host, "/", None)?,
        })
    }

    /// HTTP or HTTPS.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.base.scheme()
    }

    /// `host[:port]`: `registry-1.docker.io`, `127.0.0.1:5000`.
    #[must_use]
    pub fn host(&self) -> &str {
        self.base.authority()
    }

    /// `scheme://host/`.
    #[must_use]
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `/v2/<repo>/manifests/<tag or digest>`.
    #[must_use]
    pub fn manifest_url(&self, repository: &str, reference: &str) -> Url {
        self.base
            .with_path(&format!("/v2/{repository}/manifests/{reference}"))
    }

    /// `/v2/<repo>/blobs/<digest>`.
    #[must_use]
    pub fn blob_url(&self, repository: &str, digest: &Digest) -> Url {
        self.base
            .with_path(&format!("/v2/{repository}/blobs/{digest}"))
    }

    /// `/v2/<repo>/blobs/uploads/`: POST here starts an upload.
    #[must_use]
    pub fn upload_url(&self, repository: &str) -> Url {
        self.base
            .with_path(&format!("/v2/{repository}/blobs/uploads/"))
    }

    /// `/v2/<repo>/blobs/uploads/?mount=<digest>&from=<repo>`: a cross-repository mount.
    #[must_use]
    pub fn mount_url(&self, repository: &str, digest: &Digest, from: &str) -> Url {
        self.upload_url(repository)
            .with_query_param("mount", &digest.to_string())
            .with_query_param("from", from)
    }
}

/// Finishes an upload: the upload `location` with `digest=<digest>` added to its query.
#[must_use]
pub fn finish_upload_url(location: &Url, digest: &Digest) -> Url {
    location.with_query_param("digest", &digest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Digest {
        Digest::sha256(b"x")
    }

    #[test]
    fn endpoints() {
        let h = Hosts::default();
        assert_eq!(
            h.endpoint("docker.io").unwrap(),
            Endpoint::new(Scheme::Https, "registry-1.docker.io").unwrap()
        );
        assert!(h.endpoint("a b").is_err());
        for local in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "LOCALHOST:1",
        ] {
            assert_eq!(h.endpoint(local).unwrap().scheme(), Scheme::Http, "{local}");
        }
        for remote in [
            "ghcr.io",
            "10.0.0.1:5000",
            "127.0.0.1.example.com",
            "1270.0.0.1",
        ] {
            assert_eq!(
                h.endpoint(remote).unwrap().scheme(),
                Scheme::Https,
                "{remote}"
            );
        }
        let plain = Hosts {
            plain_http: true,
            insecure: vec![],
        };
        assert_eq!(plain.endpoint("docker.io").unwrap().scheme(), Scheme::Http);
        let some = Hosts {
            plain_http: false,
            insecure: vec!["registry.lan".into(), "10.0.0.5:5000".into()],
        };
        assert_eq!(
            some.endpoint("registry.lan:5000").unwrap().scheme(),
            Scheme::Http
        );
        assert_eq!(
            some.endpoint("REGISTRY.LAN").unwrap().scheme(),
            Scheme::Http
        );
        assert_eq!(
            some.endpoint("10.0.0.5:5000").unwrap().scheme(),
            Scheme::Http
        );
        assert_eq!(
            some.endpoint("10.0.0.5:5001").unwrap().scheme(),
            Scheme::Https
        );
    }

    #[test]
    fn api_urls() {
        let e = Endpoint::new(Scheme::Http, "127.0.0.1:5000").unwrap();
        assert_eq!(e.host(), "127.0.0.1:5000");
        assert_eq!(
            e.manifest_url("a b/../c", "x#y").to_string(),
            "http://127.0.0.1:5000/v2/c/manifests/x%23y"
        );
        assert_eq!(
            e.manifest_url("a/b", "latest").to_string(),
            "http://127.0.0.1:5000/v2/a/b/manifests/latest"
        );
        assert_eq!(
            e.blob_url("a/b", &d()).to_string(),
            format!("http://127.0.0.1:5000/v2/a/b/blobs/{}", d())
        );
        assert_eq!(
            e.upload_url("a/b").to_string(),
            "http://127.0.0.1:5000/v2/a/b/blobs/uploads/"
        );
        assert_eq!(
            e.mount_url("a/b", &d(), "c/d").to_string(),
            format!(
                "http://127.0.0.1:5000/v2/a/b/blobs/uploads/?mount=sha256%3A{}&from=c%2Fd",
                d().hex()
            )
        );
        let loc = Url::parse("http://127.0.0.1:5000/v2/a/b/blobs/uploads/u?_state=x").unwrap();
        assert_eq!(
            finish_upload_url(&loc, &d()).query(),
            Some(format!("_state=x&digest=sha256%3A{}", d().hex()).as_str())
        );
        assert!(MANIFEST_ACCEPT.ends_with("*/*"));
    }
}
