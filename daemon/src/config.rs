//! berthd's configuration: command-line flags over an optional TOML file over defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Which executor performs Ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// Blocking syscalls on smol's thread pool.
    Smol,
    /// io_uring, falling back to the pool for what the kernel lacks.
    IoUring,
}

/// The config file (`/etc/berth/config.toml`); every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Socket path.
    pub address: Option<PathBuf>,
    /// Persistent root.
    pub root: Option<PathBuf>,
    /// Runtime state directory.
    pub state: Option<PathBuf>,
    /// Driver.
    pub driver: Option<Driver>,
    /// Log level: error, warn, info, debug, trace.
    pub log_level: Option<String>,
}

/// Command-line flags.
#[derive(Debug, clap::Parser)]
#[command(
    name = "berthd",
    version,
    about = "berth: a container runtime daemon speaking containerd's gRPC API"
)]
pub struct Flags {
    /// UNIX socket to serve on [default: /run/berth/berth.sock]
    #[arg(long)]
    pub address: Option<PathBuf>,
    /// Directory for persistent data [default: /var/lib/berth]
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Directory for runtime state [default: /run/berth]
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Executor for file operations [default: smol]
    #[arg(long, value_enum)]
    pub driver: Option<Driver>,
    /// TOML config file (keys: address, root, state, driver, log_level) [default: /etc/berth/config.toml if it exists]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Log level [default: info]
    #[arg(long)]
    pub log_level: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Socket path.
    pub address: PathBuf,
    /// Persistent root.
    pub root: PathBuf,
    /// Runtime state directory.
    pub state: PathBuf,
    /// Driver.
    pub driver: Driver,
    /// Log level.
    pub log_level: log::LevelFilter,
}

const DEFAULT_CONFIG: &str = "/etc/berth/config.toml";

impl Config {
    /// Resolves flags over the config file over defaults.
    pub fn resolve(flags: Flags) -> Result<Config, String> {
        let file = match &flags.config {
            Some(p) => Self::read(p)?,
            None if Path::new(DEFAULT_CONFIG).exists() => Self::read(Path::new(DEFAULT_CONFIG))?,
            None => FileConfig::default(),
        };
        let level = flags
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        let log_level = level.parse().map_err(|_| {
            format!("log level {level:?} is not one of error, warn, info, debug, trace")
        })?;
        Ok(Config {
            address: flags
                .address
                .or(file.address)
                .unwrap_or_else(|| "/run/berth/berth.sock".into()),
            root: flags
                .root
                .or(file.root)
                .unwrap_or_else(|| "/var/lib/berth".into()),
            state: flags
                .state
                .or(file.state)
                .unwrap_or_else(|| "/run/berth".into()),
            driver: flags.driver.or(file.driver).unwrap_or(Driver::Smol),
            log_level,
        })
    }

    fn read(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, "root = \"/x\"\ndriver = \"io-uring\"\n").unwrap();
        let flags = Flags::parse_from([
            "berthd",
            "--config",
            cfg.to_str().unwrap(),
            "--driver",
            "smol",
        ]);
        let c = Config::resolve(flags).unwrap();
        assert_eq!(c.root, PathBuf::from("/x"));
        assert_eq!(c.driver, Driver::Smol);
        assert_eq!(c.address, PathBuf::from("/run/berth/berth.sock"));
        std::fs::write(&cfg, "rooot = 1\n").unwrap();
        let flags = Flags::parse_from(["berthd", "--config", cfg.to_str().unwrap()]);
        assert!(Config::resolve(flags).unwrap_err().contains("rooot"));
    }
}
