//! The fake host: an in-memory filesystem that records every Op and injects faults.
//!
//! It is deterministic and answers immediately, so machines can be driven through failures a
//! real disk rarely shows: ENOSPC or EIO on a chosen Op, short writes, and a crash after the Nth
//! Op (every later Op fails and changes nothing, while what was written stays, as after
//! `kill -9` with the page cache intact). It runs the same [`conformance`](crate::conformance)
//! suite as the real drivers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use berth_core::op::{errno, FileStat, Handle, OpError, OpKind, OpOutput, OpResult};
use berth_core::Instant;
use bytes::Bytes;

use crate::exec::{Executor, OpFuture};

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Fail the matching Op with this errno (e.g. `ENOSPC`, `EIO`).
    Errno(i32),
    /// Let a matching write store at most this many bytes.
    ShortWrite(usize),
}

/// When a fault fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Only Ops with this name ([`OpKind::name`]); `None` for any.
    pub op: Option<&'static str>,
    /// Only Ops whose path contains this; `None` for any.
    pub path_contains: Option<String>,
    /// Skip this many matching Ops first.
    pub skip: usize,
    /// Fire this many times (`usize::MAX` for always).
    pub times: usize,
    /// What happens.
    pub fault: Fault,
}

/// One recorded Op: its name and the path it touched (for handle Ops, the handle's path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Op name.
    pub op: &'static str,
    /// Path involved.
    pub path: String,
    /// Bytes written or asked for, where that applies.
    pub len: u64,
}

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File(Vec<u8>),
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, Node>,
    handles: HashMap<u64, String>,
    next_handle: u64,
    log: Vec<Record>,
    rules: Vec<FaultRule>,
    ops: usize,
    crash_after: Option<usize>,
}

/// The fake host. Cloning shares the same filesystem.
#[derive(Clone, Default)]
pub struct FakeHost {
    state: Arc<Mutex<State>>,
}

fn e(op: &'static str, errno: i32) -> OpError {
    OpError { op, errno }
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

impl FakeHost {
    /// An empty host.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a fault rule.
    pub fn inject(&self, rule: FaultRule) {
        self.state.lock().expect("fake lock").rules.push(rule);
    }

    /// Fails every Op after `n` more Ops (a crash of the process mid-flight).
    pub fn crash_after(&self, n: usize) {
        let mut s = self.state.lock().expect("fake lock");
        s.crash_after = Some(s.ops + n);
    }

    /// Ends a simulated crash: Ops work again; open handles are gone, as after a restart.
    pub fn restart(&self) {
        let mut s = self.state.lock().expect("fake lock");
        s.crash_after = None;
        s.handles.clear();
        s.rules.clear();
    }

    /// The Ops performed so far.
    pub fn log(&self) -> Vec<Record> {
        self.state.lock().expect("fake lock").log.clone()
    }

    /// Clears the Op log.
    pub fn clear_log(&self) {
        self.state.lock().expect("fake lock").log.clear();
    }

    /// Contents of a file, if it exists.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        match self.state.lock().expect("fake lock").nodes.get(path) {
            Some(Node::File(d)) => Some(d.clone()),
            _ => None,
        }
    }

    /// True if anything exists at `path`.
    pub fn exists(&self, path: &str) -> bool {
        self.state
            .lock()
            .expect("fake lock")
            .nodes
            .contains_key(path)
    }

    /// Number of open handles.
    pub fn open_handles(&self) -> usize {
        self.state.lock().expect("fake lock").handles.len()
    }

    /// Performs one Op synchronously.
    pub fn perform(&self, op: OpKind) -> OpResult {
        let mut s = self.state.lock().expect("fake lock");
        s.perform(op)
    }
}

impl State {
    fn path_of(&self, op: &OpKind) -> String {
        match op {
            OpKind::Mkdir { path, .. }
            | OpKind::Open { path, .. }
            | OpKind::FsyncDir { path }
            | OpKind::WriteFile { path, .. }
            | OpKind::ReadFile { path }
            | OpKind::Stat { path }
            | OpKind::Remove { path }
            | OpKind::RemoveAll { path }
            | OpKind::ReadDir { path } => path.clone(),
            OpKind::Rename { from, .. } => from.clone(),
            OpKind::Write { handle, .. }
            | OpKind::Read { handle, .. }
            | OpKind::Truncate { handle, .. }
            | OpKind::Fsync { handle }
            | OpKind::Close { handle } => self.handles.get(&handle.0).cloned().unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn fault_for(&mut self, op: &OpKind, path: &str) -> Option<Fault> {
        for rule in &mut self.rules {
            if rule.times == 0
                || rule.op.is_some_and(|n| n != op.name())
                || rule
                    .path_contains
                    .as_ref()
                    .is_some_and(|p| !path.contains(p.as_str()))
            {
                continue;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
                continue;
            }
            rule.times = rule.times.saturating_sub(1);
            return Some(rule.fault.clone());
        }
        None
    }

    fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || matches!(self.nodes.get(path), Some(Node::Dir))
    }

    fn perform(&mut self, op: OpKind) -> OpResult {
        let name = op.name();
        let path = self.path_of(&op);
        let len = match &op {
            OpKind::Write { data, .. } | OpKind::WriteFile { data, .. } => data.len() as u64,
            OpKind::Read { len, .. } => u64::from(*len),
            _ => 0,
        };
        self.log.push(Record {
            op: name,
            path: path.clone(),
            len,
        });
        self.ops += 1;
        if self.crash_after.is_some_and(|n| self.ops > n) {
            return Err(e(name, errno::EIO));
        }
        let check = |p: &str| crate::host::check_path(name, p);
        let mut short = None;
        match self.fault_for(&op, &path) {
            Some(Fault::Errno(n)) => return Err(e(name, n)),
            Some(Fault::ShortWrite(n)) => short = Some(n),
            None => {}
        }
        match op {
            OpKind::Mkdir { path, .. } => {
                check(&path)?;
                let mut prefix = String::new();
                for comp in path.split('/') {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(comp);
                    match self.nodes.get(&prefix) {
                        Some(Node::File(_)) => return Err(e(name, errno::ENOTDIR)),
                        Some(Node::Dir) => {}
                        None => {
                            self.nodes.insert(prefix.clone(), Node::Dir);
                        }
                    }
                }
                Ok(OpOutput::Done)
            }
            OpKind::Open { path, options } => {
                check(&path)?;
                if !self.is_dir(parent_of(&path)) {
                    return Err(e(name, errno::ENOENT));
                }
                let size = match self.nodes.get_mut(&path) {
                    Some(Node::Dir) => return Err(e(name, errno::EISDIR)),
                    Some(Node::File(_)) if options.create && options.exclusive => {
                        return Err(e(name, errno::EEXIST))
                    }
                    Some(Node::File(d)) => {
                        if options.truncate {
                            d.clear();
                        }
                        d.len() as u64
                    }
                    None if options.create => {
                        self.nodes.insert(path.clone(), Node::File(Vec::new()));
                        0
                    }
                    None => return Err(e(name, errno::ENOENT)),
                };
                self.next_handle += 1;
                self.handles.insert(self.next_handle, path);
                Ok(OpOutput::Opened {
                    handle: Handle(self.next_handle),
                    size,
                })
            }
            OpKind::Write {
                handle,
                offset,
                data,
            } => {
                let file = self.file_mut(name, handle)?;
                let n = short.map_or(data.len(), |s| s.min(data.len()));
                let end = offset as usize + n;
                if file.len() < end {
                    file.resize(end, 0);
                }
                file[offset as usize..end].copy_from_slice(&data[..n]);
                Ok(OpOutput::Written(n as u64))
            }
            OpKind::Read {
                handle,
                offset,
                len,
            } => {
                let file = self.file_mut(name, handle)?;
                let start = (offset as usize).min(file.len());
                let end = (start + len as usize).min(file.len());
                Ok(OpOutput::Data(Bytes::copy_from_slice(&file[start..end])))
            }
            OpKind::Truncate { handle, len } => {
                self.file_mut(name, handle)?.resize(len as usize, 0);
                Ok(OpOutput::Done)
            }
            OpKind::Fsync { handle } => self.file_mut(name, handle).map(|_| OpOutput::Done),
            OpKind::FsyncDir { path } => {
                check(&path)?;
                if self.is_dir(&path) {
                    Ok(OpOutput::Done)
                } else {
                    Err(e(name, errno::ENOENT))
                }
            }
            OpKind::Close { handle } => {
                self.handles
                    .remove(&handle.0)
                    .ok_or(e(name, errno::EBADF))?;
                Ok(OpOutput::Done)
            }
            OpKind::WriteFile { path, data, .. } => {
                check(&path)?;
                if !self.is_dir(parent_of(&path)) {
                    return Err(e(name, errno::ENOENT));
                }
                if matches!(self.nodes.get(&path), Some(Node::Dir)) {
                    return Err(e(name, errno::EISDIR));
                }
                self.nodes.insert(path, Node::File(data.to_vec()));
                Ok(OpOutput::Done)
            }
            OpKind::ReadFile { path } => {
                check(&path)?;
                match self.nodes.get(&path) {
                    Some(Node::File(d)) => Ok(OpOutput::Data(Bytes::copy_from_slice(d))),
                    Some(Node::Dir) => Err(e(name, errno::EISDIR)),
                    None => Err(e(name, errno::ENOENT)),
                }
            }
            OpKind::Stat { path } => {
                check(&path)?;
                match self.nodes.get(&path) {
                    Some(Node::File(d)) => Ok(OpOutput::Stat(FileStat {
                        size: d.len() as u64,
                        mode: 0o100600,
                        mtime: Instant(0),
                    })),
                    Some(Node::Dir) => Ok(OpOutput::Stat(FileStat {
                        size: 0,
                        mode: 0o040700,
                        mtime: Instant(0),
                    })),
                    None => Err(e(name, errno::ENOENT)),
                }
            }
            OpKind::Rename { from, to } => {
                check(&from)?;
                check(&to)?;
                if !self.is_dir(parent_of(&to)) {
                    return Err(e(name, errno::ENOENT));
                }
                match self.nodes.remove(&from) {
                    Some(Node::File(d)) => {
                        self.nodes.insert(to, Node::File(d));
                        Ok(OpOutput::Done)
                    }
                    Some(Node::Dir) => {
                        // move the subtree
                        let prefix = format!("{from}/");
                        let moved: Vec<_> = self
                            .nodes
                            .range(prefix.clone()..)
                            .take_while(|(k, _)| k.starts_with(&prefix))
                            .map(|(k, _)| k.clone())
                            .collect();
                        self.nodes.insert(to.clone(), Node::Dir);
                        for k in moved {
                            let v = self.nodes.remove(&k).expect("listed");
                            self.nodes.insert(format!("{to}/{}", &k[prefix.len()..]), v);
                        }
                        Ok(OpOutput::Done)
                    }
                    None => Err(e(name, errno::ENOENT)),
                }
            }
            OpKind::Remove { path } => {
                check(&path)?;
                let prefix = format!("{path}/");
                if self
                    .nodes
                    .range(prefix.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(&prefix))
                {
                    return Err(e(name, 39)); // ENOTEMPTY
                }
                self.nodes
                    .remove(&path)
                    .map(|_| OpOutput::Done)
                    .ok_or(e(name, errno::ENOENT))
            }
            OpKind::RemoveAll { path } => {
                check(&path)?;
                let prefix = format!("{path}/");
                self.nodes
                    .retain(|k, _| k != &path && !k.starts_with(&prefix));
                Ok(OpOutput::Done)
            }
            OpKind::ReadDir { path } => {
                check(&path)?;
                if !matches!(self.nodes.get(&path), Some(Node::Dir)) {
                    return Err(e(name, errno::ENOENT));
                }
                let prefix = format!("{path}/");
                let names = self
                    .nodes
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .filter(|(k, _)| !k[prefix.len()..].contains('/'))
                    .map(|(k, _)| k[prefix.len()..].to_string())
                    .collect();
                Ok(OpOutput::Entries(names))
            }
            other => Err(e(other.name(), errno::EINVAL)),
        }
    }

    fn file_mut(&mut self, name: &'static str, h: Handle) -> Result<&mut Vec<u8>, OpError> {
        let path = self.handles.get(&h.0).ok_or(e(name, errno::EBADF))?;
        match self.nodes.get_mut(path) {
            Some(Node::File(d)) => Ok(d),
            // an open file that was renamed or removed: the fake keeps no orphan inodes
            _ => Err(e(name, errno::EBADF)),
        }
    }
}

impl Executor for FakeHost {
    fn execute(&self, op: OpKind) -> OpFuture {
        let r = self.perform(op);
        Box::pin(std::future::ready(r))
    }

    fn close_now(&self, handle: Handle) {
        self.state
            .lock()
            .expect("fake lock")
            .handles
            .remove(&handle.0);
    }

    fn name(&self) -> &'static str {
        "fake"
    }
}
