//! One `Content.Write` stream: STAT / WRITE / COMMIT messages on the ingest named by the first
//! message's ref, pipelined.
//!
//! containerd's clients send one message and wait for its reply before the next, so a daemon
//! that hashes and writes a chunk before answering serialises its own CPU with the client's. Here
//! a WRITE at the expected offset is *accepted* — queued to the ingest's worker, which hashes and
//! writes it through the `Ingest` machine — and answered at once with the accepted offset, so the
//! client prepares the next chunk while this one is hashed and written. At most
//! [`PIPELINE`] chunks wait. STAT and COMMIT drain the queue first and answer with exact figures
//! (offset, digest); a WRITE reply leaves the digest empty, since its chunk may still be queued. A failure in a
//! queued write ends the stream with that error; the ingest itself stays consistent (the machine
//! rolls the failed write back), so the client resumes from the offset a STAT reports — the same
//! path as after a crash, where accepted bytes not yet checkpointed are re-sent.

use std::sync::{Arc, Mutex};

use berth_api::services::content::v1::{WriteAction, WriteContentRequest, WriteContentResponse};
use berth_core::content::{Ingest, Input, OpenRequest, Recovery, Reply, Status as IngestStatus};
use berth_core::metadata::Labels;
use berth_core::Digest;
use berth_drivers::layout::Layout;
use berth_drivers::store::{LeaseResource, StoreError};
use berth_drivers::Driven;
use tonic::{Status, Streaming};

use super::content::parse_digest;
use crate::errors::status;
use crate::state::{timestamp, Daemon};

/// Chunks that may wait for the worker while the client sends the next.
const PIPELINE: usize = 1;

type Replies = async_channel::Sender<Result<WriteContentResponse, Status>>;

/// What the worker reports after a call: the machine's reply (if an input was given), its status
/// and its digest.
struct Snapshot {
    reply: Option<Reply>,
    status: IngestStatus,
    digest: Digest,
}

enum Job {
    /// Hash and write a chunk; a failure is kept for the next call.
    Write { offset: u64, data: bytes::Bytes },
    /// Run an input (or none, to just read the status) once everything before it is done.
    Call {
        input: Option<Input>,
        reply: async_channel::Sender<Result<Snapshot, Status>>,
    },
}

async fn run(d: &mut Driven<Ingest>, input: Input) -> Result<Reply, Status> {
    match d.request(input, &mut |()| {}).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(status(e)),
        Err(e) => Err(status(e)),
    }
}

/// Owns the machine: runs jobs in order. When the stream ends it closes an unfinished ingest,
/// leaving it on disk to be resumed.
async fn worker(
    mut ingest: Driven<Ingest>,
    jobs: async_channel::Receiver<Job>,
    failed: Arc<Mutex<Option<Status>>>,
) {
    while let Ok(job) = jobs.recv().await {
        match job {
            Job::Write { offset, data } => {
                if failed.lock().expect("failure slot").is_some() {
                    continue; // the stream is ending with the first failure
                }
                if let Err(e) = run(&mut ingest, Input::Write { offset, data }).await {
                    *failed.lock().expect("failure slot") = Some(e);
                }
            }
            Job::Call { input, reply } => {
                let pending_failure = failed.lock().expect("failure slot").take();
                let result = match pending_failure {
                    Some(e) => Err(e),
                    None => match input {
                        Some(i) => run(&mut ingest, i).await.map(Some),
                        None => Ok(None),
                    },
                };
                let snap = result.map(|reply| Snapshot {
                    reply,
                    status: ingest.machine().status(),
                    digest: ingest.machine().digest(),
                });
                let _ = reply.send(snap).await;
            }
        }
    }
    if !ingest.machine().is_finished() {
        let _ = run(&mut ingest, Input::Close).await;
    }
}

struct Worker {
    jobs: async_channel::Sender<Job>,
    failed: Arc<Mutex<Option<Status>>>,
}

impl Worker {
    async fn call(&self, input: Option<Input>) -> Result<Snapshot, Status> {
        let (tx, rx) = async_channel::bounded(1);
        self.jobs
            .send(Job::Call { input, reply: tx })
            .await
            .map_err(|_| Status::internal("ingest worker stopped"))?;
        rx.recv()
            .await
            .map_err(|_| Status::internal("ingest worker stopped"))?
    }

    async fn write(&self, offset: u64, data: bytes::Bytes) -> Result<(), Status> {
        self.jobs
            .send(Job::Write { offset, data })
            .await
            .map_err(|_| Status::internal("ingest worker stopped"))
    }

    fn failure(&self) -> Option<Status> {
        self.failed.lock().expect("failure slot").take()
    }
}

fn response(
    action: WriteAction,
    st: &IngestStatus,
    offset: u64,
    digest: Option<Digest>,
) -> WriteContentResponse {
    WriteContentResponse {
        action: action as i32,
        started_at: Some(timestamp(st.started_at)),
        updated_at: Some(timestamp(st.updated_at)),
        offset: offset as i64,
        total: st.total as i64,
        digest: digest.map(|d| d.to_string()).unwrap_or_default(),
    }
}

/// Serves one Write stream. Errors end the stream with their status.
pub(super) async fn session(
    d: Arc<Daemon>,
    ns: String,
    lease: Option<String>,
    mut inbound: Streaming<WriteContentRequest>,
    tx: &Replies,
) -> Result<(), Status> {
    let Some(first) = inbound.message().await? else {
        return Ok(());
    };
    if first.r#ref.is_empty() {
        return Err(Status::invalid_argument(
            "the first write message must name a ref",
        ));
    }
    let reference = first.r#ref.clone();
    let Some(_lock) = d.lock_ingest(&ns, &reference) else {
        return Err(Status::unavailable(format!(
            "ref {reference:?} is locked by another writer"
        )));
    };
    let expected = if first.expected.is_empty() {
        None
    } else {
        Some(parse_digest(&first.expected)?)
    };
    if let Some(e) = expected {
        if d.store.content_get(&ns, &e).map_err(status)?.is_some() {
            return Err(Status::already_exists(format!(
                "content {e}: already exists"
            )));
        }
    }
    if let Some(l) = lease.clone() {
        let (n, r) = (ns.clone(), reference.clone());
        d.store_write(move |s| {
            s.lease_add_resource(
                &n,
                &l,
                &LeaseResource {
                    kind: "ingests".into(),
                    id: r,
                },
            )
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => Status::not_found("lease does not exist"),
            e => status(e),
        })?;
    }
    let req = OpenRequest {
        namespace: ns.clone(),
        reference: reference.clone(),
        expected,
        total: first.total.max(0) as u64,
        paths: Layout::ingest(&ns, &reference),
    };
    let mut ingest = Driven::new(Ingest::open(d.now(), req), d.exec.clone(), d.clock.clone());
    let opened = match ingest.start(&mut |()| {}).await {
        Ok(Ok(Reply::Opened {
            recovery,
            status: st,
        })) => {
            match recovery {
                Recovery::Resumed { offset, discarded } => log::info!(
                    "ingest {ns}/{reference}: resumed at offset {offset} from its hash checkpoint (0 bytes re-read, {discarded} unconfirmed bytes dropped)"
                ),
                Recovery::Restarted { reason } => log::warn!("ingest {ns}/{reference}: restarted from 0: {reason}"),
                _ => log::debug!("ingest {ns}/{reference}: started, total {}", st.total),
            }
            st
        }
        Ok(Ok(_)) => return Err(Status::internal("ingest open gave no status")),
        Ok(Err(e)) => return Err(status(e)),
        Err(e) => return Err(status(e)),
    };

    let (jobs, job_rx) = async_channel::bounded(PIPELINE);
    let failed = Arc::new(Mutex::new(None));
    let worker_task = smol::spawn(worker(ingest, job_rx, failed.clone()));
    let w = Worker { jobs, failed };
    let result = serve_messages(&d, &ns, &lease, &mut inbound, tx, &w, first, opened).await;
    drop(w);
    worker_task.await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn serve_messages(
    d: &Arc<Daemon>,
    ns: &str,
    lease: &Option<String>,
    inbound: &mut Streaming<WriteContentRequest>,
    tx: &Replies,
    w: &Worker,
    first: WriteContentRequest,
    opened: IngestStatus,
) -> Result<(), Status> {
    let mut accepted = opened.offset;
    let mut status = opened;
    let mut next = Some(first);
    loop {
        let m = match next.take() {
            Some(m) => m,
            None => match inbound.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(e) => {
                    log::debug!("write stream {:?} ended: {e}", status.reference);
                    return Ok(());
                }
            },
        };
        if let Some(e) = w.failure() {
            return Err(e);
        }
        let action = WriteAction::try_from(m.action)
            .map_err(|_| Status::invalid_argument(format!("unknown write action {}", m.action)))?;
        if m.total > 0 && m.total as u64 != status.total {
            status = w.call(Some(Input::SetTotal(m.total as u64))).await?.status;
        }
        let reply = match action {
            WriteAction::Write if !m.data.is_empty() => {
                let offset = m.offset.max(0) as u64;
                if offset != accepted && offset != 0 {
                    return Err(Status::out_of_range(format!(
                        "write at offset {offset} for ingest {:?}, but its offset is {accepted}",
                        status.reference
                    )));
                }
                accepted = offset + m.data.len() as u64;
                w.write(offset, m.data).await?;
                response(action, &status, accepted, None)
            }
            WriteAction::Stat | WriteAction::Write => {
                let snap = w.call(None).await?;
                status = snap.status;
                accepted = status.offset;
                response(action, &status, accepted, Some(snap.digest))
            }
            WriteAction::Commit => {
                if !m.data.is_empty() {
                    w.write(m.offset.max(0) as u64, m.data).await?;
                }
                let expected = if m.expected.is_empty() {
                    None
                } else {
                    Some(parse_digest(&m.expected)?)
                };
                let snap = w
                    .call(Some(Input::Commit {
                        size: m.total.max(0) as u64,
                        expected,
                    }))
                    .await?;
                let Some(Reply::Committed { digest, size, .. }) = snap.reply else {
                    return Err(Status::internal("commit gave no digest"));
                };
                let labels: Labels = m.labels.into_iter().collect();
                let (n, l, now) = (ns.to_string(), lease.clone(), d.now());
                let created = d
                    .store_write(move |s| {
                        s.content_add(&n, &digest, size, &labels, l.as_deref(), now)
                    })
                    .await
                    .map_err(crate::errors::status)?;
                if !created {
                    return Err(Status::already_exists(format!(
                        "content {digest}: already exists"
                    )));
                }
                let mut r = response(action, &snap.status, size, Some(digest));
                r.total = size as i64;
                r.updated_at = Some(timestamp(now));
                r
            }
        };
        if tx.send(Ok(reply)).await.is_err() {
            return Ok(());
        }
    }
}
