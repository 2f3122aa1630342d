//! The registry client against a real `docker-registry` (push, resolve, fetch, ranges, chunked
//! uploads, cross-repository mounts, basic auth) and against small in-test HTTP servers for what
//! docker-registry cannot show without TLS certificates (the Bearer token flow, redirects to
//! another origin, retries, short bodies).
//!
//! Every server a test starts is stopped when the test ends (their `Drop`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth_core::image::{media, Descriptor, Reference};
use berth_core::registry::{Credentials, Policy, Pushed, RegistryError, Unauthorized};
use berth_core::Digest;
use berth_drivers::registry::{BlobSource, ClientConfig, ClientError, FileSource, RegistryClient};
use bytes::Bytes;

// ------------------------------------------------------------------ docker-registry

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Status of `GET path` on `addr`, if it answers.
fn probe(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A `docker-registry` on a free loopback port, with its storage in a temporary directory.
struct Registry {
    addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        Registry::start_with(None)
    }

    /// With `htpasswd = Some((user, password))`, the registry requires Basic auth.
    fn start_with(htpasswd: Option<(&str, &str)>) -> Registry {
        assert!(
            std::path::Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry is not installed: run `apt-get install docker-registry` \
             (scripts/install-deps.sh)"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut auth = String::new();
        if let Some((user, password)) = htpasswd {
            let file = dir.path().join("htpasswd");
            let hash = bcrypt::hash(password, 4).unwrap();
            std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                file.display()
            );
        }
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let cfg = dir.path().join("config.yml");
            std::fs::write(
                &cfg,
                format!(
                    "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: {addr}\n{auth}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let mut child = Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start docker-registry");
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if child.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile: try another
                }
                if matches!(probe(&addr, "/v2/"), Some(200 | 401)) {
                    return Registry {
                        addr,
                        child,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }

    fn reference(&self, repo_tag: &str) -> Reference {
        Reference::parse(&format!("{}/{repo_tag}", self.addr)).unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ an in-test HTTP server

/// A request as the in-test server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query.
    target: String,
    /// Header names lowercased.
    headers: HashMap<String, String>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close the connection after this response, without `Connection: close`.
    hang_up: bool,
}

fn reply(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    Reply {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.to_vec(),
        hang_up: false,
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A small HTTP/1.1 server with keep-alive, on a loopback port, answering with `handler`
/// and recording every request.
struct TestServer {
    addr: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TestServer {
    fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let (stop, seen, conns) = (stop.clone(), seen.clone(), conns.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (stop, seen, handler) = (stop.clone(), seen.clone(), handler.clone());
                    let t = std::thread::spawn(move || serve(stream, &stop, &seen, &*handler));
                    conns.lock().unwrap().push(t);
                }
            })
        };
        TestServer {
            addr,
            stop,
            seen,
            accept: Some(accept),
            conns,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr); // wakes the accept loop
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for t in self.conns.lock().unwrap().drain(..) {
            let _ = t.join();
        }
    }
}

/// Serves one keep-alive connection until the client closes it or the server stops.
fn serve(mut s: TcpStream, stop: &AtomicBool, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        // a request head
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match s.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_owned();
        let target = first.next().unwrap_or_default().to_owned();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < len {
            match s.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        buf.drain(..len);
        let request = Seen {
            method,
            target,
            headers,
        };
        let r = handler(&request);
        let head_only = request.method == "HEAD";
        seen.lock().unwrap().push(request);
        let mut out = format!("HTTP/1.1 {} X\r\n", r.status);
        let mut has_length = false;
        for (k, v) in &r.headers {
            has_length |= k.eq_ignore_ascii_case("content-length");
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if !has_length {
            out.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&r.body);
        }
        if s.write_all(&bytes).is_err() {
            return;
        }
        if r.hang_up {
            return; // closes the connection without having said so
        }
    }
}

// ------------------------------------------------------------------ helpers

fn client() -> RegistryClient {
    RegistryClient::new(ClientConfig::default())
}

fn quick_policy() -> Policy {
    Policy {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..Policy::default()
    }
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn blob(media_type: &str, data: &Bytes) -> Descriptor {
    Descriptor::new(media_type, Digest::sha256(data), data.len() as u64)
}

fn source(data: &Bytes) -> Arc<dyn BlobSource> {
    Arc::new(data.clone())
}

/// An image: config, one layer, and its manifest.
struct Image {
    config: (Descriptor, Bytes),
    layer: (Descriptor, Bytes),
    manifest: (Descriptor, Bytes),
}

fn image(layer_len: usize, seed: u64) -> Image {
    let config = Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}},"seed":{seed}}}"#,
        Digest::sha256(b"diff")
    ));
    let config_desc = blob(media::OCI_CONFIG, &config);
    let layer = noise(layer_len, seed);
    let layer_desc = blob(media::OCI_LAYER_GZIP, &layer);
    let manifest = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
        media::OCI_MANIFEST,
        media::OCI_CONFIG,
        config_desc.digest,
        config_desc.size,
        media::OCI_LAYER_GZIP,
        layer_desc.digest,
        layer_desc.size
    ));
    Image {
        manifest: (blob(media::OCI_MANIFEST, &manifest), manifest),
        config: (config_desc, config),
        layer: (layer_desc, layer),
    }
}

async fn push_image(c: &RegistryClient, r: &Reference, img: &Image) {
    for (desc, data) in [&img.config, &img.layer] {
        c.push_blob(r, desc, source(data), None).await.unwrap();
    }
    c.push_manifest(r, &img.manifest.0, img.manifest.1.clone())
        .await
        .unwrap();
}

// ------------------------------------------------------------------ against docker-registry

#[test]
fn push_resolve_and_fetch_back_byte_identical() {
    let reg = Registry::start();
    smol::block_on(async {
        let c = client();
        let r = reg.reference("berth/app:v1");
        let img = image(3 << 20, 1);

        // monolithic uploads, then "already there"
        for (desc, data) in [&img.config, &img.layer] {
            let pushed = c.push_blob(&r, desc, source(data), None).await.unwrap();
            assert_eq!(pushed, Pushed::Uploaded);
            let again = c.push_blob(&r, desc, source(data), None).await.unwrap();
            assert_eq!(again, Pushed::Exists);
        }
        c.push_manifest(&r, &img.manifest.0, img.manifest.1.clone())
            .await
            .unwrap();

        // resolve the tag: the descriptor the registry serves is the one pushed
        let root = c.resolve(&r).await.unwrap();
        assert_eq!(root, img.manifest.0);
        // by digest too
        let pinned = r.with_digest(root.digest).docker_ref();
        assert_eq!(c.resolve(&pinned).await.unwrap(), img.manifest.0);

        // everything comes back byte for byte
        for (desc, data) in [&img.manifest, &img.config, &img.layer] {
            let got = c.fetch(&r, desc, 0).await.unwrap().bytes().await.unwrap();
            assert_eq!(got.len(), data.len());
            assert!(got == *data, "{} differs", desc.digest);
        }

        // ranged fetch from the middle, streamed
        let (desc, data) = &img.layer;
        let offset = 1_234_567;
        let mut stream = c.fetch(&r, desc, offset).await.unwrap();
        assert_eq!(stream.remaining(), desc.size - offset);
        let mut got = Vec::new();
        while let Some(chunk) = stream.next_chunk().await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        assert!(got[..] == data[offset as usize..]);
        // from the end: nothing
        let end = c.fetch(&r, desc, desc.size).await.unwrap();
        assert!(end.bytes().await.unwrap().is_empty());
        // the connection went back to the pool after each complete read
        assert!(c.idle_connections(&reg.addr) >= 1);

        // a missing tag, a missing blob, a missing repository: typed NotFound
        let missing = c
            .resolve(&reg.reference("berth/app:nope"))
            .await
            .unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        let ghost = blob(media::OCI_LAYER_GZIP, &Bytes::from_static(b"ghost"));
        let err = c.fetch(&r, &ghost, 0).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Registry(RegistryError::NotFound(e)) if e.code() == Some("BLOB_UNKNOWN")),
            "{err}"
        );
        let err = c
            .resolve(&reg.reference("nobody/here:v1"))
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");

        // a manifest naming a blob the repository lacks: the registry's error code comes back
        let orphan = Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":5}},"layers":[]}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            ghost.digest
        ));
        let err = c
            .push_manifest(
                &reg.reference("berth/app:orphan"),
                &blob(media::OCI_MANIFEST, &orphan),
                orphan,
            )
            .await
            .unwrap_err();
        let ClientError::Registry(RegistryError::Status(e)) = &err else {
            panic!("{err}")
        };
        assert_eq!(e.status, 400);
        assert_eq!(e.code(), Some("MANIFEST_BLOB_UNKNOWN"), "{err}");
    });
}

#[test]
fn chunked_uploads_from_memory_and_from_a_file() {
    let reg = Registry::start();
    smol::block_on(async {
        let c = RegistryClient::new(ClientConfig {
            chunk_size: Some(256 << 10),
            ..ClientConfig::default()
        });
        let r = reg.reference("berth/chunked:v1");
        // not a multiple of the chunk size
        let data = noise((1 << 20) + 12_345, 2);
        let desc = blob(media::OCI_LAYER, &data);
        assert_eq!(
            c.push_blob(&r, &desc, source(&data), None).await.unwrap(),
            Pushed::Uploaded
        );
        let got = c.fetch(&r, &desc, 0).await.unwrap().bytes().await.unwrap();
        assert!(got == data);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data = noise(700_001, 3);
        std::fs::write(&path, &data).unwrap();
        let desc = blob(media::OCI_LAYER, &data);
        let file: Arc<dyn BlobSource> = Arc::new(FileSource::new(&path));
        assert_eq!(
            c.push_blob(&r, &desc, file, None).await.unwrap(),
            Pushed::Uploaded
        );
        let got = c.fetch(&r, &desc, 0).await.unwrap().bytes().await.unwrap();
        assert!(got == data);

        // a file shorter than its descriptor fails with the source's error
        let short = noise(10, 4);
        std::fs::write(&path, &short[..5]).unwrap();
        let file: Arc<dyn BlobSource> = Arc::new(FileSource::new(&path));
        let err = c
            .push_blob(&r, &blob(media::OCI_LAYER, &short), file, None)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Source(_)), "{err}");
    });
}

#[test]
fn cross_repository_mount() {
    let reg = Registry::start();
    smol::block_on(async {
        let c = client();
        let base = reg.reference("base/img:v1");
        let data = noise(100_000, 5);
        let desc = blob(media::OCI_LAYER_GZIP, &data);
        c.push_blob(&base, &desc, source(&data), None)
            .await
            .unwrap();

        let app = reg.reference("team/app:v1");
        let pushed = c
            .push_blob(&app, &desc, source(&data), Some("base/img"))
            .await
            .unwrap();
        assert_eq!(pushed, Pushed::Mounted);
        let got = c
            .fetch(&app, &desc, 0)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got == data);

        // mounting from a repository that lacks the blob: the registry opens an upload instead
        let other = noise(1000, 6);
        let odesc = blob(media::OCI_LAYER_GZIP, &other);
        let pushed = c
            .push_blob(&app, &odesc, source(&other), Some("base/img"))
            .await
            .unwrap();
        assert_eq!(pushed, Pushed::Uploaded);
    });
}

#[test]
fn concurrent_fetches_use_separate_connections() {
    let reg = Registry::start();
    smol::block_on(async {
        let c = client();
        let r = reg.reference("berth/many:v1");
        let img = image(2 << 20, 7);
        push_image(&c, &r, &img).await;
        // open several streams at once, then read them interleaved
        let mut streams = Vec::new();
        for i in 0..6u64 {
            let s = c.fetch(&r, &img.layer.0, i * 1000).await.unwrap();
            streams.push((i * 1000, s, Vec::new()));
        }
        let mut open = streams.len();
        while open > 0 {
            open = 0;
            for (_, s, got) in &mut streams {
                if let Some(chunk) = s.next_chunk().await.unwrap() {
                    got.extend_from_slice(&chunk);
                    open += 1;
                }
            }
        }
        for (offset, _, got) in &streams {
            assert!(got[..] == img.layer.1[*offset as usize..]);
        }
        assert!(
            c.idle_connections(&reg.addr) >= 6,
            "all six went back to the pool"
        );

        // and in parallel tasks
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (c, r, d) = (c.clone(), r.clone(), img.layer.0.clone());
                smol::spawn(async move { c.fetch(&r, &d, 0).await?.bytes().await })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap() == img.layer.1);
        }
    });
}

#[test]
fn basic_auth_against_htpasswd() {
    let reg = Registry::start_with(Some(("alice", "s3cret")));
    smol::block_on(async {
        let r = reg.reference("private/app:v1");

        let anonymous = client();
        let err = anonymous.resolve(&r).await.unwrap_err();
        assert!(
            matches!(
                &err,
                ClientError::Registry(RegistryError::Unauthorized {
                    reason: Unauthorized::NoCredentials,
                    ..
                })
            ),
            "{err}"
        );

        let with = |user: &str, pw: &str| {
            let mut config = ClientConfig::default();
            config
                .credentials
                .insert(reg.addr.clone(), Credentials::new(user, pw));
            RegistryClient::new(config)
        };
        let wrong = with("alice", "guess");
        let err = wrong.resolve(&r).await.unwrap_err();
        assert!(err.is_unauthorized(), "{err}");
        assert!(
            matches!(
                &err,
                ClientError::Registry(RegistryError::Unauthorized {
                    reason: Unauthorized::Rejected,
                    ..
                })
            ),
            "{err}"
        );

        let alice = with("alice", "s3cret");
        let img = image(50_000, 8);
        push_image(&alice, &r, &img).await;
        assert_eq!(alice.resolve(&r).await.unwrap(), img.manifest.0);
        let got = alice
            .fetch(&r, &img.layer.0, 0)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got == img.layer.1);
        // and still refused without credentials
        assert!(anonymous
            .fetch(&r, &img.layer.0, 0)
            .await
            .unwrap_err()
            .is_unauthorized());
    });
}

// ------------------------------------------------------------------ against in-test servers

#[test]
fn bearer_token_flow() {
    let manifest = Bytes::from_static(
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
    );
    let digest = Digest::sha256(&manifest).to_string();
    let tokens = Arc::new(AtomicUsize::new(0));
    let expected_basic = Credentials::new("bob", "pw").basic_header();
    let server = {
        let (manifest, digest, tokens) = (manifest.clone(), digest.clone(), tokens.clone());
        let expected_basic = expected_basic.clone();
        let addr = Arc::new(Mutex::new(String::new()));
        let a = addr.clone();
        let s = TestServer::start(move |q| {
            if q.target.starts_with("/token?") {
                if q.header("authorization") != Some(expected_basic.as_str()) {
                    return reply(401, &[], b"");
                }
                tokens.fetch_add(1, Ordering::SeqCst);
                return reply(
                    200,
                    &[("Content-Type", "application/json")],
                    br#"{"token":"T-1","expires_in":600}"#,
                );
            }
            if q.header("authorization") != Some("Bearer T-1") {
                let realm = format!("http://{}/token", a.lock().unwrap());
                return reply(
                    401,
                    &[(
                        "WWW-Authenticate",
                        &format!(
                            r#"Bearer realm="{realm}",service="test registry",scope="repository:org/app:pull""#
                        ),
                    )],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                );
            }
            reply(
                200,
                &[
                    ("Content-Type", media::OCI_INDEX),
                    ("Docker-Content-Digest", &digest),
                ],
                &manifest,
            )
        });
        *addr.lock().unwrap() = s.addr.clone();
        s
    };
    smol::block_on(async {
        let r = Reference::parse(&format!("{}/org/app:v1", server.addr)).unwrap();
        let mut config = ClientConfig::default();
        config
            .credentials
            .insert(server.addr.clone(), Credentials::new("bob", "pw"));
        let c = RegistryClient::new(config);
        let desc = c.resolve(&r).await.unwrap();
        assert_eq!(desc.digest.to_string(), digest);
        assert_eq!(desc.media_type, media::OCI_INDEX);
        assert_eq!(desc.size, manifest.len() as u64);
        let got = c.fetch(&r, &desc, 0).await.unwrap().bytes().await.unwrap();
        assert_eq!(got, manifest);
        // one token for both operations: the second was authorised up front
        assert_eq!(tokens.load(Ordering::SeqCst), 1);

        let seen = server.seen();
        let token_req = seen
            .iter()
            .find(|q| q.target.starts_with("/token"))
            .unwrap();
        assert_eq!(
            token_req.target,
            "/token?service=test%20registry&scope=repository%3Aorg%2Fapp%3Apull"
        );
        let registry_reqs: Vec<_> = seen
            .iter()
            .filter(|q| q.target.starts_with("/v2/"))
            .collect();
        assert!(
            registry_reqs
                .iter()
                .all(|q| q.header("authorization") != Some(expected_basic.as_str())),
            "the registry never sees the password"
        );
        assert!(registry_reqs[0]
            .header("user-agent")
            .unwrap()
            .starts_with("berth/"));

        // a client without credentials: the token server refuses it
        let anonymous = client();
        let err = anonymous.resolve(&r).await.unwrap_err();
        assert!(
            matches!(
                &err,
                ClientError::Registry(RegistryError::Unauthorized {
                    reason: Unauthorized::TokenRefused,
                    ..
                })
            ),
            "{err}"
        );
    });
}

#[test]
fn redirects_to_another_origin_without_credentials() {
    let data = noise(200_000, 9);
    let storage = {
        let data = data.clone();
        TestServer::start(move |q| {
            if q.target.starts_with("/bucket/blob?sig=") {
                reply(200, &[], &data)
            } else {
                reply(404, &[], b"")
            }
        })
    };
    let registry = {
        let storage_addr = storage.addr.clone();
        let basic = Credentials::new("carol", "pw").basic_header();
        TestServer::start(move |q| {
            if q.header("authorization") != Some(basic.as_str()) {
                return reply(401, &[("WWW-Authenticate", r#"Basic realm="r""#)], b"");
            }
            if q.target.contains("/blobs/") {
                // relative first, then to the storage host
                return reply(307, &[("Location", "../../../redirected/blob")], b"");
            }
            if q.target == "/v2/redirected/blob" {
                let to = format!("http://{storage_addr}/bucket/blob?sig=abc");
                return reply(302, &[("Location", &to)], b"");
            }
            reply(404, &[], b"")
        })
    };
    smol::block_on(async {
        let r = Reference::parse(&format!("{}/x/y:v1", registry.addr)).unwrap();
        let mut config = ClientConfig::default();
        config
            .credentials
            .insert(registry.addr.clone(), Credentials::new("carol", "pw"));
        let c = RegistryClient::new(config);
        let desc = blob(media::OCI_LAYER_GZIP, &data);
        let got = c.fetch(&r, &desc, 0).await.unwrap().bytes().await.unwrap();
        assert!(got == data);
        let targets: Vec<String> = registry.seen().iter().map(|q| q.target.clone()).collect();
        assert_eq!(
            targets,
            vec![
                format!("/v2/x/y/blobs/{}", desc.digest),
                format!("/v2/x/y/blobs/{}", desc.digest),
                "/v2/redirected/blob".to_owned(),
            ]
        );
        let at_storage = storage.seen();
        assert_eq!(at_storage.len(), 1);
        assert_eq!(at_storage[0].header("authorization"), None);

        // ranged: the storage ignores Range, the stream skips to the offset itself
        let got = c
            .fetch(&r, &desc, 150_000)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got[..] == data[150_000..]);
    });
}

#[test]
fn retries_and_transport_errors() {
    let hits = Arc::new(AtomicUsize::new(0));
    let data = Bytes::from_static(b"eventually");
    let server = {
        let (hits, data) = (hits.clone(), data.clone());
        TestServer::start(move |_| match hits.fetch_add(1, Ordering::SeqCst) {
            0 => reply(503, &[], b"busy"),
            1 => reply(429, &[("Retry-After", "0")], b""),
            _ => reply(200, &[], &data),
        })
    };
    smol::block_on(async {
        let c = RegistryClient::new(ClientConfig {
            policy: quick_policy(),
            ..ClientConfig::default()
        });
        let r = Reference::parse(&format!("{}/a/b:v1", server.addr)).unwrap();
        let desc = blob(media::OCI_LAYER, &data);
        let got = c.fetch(&r, &desc, 0).await.unwrap().bytes().await.unwrap();
        assert_eq!(got, data);
        assert_eq!(hits.load(Ordering::SeqCst), 3);

        // nothing listens there
        let dead = Reference::parse(&format!("127.0.0.1:{}/a/b:v1", free_port())).unwrap();
        let err = c.resolve(&dead).await.unwrap_err();
        assert!(
            matches!(
                &err,
                ClientError::Registry(RegistryError::Transport { attempts: 5, .. })
            ),
            "{err}"
        );
    });
}

#[test]
fn connections_closed_while_idle_are_replaced() {
    let data = noise(10_000, 10);
    let server = {
        let data = data.clone();
        TestServer::start(move |_| Reply {
            hang_up: true,
            ..reply(200, &[], &data)
        })
    };
    smol::block_on(async {
        // no retries: only the pool's own fresh-connection retry can save a stale connection
        let c = RegistryClient::new(ClientConfig {
            policy: Policy {
                max_retries: 0,
                ..Policy::default()
            },
            ..ClientConfig::default()
        });
        let r = Reference::parse(&format!("{}/a/b:v1", server.addr)).unwrap();
        let desc = blob(media::OCI_LAYER, &data);
        for _ in 0..20 {
            let got = c.fetch(&r, &desc, 0).await.unwrap().bytes().await.unwrap();
            assert!(got == data);
        }
    });
    assert_eq!(server.seen().len(), 20);
}

#[test]
fn short_and_long_bodies_are_caught() {
    let server = TestServer::start(|q| {
        if q.target.starts_with("/v2/a/short/") {
            reply(200, &[], b"abc")
        } else {
            reply(200, &[], b"abcdefgh")
        }
    });
    smol::block_on(async {
        let c = client();
        let short = Reference::parse(&format!("{}/a/short:v1", server.addr)).unwrap();
        // descriptors claiming 5 bytes; the served manifests are 3 and 8 bytes long
        let d = Descriptor::new(media::OCI_MANIFEST, Digest::sha256(b"12345"), 5);
        let s = c.fetch(&short, &d, 0).await.unwrap();
        let err = s.bytes().await.unwrap_err();
        assert!(
            matches!(err, ClientError::Truncated { missing: 2, .. }),
            "{err}"
        );
        let long = Reference::parse(&format!("{}/a/long:v1", server.addr)).unwrap();
        let err = c
            .fetch(&long, &d, 0)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::TooLong { size: 5, .. }), "{err}");
    });
}

#[test]
fn https_is_refused_clearly() {
    smol::block_on(async {
        let c = client();
        let err = c
            .resolve(&Reference::parse("registry.example.com/x/y:v1").unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::HttpsUnsupported { url } if url == "https://registry.example.com/"),
            "{err}"
        );
        assert!(err.to_string().starts_with("https not supported yet"));
    });
    // a redirect to https
    let server =
        TestServer::start(|_| reply(307, &[("Location", "https://cdn.example.com/blob")], b""));
    smol::block_on(async {
        let c = client();
        let r = Reference::parse(&format!("{}/a/b:v1", server.addr)).unwrap();
        let d = blob(media::OCI_LAYER, &Bytes::from_static(b"x"));
        let err = c.fetch(&r, &d, 0).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::HttpsUnsupported { url } if url == "https://cdn.example.com/blob"),
            "{err}"
        );
    });
}
