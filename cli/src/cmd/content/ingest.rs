//! `berth content ingest FILE`: store a file (or stdin) as a blob through `Content.Write`.
//!
//! The conversation on the bidirectional stream, one reply awaited per message:
//!
//! 1. `STAT{ref, total, expected}`: berthd opens (or reopens) the ingest and answers with the
//!    bytes it already holds (`offset`) and their digest. `AlreadyExists` here means the
//!    expected blob is already stored: nothing to do.
//! 2. Resume: if berthd holds `N > 0` bytes and FILE is a regular file, the first `N` bytes of
//!    FILE are hashed locally and compared with berthd's digest of its `N` bytes; if they match,
//!    the upload continues from `N` (FILE is seeked), otherwise it starts over at 0 (a `WRITE` at
//!    offset 0 truncates). Stdin cannot be re-read, so it always starts over.
//! 3. `WRITE{offset, data}` in 1 MiB messages, each reply checked (`offset` must advance by the
//!    bytes sent). A reader thread reads and hashes ahead (up to 4 MiB), overlapping file IO and
//!    hashing with the round trips.
//! 4. `COMMIT{total, expected}` where `expected` is `--expected` or else the digest computed
//!    locally, so berthd verifies end to end what FILE holds. `AlreadyExists` means the blob was
//!    already stored: reported as "already present", exit 0.
//!
//! The default ref is `ingest-<sha256 of canonical path, size, mtime>`: re-running the same
//! command after an interruption finds the same ingest and resumes it, while a changed file gets
//! a fresh ref.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_api::services::content::v1::{WriteAction, WriteContentRequest, WriteContentResponse};
use berth_core::digest::Hasher;
use berth_core::{Algorithm, Digest};
use bytes::Bytes;
use serde::Serialize;
use tonic::{Code, Status, Streaming};

use super::{digest_arg, progress};
use crate::client::Client;
use crate::cmd::stdout_err;
use crate::error::{Error, Result};
use crate::{output, parse, Opts};

/// Bytes per WRITE message, as containerd's clients send. (4 MiB measured no faster, and a
/// stdin ingest would sit on a partly filled chunk longer.)
const CHUNK: usize = 1 << 20;
/// Chunks the reader thread may read ahead.
const READ_AHEAD: usize = 4;
/// How long to wait for a ref held by another writer (e.g. a killed client whose connection
/// berthd has not yet noticed) before giving up.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// Arguments of `berth content ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// File to store, or `-` for stdin
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Ingest ref [default: ingest-<sha256 of the file's absolute path, size and mtime>, so a
    /// re-run resumes; for stdin a fresh one]
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<String>,
    /// Digest the content must have; if it is already stored nothing is sent
    #[arg(long, value_name = "DIGEST")]
    pub expected: Option<String>,
    /// Label for the stored blob, as key=value (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Also hash the file here and have berthd check its digest against ours at commit
    /// (end-to-end verification; costs a second sha256 pass on this machine). berthd always
    /// hashes what it receives; with --expected it checks against that digest instead.
    #[arg(long)]
    pub verify: bool,
}

/// What is being ingested.
enum Source {
    /// A regular file (seekable, so resumable).
    File {
        file: File,
        path: PathBuf,
        size: u64,
        mtime: (i64, i64),
    },
    /// Standard input, or anything else that can only be read once (a pipe, a FIFO).
    Stream {
        reader: Box<dyn Read + Send>,
        name: String,
    },
}

impl Source {
    fn open(arg: &Path) -> Result<Source> {
        if arg.as_os_str() == "-" {
            return Ok(Source::Stream {
                reader: Box::new(io::stdin()),
                name: "stdin".into(),
            });
        }
        let file =
            File::open(arg).map_err(|e| Error::io(format!("cannot open {}", arg.display()), &e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("cannot stat {}", arg.display()), &e))?;
        if meta.is_dir() {
            return Err(Error::usage(format!(
                "{} is a directory; ingest a file",
                arg.display()
            )));
        }
        if !meta.is_file() {
            return Ok(Source::Stream {
                reader: Box::new(file),
                name: arg.display().to_string(),
            });
        }
        let path = std::fs::canonicalize(arg).unwrap_or_else(|_| arg.to_path_buf());
        Ok(Source::File {
            file,
            path,
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        })
    }

    fn name(&self) -> String {
        match self {
            Source::File { path, .. } => path.display().to_string(),
            Source::Stream { name, .. } => name.clone(),
        }
    }

    fn size(&self) -> Option<u64> {
        match self {
            Source::File { size, .. } => Some(*size),
            Source::Stream { .. } => None,
        }
    }

    /// `ingest-<hex>`: for a file, stable across runs while the file is unchanged; for a
    /// stream, unique to this run.
    fn default_ref(&self) -> String {
        let mut h = Hasher::new(Algorithm::Sha256);
        match self {
            Source::File {
                path, size, mtime, ..
            } => {
                h.update(path.as_os_str().as_bytes());
                h.update(format!("\0{size}\0{}.{:09}", mtime.0, mtime.1).as_bytes());
            }
            Source::Stream { name, .. } => {
                let now = output::now();
                h.update(format!("{name}\0{}\0{}", std::process::id(), now.as_nanos()).as_bytes());
            }
        }
        format!("ingest-{}", h.digest().hex())
    }

    fn into_reader(self) -> Box<dyn Read + Send> {
        match self {
            Source::File { file, .. } => Box::new(file),
            Source::Stream { reader, .. } => reader,
        }
    }
}

/// What the reader thread sends.
enum Chunk {
    Data(Bytes),
    Done { digest: Option<Digest>, len: u64 },
    Failed(io::Error),
}

/// Reads up to `buf.len()` bytes, fewer only at end of input.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads `reader` to its end in 1 MiB chunks on a thread, hashing as it goes if given a
/// `hasher` (which covers the bytes before the reader's position).
fn spawn_reader(
    mut reader: Box<dyn Read + Send>,
    mut hasher: Option<Hasher>,
    start: u64,
    tx: async_channel::Sender<Chunk>,
) {
    let mut len = start;
    std::thread::spawn(move || loop {
        let mut buf = vec![0u8; CHUNK];
        let n = match fill(&mut reader, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send_blocking(Chunk::Failed(e));
                return;
            }
        };
        if n > 0 {
            buf.truncate(n);
            len += n as u64;
            if let Some(h) = hasher.as_mut() {
                h.update(&buf);
            }
            if tx.send_blocking(Chunk::Data(Bytes::from(buf))).is_err() {
                return;
            }
        }
        if n < CHUNK {
            let _ = tx.send_blocking(Chunk::Done {
                digest: hasher.as_ref().map(Hasher::digest),
                len,
            });
            return;
        }
    });
}

/// The first digest named in a status message (berthd says "content sha256:…: already exists").
fn digest_in(message: &str) -> Option<Digest> {
    message
        .split(|c: char| c.is_whitespace() || c == '"')
        .find_map(|w| Digest::parse(w.trim_end_matches(':')).ok())
}

/// Hashes the first `n` bytes of `file` (on the blocking pool) and leaves it positioned at `n`.
async fn hash_prefix(mut file: File, n: u64, algorithm: Algorithm) -> (File, io::Result<Hasher>) {
    blocking::unblock(move || {
        let res = (|| {
            file.seek(SeekFrom::Start(0))?;
            let mut h = Hasher::new(algorithm);
            let mut buf = vec![0u8; CHUNK];
            let mut left = n;
            while left > 0 {
                let want = left.min(CHUNK as u64) as usize;
                let got = fill(&mut file, &mut buf[..want])?;
                if got < want {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file is shorter than the bytes already ingested",
                    ));
                }
                h.update(&buf[..want]);
                left -= want as u64;
            }
            Ok(h)
        })();
        (file, res)
    })
    .await
}

/// One open `Content.Write` stream: send a message, await its reply.
struct Session {
    tx: async_channel::Sender<WriteContentRequest>,
    replies: Streaming<WriteContentResponse>,
}

impl Session {
    /// Opens the stream with `stat` as its first message and returns berthd's first reply.
    async fn open(
        client: &Client,
        stat: &WriteContentRequest,
    ) -> Result<(Session, WriteContentResponse), Status> {
        let (tx, rx) = async_channel::bounded(1);
        let _ = tx.send(stat.clone()).await;
        let req = client
            .request(rx)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let replies = client.content().write(req).await?.into_inner();
        let mut s = Session { tx, replies };
        let first = s.reply(true).await?;
        Ok((s, first))
    }

    async fn reply(&mut self, sent: bool) -> Result<WriteContentResponse, Status> {
        match self.replies.message().await? {
            Some(r) => Ok(r),
            None if sent => Err(Status::unknown(
                "berthd ended the write stream without answering",
            )),
            None => Err(Status::unknown("the write stream was closed")),
        }
    }

    /// Sends one message and awaits its reply.
    async fn call(&mut self, msg: WriteContentRequest) -> Result<WriteContentResponse, Status> {
        // if berthd already ended the stream the send fails, and the reply carries its status
        let sent = self.tx.send(msg).await.is_ok();
        self.reply(sent).await
    }

    /// Half-closes the stream and lets berthd end it.
    async fn close(mut self) {
        self.tx.close();
        while let Ok(Some(_)) = self.replies.message().await {}
    }
}

/// Opens the write session, waiting a while if the ref is held by another writer.
async fn open_session(
    client: &Client,
    stat: &WriteContentRequest,
    quiet: bool,
) -> Result<(Session, WriteContentResponse), Status> {
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        match Session::open(client, stat).await {
            Err(s) if s.code() == Code::Unavailable && started.elapsed() < BUSY_WAIT => {
                if !told && !quiet {
                    eprintln!(
                        "berth: ingest {:?} is held by another writer; waiting up to {}s for it",
                        stat.r#ref,
                        BUSY_WAIT.as_secs()
                    );
                    told = true;
                }
                smol::Timer::after(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

#[derive(Serialize)]
struct IngestView {
    digest: String,
    size: Option<u64>,
    r#ref: String,
    /// "committed" or "already present".
    status: &'static str,
    /// Offset the upload resumed from (0 if it started from the beginning).
    resumed_from: u64,
}

fn report(opts: Opts, v: &IngestView) -> Result<()> {
    if opts.json {
        return output::json(v).map_err(stdout_err);
    }
    if v.status != "committed" {
        eprintln!("berth: {} is already present", v.digest);
    }
    output::text(&format!("{}\n", v.digest)).map_err(stdout_err)
}

/// Runs `berth content ingest`.
pub async fn run(client: &Client, opts: Opts, args: IngestArgs) -> Result<()> {
    let expected = args.expected.as_deref().map(digest_arg).transpose()?;
    let labels = parse::labels(&args.labels).map_err(Error::usage)?;
    let mut source = Source::open(&args.file)?;
    let name = source.name();
    let reference = args
        .reference
        .clone()
        .unwrap_or_else(|| source.default_ref());
    let what = format!("ingest {reference:?}");
    let total = source.size();
    let resumable = total.is_some();
    let stat = WriteContentRequest {
        action: WriteAction::Stat as i32,
        r#ref: reference.clone(),
        total: total.unwrap_or(0) as i64,
        expected: expected.map(|d| d.to_string()).unwrap_or_default(),
        ..Default::default()
    };
    let (mut session, status) = match open_session(client, &stat, opts.json).await {
        Ok(x) => x,
        Err(s) if s.code() == Code::AlreadyExists && expected.is_some() => {
            return report(
                opts,
                &IngestView {
                    digest: expected.map(|d| d.to_string()).unwrap_or_default(),
                    size: total,
                    r#ref: reference,
                    status: "already present",
                    resumed_from: 0,
                },
            );
        }
        Err(s) if s.code() == Code::Unavailable => {
            return Err(Error::failed(format!(
                "{what} is being written by another client (another `berth content ingest` of \
                 the same file still running?); wait for it, or pass a different --ref"
            )))
        }
        Err(s) => return Err(client.err(&what, &s)),
    };
    let held = status.offset.max(0) as u64;
    let held_digest = Digest::parse(&status.digest).ok();
    let algorithm = expected
        .map(|d| d.algorithm())
        .or(held_digest.map(|d| d.algorithm()))
        .unwrap_or(Algorithm::Sha256);

    // decide where to start
    let mut hasher = Hasher::new(algorithm);
    let mut start = 0u64;
    if held > 0 {
        let fits = total.is_some_and(|t| held <= t);
        match source {
            Source::File {
                file,
                path,
                size,
                mtime,
            } if fits => {
                let (mut file, prefix) = hash_prefix(file, held, algorithm).await;
                match prefix {
                    Ok(h) if Some(h.digest()) == held_digest => {
                        hasher = h;
                        start = held;
                        eprintln!(
                            "berth: resuming {reference} at offset {held} ({} already \
                             ingested, verified against {name})",
                            output::human_size(held)
                        );
                    }
                    Ok(_) => {
                        eprintln!(
                            "berth: {reference} holds {held} bytes that differ from {name}; \
                             starting over"
                        );
                        file.seek(SeekFrom::Start(0))
                            .map_err(|e| Error::io(format!("seeking {name}"), &e))?;
                    }
                    Err(e) => return Err(Error::io(format!("reading {name}"), &e)),
                }
                source = Source::File {
                    file,
                    path,
                    size,
                    mtime,
                };
            }
            s => {
                let why = if resumable {
                    format!("more than the {} bytes of {name}", total.unwrap_or(0))
                } else {
                    format!("but {name} cannot be re-read to resume")
                };
                eprintln!("berth: {reference} already holds {held} bytes, {why}; starting over");
                source = s;
            }
        }
    }

    let (ctx, crx) = async_channel::bounded(READ_AHEAD);
    let local_hash = args.verify.then_some(hasher);
    spawn_reader(source.into_reader(), local_hash, start, ctx);
    let pb = progress(opts, total);
    pb.set_position(start);
    pb.reset_eta();
    let resume_hint = if resumable {
        " (the bytes sent so far are kept: run the same command again to resume)".to_string()
    } else {
        String::new()
    };
    let fail = |e: Error| Error::failed(format!("{e}{resume_hint}")).with_code(e.exit_code());

    let mut offset = start;
    let mut restarting = held > 0 && start == 0;
    let digest = loop {
        match crx.recv().await {
            Ok(Chunk::Data(data)) => {
                let len = data.len() as u64;
                let reply = session
                    .call(WriteContentRequest {
                        action: WriteAction::Write as i32,
                        offset: offset as i64,
                        data,
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| {
                        pb.abandon();
                        fail(client.err(&what, &s))
                    })?;
                restarting = false;
                if reply.offset as u64 != offset + len {
                    pb.abandon();
                    return Err(Error::failed(format!(
                        "berthd acknowledged {what} at offset {} after a write that ends at {}",
                        reply.offset,
                        offset + len
                    )));
                }
                offset += len;
                pb.set_position(offset);
            }
            Ok(Chunk::Done { digest, len }) => {
                debug_assert_eq!(len, offset);
                break digest;
            }
            Ok(Chunk::Failed(e)) => {
                pb.abandon();
                return Err(fail(Error::io(format!("reading {name}"), &e)));
            }
            Err(_) => {
                pb.abandon();
                return Err(Error::failed("the reader thread stopped unexpectedly"));
            }
        }
    };
    pb.finish_and_clear();
    if restarting {
        // nothing was written, so the old bytes were never truncated
        return Err(Error::failed(format!(
            "{what} holds {held} bytes of other data and {name} is empty; drop it with `berth \
             content abort {reference}` or pass another --ref"
        )));
    }
    if let Some(size) = total {
        if offset != size {
            return Err(Error::failed(format!(
                "{name} changed while it was read ({size} bytes at the start, {offset} read); \
                 nothing was committed. Run the command again once the file is stable"
            )));
        }
    }
    if let (Some(e), Some(digest)) = (expected, digest) {
        if e != digest {
            return Err(Error::failed(format!(
                "{name} has digest {digest}, not the expected {e}; nothing was committed (the \
                 ingest {reference:?} is kept; drop it with `berth content abort {reference}`)"
            )));
        }
    }
    let committed = session
        .call(WriteContentRequest {
            action: WriteAction::Commit as i32,
            total: offset as i64,
            offset: offset as i64,
            expected: expected
                .or(digest)
                .map(|d| d.to_string())
                .unwrap_or_default(),
            labels: labels.into_iter().collect(),
            ..Default::default()
        })
        .await;
    let (status, digest) = match committed {
        Ok(reply) => {
            let committed = Digest::parse(&reply.digest).map_err(|e| {
                Error::failed(format!("berthd committed {what} under a bad digest: {e}"))
            })?;
            if let Some(d) = expected.or(digest).filter(|d| *d != committed) {
                return Err(Error::failed(format!(
                    "berthd committed {what} as {committed}, but the bytes sent hash to {d}"
                )));
            }
            session.close().await;
            ("committed", committed)
        }
        Err(s) if s.code() == Code::AlreadyExists => {
            match expected.or(digest).or_else(|| digest_in(s.message())) {
                Some(d) => ("already present", d),
                None => {
                    return Err(Error::failed(format!(
                        "{what}: berthd already has these bytes but did not say under which \
                     digest; pass --verify to compute it here"
                    )))
                }
            }
        }
        // a size or digest mismatch: berthd dropped the ingest, nothing is kept to resume
        Err(s) if s.code() == Code::FailedPrecondition => return Err(client.err(&what, &s)),
        Err(s) => return Err(fail(client.err(&what, &s))),
    };
    report(
        opts,
        &IngestView {
            digest: digest.to_string(),
            size: Some(offset),
            r#ref: reference,
            status,
            resumed_from: start,
        },
    )
}
