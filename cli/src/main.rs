//! `berth`: the command-line client of berthd, ctr-like but friendlier.
//!
//! It speaks containerd's gRPC API over berthd's UNIX socket, so most commands work against
//! containerd too. Output is an aligned table for people or JSON with `--json`; notes and
//! progress go to stderr. Exit codes: 0 success, 1 the operation failed, 2 usage error,
//! 3 berthd cannot be reached (see [`error`]).
//!
//! Layout: [`client`] holds the connection, [`cmd`] one module per command group,
//! [`output`] the table/JSON formatting, [`error`] the mapping of failures to messages and exit
//! codes, [`parse`] the value parsers.

mod client;
mod cmd;
mod error;
mod output;
mod parse;
mod rootfs;
mod stdio;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::client::Client;
use crate::error::Error;

/// berth: talk to berthd, the container runtime daemon.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about,
    propagate_version = true,
    args_override_self = true
)]
struct Cli {
    /// berthd's socket
    #[arg(
        long,
        global = true,
        env = "BERTH_ADDRESS",
        default_value = "/run/berth/berth.sock",
        value_name = "SOCK"
    )]
    address: PathBuf,
    /// Namespace to work in
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "BERTH_NAMESPACE",
        default_value = "default",
        value_name = "NS"
    )]
    namespace: String,
    /// Machine-readable output: JSON on stdout
    #[arg(long, global = true)]
    json: bool,
    /// Give up if the command has not finished within this time (e.g. 10s, 2m)
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse::duration)]
    timeout: Option<Duration>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a container: pull the image if missing, attach its output, pass on its exit code
    Run(Box<cmd::run::RunArgs>),
    /// Show the client's and berthd's versions
    Version,
    /// Manage namespaces
    #[command(subcommand, visible_alias = "namespaces")]
    Ns(cmd::ns::NsCommand),
    /// Manage content: blobs and ingests
    #[command(subcommand)]
    Content(cmd::content::ContentCommand),
    /// Manage leases
    #[command(subcommand, visible_alias = "leases")]
    Lease(cmd::lease::LeaseCommand),
    /// Manage images: pull, push, list, tag, mount, …
    #[command(subcommand, visible_aliases = ["images", "i"])]
    Image(cmd::image::ImageCommand),
    /// Manage snapshots of a snapshotter (overlayfs by default)
    #[command(visible_aliases = ["snapshots", "snap"])]
    Snapshot(cmd::snapshot::SnapshotArgs),
    /// Manage containers: list, inspect, label, remove
    #[command(subcommand, visible_aliases = ["containers", "c"])]
    Container(cmd::container::ContainerCommand),
    /// Manage tasks (running containers): list, ps, kill, pause, resume, metrics, remove
    #[command(subcommand, visible_aliases = ["tasks", "t"])]
    Task(cmd::task::TaskCommand),
    /// Follow berthd's events (every namespace) until interrupted
    Events(cmd::events::EventsArgs),
}

/// Global options every command sees.
#[derive(Debug, Clone, Copy)]
pub struct Opts {
    /// `--json` was given.
    pub json: bool,
}

async fn run(cli: Cli) -> Result<(), Error> {
    // Commands that stream bulk data keep HTTP/2 on a thread of its own, beside the main
    // thread's reading and hashing; the others run it on the main thread (fewer wake-ups).
    let bulk = matches!(cli.command, Command::Content(_) | Command::Image(_));
    let client = Client::connect(&cli.address, &cli.namespace, cli.timeout, !bulk).await?;
    let opts = Opts { json: cli.json };
    match cli.command {
        Command::Run(a) => cmd::run::run(&client, opts, *a).await,
        Command::Version => cmd::version::run(&client, opts).await,
        Command::Ns(c) => cmd::ns::run(&client, opts, c).await,
        Command::Content(c) => cmd::content::run(&client, opts, c).await,
        Command::Lease(c) => cmd::lease::run(&client, opts, c).await,
        Command::Image(c) => cmd::image::run(&client, opts, c).await,
        Command::Snapshot(c) => cmd::snapshot::run(&client, opts, c).await,
        Command::Container(c) => cmd::container::run(&client, opts, c).await,
        Command::Task(c) => cmd::task::run(&client, opts, c).await,
        Command::Events(a) => cmd::events::run(&client, opts, a).await,
    }
}

fn main() {
    let cli = Cli::parse(); // usage errors exit with 2 here
    let timeout = cli.timeout;
    let result = berth_api::transport::block_on_local(async move {
        match timeout {
            None => run(cli).await,
            Some(t) => {
                futures_lite::future::or(run(cli), async move {
                    smol::Timer::after(t).await;
                    Err(Error::timeout(t))
                })
                .await
            }
        }
    });
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            if !e.to_string().is_empty() {
                eprintln!("berth: {e}");
            }
            std::process::exit(e.exit_code());
        }
    }
}
