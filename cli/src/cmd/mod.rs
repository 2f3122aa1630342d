//! One module per command group. Each exposes its clap subcommand enum (if it has one) and an
//! async `run` that performs it against a connected [`crate::client::Client`].

pub mod container;
pub mod content;
pub mod events;
pub mod image;
pub mod lease;
pub mod ns;
pub mod run;
pub mod snapshot;
pub mod task;
pub mod version;

use crate::error::Error;

/// Writes to stdout failed (e.g. a closed pipe).
pub fn stdout_err(e: std::io::Error) -> Error {
    Error::io("writing to stdout", &e)
}

/// Collects the failures of a command applied to several arguments (`rm A B C`): each failure
/// is reported on stderr as it happens, the others still run, and the command fails at the end.
pub struct Failures {
    total: usize,
    errors: Vec<Error>,
}

impl Failures {
    /// For a command over `total` arguments.
    pub fn new(total: usize) -> Self {
        Failures {
            total,
            errors: Vec::new(),
        }
    }

    /// Records one failure.
    pub fn push(&mut self, e: Error) {
        if self.total > 1 {
            eprintln!("berth: {e}");
        }
        self.errors.push(e);
    }

    /// Ok if nothing failed; otherwise the single error, or a summary (`2 of 3 … failed`)
    /// carrying the highest exit code.
    pub fn finish(mut self, what: &str, verb: &str) -> crate::error::Result<()> {
        match self.errors.len() {
            0 => Ok(()),
            1 if self.total == 1 => Err(self.errors.remove(0)),
            n => {
                let code = self.errors.iter().map(Error::exit_code).max().unwrap_or(1);
                let e = Error::failed(format!("{n} of {} {what} could not be {verb}", self.total));
                Err(if code == crate::error::EXIT_CONNECT {
                    self.errors.remove(0)
                } else {
                    e
                })
            }
        }
    }
}

/// `rm A B C`: applies `remove` to each name, printing each one removed (with `--json`, the
/// list of what `remove` returned), and reports the failures as [`Failures`] does.
pub async fn remove_each<'a, T, Fut>(
    opts: crate::Opts,
    names: &'a [String],
    what: &str,
    mut remove: impl FnMut(&'a str) -> Fut,
) -> crate::error::Result<()>
where
    Fut: std::future::Future<Output = crate::error::Result<T>>,
    T: serde::Serialize,
{
    let mut failures = Failures::new(names.len());
    let mut removed = Vec::new();
    for name in names {
        match remove(name).await {
            Ok(v) => {
                if !opts.json {
                    crate::output::text(&format!("{name}\n")).map_err(stdout_err)?;
                }
                removed.push(v);
            }
            Err(e) => failures.push(e),
        }
    }
    if opts.json {
        crate::output::json(&removed).map_err(stdout_err)?;
    }
    failures.finish(what, "removed")
}

/// The update-mask paths `labels.<key>` for each key of `labels`.
pub fn label_paths(labels: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    labels.keys().map(|k| format!("labels.{k}")).collect()
}
