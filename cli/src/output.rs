//! Output formatting: aligned tables for people, JSON for scripts (`--json`), and the small
//! formatters both use (sizes, ages, timestamps, labels).
//!
//! Data goes to stdout; notes, warnings and progress go to stderr, so `--json` output and
//! `berth content get` bytes stay clean.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use berth_core::metadata::format_rfc3339;
use berth_core::Instant;
use serde::Serialize;

/// A table printed with columns padded to the widest cell, two spaces apart.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per header.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// Renders the table as text, one line per row, header first.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for r in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(&widths).enumerate() {
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    line.extend(std::iter::repeat_n(' ', w - c.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout.
    pub fn print(&self) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(self.render().as_bytes())?;
        out.flush()
    }
}

/// Prints text on stdout as is.
pub fn text(s: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.flush()
}

/// Prints a value as pretty JSON on stdout, followed by a newline.
pub fn json<T: Serialize>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(io::Error::other)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// A size in bytes, human-readable with binary units: `512 B`, `1.5 KiB`, `5.0 MiB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// Now, as a Unix instant.
pub fn now() -> Instant {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Instant::from_secs_nanos(d.as_secs(), d.subsec_nanos())
}

/// A protobuf timestamp as an instant; `None` if unset or before 1970 (containerd sends
/// 0001-01-01 for "unset").
pub fn instant(ts: Option<&prost_types::Timestamp>) -> Option<Instant> {
    let ts = ts?;
    if ts.seconds <= 0 && ts.nanos <= 0 {
        return None;
    }
    Some(Instant::from_secs_nanos(
        u64::try_from(ts.seconds).ok()?,
        u32::try_from(ts.nanos).unwrap_or(0),
    ))
}

/// A protobuf timestamp as RFC 3339 text, `None` if unset.
pub fn rfc3339(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    instant(ts).map(format_rfc3339)
}

/// How long ago `t` was, compactly: `12 seconds ago`, `3 minutes ago`, `2 days ago`;
/// `-` if unset.
pub fn age(ts: Option<&prost_types::Timestamp>, now: Instant) -> String {
    match instant(ts) {
        None => "-".into(),
        Some(t) => {
            let secs = now.secs().saturating_sub(t.secs());
            if secs == 0 {
                "just now".into()
            } else {
                format!("{} ago", span(secs))
            }
        }
    }
}

/// A span of seconds in the largest whole unit: `1 second`, `5 minutes`, `3 days`.
pub fn span(secs: u64) -> String {
    let (n, unit) = match secs {
        0..60 => (secs, "second"),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        86400..2_592_000 => (secs / 86400, "day"),
        2_592_000..31_536_000 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// Labels sorted by key, as a `BTreeMap` (stable JSON and table output).
pub fn sorted(labels: &HashMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Labels as one table cell: `k=v,k2=v2` sorted by key, or `-` if there are none.
pub fn labels_cell(labels: &HashMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    sorted(labels)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 << 20), "5.0 MiB");
        assert_eq!(human_size(300 << 20), "300 MiB");
        assert_eq!(human_size(1 << 30), "1.0 GiB");
    }

    #[test]
    fn table_alignment() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "A    LONGER\nxyz  1\n");
    }

    #[test]
    fn spans_and_unset_times() {
        assert_eq!(span(1), "1 second");
        assert_eq!(span(150), "2 minutes");
        assert_eq!(span(86400 * 3), "3 days");
        let zero_go_time = prost_types::Timestamp {
            seconds: -62_135_596_800,
            nanos: 0,
        };
        assert_eq!(age(Some(&zero_go_time), now()), "-");
        assert_eq!(rfc3339(None), None);
    }
}
