//! An in-memory, fault-injecting host that executes the file Ops of core's machines.
//!
//! Files are byte vectors behind inode numbers, so a handle keeps working on a file that was
//! renamed or removed, as on POSIX. Directories are explicit (`Mkdir` is `mkdir -p`), and a file
//! can only be created inside an existing directory: a machine that forgets a `Mkdir` fails here
//! as it would on a disk.
//!
//! Faults are [`Rule`]s: "the n-th Op matching X fails with errno E / crashes the host / tears
//! the write and crashes". [`MemHost::short_writes`] makes every `Write` of two or more bytes
//! write only half of them. [`MemHost::crash`] models `kill -9` of the daemon: handles vanish,
//! file contents stay as they are (the page cache survives), and optionally the last write that
//! was not fsynced is lost, to model a torn state write.
//!
//! This file depends on `berth-core` and `std` only (no `bytes`, no `proptest`), so the fuzz
//! targets include it with `#[path]` and drive the very same host.

use std::collections::{BTreeMap, BTreeSet};

use berth_core::op::{errno, FileStat, Handle, OpError, OpKind, OpOutput, OpResult};
use berth_core::{Instant, Machine, Output};

/// `ENOTEMPTY` on Linux (not in core's errno list).
pub const ENOTEMPTY: i32 = 39;
/// `ENOSYS` on Linux: an Op this host does not know.
pub const ENOSYS: i32 = 38;

/// Which Ops a [`Rule`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Every Op.
    Any,
    /// Ops of this [`OpKind::name`].
    Op(&'static str),
    /// Ops of this name on this path (for handle Ops: the path of the handle's file).
    OpOn(&'static str, String),
}

/// What a [`Rule`] does to the Op it fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The Op is not performed and fails with this errno (`Close` still releases its handle).
    Fail(i32),
    /// The host crashes before performing the Op.
    Crash,
    /// A `Write` lands half way (the first `len / 2` bytes), then the host crashes. Other Ops:
    /// like [`Action::Crash`].
    TornCrash,
}

/// A one-shot fault: skips `skip` matching Ops, then fires `action` on the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// A caller's label, for [`MemHost::remove_rules`] and [`MemHost::has_rule`].
    pub tag: u32,
    /// Which Ops count.
    pub when: Match,
    /// Matching Ops to let through before firing.
    pub skip: u32,
    /// What happens to the Op it fires on.
    pub action: Action,
}

/// One Op as the host saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// [`OpKind::name`].
    pub op: &'static str,
    /// The path involved (a handle Op's file path; `from` for a rename).
    pub path: String,
    /// `Some(errno)` if the Op failed, by a rule or on its merits.
    pub failed: Option<i32>,
}

/// What [`MemHost::perform`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The Op ran (or failed); hand this back to the machine.
    Completed(OpResult),
    /// A rule crashed the host: the machine must be dropped and [`MemHost::crash`] called.
    Crashed,
}

#[derive(Debug, Clone)]
struct OpenFile {
    inode: u64,
    path: String,
    write: bool,
}

#[derive(Debug, Clone)]
struct LastWrite {
    inode: u64,
    before: Vec<u8>,
    burst: u64,
}

/// The in-memory host. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct MemHost {
    files: BTreeMap<String, u64>,
    inodes: BTreeMap<u64, Vec<u8>>,
    dirs: BTreeSet<String>,
    handles: BTreeMap<u64, OpenFile>,
    next_inode: u64,
    next_handle: u64,
    rules: Vec<Rule>,
    /// Every `Write` of two or more bytes writes only the first half.
    pub short_writes: bool,
    log: Vec<Record>,
    last_write: Option<LastWrite>,
    burst: u64,
}

fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

fn fail(op: &'static str, errno: i32) -> OpResult {
    Err(OpError { op, errno })
}

impl MemHost {
    /// An empty host.
    #[must_use]
    pub fn new() -> Self {
        MemHost::default()
    }

    // ---- inspection ----------------------------------------------------------------------

    /// The contents of the file at `path`.
    #[must_use]
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files
            .get(path)
            .and_then(|i| self.inodes.get(i))
            .map(Vec::as_slice)
    }

    /// True if `path` is an existing directory (the root `""` always is).
    #[must_use]
    pub fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || self.dirs.contains(path)
    }

    /// True if a file or directory exists at `path`.
    #[must_use]
    pub fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path) || self.is_dir(path)
    }

    /// Every file at or below `dir`, with its contents.
    #[must_use]
    pub fn files_under(&self, dir: &str) -> BTreeMap<String, Vec<u8>> {
        let prefix = format!("{dir}/");
        self.files
            .iter()
            .filter(|(p, _)| p.starts_with(&prefix))
            .map(|(p, i)| (p.clone(), self.inodes[i].clone()))
            .collect()
    }

    /// How many `Write` Ops a writer that carries on after short writes needs for `len` bytes
    /// on this host: one, or more while [`MemHost::short_writes`] is on.
    #[must_use]
    pub fn write_ops(&self, len: usize) -> u32 {
        let mut left = len;
        let mut ops = 0;
        while left > 0 {
            left -= if self.short_writes && left >= 2 {
                left / 2
            } else {
                left
            };
            ops += 1;
        }
        ops
    }

    /// Number of open handles.
    #[must_use]
    pub fn open_handles(&self) -> usize {
        self.handles.len()
    }

    /// The Ops seen since the last [`MemHost::clear_log`].
    #[must_use]
    pub fn log(&self) -> &[Record] {
        &self.log
    }

    /// Forgets the log.
    pub fn clear_log(&mut self) {
        self.log.clear();
    }

    // ---- faults --------------------------------------------------------------------------

    /// Adds a fault rule after the existing ones.
    pub fn push_rule(&mut self, rule: Rule) {
        self.rules.push(rule);
    }

    /// Removes every rule with this tag; returns how many there were.
    pub fn remove_rules(&mut self, tag: u32) -> usize {
        let before = self.rules.len();
        self.rules.retain(|r| r.tag != tag);
        before - self.rules.len()
    }

    /// True if a rule with this tag is still waiting to fire.
    #[must_use]
    pub fn has_rule(&self, tag: u32) -> bool {
        self.rules.iter().any(|r| r.tag == tag)
    }

    /// Marks a request boundary. The `Write`s to one file between two boundaries (one logical
    /// write, however many short `Write` Ops it took) are the unit that
    /// [`MemHost::crash`] loses.
    pub fn seal(&mut self) {
        self.burst += 1;
    }

    /// Models `kill -9` of the process holding the handles: every handle is released, contents
    /// stay. With `lose_last_write`, the newest logical write (see [`MemHost::seal`]) not
    /// covered by an `Fsync` of its file is undone, as if the page cache never flushed it.
    pub fn crash(&mut self, lose_last_write: bool) {
        self.handles.clear();
        if let Some(w) = self.last_write.take() {
            if lose_last_write {
                if let Some(data) = self.inodes.get_mut(&w.inode) {
                    *data = w.before;
                }
            }
        }
    }

    /// The contents of the file at `path`, to change behind every machine's back: damage from
    /// outside, such as a power loss that dropped unsynced pages of one file but not another,
    /// or a corrupted state file.
    pub fn file_mut(&mut self, path: &str) -> Option<&mut Vec<u8>> {
        let inode = self.files.get(path)?;
        self.inodes.get_mut(inode)
    }

    /// Closes every handle still open (what a driver does when it drops a finished machine);
    /// returns how many there were.
    pub fn close_all(&mut self) -> usize {
        let n = self.handles.len();
        self.handles.clear();
        n
    }

    // ---- execution -----------------------------------------------------------------------

    fn op_path(&self, kind: &OpKind) -> String {
        match kind {
            OpKind::Mkdir { path, .. }
            | OpKind::Open { path, .. }
            | OpKind::FsyncDir { path }
            | OpKind::WriteFile { path, .. }
            | OpKind::ReadFile { path }
            | OpKind::Stat { path }
            | OpKind::Remove { path }
            | OpKind::RemoveAll { path }
            | OpKind::ReadDir { path }
            | OpKind::Rename { from: path, .. } => path.clone(),
            OpKind::Write { handle, .. }
            | OpKind::Read { handle, .. }
            | OpKind::Truncate { handle, .. }
            | OpKind::Fsync { handle }
            | OpKind::Close { handle } => self
                .handles
                .get(&handle.0)
                .map(|h| {
                    // The file's current name, if it still has one.
                    self.files
                        .iter()
                        .find(|(_, i)| **i == h.inode)
                        .map_or_else(|| h.path.clone(), |(p, _)| p.clone())
                })
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn fire(&mut self, name: &'static str, path: &str) -> Option<Action> {
        for i in 0..self.rules.len() {
            let r = &mut self.rules[i];
            let hit = match &r.when {
                Match::Any => true,
                Match::Op(n) => *n == name,
                Match::OpOn(n, p) => *n == name && p == path,
            };
            if !hit {
                continue;
            }
            if r.skip > 0 {
                r.skip -= 1;
                continue;
            }
            return Some(self.rules.remove(i).action);
        }
        None
    }

    /// Performs one Op, unless a rule fails or crashes it.
    pub fn perform(&mut self, kind: OpKind) -> Outcome {
        let name = kind.name();
        let path = self.op_path(&kind);
        let result = match self.fire(name, &path) {
            Some(Action::Fail(e)) => {
                if let OpKind::Close { handle } = kind {
                    // close(2) releases the descriptor even when it reports an error.
                    self.handles.remove(&handle.0);
                }
                fail(name, e)
            }
            Some(Action::Crash) => {
                self.log.push(Record {
                    op: name,
                    path,
                    failed: None,
                });
                return Outcome::Crashed;
            }
            Some(Action::TornCrash) => {
                if let OpKind::Write {
                    handle,
                    offset,
                    data,
                } = &kind
                {
                    let half = data.len() / 2;
                    let _ = self.write(*handle, *offset, &data[..half]);
                }
                self.log.push(Record {
                    op: name,
                    path,
                    failed: None,
                });
                return Outcome::Crashed;
            }
            None => self.execute(kind),
        };
        self.log.push(Record {
            op: name,
            path,
            failed: result.as_ref().err().map(|e| e.errno),
        });
        Outcome::Completed(result)
    }

    fn handle(&self, handle: Handle, name: &'static str) -> Result<&OpenFile, OpError> {
        self.handles.get(&handle.0).ok_or(OpError {
            op: name,
            errno: errno::EBADF,
        })
    }

    fn writable(&self, handle: Handle, name: &'static str) -> Result<u64, OpError> {
        let h = self.handle(handle, name)?;
        if h.write {
            Ok(h.inode)
        } else {
            Err(OpError {
                op: name,
                errno: errno::EBADF,
            })
        }
    }

    fn write(&mut self, handle: Handle, offset: u64, data: &[u8]) -> OpResult {
        let inode = self.writable(handle, "write")?;
        let file = self.inodes.get_mut(&inode).expect("open inode exists");
        let continues = self
            .last_write
            .as_ref()
            .is_some_and(|w| w.inode == inode && w.burst == self.burst);
        if !continues {
            self.last_write = Some(LastWrite {
                inode,
                before: file.clone(),
                burst: self.burst,
            });
        }
        let start = usize::try_from(offset).map_err(|_| OpError {
            op: "write",
            errno: errno::EINVAL,
        })?;
        let end = start + data.len();
        if file.len() < end {
            file.resize(end, 0);
        }
        file[start..end].copy_from_slice(data);
        Ok(OpOutput::Written(data.len() as u64))
    }

    fn new_inode(&mut self, data: Vec<u8>) -> u64 {
        self.next_inode += 1;
        self.inodes.insert(self.next_inode, data);
        self.next_inode
    }

    /// Drops inodes that no name and no handle refers to.
    fn collect(&mut self) {
        let live: BTreeSet<u64> = self
            .files
            .values()
            .chain(self.handles.values().map(|h| &h.inode))
            .copied()
            .collect();
        self.inodes.retain(|i, _| live.contains(i));
    }

    fn execute(&mut self, kind: OpKind) -> OpResult {
        let name = kind.name();
        match kind {
            OpKind::Mkdir { path, .. } => {
                let mut p = path.as_str();
                let mut missing = Vec::new();
                while !p.is_empty() {
                    if self.files.contains_key(p) {
                        return fail(name, errno::ENOTDIR);
                    }
                    if self.dirs.contains(p) {
                        break;
                    }
                    missing.push(p.to_string());
                    p = parent(p);
                }
                self.dirs.extend(missing);
                Ok(OpOutput::Done)
            }
            OpKind::Open { path, options } => {
                if !self.is_dir(parent(&path)) {
                    return fail(name, errno::ENOENT);
                }
                if self.is_dir(&path) {
                    return fail(name, errno::EISDIR);
                }
                let inode = match self.files.get(&path).copied() {
                    Some(_) if options.create && options.exclusive => {
                        return fail(name, errno::EEXIST)
                    }
                    Some(i) => i,
                    None if options.create => {
                        let i = self.new_inode(Vec::new());
                        self.files.insert(path.clone(), i);
                        i
                    }
                    None => return fail(name, errno::ENOENT),
                };
                let data = self.inodes.get_mut(&inode).expect("named inode exists");
                if options.truncate {
                    data.clear();
                }
                let size = data.len() as u64;
                self.next_handle += 1;
                self.handles.insert(
                    self.next_handle,
                    OpenFile {
                        inode,
                        path,
                        write: options.write,
                    },
                );
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
                let n = if self.short_writes && data.len() >= 2 {
                    data.len() / 2
                } else {
                    data.len()
                };
                self.write(handle, offset, &data[..n])
            }
            OpKind::Read {
                handle,
                offset,
                len,
            } => {
                let inode = self.handle(handle, name)?.inode;
                let data = &self.inodes[&inode];
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let end = start.saturating_add(len as usize).min(data.len());
                Ok(OpOutput::Data(data[start..end].to_vec().into()))
            }
            OpKind::Truncate { handle, len } => {
                let inode = self.writable(handle, name)?;
                let len = usize::try_from(len).map_err(|_| OpError {
                    op: name,
                    errno: errno::EINVAL,
                })?;
                self.inodes
                    .get_mut(&inode)
                    .expect("open inode exists")
                    .resize(len, 0);
                Ok(OpOutput::Done)
            }
            OpKind::Fsync { handle } => {
                let inode = self.handle(handle, name)?.inode;
                if self.last_write.as_ref().is_some_and(|w| w.inode == inode) {
                    self.last_write = None;
                }
                Ok(OpOutput::Done)
            }
            OpKind::FsyncDir { path } => {
                if self.is_dir(&path) {
                    Ok(OpOutput::Done)
                } else if self.files.contains_key(&path) {
                    fail(name, errno::ENOTDIR)
                } else {
                    fail(name, errno::ENOENT)
                }
            }
            OpKind::Close { handle } => {
                self.handle(handle, name)?;
                self.handles.remove(&handle.0);
                self.collect();
                Ok(OpOutput::Done)
            }
            OpKind::WriteFile { path, data, .. } => {
                if !self.is_dir(parent(&path)) {
                    return fail(name, errno::ENOENT);
                }
                if self.is_dir(&path) {
                    return fail(name, errno::EISDIR);
                }
                match self.files.get(&path) {
                    Some(i) => *self.inodes.get_mut(i).expect("named inode exists") = data.to_vec(),
                    None => {
                        let i = self.new_inode(data.to_vec());
                        self.files.insert(path, i);
                    }
                }
                Ok(OpOutput::Done)
            }
            OpKind::ReadFile { path } => match self.file(&path) {
                Some(d) => Ok(OpOutput::Data(d.to_vec().into())),
                None if self.is_dir(&path) => fail(name, errno::EISDIR),
                None => fail(name, errno::ENOENT),
            },
            OpKind::Stat { path } => {
                if let Some(d) = self.file(&path) {
                    Ok(OpOutput::Stat(FileStat {
                        size: d.len() as u64,
                        mode: 0o100_600,
                        mtime: Instant::EPOCH,
                    }))
                } else if self.is_dir(&path) {
                    Ok(OpOutput::Stat(FileStat {
                        size: 4096,
                        mode: 0o040_755,
                        mtime: Instant::EPOCH,
                    }))
                } else {
                    fail(name, errno::ENOENT)
                }
            }
            OpKind::Rename { from, to } => self.rename(&from, &to),
            OpKind::Remove { path } => {
                if self.files.remove(&path).is_some() {
                    self.collect();
                    Ok(OpOutput::Done)
                } else if path.is_empty() || !self.dirs.contains(&path) {
                    fail(name, errno::ENOENT)
                } else if self.has_children(&path) {
                    fail(name, ENOTEMPTY)
                } else {
                    self.dirs.remove(&path);
                    Ok(OpOutput::Done)
                }
            }
            OpKind::RemoveAll { path } => {
                let prefix = format!("{path}/");
                self.files
                    .retain(|p, _| *p != path && !p.starts_with(&prefix));
                self.dirs.retain(|p| *p != path && !p.starts_with(&prefix));
                self.collect();
                Ok(OpOutput::Done)
            }
            OpKind::ReadDir { path } => {
                if !self.is_dir(&path) {
                    return fail(
                        name,
                        if self.files.contains_key(&path) {
                            errno::ENOTDIR
                        } else {
                            errno::ENOENT
                        },
                    );
                }
                let mut names: Vec<String> = self
                    .files
                    .keys()
                    .chain(self.dirs.iter())
                    .filter(|p| parent(p) == path && !p.is_empty())
                    .map(|p| p[p.rfind('/').map_or(0, |i| i + 1)..].to_string())
                    .collect();
                names.sort();
                Ok(OpOutput::Entries(names))
            }
            _ => fail(name, ENOSYS),
        }
    }

    fn has_children(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.files.keys().any(|p| p.starts_with(&prefix))
            || self.dirs.iter().any(|p| p.starts_with(&prefix))
    }

    fn rename(&mut self, from: &str, to: &str) -> OpResult {
        let name = "rename";
        if !self.is_dir(parent(to)) {
            return fail(name, errno::ENOENT);
        }
        if let Some(inode) = self.files.get(from).copied() {
            if self.is_dir(to) {
                return fail(name, errno::EISDIR);
            }
            self.files.remove(from);
            self.files.insert(to.to_string(), inode);
            self.collect();
            return Ok(OpOutput::Done);
        }
        if from.is_empty() || !self.dirs.contains(from) {
            return fail(name, errno::ENOENT);
        }
        if self.files.contains_key(to) {
            return fail(name, errno::ENOTDIR);
        }
        if self.has_children(to) {
            return fail(name, ENOTEMPTY);
        }
        if to.starts_with(&format!("{from}/")) {
            return fail(name, errno::EINVAL);
        }
        let moved = |p: &str| -> Option<String> {
            if p == from {
                Some(to.to_string())
            } else {
                p.strip_prefix(&format!("{from}/"))
                    .map(|rest| format!("{to}/{rest}"))
            }
        };
        self.files = std::mem::take(&mut self.files)
            .into_iter()
            .map(|(p, i)| (moved(&p).unwrap_or(p), i))
            .collect();
        self.dirs = std::mem::take(&mut self.dirs)
            .into_iter()
            .map(|p| moved(&p).unwrap_or(p))
            .collect();
        Ok(OpOutput::Done)
    }
}

/// How a [`drive`] ended.
#[derive(Debug)]
pub enum Drive<D> {
    /// The machine reported `Done`.
    Done(D),
    /// A rule crashed the host; the machine is to be dropped.
    Crashed,
    /// The machine stopped talking without a `Done` (a contract violation).
    Quiet,
}

/// Drains `machine`, performing its Ops on `host`, until it reports `Done`, the host crashes, or
/// the machine goes quiet. A completion the machine refuses is a contract violation: `Err`.
pub fn drive<M: Machine>(
    host: &mut MemHost,
    machine: &mut M,
    now: Instant,
) -> Result<Drive<M::Done>, M::Error> {
    loop {
        match machine.poll() {
            Some(Output::Op(op)) => match host.perform(op.kind) {
                Outcome::Completed(result) => {
                    machine.handle(now, berth_core::op::Completion { id: op.id, result }.into())?;
                }
                Outcome::Crashed => return Ok(Drive::Crashed),
            },
            Some(Output::Done(d)) => return Ok(Drive::Done(d)),
            Some(Output::Event(_) | Output::Wait(_)) => {}
            None => return Ok(Drive::Quiet),
        }
    }
}
