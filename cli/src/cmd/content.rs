//! `berth content`: the blob store. List, read (digest-verified), remove and label blobs; list
//! and abort in-progress ingests; ingest a file or stdin, resumably (see [`ingest`]).

mod ingest;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use berth_api::services::content::v1::{
    AbortRequest, DeleteContentRequest, Info, InfoRequest, ListContentRequest, ListStatusesRequest,
    ReadContentRequest, UpdateRequest,
};
use berth_core::digest::Hasher;
use berth_core::Digest;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::client::Client;
use crate::cmd::{label_paths, remove_each, stdout_err, Failures};
use crate::error::{Error, Result};
use crate::output::{self, Table};
use crate::{parse, Opts};

pub use ingest::IngestArgs;

/// `berth content …`
#[derive(Debug, Subcommand)]
pub enum ContentCommand {
    /// List blobs (filters such as digest==sha256:…, size==N, labels."k"==v; several are OR-ed)
    #[command(visible_alias = "list")]
    Ls {
        /// containerd filters
        filters: Vec<String>,
    },
    /// Write a blob to stdout (or --output FILE), verifying its digest while streaming
    #[command(visible_alias = "cat")]
    Get {
        /// The blob's digest (sha256:…)
        digest: String,
        /// Write to FILE instead of stdout; FILE appears only once the bytes are verified
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Remove blobs from the namespace
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// Digests of the blobs
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// Set labels on a blob (key= removes a label)
    Label {
        /// The blob's digest
        digest: String,
        /// Labels as key=value; an empty value removes the label
        #[arg(required = true, value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// List ingests in progress (filters such as ref==x)
    Active {
        /// containerd filters
        filters: Vec<String>,
    },
    /// Store a file (or stdin, `-`) as a blob and print its digest; resumes an interrupted run
    Ingest(IngestArgs),
    /// Drop in-progress ingests
    Abort {
        /// Refs of the ingests (as `berth content active` shows)
        #[arg(required = true)]
        refs: Vec<String>,
    },
}

/// Parses a digest argument; a malformed one is a usage error.
pub fn digest_arg(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| Error::usage(format!("{e}")))
}

/// A progress bar on stderr when stderr is a terminal and output is not JSON; else hidden.
pub fn progress(opts: Opts, total: Option<u64>) -> ProgressBar {
    if opts.json || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (pb, template) = match total {
        Some(n) => (
            ProgressBar::new(n),
            "{spinner} [{elapsed_precise}] [{wide_bar}] {binary_bytes}/{binary_total_bytes} \
             {binary_bytes_per_sec} ETA {eta}",
        ),
        None => (
            ProgressBar::no_length(),
            "{spinner} [{elapsed_precise}] {binary_bytes} {binary_bytes_per_sec}",
        ),
    };
    pb.set_draw_target(ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

#[derive(Serialize)]
struct InfoView {
    digest: String,
    size: i64,
    created_at: Option<String>,
    updated_at: Option<String>,
    labels: BTreeMap<String, String>,
}

fn info_view(i: &Info) -> InfoView {
    InfoView {
        digest: i.digest.clone(),
        size: i.size,
        created_at: output::rfc3339(i.created_at.as_ref()),
        updated_at: output::rfc3339(i.updated_at.as_ref()),
        labels: output::sorted(&i.labels),
    }
}

#[derive(Serialize)]
struct StatusView {
    r#ref: String,
    offset: i64,
    total: i64,
    expected: Option<String>,
    started_at: Option<String>,
    updated_at: Option<String>,
}

/// Runs a `berth content` command.
pub async fn run(client: &Client, opts: Opts, cmd: ContentCommand) -> Result<()> {
    match cmd {
        ContentCommand::Ls { filters } => ls(client, opts, filters).await,
        ContentCommand::Get { digest, output } => {
            get(client, opts, digest_arg(&digest)?, output.as_deref()).await
        }
        ContentCommand::Rm { digests } => {
            let digests = digests
                .iter()
                .map(|d| digest_arg(d).map(|d| d.to_string()))
                .collect::<Result<Vec<_>>>()?;
            remove_each(opts, &digests, "blobs", |d| async move {
                client
                    .content()
                    .delete(client.request(DeleteContentRequest {
                        digest: d.to_string(),
                    })?)
                    .await
                    .map_err(|s| client.err(&format!("content {d}"), &s))?;
                Ok(d)
            })
            .await
        }
        ContentCommand::Label { digest, labels } => {
            let digest = digest_arg(&digest)?;
            let labels = parse::labels(&labels).map_err(Error::usage)?;
            let paths = label_paths(&labels);
            let what = format!("content {digest}");
            let info = client
                .content()
                .update(client.request(UpdateRequest {
                    info: Some(Info {
                        digest: digest.to_string(),
                        labels: labels.into_iter().collect(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths }),
                })?)
                .await
                .map_err(|s| client.err(&what, &s))?
                .into_inner()
                .info
                .unwrap_or_default();
            if opts.json {
                return output::json(&info_view(&info)).map_err(stdout_err);
            }
            let mut t = Table::new(&["DIGEST", "LABELS"]);
            t.row(vec![info.digest.clone(), output::labels_cell(&info.labels)]);
            t.print().map_err(stdout_err)
        }
        ContentCommand::Active { filters } => active(client, opts, filters).await,
        ContentCommand::Ingest(args) => ingest::run(client, opts, args).await,
        ContentCommand::Abort { refs } => {
            let mut failures = Failures::new(refs.len());
            for r in &refs {
                let what = format!("ingest {r:?}");
                match client
                    .content()
                    .abort(client.request(AbortRequest { r#ref: r.clone() })?)
                    .await
                {
                    Ok(_) if !opts.json => output::text(&format!("{r}\n")).map_err(stdout_err)?,
                    Ok(_) => {}
                    Err(s) => failures.push(client.err(&what, &s)),
                }
            }
            if opts.json {
                output::json(&refs).map_err(stdout_err)?;
            }
            failures.finish("ingests", "aborted")
        }
    }
}

async fn ls(client: &Client, opts: Opts, filters: Vec<String>) -> Result<()> {
    let mut stream = client
        .content()
        .list(client.request(ListContentRequest { filters })?)
        .await
        .map_err(|s| client.err("content", &s))?
        .into_inner();
    let mut infos = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| client.err("content", &s))?
    {
        infos.extend(chunk.info);
    }
    if opts.json {
        let v: Vec<InfoView> = infos.iter().map(info_view).collect();
        return output::json(&v).map_err(stdout_err);
    }
    let now = output::now();
    let mut t = Table::new(&["DIGEST", "SIZE", "AGE", "LABELS"]);
    for i in &infos {
        t.row(vec![
            i.digest.clone(),
            output::human_size(i.size.max(0) as u64),
            output::age(i.created_at.as_ref(), now),
            output::labels_cell(&i.labels),
        ]);
    }
    t.print().map_err(stdout_err)
}

async fn active(client: &Client, opts: Opts, filters: Vec<String>) -> Result<()> {
    let mut statuses = client
        .content()
        .list_statuses(client.request(ListStatusesRequest { filters })?)
        .await
        .map_err(|s| client.err("ingests", &s))?
        .into_inner()
        .statuses;
    statuses.sort_by(|a, b| a.r#ref.cmp(&b.r#ref));
    if opts.json {
        let v: Vec<StatusView> = statuses
            .iter()
            .map(|s| StatusView {
                r#ref: s.r#ref.clone(),
                offset: s.offset,
                total: s.total,
                expected: (!s.expected.is_empty()).then(|| s.expected.clone()),
                started_at: output::rfc3339(s.started_at.as_ref()),
                updated_at: output::rfc3339(s.updated_at.as_ref()),
            })
            .collect();
        return output::json(&v).map_err(stdout_err);
    }
    let now = output::now();
    let mut t = Table::new(&["REF", "SIZE", "STARTED", "UPDATED"]);
    for s in &statuses {
        let size = if s.total > 0 {
            format!(
                "{}/{}",
                output::human_size(s.offset.max(0) as u64),
                output::human_size(s.total as u64)
            )
        } else {
            output::human_size(s.offset.max(0) as u64)
        };
        t.row(vec![
            s.r#ref.clone(),
            size,
            output::age(s.started_at.as_ref(), now),
            output::age(s.updated_at.as_ref(), now),
        ]);
    }
    t.print().map_err(stdout_err)
}

/// Where `get` writes: stdout, or a temporary file renamed into place once verified.
enum Sink {
    Stdout(io::StdoutLock<'static>),
    File {
        file: io::BufWriter<File>,
        tmp: PathBuf,
        dest: PathBuf,
    },
}

impl Sink {
    fn open(dest: Option<&Path>) -> Result<Sink> {
        let Some(dest) = dest else {
            return Ok(Sink::Stdout(io::stdout().lock()));
        };
        let name = dest
            .file_name()
            .ok_or_else(|| Error::usage(format!("--output {} is not a file", dest.display())))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".berth-{}.tmp", std::process::id()));
        let tmp = dest.with_file_name(tmp_name);
        let file =
            File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), &e))?;
        Ok(Sink::File {
            file: io::BufWriter::with_capacity(1 << 20, file),
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(s) => s.write_all(data),
            Sink::File { file, .. } => file.write_all(data),
        }
    }

    fn discard(self) {
        if let Sink::File { tmp, .. } = self {
            let _ = std::fs::remove_file(tmp);
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Stdout(mut s) => s.flush().map_err(stdout_err),
            Sink::File { file, tmp, dest } => {
                let done = file
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all())
                    .and_then(|()| std::fs::rename(&tmp, &dest));
                done.map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    Error::io(format!("writing {}", dest.display()), &e)
                })
            }
        }
    }
}

async fn get(client: &Client, opts: Opts, digest: Digest, dest: Option<&Path>) -> Result<()> {
    let what = format!("content {digest}");
    let size = client
        .content()
        .info(client.request(InfoRequest {
            digest: digest.to_string(),
        })?)
        .await
        .map_err(|s| client.err(&what, &s))?
        .into_inner()
        .info
        .map_or(0, |i| i.size.max(0) as u64);
    let mut stream = client
        .content()
        .read(client.request(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        })?)
        .await
        .map_err(|s| client.err(&what, &s))?
        .into_inner();
    let mut sink = Sink::open(dest)?;
    let pb = if dest.is_some() || !io::stdout().is_terminal() {
        progress(opts, Some(size))
    } else {
        ProgressBar::hidden()
    };
    let mut hasher = Hasher::new(digest.algorithm());
    let mut offset = 0u64;
    let result: Result<()> = async {
        while let Some(msg) = stream.message().await.map_err(|s| client.err(&what, &s))? {
            if msg.offset as u64 != offset {
                return Err(Error::failed(format!(
                    "berthd sent {what} out of order (bytes at offset {} where {offset} was due)",
                    msg.offset
                )));
            }
            hasher.update(&msg.data);
            if let Err(e) = sink.write(&msg.data) {
                return Err(match (&sink, e.kind()) {
                    // a reader such as `head` closed the pipe: stop quietly, as cat does
                    (Sink::Stdout(_), io::ErrorKind::BrokenPipe) => std::process::exit(0),
                    (Sink::Stdout(_), _) => stdout_err(e),
                    (Sink::File { tmp, .. }, _) => {
                        Error::io(format!("writing {}", tmp.display()), &e)
                    }
                });
            }
            offset += msg.data.len() as u64;
            pb.set_position(offset);
        }
        let actual = hasher.digest();
        if offset != size || actual != digest {
            let wrote = match dest {
                None => " The bytes already written to stdout are not the blob: discard them.",
                Some(_) => "",
            };
            return Err(Error::failed(format!(
                "{what} failed verification: berthd sent {offset} bytes (recorded size {size}) \
                 that hash to {actual}. The stored blob is damaged; remove it with `berth content \
                 rm {digest}` and ingest it again.{wrote}"
            )));
        }
        Ok(())
    }
    .await;
    pb.finish_and_clear();
    match result {
        Ok(()) => sink.finish(),
        Err(e) => {
            sink.discard();
            Err(e)
        }
    }
}
