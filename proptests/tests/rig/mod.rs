//! A deterministic rig for the regression tests and the reproducers: one ingest on a
//! [`MemHost`], driven request by request.
#![allow(dead_code)]

use berth_core::content::{Ingest, IngestError, IngestPaths, Input, OpenRequest, Recovery, Reply};
use berth_core::{Digest, Instant, Machine};
use berth_proptests::host::{drive, Action, Drive, Match, MemHost, Rule};

pub const DIR: &str = "content/ingest/r";
pub const BLOBS: &str = "content/blobs";
pub const DATA: &str = "content/ingest/r/data";
pub const STATE: &str = "content/ingest/r/state";

/// An ingest on a host, driven request by request.
pub struct Rig {
    pub host: MemHost,
    pub ingest: Option<Ingest>,
    now: u64,
}

impl Rig {
    pub fn new() -> Self {
        let mut rig = Rig {
            host: MemHost::new(),
            ingest: None,
            now: 1,
        };
        let recovery = rig.open();
        assert_eq!(recovery, Recovery::Created);
        rig
    }

    pub fn now(&mut self) -> Instant {
        self.now += 1;
        Instant(self.now)
    }

    pub fn open(&mut self) -> Recovery {
        let now = self.now();
        let req = OpenRequest {
            namespace: "default".into(),
            reference: "r".into(),
            expected: None,
            total: 0,
            paths: IngestPaths {
                dir: DIR.into(),
                blobs: BLOBS.into(),
            },
        };
        let mut m = Ingest::open(now, req);
        match drive(&mut self.host, &mut m, now) {
            Ok(Drive::Done(Ok(Reply::Opened { recovery, .. }))) => {
                self.ingest = Some(m);
                recovery
            }
            other => panic!("open: {other:?}"),
        }
    }

    /// One request; `None` if the host crashed during it.
    pub fn request(&mut self, input: Input) -> Option<Result<Reply, IngestError>> {
        let now = self.now();
        self.host.seal();
        let m = self.ingest.as_mut().expect("open");
        m.handle(now, input).expect("request accepted");
        match drive(&mut self.host, m, now).expect("completions accepted") {
            Drive::Done(d) => Some(d),
            Drive::Crashed => None,
            Drive::Quiet => panic!("machine went quiet"),
        }
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) -> Option<Result<Reply, IngestError>> {
        self.request(Input::Write {
            offset,
            data: data.to_vec().into(),
        })
    }

    pub fn offset(&self) -> u64 {
        self.ingest.as_ref().expect("open").status().offset
    }

    pub fn digest(&self) -> Digest {
        self.ingest.as_ref().expect("open").digest()
    }

    pub fn data(&self) -> &[u8] {
        self.host.file(DATA).expect("data file")
    }

    /// The bytes the ingest's offset and hash claim: the data file's first `offset` bytes.
    /// Panics unless the hash is theirs (the invariant every resume must keep).
    pub fn assert_hash_is_of_data(&self, context: &str) {
        let offset = self.offset() as usize;
        let data = self.data();
        let claimed = &data[..offset.min(data.len())];
        assert_eq!(
            self.digest(),
            Digest::sha256(claimed),
            "{context}: the ingest is at offset {offset} with a hash that is not of the data \
             file's first {offset} bytes {claimed:?}"
        );
    }

    pub fn close_and_reopen(&mut self) -> Recovery {
        assert_eq!(self.request(Input::Close), Some(Ok(Reply::Closed)));
        self.ingest = None;
        self.open()
    }

    pub fn crash_and_reopen(&mut self) -> Recovery {
        self.ingest = None;
        self.host.crash(false);
        self.open()
    }

    /// Commits without checks, asserts the stored blob hashes to the digest it is stored as,
    /// and returns the blob.
    pub fn commit_and_check_blob(&mut self) -> Vec<u8> {
        let Some(Ok(Reply::Committed { digest, .. })) = self.request(Input::Commit {
            size: 0,
            expected: None,
        }) else {
            panic!("commit failed");
        };
        self.ingest = None;
        let path = format!("{BLOBS}/sha256/{}", digest.hex());
        let blob = self.host.file(&path).expect("blob stored").to_vec();
        assert_eq!(
            Digest::sha256(&blob),
            digest,
            "blob stored as {digest} holds {blob:?}, which hashes to something else"
        );
        blob
    }

    /// The `skip`+1-th `op` on `path` in the next request gets `action`.
    pub fn fault(&mut self, op: &'static str, path: &str, skip: u32, action: Action) {
        self.host.push_rule(Rule {
            tag: 9,
            when: Match::OpOn(op, path.into()),
            skip,
            action,
        });
    }

    /// A fresh ingest holding "abc" (checkpoint seq 1), about to be rewritten.
    pub fn with_abc() -> Self {
        let mut rig = Rig::new();
        assert!(matches!(rig.write(0, b"abc"), Some(Ok(Reply::Status(_)))));
        rig
    }
}
