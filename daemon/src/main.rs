//! berthd: berth's daemon. Serves containerd's gRPC API on a UNIX socket.

mod archive_io;
mod blobs;
mod config;
mod errors;
mod events;
mod gc;
mod idle;
mod pull;
mod push;
mod snapshots;
mod state;
mod svc;
mod sys;
mod task_events;
mod tasks;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

use berth_drivers::store::Store;
use berth_drivers::{Executor, Layout, SystemClock};
use clap::Parser;

use crate::config::{Config, Driver, Flags};
use crate::state::Daemon;

/// A minimal stderr logger: `LEVEL target: message`.
struct Logger(log::LevelFilter);

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.0 && (m.target().starts_with("berth") || m.level() <= log::Level::Warn)
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("{:<5} {}: {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

fn uuid(root: &Path) -> std::io::Result<String> {
    let path = root.join("uuid");
    if let Ok(u) = std::fs::read_to_string(&path) {
        return Ok(u.trim().to_string());
    }
    let u = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?
        .trim()
        .to_string();
    let tmp = root.join("uuid.tmp");
    std::fs::write(&tmp, &u)?;
    std::fs::rename(&tmp, &path)?;
    Ok(u)
}

fn bind(address: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = address.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    match std::os::unix::net::UnixStream::connect(address) {
        Ok(_) => {
            return Err(format!(
                "{} is in use by a running daemon; stop it or choose --address",
                address.display()
            ))
        }
        Err(_) => {
            let _ = std::fs::remove_file(address);
        }
    }
    let listener = UnixListener::bind(address)
        .map_err(|e| format!("cannot listen on {}: {e}", address.display()))?;
    std::fs::set_permissions(address, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("cannot set mode of {}: {e}", address.display()))?;
    Ok(listener)
}

/// The `berth-shim` binary: `$BERTH_SHIM`, else next to berthd.
fn shim_binary() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("BERTH_SHIM") {
        return p.into();
    }
    std::env::current_exe()
        .map(|e| e.with_file_name("berth-shim"))
        .unwrap_or_else(|_| "berth-shim".into())
}

fn run(cfg: Config) -> Result<(), String> {
    let layout = Layout::new(&cfg.root);
    for dir in [&cfg.root, &cfg.state] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let store = Store::open(&layout.metadata_db())
        .map_err(|e| format!("opening {}: {e}", layout.metadata_db().display()))?;
    let store_for_snapshots = store.clone();
    let exec: Arc<dyn Executor> = match cfg.driver {
        Driver::Smol => Arc::new(
            berth_smol::SmolExecutor::open(&cfg.root)
                .map_err(|e| format!("root {}: {e}", cfg.root.display()))?,
        ),
        Driver::IoUring => Arc::new(
            berth_uring::UringExecutor::open(&cfg.root)
                .map_err(|e| format!("root {}: {e}", cfg.root.display()))?,
        ),
    };
    let daemon = Arc::new(Daemon {
        root: std::path::absolute(&cfg.root).map_err(|e| format!("root: {e}"))?,
        store,
        exec,
        clock: Arc::new(SystemClock),
        events: Default::default(),
        uuid: uuid(&cfg.root).map_err(|e| format!("uuid: {e}"))?,
        ingest_locks: Default::default(),
        // Tasks first: it finishes unmounting the roots of tasks deleted just before a crash,
        // which the snapshotters' start-up cleanup may then remove.
        tasks: Arc::new(tasks::Tasks::open(&cfg.state, shim_binary())?),
        snapshotters: snapshots::Snapshotters::open(&cfg.root, &store_for_snapshots)?,
        gc: Default::default(),
    });
    daemon.tasks.recover(&daemon);
    match svc::leases::drop_stale_transfers(&daemon.store) {
        Ok(0) => {}
        Ok(n) => log::info!("dropped the leases of {n} transfers a previous berthd left"),
        Err(e) => log::warn!("dropping stale transfer leases: {e}"),
    }
    // Collect once before serving: what expired or lost its references while berthd was down
    // goes now, and never under a client that has just connected.
    match smol::block_on(gc::run(&daemon)) {
        Ok(s) => log::info!(
            "start-up collection removed {} content records, {} blobs, {} snapshots, {} leases",
            s.content,
            s.blobs,
            s.snapshots,
            s.leases
        ),
        Err(e) => log::warn!("start-up garbage collection: {e}"),
    }
    gc::spawn(daemon.clone());
    let listener = bind(&cfg.address)?;
    let listener = smol::Async::new(listener).map_err(|e| e.to_string())?;
    log::info!(
        "berthd {} serving on {} (root {}, state {}, driver {})",
        env!("CARGO_PKG_VERSION"),
        cfg.address.display(),
        cfg.root.display(),
        cfg.state.display(),
        daemon.exec.name()
    );
    let trim = idle::spawn_trimmer().map_err(|e| format!("starting the idle trimmer: {e}"))?;
    let router = Arc::new(svc::router(daemon).on_done(trim));
    smol::block_on(berth_api::transport::serve(listener, router))
        .map_err(|e| format!("serving: {e}"))
}

fn main() {
    // Before any thread exists (see sys::malloc_one_arena).
    let one_arena = sys::malloc_one_arena();
    // smol's global executor runs one thread unless told otherwise. berthd wants one per core
    // (at least two): an ingest's worker hashes a chunk while the connection task receives the
    // next. Set before anything touches the executor; an explicit SMOL_THREADS wins.
    if std::env::var_os("SMOL_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        std::env::set_var("SMOL_THREADS", n.to_string());
    }
    let flags = Flags::parse();
    let cfg = match Config::resolve(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {e}");
            std::process::exit(2);
        }
    };
    let logger = Box::leak(Box::new(Logger(cfg.log_level)));
    let _ = log::set_logger(logger);
    log::set_max_level(cfg.log_level);
    if !one_arena {
        log::debug!("the allocator kept its per-thread arenas (not glibc, or mallopt refused)");
    }
    if let Err(e) = run(cfg) {
        log::error!("{e}");
        eprintln!("berthd: {e}");
        std::process::exit(1);
    }
}
