//! The snapshot tree for C: containerd's `overlayfs` and `native` snapshotters as a pure model
//! behind an opaque handle, with the disk work handed to the host as actions.
//!
//! A [`berth_snapshot_tree`] wraps `berth_core::snapshot::Tree` and keeps its rules word for
//! word; what this layer adds is translation (C strings in; flat structs, owned lists and
//! result codes out), the storage behind the pointers it lends, and one slot for the undo of
//! the last mutation. A host drives it as the core's module docs say:
//!
//! 1. At start-up: `berth_snapshot_tree_new`, then `berth_snapshot_tree_load` with the persisted
//!    JSON, then `berth_snapshot_cleanup` with the entries of `<root>/snapshots`, and carry out
//!    the removals it returns.
//! 2. Prepare or view: call it, carry out its actions in order; if one fails,
//!    `berth_snapshot_undo`; otherwise persist (`berth_snapshot_tree_save`).
//! 3. Commit, rebase, labels: call, persist (on a failed persist, `berth_snapshot_undo`).
//! 4. Remove: call, persist (on a failed persist, `berth_snapshot_undo`), then carry out its
//!    removals.
//!
//! Errors map to codes as containerd maps them to gRPC codes: `BERTH_ERR_NOT_FOUND`,
//! `BERTH_ERR_ALREADY_EXISTS`, `BERTH_ERR_FAILED_PRECONDITION`, `BERTH_ERR_INVALID`; the text,
//! with the keys and namespace involved, comes from `berth_snapshot_tree_last_error`. A refused
//! call changes nothing (the undo slot included). Time is never read here: every call that
//! stamps a snapshot takes `now_ns` from the caller.

use std::ffi::{c_char, c_void, CString};

use berth_core::metadata::{Filter, Labels};
use berth_core::snapshot::mounts::MOUNT_DATA_LIMIT;
use berth_core::snapshot::{
    plan_mounts, Action, Config, Flavor, Kind, Mount, SnapshotError, Tree, Undo, Usage,
};
use berth_core::Instant;

use crate::arg::{bytes_arg, c_string, keep, slice_arg, str_arg, write_out, write_str};
use crate::handle::{
    box_out, free_box, last_error_out, list_get, list_len, CallHandle, CallState, List,
};
use crate::panic::{ffi_panic_boundary, Fallback};
use crate::result::berth_result;

/// Bytes of mount data the kernel accepts for one mount: a page, including the terminating NUL.
/// A planned mount's `data_len` is always below it.
pub const BERTH_MOUNT_DATA_LIMIT: usize = 4096;

const _: () = assert!(BERTH_MOUNT_DATA_LIMIT == MOUNT_DATA_LIMIT);

/// Which snapshotter a tree models (the `snapshotter` of `berth_snapshot_tree_new`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_snapshotter {
    /// Not a snapshotter: what `berth_snapshot_tree_snapshotter` returns for NULL.
    BERTH_SNAPSHOTTER_UNKNOWN = 0,
    /// containerd's `overlayfs`: each snapshot has `snapshots/<id>/fs` (and, while active,
    /// `snapshots/<id>/work`); parents become overlay lower layers; mounts use `index=off`.
    BERTH_SNAPSHOTTER_OVERLAYFS = 1,
    /// containerd's `native`: each active snapshot is a full copy of its parent in
    /// `snapshots/<id>`, bind-mounted.
    BERTH_SNAPSHOTTER_NATIVE = 2,
}

/// The kind of a snapshot, with containerd's wire values (`containerd.snapshots.v1.Kind`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_snapshot_kind {
    /// A read-only view of a committed snapshot; never committed itself.
    BERTH_SNAPSHOT_VIEW = 1,
    /// A writable snapshot, to be committed or removed.
    BERTH_SNAPSHOT_ACTIVE = 2,
    /// Immutable; may be the parent of others.
    BERTH_SNAPSHOT_COMMITTED = 3,
}

impl From<Kind> for berth_snapshot_kind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::View => berth_snapshot_kind::BERTH_SNAPSHOT_VIEW,
            Kind::Active => berth_snapshot_kind::BERTH_SNAPSHOT_ACTIVE,
            Kind::Committed => berth_snapshot_kind::BERTH_SNAPSHOT_COMMITTED,
        }
    }
}

/// What a `berth_snapshot_action` asks the host to do. Paths are relative to the snapshotter's
/// root directory and must be resolved beneath it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_snapshot_action_kind {
    /// An action these bindings cannot describe (newer core): fail it, then undo.
    BERTH_SNAPSHOT_ACTION_UNSUPPORTED = 0,
    /// Create the one directory `path` (its parent exists) with permission bits `mode`.
    BERTH_SNAPSHOT_ACTION_MKDIR = 1,
    /// Give directory `path` the owner and group of directory `like` (a new upper directory
    /// takes its parent's, so that unprivileged images stay writable).
    BERTH_SNAPSHOT_ACTION_COPY_OWNER = 2,
    /// Copy the whole tree at `path` into the existing, empty directory `to`: contents, modes,
    /// owners, times, xattrs, hard links, symlinks and devices, and `path`'s own attributes
    /// (the native snapshotter's copy of a parent).
    BERTH_SNAPSHOT_ACTION_COPY_TREE = 3,
    /// Rename `path` to `to`, which does not exist.
    BERTH_SNAPSHOT_ACTION_RENAME = 4,
    /// Remove the directory tree `path`; a missing path is success.
    BERTH_SNAPSHOT_ACTION_REMOVE_ALL = 5,
}

/// One thing to do on disk. Only the fields its `kind` names are set; the others are NULL and
/// 0. The strings are NUL-terminated and borrow from the `berth_snapshot_actions` list: valid
/// until it is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_snapshot_action {
    /// What to do.
    pub kind: berth_snapshot_action_kind,
    /// The directory acted on: created (MKDIR), changed (COPY_OWNER), removed (REMOVE_ALL), or
    /// the source (COPY_TREE, RENAME).
    pub path: *const c_char,
    /// Length of `path` without the NUL.
    pub path_len: usize,
    /// The destination (COPY_TREE, RENAME).
    pub to: *const c_char,
    /// Length of `to` without the NUL.
    pub to_len: usize,
    /// The directory whose owner and group to copy (COPY_OWNER).
    pub like: *const c_char,
    /// Length of `like` without the NUL.
    pub like_len: usize,
    /// Permission bits (MKDIR).
    pub mode: u32,
}

impl berth_snapshot_action {
    const EMPTY: berth_snapshot_action = berth_snapshot_action {
        kind: berth_snapshot_action_kind::BERTH_SNAPSHOT_ACTION_UNSUPPORTED,
        path: std::ptr::null(),
        path_len: 0,
        to: std::ptr::null(),
        to_len: 0,
        like: std::ptr::null(),
        like_len: 0,
        mode: 0,
    };
}

/// One mount (`containerd.types.Mount`). The strings are NUL-terminated and borrow from the
/// `berth_mounts` list: valid until it is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_mount {
    /// The mount type: `bind` or `overlay`.
    pub r#type: *const c_char,
    /// Length of `type` without the NUL.
    pub type_len: usize,
    /// The source: a directory for a bind, `overlay` for an overlay.
    pub source: *const c_char,
    /// Length of `source` without the NUL.
    pub source_len: usize,
    /// Where to mount: empty in a snapshot's mounts (the client chooses), the plan's target in
    /// a planned mount.
    pub target: *const c_char,
    /// Length of `target` without the NUL.
    pub target_len: usize,
    /// The options, in order (`ro`, `rbind`, `workdir=…`, `upperdir=…`, `lowerdir=…`): an array
    /// of `options_len` NUL-terminated strings, followed by a NULL.
    pub options: *const *const c_char,
    /// How many options.
    pub options_len: usize,
    /// The filesystem data the kernel receives (`mount(2)`'s last argument): the options that
    /// are not mount flags, joined by `,`; the others (`ro`, `rbind`, …) are mount flags.
    pub data: *const c_char,
    /// Length of `data` without the NUL.
    pub data_len: usize,
}

impl berth_mount {
    const EMPTY: berth_mount = berth_mount {
        r#type: std::ptr::null(),
        type_len: 0,
        source: std::ptr::null(),
        source_len: 0,
        target: std::ptr::null(),
        target_len: 0,
        options: std::ptr::null(),
        options_len: 0,
        data: std::ptr::null(),
        data_len: 0,
    };
}

/// What `berth_snapshot_stat` reports about a snapshot. The strings are NUL-terminated and
/// borrow from the tree: valid until the next call that takes the tree as a non-`const` pointer.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_snapshot_info {
    /// Its key (active or view) or name (committed).
    pub name: *const c_char,
    /// Length of `name` without the NUL.
    pub name_len: usize,
    /// Its parent's name, or NULL if it has none.
    pub parent: *const c_char,
    /// Length of `parent` without the NUL (0 if none).
    pub parent_len: usize,
    /// Its kind.
    pub kind: berth_snapshot_kind,
    /// The id the tree gave it: its directory is `snapshots/<id>` under the root. Never reused.
    pub id: u64,
    /// The directory holding its files, relative to the root (where a layer is applied, what
    /// to measure for a commit's usage): `snapshots/<id>/fs` (overlayfs) or `snapshots/<id>`
    /// (native); NULL for a native view of a parent, which has no directory.
    pub fs_dir: *const c_char,
    /// Length of `fs_dir` without the NUL (0 if none).
    pub fs_dir_len: usize,
    /// When it was created (for a committed snapshot: committed), in nanoseconds since the Unix
    /// epoch, as the caller's clock gave it.
    pub created_at_ns: u64,
    /// When it last changed, in nanoseconds since the Unix epoch.
    pub updated_at_ns: u64,
    /// How many labels it has (`berth_snapshot_label` reads one).
    pub label_count: usize,
    /// Bytes used, as recorded by `berth_snapshot_commit` (0 unless committed).
    pub usage_size: u64,
    /// Inodes used, as recorded by `berth_snapshot_commit` (0 unless committed).
    pub usage_inodes: u64,
}

/// Receives one key from `berth_snapshot_list`: `key` is NUL-terminated, `key_len` bytes long
/// without the NUL, and valid during the call only. Return true to go on, false to stop.
pub type berth_snapshot_key_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, key: *const c_char, key_len: usize) -> bool>;

/// One snapshotter's snapshots, per namespace, with containerd's rules. Create it with
/// `berth_snapshot_tree_new`, free it with `berth_snapshot_tree_free`.
pub struct berth_snapshot_tree {
    tree: Tree,
    /// The undo of the last successful mutation, until undone or replaced.
    undo: Option<Undo>,
    /// Calls, failures and the storage behind the pointers of the last `berth_snapshot_info`.
    state: CallState<Vec<CString>>,
}

/// A list of actions to carry out in order, from a mutation or `berth_snapshot_cleanup`. Read
/// it with `berth_snapshot_actions_len` and `berth_snapshot_actions_get`, free it with
/// `berth_snapshot_actions_free`. Immutable; independent of the tree it came from.
pub struct berth_snapshot_actions {
    items: Vec<berth_snapshot_action>,
    /// The strings the items point into.
    _strings: Vec<CString>,
}

/// A list of mounts: a snapshot's (`berth_snapshot_mounts`) or a plan to mount them
/// (`berth_snapshot_plan_mounts`, which may also name a directory to mount from). Read it with
/// `berth_mounts_len`, `berth_mounts_get` and `berth_mounts_chdir`, free it with
/// `berth_mounts_free`. Immutable; independent of the tree it came from.
pub struct berth_mounts {
    items: Vec<berth_mount>,
    chdir: Option<CString>,
    /// The strings the items point into.
    _strings: Vec<CString>,
    /// The option arrays the items point into (each ends with a NULL).
    _options: Vec<Vec<*const c_char>>,
}

impl Fallback for berth_snapshotter {
    fn on_panic() -> Self {
        berth_snapshotter::BERTH_SNAPSHOTTER_UNKNOWN
    }
    fn on_null() -> Self {
        berth_snapshotter::BERTH_SNAPSHOTTER_UNKNOWN
    }
}

/// The code of a refused snapshot operation: containerd's gRPC code for it.
fn code(e: &SnapshotError) -> berth_result {
    match e {
        SnapshotError::NotFound { .. } | SnapshotError::ParentNotFound { .. } => {
            berth_result::BERTH_ERR_NOT_FOUND
        }
        SnapshotError::AlreadyExists { .. } => berth_result::BERTH_ERR_ALREADY_EXISTS,
        SnapshotError::NotActive { .. }
        | SnapshotError::NotActiveOrView { .. }
        | SnapshotError::HasChildren { .. }
        | SnapshotError::CannotRebase { .. }
        | SnapshotError::StaleUndo { .. } => berth_result::BERTH_ERR_FAILED_PRECONDITION,
        SnapshotError::EmptyKey
        | SnapshotError::Labels { .. }
        | SnapshotError::ParentNotCommitted { .. } => berth_result::BERTH_ERR_INVALID,
        _ => berth_result::BERTH_ERR_OTHER,
    }
}

/// The snapshotter names a `berth_snapshotter` value (an integer from C) stands for.
fn config_of(snapshotter: u32, root: &str) -> Option<Config> {
    match snapshotter {
        s if s == berth_snapshotter::BERTH_SNAPSHOTTER_OVERLAYFS as u32 => {
            Some(Config::overlayfs(root))
        }
        s if s == berth_snapshotter::BERTH_SNAPSHOTTER_NATIVE as u32 => Some(Config::native(root)),
        _ => None,
    }
}

/// Borrows an array of `len` C strings. NULL is allowed when `len` is 0.
///
/// Errors: NULL array with `len > 0`, or a NULL element, gives `BERTH_ERR_NULL`; an element
/// that is not UTF-8 gives `BERTH_ERR_INVALID`.
///
/// # Safety
///
/// If `len > 0`, `p` is NULL or points to `len` readable pointers, each NULL or a
/// NUL-terminated string, all alive and unchanged for `'a`.
unsafe fn str_list_arg<'a>(
    p: *const *const c_char,
    len: usize,
) -> Result<Vec<&'a str>, berth_result> {
    // SAFETY: the caller promises `len` readable, aligned pointers alive for `'a` (or NULL).
    let items = unsafe { slice_arg(p, len) }?;
    items
        .iter()
        // SAFETY: the caller promises each element is NULL or NUL-terminated, alive for `'a`.
        .map(|s| unsafe { str_arg(*s) })
        .collect()
}

/// Reads an optional parent argument: NULL and `""` both mean none.
///
/// # Safety
///
/// `p` is NULL or a NUL-terminated string alive and unchanged for `'a`.
unsafe fn parent_arg<'a>(p: *const c_char) -> Result<Option<&'a str>, berth_result> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: not NULL; the caller promises a NUL-terminated string alive for `'a`.
    let s = unsafe { str_arg(p) }?;
    Ok((!s.is_empty()).then_some(s))
}

/// Clears an optional out-pointer for a new object, if given.
///
/// # Safety
///
/// `out` is NULL or valid for a pointer write.
unsafe fn clear_opt_out<T>(out: *mut *mut T) {
    if !out.is_null() {
        // SAFETY: not NULL, and the caller promises it is valid for a write.
        unsafe { out.write(std::ptr::null_mut()) };
    }
}

impl berth_snapshot_actions {
    fn new(actions: &[Action]) -> Self {
        let mut strings = Vec::new();
        let items = actions
            .iter()
            .map(|a| {
                let mut c = berth_snapshot_action::EMPTY;
                match a {
                    Action::Mkdir { path, mode } => {
                        c.kind = berth_snapshot_action_kind::BERTH_SNAPSHOT_ACTION_MKDIR;
                        (c.path, c.path_len) = keep(&mut strings, path);
                        c.mode = *mode;
                    }
                    Action::CopyOwner { path, like } => {
                        c.kind = berth_snapshot_action_kind::BERTH_SNAPSHOT_ACTION_COPY_OWNER;
                        (c.path, c.path_len) = keep(&mut strings, path);
                        (c.like, c.like_len) = keep(&mut strings, like);
                    }
                    Action::CopyTree { from, to } => {
                        c.kind = berth_snapshot_action_kind::BERTH_SNAPSHOT_ACTION_COPY_TREE;
                        (c.path, c.path_len) = keep(&mut strings, from);
                        (c.to, c.to_len) = keep(&mut strings, to);
                    }
                    Action::Rename { from, to } => {
                        c.kind = berth_snapshot_action_kind::BERTH_SNAPSHOT_ACTION_RENAME;
                        (c.path, c.path_len) = keep(&mut strings, from);
                        (c.to, c.to_len) = keep(&mut strings, to);
                    }
                    Action::RemoveAll { path } => {
                        c.kind = berth_snapshot_action_kind::BERTH_SNAPSHOT_ACTION_REMOVE_ALL;
                        (c.path, c.path_len) = keep(&mut strings, path);
                    }
                    _ => {}
                }
                c
            })
            .collect();
        berth_snapshot_actions {
            items,
            _strings: strings,
        }
    }
}

impl List for berth_snapshot_actions {
    type Item = berth_snapshot_action;
    fn items(&self) -> &[berth_snapshot_action] {
        &self.items
    }
}

impl berth_mounts {
    fn new(mounts: &[Mount], chdir: Option<&str>) -> Self {
        let mut strings = Vec::new();
        let mut options = Vec::with_capacity(mounts.len());
        let items = mounts
            .iter()
            .map(|m| {
                let mut c = berth_mount::EMPTY;
                (c.r#type, c.type_len) = keep(&mut strings, &m.kind);
                (c.source, c.source_len) = keep(&mut strings, &m.source);
                (c.target, c.target_len) = keep(&mut strings, &m.target);
                (c.data, c.data_len) = keep(&mut strings, &m.data());
                let mut ptrs: Vec<*const c_char> =
                    m.options.iter().map(|o| keep(&mut strings, o).0).collect();
                ptrs.push(std::ptr::null());
                c.options = ptrs.as_ptr();
                c.options_len = m.options.len();
                // Moving the Vec into `options` does not move its buffer.
                options.push(ptrs);
                c
            })
            .collect();
        berth_mounts {
            items,
            chdir: chdir.map(c_string),
            _strings: strings,
            _options: options,
        }
    }
}

impl List for berth_mounts {
    type Item = berth_mount;
    fn items(&self) -> &[berth_mount] {
        &self.items
    }
}

impl CallHandle for berth_snapshot_tree {
    type Lent = Vec<CString>;
    const NAME: &'static str = "snapshot tree";
    fn state(&self) -> &CallState<Vec<CString>> {
        &self.state
    }
    fn state_mut(&mut self) -> &mut CallState<Vec<CString>> {
        &mut self.state
    }
}

impl berth_snapshot_tree {
    fn fail(&mut self, e: &SnapshotError) -> berth_result {
        self.state.fail(code(e), e.to_string())
    }
}

// ----- the tree: lifetime, persistence, diagnostics -----

/// Creates an empty tree for a snapshotter at `root`, the snapshotter's absolute root directory
/// (mounts name `<root>/snapshots/<id>/…`; actions are relative to it).
///
/// `snapshotter` is a `berth_snapshotter` value (an integer, so that any value is well
/// defined). Returns `BERTH_ERR_INVALID` for another value, or for a root that is not a clean
/// absolute path below `/` (no empty, `.` or `..` components, no trailing `/`) or that holds
/// `,` or `:` (overlay options cannot carry them).
///
/// On success `*out` is the new tree (free it with `berth_snapshot_tree_free`); on failure
/// `*out` is NULL (if `out` is not NULL). `root` is copied.
///
/// # Safety
///
/// `root` is NULL or NUL-terminated; `out` is NULL or valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_tree_new(
    snapshotter: u32,
    root: *const c_char,
    out: *mut *mut berth_snapshot_tree,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `out` is NULL or valid for a pointer write.
        try_ok!(unsafe { write_out(out, std::ptr::null_mut()) });
        // SAFETY: the caller promises `root` is NULL or NUL-terminated.
        let root = try_ok!(unsafe { str_arg(root) });
        let Some(config) = config_of(snapshotter, root) else {
            return berth_result::BERTH_ERR_INVALID;
        };
        let Ok(tree) = Tree::new(config) else {
            return berth_result::BERTH_ERR_INVALID;
        };
        let handle = berth_snapshot_tree {
            tree,
            undo: None,
            state: CallState::default(),
        };
        // SAFETY: checked non-NULL and valid above.
        unsafe { box_out(out, handle) }
    })
}

/// Frees the tree. NULL is a no-op. Lists it returned (`berth_snapshot_actions`,
/// `berth_mounts`) stay valid; pointers of a `berth_snapshot_info` do not.
///
/// # Safety
///
/// `tree` is NULL or was returned by `berth_snapshot_tree_new` and not freed yet. It must not
/// be used after.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_tree_free(tree: *mut berth_snapshot_tree) {
    // SAFETY: the caller promises `tree` is NULL or came from `berth_snapshot_tree_new`
    // (`box_out`) and is freed once.
    unsafe { free_box(tree) }
}

/// Which snapshotter the tree models; `BERTH_SNAPSHOTTER_UNKNOWN` for NULL.
///
/// # Safety
///
/// `tree` is NULL or a live tree.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_tree_snapshotter(
    tree: *const berth_snapshot_tree,
) -> berth_snapshotter {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `tree` is NULL or a live tree.
        let tree = try_some!(unsafe { tree.as_ref() });
        match tree.tree.config().flavor {
            Flavor::Overlay { .. } => berth_snapshotter::BERTH_SNAPSHOTTER_OVERLAYFS,
            Flavor::Native => berth_snapshotter::BERTH_SNAPSHOTTER_NATIVE,
            _ => berth_snapshotter::BERTH_SNAPSHOTTER_UNKNOWN,
        }
    })
}

/// Replaces the tree's contents with the tree persisted as `json` (`len` bytes, not necessarily
/// NUL-terminated), as `berth_snapshot_tree_save` wrote it.
///
/// Loading checks every invariant (ids unique and below the next id, parents present and
/// committed, no cycles) and that the state belongs to this snapshotter: the same snapshotter
/// name, flavor and root. On any failure it returns `BERTH_ERR_INVALID`, the reason is in
/// `berth_snapshot_tree_last_error`, and the tree is unchanged. On success the undo of the last
/// mutation is dropped.
///
/// # Safety
///
/// `tree` is NULL or a live tree; `json` is NULL or valid for reads of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_tree_load(
    tree: *mut berth_snapshot_tree,
    json: *const u8,
    len: usize,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
        let tree = try_some!(unsafe { tree.as_mut() });
        // SAFETY: the caller promises `json` is NULL or valid for `len` bytes.
        let json = try_ok!(unsafe { bytes_arg(json, len) });
        tree.call(|t| {
            let loaded: Tree = match serde_json::from_slice(json) {
                Ok(loaded) => loaded,
                Err(e) => {
                    return t.state.fail(
                        berth_result::BERTH_ERR_INVALID,
                        format!("persisted snapshot tree does not load: {e}"),
                    )
                }
            };
            let (have, want) = (loaded.config(), t.tree.config());
            if have.snapshotter != want.snapshotter
                || have.root != want.root
                || std::mem::discriminant(&have.flavor) != std::mem::discriminant(&want.flavor)
            {
                return t.state.fail(
                    berth_result::BERTH_ERR_INVALID,
                    format!(
                        "persisted snapshot tree is of snapshotter {:?} at {:?}, this tree is \
                         {:?} at {:?}: load the state of this snapshotter",
                        have.snapshotter, have.root, want.snapshotter, want.root
                    ),
                );
            }
            t.tree = loaded;
            t.undo = None;
            berth_result::BERTH_OK
        })
    })
}

/// Writes the tree as JSON (for `berth_snapshot_tree_load`) and a NUL into `buf` (`len`
/// bytes), and the text's length without the NUL into `*written` (`written` may be NULL).
/// `buf = NULL, len = 0` asks for the size: `BERTH_ERR_BUFFER_TOO_SMALL` with `*written` set;
/// a buffer too small gets nothing. Persist the bytes without the NUL.
///
/// # Safety
///
/// `tree` is NULL or a live tree; `buf` is NULL or valid for writes of `len` bytes; `written`
/// is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_tree_save(
    tree: *const berth_snapshot_tree,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `tree` is NULL or a live tree.
        let tree = try_some!(unsafe { tree.as_ref() });
        try_ok!(tree.state.usable());
        let Ok(json) = serde_json::to_string(&tree.tree) else {
            return berth_result::BERTH_ERR_OTHER;
        };
        // SAFETY: the caller promises `buf`/`len` and `written` are valid or NULL.
        unsafe { write_str(&json, buf, len, written) }
    })
}

/// Copies the text of the tree's last failure into `buf`, with the keys, namespace and kinds
/// involved (e.g. `cannot remove snapshot "base": it is the parent of 1 snapshot(s), e.g.
/// "c1"`). Empty if nothing has failed yet. Buffer rules as for `berth_snapshot_tree_save`.
///
/// # Safety
///
/// `tree` is NULL or a live tree; `buf` is NULL or valid for writes of `len` bytes; `written`
/// is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_tree_last_error(
    tree: *const berth_snapshot_tree,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    // SAFETY: the caller promises `tree` is NULL or a live tree, and `buf`/`len` and `written`
    // valid or NULL.
    unsafe { last_error_out(tree, buf, len, written) }
}

// ----- mutations -----

/// Shared body of prepare and view.
///
/// # Safety
///
/// As for `berth_snapshot_prepare`.
unsafe fn create(
    tree: *mut berth_snapshot_tree,
    now_ns: u64,
    namespace_name: *const c_char,
    key: *const c_char,
    parent: *const c_char,
    actions: *mut *mut berth_snapshot_actions,
    view: bool,
) -> berth_result {
    // SAFETY: the caller promises `actions` is NULL or valid for a pointer write.
    unsafe { clear_opt_out(actions) };
    // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
    let tree = try_some!(unsafe { tree.as_mut() });
    // SAFETY: the caller promises each string is NULL or NUL-terminated.
    let ns = try_ok!(unsafe { str_arg(namespace_name) });
    // SAFETY: as above.
    let key = try_ok!(unsafe { str_arg(key) });
    // SAFETY: as above.
    let parent = try_ok!(unsafe { parent_arg(parent) });
    tree.call(|t| {
        let now = Instant(now_ns);
        let made = if view {
            t.tree.view(now, ns, key, parent, Labels::new())
        } else {
            t.tree.prepare(now, ns, key, parent, Labels::new())
        };
        let made = match made {
            Ok(made) => made,
            Err(e) => return t.fail(&e),
        };
        t.undo = Some(made.undo);
        if !actions.is_null() {
            // SAFETY: not NULL, and the caller promises it is valid for a pointer write.
            unsafe { box_out(actions, berth_snapshot_actions::new(&made.actions)) };
        }
        berth_result::BERTH_OK
    })
}

/// Prepare: a new active snapshot `key` in namespace `namespace_name`, on the committed
/// snapshot `parent` (NULL or `""` for none), stamped `now_ns`.
///
/// On success, if `actions` is not NULL, `*actions` is the list of directories to make, in
/// order (free it with `berth_snapshot_actions_free`); carry them out, and if one fails call
/// `berth_snapshot_undo`. Its mounts come from `berth_snapshot_mounts`. On failure `*actions`
/// is NULL and nothing changed.
///
/// Errors: `BERTH_ERR_ALREADY_EXISTS` (key taken), `BERTH_ERR_NOT_FOUND` (no such parent),
/// `BERTH_ERR_INVALID` (empty key, parent not committed), `BERTH_ERR_OTHER` (ids exhausted).
///
/// # Safety
///
/// `tree` is NULL or a live tree; the strings are NULL or NUL-terminated; `actions` is NULL or
/// valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_prepare(
    tree: *mut berth_snapshot_tree,
    now_ns: u64,
    namespace_name: *const c_char,
    key: *const c_char,
    parent: *const c_char,
    actions: *mut *mut berth_snapshot_actions,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller's promises are those of `create`.
        unsafe { create(tree, now_ns, namespace_name, key, parent, actions, false) }
    })
}

/// View: a new read-only snapshot `key` of the committed snapshot `parent` (NULL or `""` for
/// none), stamped `now_ns`. Everything else as for `berth_snapshot_prepare` (a view of one
/// parent has no directory of its own with the native snapshotter: no actions).
///
/// # Safety
///
/// As for `berth_snapshot_prepare`.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_view(
    tree: *mut berth_snapshot_tree,
    now_ns: u64,
    namespace_name: *const c_char,
    key: *const c_char,
    parent: *const c_char,
    actions: *mut *mut berth_snapshot_actions,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller's promises are those of `create`.
        unsafe { create(tree, now_ns, namespace_name, key, parent, actions, true) }
    })
}

/// Commit: the active snapshot `key` becomes the committed snapshot `name` (containerd's
/// argument order), with the same id and parent, no labels, both times set to `now_ns`, and
/// the usage the host measured in its `fs_dir` beforehand (`usage_size` bytes, `usage_inodes`
/// inodes). Nothing to do on disk.
///
/// Errors: `BERTH_ERR_ALREADY_EXISTS` (name taken), `BERTH_ERR_NOT_FOUND` (no such key),
/// `BERTH_ERR_FAILED_PRECONDITION` (key is not active), `BERTH_ERR_INVALID` (empty name or key).
///
/// # Safety
///
/// `tree` is NULL or a live tree; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_commit(
    tree: *mut berth_snapshot_tree,
    now_ns: u64,
    namespace_name: *const c_char,
    name: *const c_char,
    key: *const c_char,
    usage_size: u64,
    usage_inodes: u64,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
        let tree = try_some!(unsafe { tree.as_mut() });
        // SAFETY: the caller promises each string is NULL or NUL-terminated.
        let ns = try_ok!(unsafe { str_arg(namespace_name) });
        // SAFETY: as above.
        let name = try_ok!(unsafe { str_arg(name) });
        // SAFETY: as above.
        let key = try_ok!(unsafe { str_arg(key) });
        let usage = Usage {
            size: usage_size,
            inodes: usage_inodes,
        };
        tree.call(|t| {
            match t
                .tree
                .commit(Instant(now_ns), ns, name, key, Labels::new(), usage)
            {
                Ok(c) => {
                    t.undo = Some(c.undo);
                    berth_result::BERTH_OK
                }
                Err(e) => t.fail(&e),
            }
        })
    })
}

/// Remove: the snapshot `key`, of any kind, which must have no children.
///
/// On success, if `actions` is not NULL, `*actions` is the list of removals (free it with
/// `berth_snapshot_actions_free`): persist the tree first (on a failed persist, call
/// `berth_snapshot_undo`), then carry them out; a removal that fails leaves a directory the
/// next `berth_snapshot_cleanup` removes. On failure `*actions` is NULL and nothing changed.
///
/// Errors: `BERTH_ERR_NOT_FOUND`, `BERTH_ERR_FAILED_PRECONDITION` (the snapshot has children).
///
/// # Safety
///
/// `tree` is NULL or a live tree; the strings are NULL or NUL-terminated; `actions` is NULL or
/// valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_remove(
    tree: *mut berth_snapshot_tree,
    namespace_name: *const c_char,
    key: *const c_char,
    actions: *mut *mut berth_snapshot_actions,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `actions` is NULL or valid for a pointer write.
        unsafe { clear_opt_out(actions) };
        // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
        let tree = try_some!(unsafe { tree.as_mut() });
        // SAFETY: the caller promises each string is NULL or NUL-terminated.
        let ns = try_ok!(unsafe { str_arg(namespace_name) });
        // SAFETY: as above.
        let key = try_ok!(unsafe { str_arg(key) });
        tree.call(|t| {
            let removed = match t.tree.remove(ns, key) {
                Ok(r) => r,
                Err(e) => return t.fail(&e),
            };
            t.undo = Some(removed.undo);
            if !actions.is_null() {
                // SAFETY: not NULL, and the caller promises it is valid for a pointer write.
                unsafe { box_out(actions, berth_snapshot_actions::new(&removed.actions)) };
            }
            berth_result::BERTH_OK
        })
    })
}

/// Rebase: give the active overlayfs snapshot `key` a new parent, the committed snapshot
/// `parent` (NULL or `""` for none); sets its `updated_at` to `now_ns`. Its directory does not
/// change (nothing to do on disk), only the lower layers of its mounts: layers can be unpacked
/// in parallel, each into a snapshot without a parent, and rebased onto the previous layer just
/// before their commit.
///
/// Errors: `BERTH_ERR_NOT_FOUND` (no such key or parent), `BERTH_ERR_INVALID` (parent not
/// committed), `BERTH_ERR_FAILED_PRECONDITION` (not active, or a native tree).
///
/// # Safety
///
/// `tree` is NULL or a live tree; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_rebase(
    tree: *mut berth_snapshot_tree,
    now_ns: u64,
    namespace_name: *const c_char,
    key: *const c_char,
    parent: *const c_char,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
        let tree = try_some!(unsafe { tree.as_mut() });
        // SAFETY: the caller promises each string is NULL or NUL-terminated.
        let ns = try_ok!(unsafe { str_arg(namespace_name) });
        // SAFETY: as above.
        let key = try_ok!(unsafe { str_arg(key) });
        // SAFETY: as above.
        let parent = try_ok!(unsafe { parent_arg(parent) });
        tree.call(|t| match t.tree.rebase(Instant(now_ns), ns, key, parent) {
            Ok((_, undo)) => {
                t.undo = Some(undo);
                berth_result::BERTH_OK
            }
            Err(e) => t.fail(&e),
        })
    })
}

/// Sets the label `label` of snapshot `key` to `value`, or removes it if `value` is `""` (an
/// empty value is never stored, as containerd); sets `updated_at` to `now_ns`.
///
/// Errors: `BERTH_ERR_NOT_FOUND`, `BERTH_ERR_INVALID` (empty label key; key and value longer
/// than 4096 bytes together).
///
/// # Safety
///
/// `tree` is NULL or a live tree; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_set_label(
    tree: *mut berth_snapshot_tree,
    now_ns: u64,
    namespace_name: *const c_char,
    key: *const c_char,
    label: *const c_char,
    value: *const c_char,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
        let tree = try_some!(unsafe { tree.as_mut() });
        // SAFETY: the caller promises each string is NULL or NUL-terminated.
        let ns = try_ok!(unsafe { str_arg(namespace_name) });
        // SAFETY: as above.
        let key = try_ok!(unsafe { str_arg(key) });
        // SAFETY: as above.
        let label = try_ok!(unsafe { str_arg(label) });
        // SAFETY: as above.
        let value = try_ok!(unsafe { str_arg(value) });
        let new = Labels::from([(label.to_owned(), value.to_owned())]);
        let mask = [format!("labels.{label}")];
        tree.call(
            |t| match t.tree.update(Instant(now_ns), ns, key, &new, &mask) {
                Ok((_, undo)) => {
                    t.undo = Some(undo);
                    berth_result::BERTH_OK
                }
                Err(e) => t.fail(&e),
            },
        )
    })
}

/// Removes every label of snapshot `key`; sets `updated_at` to `now_ns`.
///
/// Errors: `BERTH_ERR_NOT_FOUND`.
///
/// # Safety
///
/// `tree` is NULL or a live tree; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_clear_labels(
    tree: *mut berth_snapshot_tree,
    now_ns: u64,
    namespace_name: *const c_char,
    key: *const c_char,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
        let tree = try_some!(unsafe { tree.as_mut() });
        // SAFETY: the caller promises each string is NULL or NUL-terminated.
        let ns = try_ok!(unsafe { str_arg(namespace_name) });
        // SAFETY: as above.
        let key = try_ok!(unsafe { str_arg(key) });
        let mask = ["labels".to_owned()];
        tree.call(|t| {
            match t
                .tree
                .update(Instant(now_ns), ns, key, &Labels::new(), &mask)
            {
                Ok((_, undo)) => {
                    t.undo = Some(undo);
                    berth_result::BERTH_OK
                }
                Err(e) => t.fail(&e),
            }
        })
    })
}

/// Undoes the last successful mutation (prepare, view, commit, remove, rebase, set_label,
/// clear_labels), when the host could not carry out its actions or persist the tree. Ids are not
/// given back: a half-made directory of an undone snapshot never collides with a later one.
///
/// Errors: `BERTH_ERR_FAILED_PRECONDITION` when there is nothing to undo (no mutation since the
/// tree was made or loaded, or it was undone already).
///
/// # Safety
///
/// `tree` is NULL or a live tree.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_undo(tree: *mut berth_snapshot_tree) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
        let tree = try_some!(unsafe { tree.as_mut() });
        tree.call(|t| {
            let Some(undo) = t.undo.take() else {
                return t.state.fail(
                    berth_result::BERTH_ERR_FAILED_PRECONDITION,
                    "nothing to undo: no mutation since the tree was made or loaded, or it was \
                     undone already"
                        .into(),
                );
            };
            match t.tree.undo(undo) {
                Ok(()) => berth_result::BERTH_OK,
                Err(e) => t.fail(&e),
            }
        })
    })
}

// ----- queries -----

/// Stat: writes what the tree records about snapshot `key` into `*out`. Its strings stay valid
/// until the next call that takes the tree as a non-`const` pointer; passing one of them back
/// as an argument of that call is fine (e.g. walking up with `out->parent`).
///
/// Errors: `BERTH_ERR_NOT_FOUND` (`*out` is then untouched).
///
/// # Safety
///
/// `tree` is NULL or a live tree; the strings are NULL or NUL-terminated; `out` is NULL or
/// valid for a write of a `berth_snapshot_info`.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_stat(
    tree: *mut berth_snapshot_tree,
    namespace_name: *const c_char,
    key: *const c_char,
    out: *mut berth_snapshot_info,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
        let tree = try_some!(unsafe { tree.as_mut() });
        // SAFETY: the caller promises each string is NULL or NUL-terminated.
        let ns = try_ok!(unsafe { str_arg(namespace_name) });
        // SAFETY: as above.
        let key = try_ok!(unsafe { str_arg(key) });
        if out.is_null() {
            return berth_result::BERTH_ERR_NULL;
        }
        tree.call(|t| {
            let Some(s) = t.tree.get(ns, key) else {
                return t.fail(&SnapshotError::NotFound {
                    namespace: ns.into(),
                    key: key.into(),
                });
            };
            let (kind, id, created, updated) = (s.kind, s.id, s.created_at, s.updated_at);
            let (label_count, usage) = (s.labels.len(), s.usage);
            let parent = s.parent.clone();
            let fs_dir = t.tree.fs_dir(ns, key);
            let mut lent = Vec::with_capacity(3);
            let (name, name_len) = keep(&mut lent, key);
            let (parent, parent_len) = parent
                .as_deref()
                .map_or((std::ptr::null(), 0), |p| keep(&mut lent, p));
            let (fs_dir, fs_dir_len) = fs_dir
                .as_deref()
                .map_or((std::ptr::null(), 0), |d| keep(&mut lent, d));
            let info = berth_snapshot_info {
                name,
                name_len,
                parent,
                parent_len,
                kind: kind.into(),
                id,
                fs_dir,
                fs_dir_len,
                created_at_ns: created.0,
                updated_at_ns: updated.0,
                label_count,
                usage_size: usage.size,
                usage_inodes: usage.inodes,
            };
            t.state.lent = lent;
            // SAFETY: `out` is not NULL, and the caller promises it is valid for a write.
            try_ok!(unsafe { write_out(out, info) });
            berth_result::BERTH_OK
        })
    })
}

/// Copies the value of label `label` of snapshot `key` into `buf`; the text is empty if the
/// label is not set. Buffer rules as for `berth_snapshot_tree_save`.
///
/// Errors: `BERTH_ERR_NOT_FOUND` (no such snapshot), `BERTH_ERR_BUFFER_TOO_SMALL`.
///
/// # Safety
///
/// `tree` is NULL or a live tree; the strings are NULL or NUL-terminated; `buf` is NULL or
/// valid for writes of `len` bytes; `written` is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_label(
    tree: *mut berth_snapshot_tree,
    namespace_name: *const c_char,
    key: *const c_char,
    label: *const c_char,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
        let tree = try_some!(unsafe { tree.as_mut() });
        // SAFETY: the caller promises each string is NULL or NUL-terminated.
        let ns = try_ok!(unsafe { str_arg(namespace_name) });
        // SAFETY: as above.
        let key = try_ok!(unsafe { str_arg(key) });
        // SAFETY: as above.
        let label = try_ok!(unsafe { str_arg(label) });
        tree.call(|t| {
            let Some(s) = t.tree.get(ns, key) else {
                return t.fail(&SnapshotError::NotFound {
                    namespace: ns.into(),
                    key: key.into(),
                });
            };
            let value = s.labels.get(label).map_or("", String::as_str);
            // SAFETY: the caller promises `buf`/`len` and `written` are valid or NULL.
            unsafe { write_str(value, buf, len, written) }
        })
    })
}

/// Calls `callback(userdata, key, key_len)` for each snapshot of namespace `namespace_name`
/// that matches `filters`, in key order, until it returns false. A namespace without snapshots
/// gives no call.
///
/// `filters` is an array of `filters_len` containerd filter strings (NULL when 0), any of which
/// must match, over the fields `kind` (`view`, `active`, `committed`), `name`, `parent` and
/// `labels.<key>`: e.g. `kind==committed`, `parent==base`, `labels."containerd.io/gc.root"`.
/// None matches everything. A filter that does not parse gives `BERTH_ERR_INVALID` and no call.
///
/// The keys are copied before the first call: the callback may call any function of this
/// library, on this tree too (even mutate or free it). It must not unwind (no C++ exception,
/// no `longjmp` out of it).
///
/// # Safety
///
/// `tree` is NULL or a live tree; `namespace_name` is NULL or NUL-terminated; `filters` is
/// NULL or an array of `filters_len` pointers, each NULL or NUL-terminated; `callback` is safe
/// to call with `userdata` and a key.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_list(
    tree: *mut berth_snapshot_tree,
    namespace_name: *const c_char,
    filters: *const *const c_char,
    filters_len: usize,
    callback: berth_snapshot_key_callback,
    userdata: *mut c_void,
) -> berth_result {
    ffi_panic_boundary(|| {
        let callback = try_some!(callback);
        let keys = {
            // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
            // This borrow ends with this block, before the first callback.
            let tree = try_some!(unsafe { tree.as_mut() });
            // SAFETY: the caller promises `namespace_name` is NULL or NUL-terminated.
            let ns = try_ok!(unsafe { str_arg(namespace_name) });
            // SAFETY: the caller promises `filters` is NULL or `filters_len` C strings.
            let filters = try_ok!(unsafe { str_list_arg(filters, filters_len) });
            let mut keys = Vec::new();
            let r = tree.call(|t| {
                let filter = match Filter::parse(&filters) {
                    Ok(f) => f,
                    Err(e) => return t.state.fail(berth_result::BERTH_ERR_INVALID, e.to_string()),
                };
                keys = t
                    .tree
                    .list(ns, &filter)
                    .iter()
                    .map(|i| c_string(&i.name))
                    .collect();
                berth_result::BERTH_OK
            });
            if r != berth_result::BERTH_OK {
                return r;
            }
            keys
        };
        for key in &keys {
            // SAFETY: the caller promises `callback` is safe to call with `userdata`; `key` is a
            // NUL-terminated string that outlives the call; no reference into the tree is live.
            if !unsafe { callback(userdata, key.as_ptr(), key.as_bytes().len()) } {
                break;
            }
        }
        berth_result::BERTH_OK
    })
}

/// The mounts of the active snapshot or view `key`, exactly as containerd's snapshotter returns
/// them (absolute paths, empty targets): for overlayfs, a `bind` of its own `fs` (`rw`, or `ro`
/// for a view) without a parent, a `ro` `bind` of the parent's `fs` for a view of one parent,
/// else an `overlay` (`index=off`, `workdir=`, `upperdir=` unless a view, then `lowerdir=`
/// top first); for native, a `bind` of its directory (of its parent's, for a view).
///
/// On success `*out` is a new list (free it with `berth_mounts_free`); on failure NULL.
///
/// Errors: `BERTH_ERR_NOT_FOUND`, `BERTH_ERR_FAILED_PRECONDITION` (a committed snapshot has no
/// mounts).
///
/// # Safety
///
/// `tree` is NULL or a live tree; the strings are NULL or NUL-terminated; `out` is NULL or
/// valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_mounts(
    tree: *mut berth_snapshot_tree,
    namespace_name: *const c_char,
    key: *const c_char,
    out: *mut *mut berth_mounts,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `out` is NULL or valid for a pointer write.
        try_ok!(unsafe { write_out(out, std::ptr::null_mut()) });
        // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
        let tree = try_some!(unsafe { tree.as_mut() });
        // SAFETY: the caller promises each string is NULL or NUL-terminated.
        let ns = try_ok!(unsafe { str_arg(namespace_name) });
        // SAFETY: as above.
        let key = try_ok!(unsafe { str_arg(key) });
        tree.call(|t| match t.tree.mounts(ns, key) {
            // SAFETY: checked non-NULL and valid above.
            Ok(mounts) => unsafe { box_out(out, berth_mounts::new(&mounts, None)) },
            Err(e) => t.fail(&e),
        })
    })
}

/// The plan to mount snapshot `key` at `target` (an absolute path), as containerd's
/// `mount.All` performs its mounts: each mount gets the target, and an overlay whose options
/// come near a page has its lowerdirs made relative to their common directory, which
/// `berth_mounts_chdir` then names (a 200-layer chain: `lowerdir=200/fs:199/fs:…` from
/// `<root>/snapshots`). Mount from that directory, in a helper process that changes into it
/// first; upperdir and workdir stay absolute. Every planned mount's `data_len` is below
/// `BERTH_MOUNT_DATA_LIMIT`.
///
/// On success `*out` is a new list (free it with `berth_mounts_free`); on failure NULL.
///
/// Errors: as `berth_snapshot_mounts`, and `BERTH_ERR_INVALID` if `target` is not absolute,
/// the overlay stacks more than 500 layers, or its data does not fit a page even with relative
/// lowerdirs.
///
/// # Safety
///
/// `tree` is NULL or a live tree; the strings are NULL or NUL-terminated; `out` is NULL or
/// valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_plan_mounts(
    tree: *mut berth_snapshot_tree,
    namespace_name: *const c_char,
    key: *const c_char,
    target: *const c_char,
    out: *mut *mut berth_mounts,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `out` is NULL or valid for a pointer write.
        try_ok!(unsafe { write_out(out, std::ptr::null_mut()) });
        // SAFETY: the caller promises `tree` is NULL or a live tree, used by one thread.
        let tree = try_some!(unsafe { tree.as_mut() });
        // SAFETY: the caller promises each string is NULL or NUL-terminated.
        let ns = try_ok!(unsafe { str_arg(namespace_name) });
        // SAFETY: as above.
        let key = try_ok!(unsafe { str_arg(key) });
        // SAFETY: as above.
        let target = try_ok!(unsafe { str_arg(target) });
        tree.call(|t| {
            let mounts = match t.tree.mounts(ns, key) {
                Ok(m) => m,
                Err(e) => return t.fail(&e),
            };
            let plan = match plan_mounts(&mounts, target) {
                Ok(p) => p,
                Err(e) => {
                    return t.state.fail(
                        berth_result::BERTH_ERR_INVALID,
                        format!("snapshot {key:?}: {e}"),
                    )
                }
            };
            let list = berth_mounts::new(&plan.mounts, plan.chdir.as_deref());
            // SAFETY: checked non-NULL and valid above.
            unsafe { box_out(out, list) }
        })
    })
}

/// Start-up cleanup: given the names of the `entries_len` entries of `<root>/snapshots`, the
/// removals of every entry no snapshot owns (half-made `new-<id>` directories, removed
/// snapshots, ids allocated but never persisted). Call it after loading and carry the removals
/// out. Entries that are not plain names (`..`, `a/b`) are ignored.
///
/// On success `*out` is a new list (free it with `berth_snapshot_actions_free`); on failure
/// NULL.
///
/// # Safety
///
/// `tree` is NULL or a live tree; `entries` is NULL or an array of `entries_len` pointers,
/// each NULL or NUL-terminated; `out` is NULL or valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_cleanup(
    tree: *const berth_snapshot_tree,
    entries: *const *const c_char,
    entries_len: usize,
    out: *mut *mut berth_snapshot_actions,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `out` is NULL or valid for a pointer write.
        try_ok!(unsafe { write_out(out, std::ptr::null_mut()) });
        // SAFETY: the caller promises `tree` is NULL or a live tree.
        let tree = try_some!(unsafe { tree.as_ref() });
        // SAFETY: the caller promises `entries` is NULL or `entries_len` C strings.
        let entries = try_ok!(unsafe { str_list_arg(entries, entries_len) });
        try_ok!(tree.state.usable());
        let actions = berth_snapshot_actions::new(&tree.tree.cleanup(entries.as_slice()));
        // SAFETY: checked non-NULL and valid above.
        unsafe { box_out(out, actions) }
    })
}

// ----- action lists -----

/// How many actions the list holds; 0 for NULL.
///
/// # Safety
///
/// `actions` is NULL or a live list.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_actions_len(
    actions: *const berth_snapshot_actions,
) -> usize {
    // SAFETY: the caller promises `actions` is NULL or a live list.
    unsafe { list_len(actions) }
}

/// Writes action `index` (from 0, in the order to carry them out) into `*out`; its strings
/// borrow from the list. `BERTH_ERR_INVALID` if `index` is not below the length.
///
/// # Safety
///
/// `actions` is NULL or a live list; `out` is NULL or valid for a write of a
/// `berth_snapshot_action`.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_actions_get(
    actions: *const berth_snapshot_actions,
    index: usize,
    out: *mut berth_snapshot_action,
) -> berth_result {
    // SAFETY: the caller promises `actions` is NULL or a live list and `out` NULL or valid for
    // a write.
    unsafe { list_get(actions, index, out) }
}

/// Frees an action list. NULL is a no-op.
///
/// # Safety
///
/// `actions` is NULL or was returned by this library and not freed yet. It must not be used
/// after, nor the strings of actions read from it.
#[no_mangle]
pub unsafe extern "C" fn berth_snapshot_actions_free(actions: *mut berth_snapshot_actions) {
    // SAFETY: the caller promises `actions` is NULL or came from this library (`box_out`) and
    // is freed once.
    unsafe { free_box(actions) }
}

// ----- mount lists -----

/// How many mounts the list holds, to perform in order; 0 for NULL.
///
/// # Safety
///
/// `mounts` is NULL or a live list.
#[no_mangle]
pub unsafe extern "C" fn berth_mounts_len(mounts: *const berth_mounts) -> usize {
    // SAFETY: the caller promises `mounts` is NULL or a live list.
    unsafe { list_len(mounts) }
}

/// Writes mount `index` (from 0) into `*out`; its strings borrow from the list.
/// `BERTH_ERR_INVALID` if `index` is not below the length.
///
/// # Safety
///
/// `mounts` is NULL or a live list; `out` is NULL or valid for a write of a `berth_mount`.
#[no_mangle]
pub unsafe extern "C" fn berth_mounts_get(
    mounts: *const berth_mounts,
    index: usize,
    out: *mut berth_mount,
) -> berth_result {
    // SAFETY: the caller promises `mounts` is NULL or a live list and `out` NULL or valid for
    // a write.
    unsafe { list_get(mounts, index, out) }
}

/// The directory a plan's mounts must be performed from (their relative lowerdirs resolve
/// against it), NUL-terminated and valid until the list is freed; NULL when there is none (a
/// snapshot's own mounts, a short chain) or for a NULL list.
///
/// # Safety
///
/// `mounts` is NULL or a live list.
#[no_mangle]
pub unsafe extern "C" fn berth_mounts_chdir(mounts: *const berth_mounts) -> *const c_char {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `mounts` is NULL or a live list.
        let mounts = try_some!(unsafe { mounts.as_ref() });
        mounts
            .chdir
            .as_ref()
            .map_or(std::ptr::null(), |c| c.as_ptr())
    })
}

/// Frees a mount list. NULL is a no-op.
///
/// # Safety
///
/// `mounts` is NULL or was returned by this library and not freed yet. It must not be used
/// after, nor the strings of mounts read from it.
#[no_mangle]
pub unsafe extern "C" fn berth_mounts_free(mounts: *mut berth_mounts) {
    // SAFETY: the caller promises `mounts` is NULL or came from this library (`box_out`) and is
    // freed once.
    unsafe { free_box(mounts) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::metadata::LabelError;
    use std::ffi::CStr;
    use std::ptr::{null, null_mut};

    const ROOT: &CStr = c"/var/lib/berth/io.containerd.snapshotter.v1.overlayfs";

    fn tree() -> *mut berth_snapshot_tree {
        let mut t = null_mut();
        // SAFETY: `ROOT` is NUL-terminated; `t` is a valid local.
        let r = unsafe {
            berth_snapshot_tree_new(
                berth_snapshotter::BERTH_SNAPSHOTTER_OVERLAYFS as u32,
                ROOT.as_ptr(),
                &mut t,
            )
        };
        assert_eq!(r, berth_result::BERTH_OK);
        assert!(!t.is_null());
        t
    }

    fn last_error(t: *const berth_snapshot_tree) -> String {
        let mut buf = [0 as c_char; 512];
        // SAFETY: `t` is live; `buf` is 512 writable bytes.
        let r =
            unsafe { berth_snapshot_tree_last_error(t, buf.as_mut_ptr(), buf.len(), null_mut()) };
        assert_eq!(r, berth_result::BERTH_OK);
        // SAFETY: NUL-terminated by the successful call.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn codes_follow_containerds_grpc_codes() {
        let s = String::new;
        let cases = [
            (SnapshotError::EmptyKey, berth_result::BERTH_ERR_INVALID),
            (
                SnapshotError::Labels {
                    key: s(),
                    source: LabelError::EmptyKey,
                },
                berth_result::BERTH_ERR_INVALID,
            ),
            (
                SnapshotError::AlreadyExists {
                    namespace: s(),
                    key: s(),
                },
                berth_result::BERTH_ERR_ALREADY_EXISTS,
            ),
            (
                SnapshotError::NotFound {
                    namespace: s(),
                    key: s(),
                },
                berth_result::BERTH_ERR_NOT_FOUND,
            ),
            (
                SnapshotError::ParentNotFound {
                    namespace: s(),
                    key: s(),
                    parent: s(),
                },
                berth_result::BERTH_ERR_NOT_FOUND,
            ),
            (
                SnapshotError::ParentNotCommitted {
                    key: s(),
                    parent: s(),
                    kind: Kind::Active,
                },
                berth_result::BERTH_ERR_INVALID,
            ),
            (
                SnapshotError::NotActive {
                    key: s(),
                    kind: Kind::View,
                },
                berth_result::BERTH_ERR_FAILED_PRECONDITION,
            ),
            (
                SnapshotError::NotActiveOrView {
                    key: s(),
                    kind: Kind::Committed,
                },
                berth_result::BERTH_ERR_FAILED_PRECONDITION,
            ),
            (
                SnapshotError::HasChildren {
                    key: s(),
                    children: vec![s()],
                },
                berth_result::BERTH_ERR_FAILED_PRECONDITION,
            ),
            (
                SnapshotError::CannotRebase {
                    key: s(),
                    reason: "",
                },
                berth_result::BERTH_ERR_FAILED_PRECONDITION,
            ),
            (
                SnapshotError::StaleUndo {
                    expected: 1,
                    actual: 2,
                },
                berth_result::BERTH_ERR_FAILED_PRECONDITION,
            ),
            (SnapshotError::IdsExhausted, berth_result::BERTH_ERR_OTHER),
        ];
        for (e, want) in cases {
            assert_eq!(code(&e), want, "{e:?}");
        }
    }

    #[test]
    fn a_panic_is_caught_and_poisons_the_tree() {
        let t = tree();
        // SAFETY: `t` is live and not in use.
        unsafe { (*t).state.panic_on_next_call = true };
        let mut actions = std::ptr::dangling_mut();
        // SAFETY: `t` is live; the strings are NUL-terminated; `actions` a valid local.
        let r = unsafe {
            berth_snapshot_prepare(
                t,
                1,
                c"default".as_ptr(),
                c"k".as_ptr(),
                null(),
                &mut actions,
            )
        };
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        assert!(actions.is_null(), "out stays NULL after a panic");
        // Every later call is refused, the const ones too.
        // SAFETY: `t` is live; the strings are NUL-terminated.
        let r = unsafe {
            berth_snapshot_prepare(t, 1, c"default".as_ptr(), c"k".as_ptr(), null(), null_mut())
        };
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        // SAFETY: `t` is live.
        let r = unsafe { berth_snapshot_undo(t) };
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        let mut n = 0;
        // SAFETY: `t` is live; a size query.
        let r = unsafe { berth_snapshot_tree_save(t, null_mut(), 0, &mut n) };
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        let mut out = null_mut();
        // SAFETY: `t` is live; NULL entries with length 0 are allowed.
        let r = unsafe { berth_snapshot_cleanup(t, null(), 0, &mut out) };
        assert_eq!((r, out.is_null()), (berth_result::BERTH_ERR_PANIC, true));
        assert!(last_error(t).contains("panicked"));
        // SAFETY: `t` is live and freed once; freeing a poisoned tree is allowed.
        unsafe { berth_snapshot_tree_free(t) };
    }

    #[test]
    fn stat_strings_stay_valid_as_the_next_calls_arguments() {
        let t = tree();
        let ns = c"default".as_ptr();
        // SAFETY: `t` is live; the strings are NUL-terminated.
        unsafe {
            for (key, name, parent) in [(c"x1", c"l1", null()), (c"x2", c"l2", c"l1".as_ptr())] {
                let r = berth_snapshot_prepare(t, 1, ns, key.as_ptr(), parent, null_mut());
                assert_eq!(r, berth_result::BERTH_OK);
                let r = berth_snapshot_commit(t, 2, ns, name.as_ptr(), key.as_ptr(), 0, 0);
                assert_eq!(r, berth_result::BERTH_OK);
            }
        }
        let mut info = std::mem::MaybeUninit::<berth_snapshot_info>::uninit();
        // SAFETY: `t` is live; `info` is valid for a write.
        let r = unsafe { berth_snapshot_stat(t, ns, c"l2".as_ptr(), info.as_mut_ptr()) };
        assert_eq!(r, berth_result::BERTH_OK);
        // SAFETY: a successful stat wrote the whole struct.
        let l2 = unsafe { info.assume_init() };
        // The parent's name is lent by the tree and retired by this very call.
        // SAFETY: `l2.parent` is valid until the end of this call; `info` valid for a write.
        let r = unsafe { berth_snapshot_stat(t, ns, l2.parent, info.as_mut_ptr()) };
        assert_eq!(r, berth_result::BERTH_OK);
        // SAFETY: written by the successful stat.
        let l1 = unsafe { info.assume_init() };
        // SAFETY: lent until the next non-const call on `t`.
        assert_eq!(unsafe { CStr::from_ptr(l1.name) }, c"l1");
        assert!(l1.parent.is_null());
        assert_eq!(l1.kind, berth_snapshot_kind::BERTH_SNAPSHOT_COMMITTED);
        // SAFETY: `t` is live and freed once.
        unsafe { berth_snapshot_tree_free(t) };
    }

    #[test]
    fn fallbacks_for_null_handles() {
        // SAFETY: NULL is allowed by each function's contract.
        unsafe {
            assert_eq!(berth_snapshot_actions_len(null()), 0);
            assert_eq!(berth_mounts_len(null()), 0);
            assert!(berth_mounts_chdir(null()).is_null());
            assert_eq!(
                berth_snapshot_tree_snapshotter(null()),
                berth_snapshotter::BERTH_SNAPSHOTTER_UNKNOWN
            );
        }
        assert_eq!(<usize as Fallback>::on_panic(), 0);
        assert!(<*const c_char as Fallback>::on_panic().is_null());
    }
}
