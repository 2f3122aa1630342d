//! Cross-checks of the archive module: archives built by the `tar` crate and by GNU tar,
//! compressed by flate2 and libzstd, parsed back through the push decoders and parser fed in
//! random chunk sizes; truncated and corrupted inputs must fail cleanly, never panic.

use std::collections::BTreeMap;
use std::io::Write;

use bytes::Bytes;
use proptest::prelude::*;

use super::decompress::{Compression, DecodeError, Decoder};
use super::path::{classify, LayerPath};
use super::tar::{Device, Entry, EntryKind, TarError, TarEvent, TarParser};
use crate::Digest;

/// An entry to build.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// Put the path in a PAX `path` record too.
    pax_path: bool,
    /// GNU header (else ustar).
    gnu: bool,
}

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    /// Hard link to the name of an earlier entry (or to itself if it is the first).
    HardLink(prop::sample::Index),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9_][a-z0-9._-]{0,40}", 1..9).prop_map(|c| c.join("/"))
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..3000).prop_map(Kind::File),
        1 => (0usize..200_000).prop_map(|n| Kind::File((0..n).map(|i| (i * 7 % 251) as u8).collect())),
        2 => Just(Kind::Dir),
        2 => "[a-zA-Z0-9_-]{1,50}(/[a-zA-Z0-9 _-]{1,50}){0,6}".prop_map(Kind::Symlink),
        1 => any::<prop::sample::Index>().prop_map(Kind::HardLink),
        1 => (0u32..4096, 0u32..2_000_000).prop_map(|(a, b)| Kind::Char(a, b)),
        1 => (0u32..4096, 0u32..2_000_000).prop_map(|(a, b)| Kind::Block(a, b)),
        1 => Just(Kind::Fifo),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        name(),
        kind(),
        0u32..0o10000,
        prop_oneof![0u64..70_000, 0u64..u64::from(u32::MAX)],
        prop_oneof![0u64..70_000, 0u64..u64::from(u32::MAX)],
        prop_oneof![0u64..2_000_000_000, 0u64..(1 << 40)],
        prop::collection::btree_map(
            "user\\.[a-z._]{1,20}",
            prop::collection::vec(any::<u8>(), 0..100),
            0..3,
        ),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(name, kind, mode, uid, gid, mtime, xattrs, pax_path, gnu)| Spec {
                name,
                kind,
                mode,
                uid,
                gid,
                mtime,
                xattrs,
                pax_path,
                gnu,
            },
        )
}

/// Encodes PAX records.
fn pax_records(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = k.len() + v.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// Builds an archive of `specs` with the `tar` crate; returns it and the link target each
/// hard link resolved to.
fn build(specs: &[Spec]) -> (Vec<u8>, Vec<Option<String>>) {
    let mut b = tar::Builder::new(Vec::new());
    let mut links = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let mut records: Vec<(String, Vec<u8>)> = s
            .xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone()))
            .collect();
        if s.pax_path {
            records.push(("path".into(), s.name.clone().into_bytes()));
        }
        if !records.is_empty() {
            let body = pax_records(&records);
            let mut h = tar::Header::new_ustar();
            h.set_path(format!("PaxHeaders/{i}")).unwrap();
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, &body[..]).unwrap();
        }
        let mut h = if s.gnu {
            tar::Header::new_gnu()
        } else {
            tar::Header::new_ustar()
        };
        h.set_mode(s.mode);
        h.set_uid(s.uid);
        h.set_gid(s.gid);
        h.set_mtime(s.mtime);
        let mut link = None;
        match &s.kind {
            Kind::File(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, &s.name, &data[..]).unwrap();
            }
            Kind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, &s.name, target).unwrap();
                link = Some(target.clone());
            }
            Kind::HardLink(idx) => {
                let target = specs[..i.max(1)][idx.index(i.max(1))].name.clone();
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, &s.name, &target).unwrap();
                link = Some(target);
            }
            other => {
                let (t, dev) = match other {
                    Kind::Dir => (tar::EntryType::Directory, None),
                    Kind::Char(a, m) => (tar::EntryType::Char, Some((*a, *m))),
                    Kind::Block(a, m) => (tar::EntryType::Block, Some((*a, *m))),
                    _ => (tar::EntryType::Fifo, None),
                };
                h.set_entry_type(t);
                h.set_size(0);
                if let Some((major, minor)) = dev {
                    h.set_device_major(major).unwrap();
                    h.set_device_minor(minor).unwrap();
                }
                b.append_data(&mut h, &s.name, &[][..]).unwrap();
            }
        }
        links.push(link);
    }
    (b.into_inner().unwrap(), links)
}

/// Feeds `input` to a parser in pieces whose sizes cycle through `sizes`.
fn parse(input: &[u8], sizes: &[usize]) -> Result<Vec<(Entry, Vec<u8>)>, TarError> {
    let mut p = TarParser::new();
    let mut out: Vec<(Entry, Vec<u8>)> = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    let mut open = false;
    while pos < input.len() {
        let n = sizes[k % sizes.len()].clamp(1, input.len() - pos);
        k += 1;
        p.push(Bytes::copy_from_slice(&input[pos..pos + n]))?;
        pos += n;
        drain(&mut p, &mut out, &mut open)?;
    }
    p.finish()?;
    assert!(!open);
    Ok(out)
}

fn drain(
    p: &mut TarParser,
    out: &mut Vec<(Entry, Vec<u8>)>,
    open: &mut bool,
) -> Result<(), TarError> {
    while let Some(ev) = p.poll()? {
        match ev {
            TarEvent::Entry(e) => {
                assert!(!*open);
                *open = true;
                out.push((e, Vec::new()));
            }
            TarEvent::Data(d) => {
                assert!(*open && !d.is_empty());
                out.last_mut().unwrap().1.extend_from_slice(&d);
            }
            TarEvent::EntryEnd => {
                assert!(*open);
                *open = false;
                let (e, d) = out.last().unwrap();
                assert_eq!(e.size, d.len() as u64);
            }
            TarEvent::End => assert!(!*open),
        }
    }
    Ok(())
}

/// Decodes `input` in pieces whose sizes cycle through `sizes`.
fn decode(c: Compression, input: &[u8], sizes: &[usize]) -> Result<(Vec<u8>, Digest), DecodeError> {
    let mut d = Decoder::new(c);
    let mut out = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < input.len() {
        let n = sizes[k % sizes.len()].clamp(1, input.len() - pos);
        k += 1;
        d.push(Bytes::copy_from_slice(&input[pos..pos + n]))?;
        pos += n;
        while let Some(chunk) = d.poll()? {
            out.extend_from_slice(&chunk);
        }
    }
    let s = d.finish()?;
    assert_eq!(s.compressed_digest, Some(Digest::sha256(input)));
    assert_eq!(s.uncompressed_len, out.len() as u64);
    Ok((out, s.diff_id))
}

fn check(specs: &[Spec], links: &[Option<String>], parsed: &[(Entry, Vec<u8>)]) {
    assert_eq!(parsed.len(), specs.len());
    for ((s, link), (e, data)) in specs.iter().zip(links).zip(parsed) {
        let path = String::from_utf8(e.path.clone()).unwrap();
        assert_eq!(path.trim_end_matches('/'), s.name, "{s:?}");
        assert_eq!(e.mode, s.mode, "{s:?}");
        assert_eq!(e.uid, s.uid);
        assert_eq!(e.gid, s.gid);
        assert_eq!(e.mtime.secs, s.mtime as i64);
        assert_eq!(e.mtime.nanos, 0);
        let xattrs: BTreeMap<String, Vec<u8>> = e
            .xattrs
            .iter()
            .map(|x| (x.name.clone(), x.value.to_vec()))
            .collect();
        assert_eq!(xattrs, s.xattrs);
        assert_eq!(
            e.link_target.as_deref(),
            link.as_deref().map(str::as_bytes),
            "{s:?}"
        );
        let (kind, want, dev) = match &s.kind {
            Kind::File(d) => (EntryKind::Regular, &d[..], None),
            Kind::Dir => (EntryKind::Directory, &[][..], None),
            Kind::Symlink(_) => (EntryKind::Symlink, &[][..], None),
            Kind::HardLink(_) => (EntryKind::HardLink, &[][..], None),
            Kind::Char(a, b) => (EntryKind::CharDevice, &[][..], Some((*a, *b))),
            Kind::Block(a, b) => (EntryKind::BlockDevice, &[][..], Some((*a, *b))),
            Kind::Fifo => (EntryKind::Fifo, &[][..], None),
        };
        assert_eq!(e.kind, kind);
        assert_eq!(data, want);
        assert_eq!(e.device, dev.map(|(major, minor)| Device { major, minor }));
    }
}

/// The `tar` crate's reader agrees with ours on every entry.
fn differential(archive: &[u8], parsed: &[(Entry, Vec<u8>)]) {
    let mut a = tar::Archive::new(archive);
    let mut n = 0;
    for (theirs, (ours, data)) in a.entries().unwrap().zip(parsed) {
        let mut theirs = theirs.unwrap();
        n += 1;
        assert_eq!(&theirs.path_bytes()[..], &ours.path[..]);
        assert_eq!(
            theirs.link_name_bytes().map(|l| l.to_vec()),
            ours.link_target.clone()
        );
        let h = theirs.header();
        assert_eq!(h.mode().unwrap() & 0o7777, ours.mode);
        assert_eq!(h.uid().unwrap(), ours.uid);
        assert_eq!(h.gid().unwrap(), ours.gid);
        assert_eq!(h.mtime().unwrap(), ours.mtime.secs as u64);
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut theirs, &mut body).unwrap();
        if !ours.kind.is_header_only() {
            assert_eq!(&body, data);
        }
    }
    assert_eq!(n, parsed.len());
}

fn gzip_members(data: &[u8], cuts: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let step = data.len() / cuts.max(1) + 1;
    for part in data.chunks(step) {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).unwrap();
        out.extend_from_slice(&e.finish().unwrap());
    }
    out
}

fn zstd_frames(data: &[u8], cuts: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let step = data.len() / cuts.max(1) + 1;
    for part in data.chunks(step) {
        out.extend_from_slice(&zstd::stream::encode_all(part, 1).unwrap());
    }
    out
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![1usize..16, 1usize..1024, 500usize..70_000],
        1..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn tar_crate_archives_parse_back_exactly(
        specs in prop::collection::vec(spec(), 1..12),
        sizes in sizes(),
    ) {
        let (archive, links) = build(&specs);
        let parsed = parse(&archive, &sizes).unwrap();
        check(&specs, &links, &parsed);
        differential(&archive, &parsed);
    }

    #[test]
    fn compressed_archives_round_trip(
        specs in prop::collection::vec(spec(), 1..6),
        sizes in sizes(),
        members in 1usize..4,
    ) {
        let (archive, links) = build(&specs);
        for (c, blob) in [
            (Compression::Gzip, gzip_members(&archive, members)),
            (Compression::Zstd, zstd_frames(&archive, members)),
            (Compression::None, archive.clone()),
        ] {
            let (out, diff_id) = decode(c, &blob, &sizes).unwrap();
            prop_assert_eq!(diff_id, Digest::sha256(&archive));
            prop_assert!(out == archive);
            let parsed = parse(&out, &sizes).unwrap();
            check(&specs, &links, &parsed);
        }
    }

    #[test]
    fn truncated_archives_fail_cleanly(
        specs in prop::collection::vec(spec(), 1..6),
        sizes in sizes(),
        cut in any::<prop::sample::Index>(),
    ) {
        let (archive, _) = build(&specs);
        let cut = cut.index(archive.len());
        prop_assert!(parse(&archive[..cut], &sizes).is_err());
        let gz = gzip_members(&archive, 1);
        let zs = zstd_frames(&archive, 1);
        let gcut = cut * gz.len() / archive.len();
        let zcut = cut * zs.len() / archive.len();
        prop_assert!(decode(Compression::Gzip, &gz[..gcut], &sizes).is_err());
        prop_assert!(decode(Compression::Zstd, &zs[..zcut], &sizes).is_err());
    }

    #[test]
    fn corrupted_inputs_never_panic(
        specs in prop::collection::vec(spec(), 1..6),
        sizes in sizes(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..4),
    ) {
        let (archive, _) = build(&specs);
        let flip = |mut v: Vec<u8>| {
            for (i, x) in &flips {
                let i = i.index(v.len());
                v[i] ^= x;
            }
            v
        };
        // Whatever the damage, the result does not depend on the chunking.
        let damaged = flip(archive.clone());
        prop_assert_eq!(parse(&damaged, &sizes), parse(&damaged, &[usize::MAX]));
        let gz = flip(gzip_members(&archive, 2));
        if let Ok((out, _)) = decode(Compression::Gzip, &gz, &sizes) {
            // gzip's CRC-32 catches what a few flips do to the data
            prop_assert!(out == archive);
        }
        let _ = decode(Compression::Zstd, &flip(zstd_frames(&archive, 2)), &sizes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in prop::collection::vec(any::<u8>(), 0..4096),
        sizes in sizes(),
    ) {
        let _ = parse(&data, &sizes);
        let _ = decode(Compression::Gzip, &data, &sizes);
        let _ = decode(Compression::Zstd, &data, &sizes);
        let mut headerish = data.clone();
        headerish.resize(headerish.len().max(1024), 0);
        let _ = parse(&headerish, &sizes);
    }
}

const PAX: &[u8] = include_bytes!("testdata/pax.tar");
const GNU: &[u8] = include_bytes!("testdata/gnu.tar");
const PAX_GZ: &[u8] = include_bytes!("testdata/pax.tar.gz");
const GNU_ZST: &[u8] = include_bytes!("testdata/gnu.tar.zst");

/// GNU tar's archives of `testdata/make.sh`'s tree parse to the tree it made.
#[test]
fn gnu_tar_fixtures() {
    let long = format!(
        "{}/{}/{}/numbers.txt",
        "d".repeat(60),
        "e".repeat(60),
        "f".repeat(60)
    );
    let numbers: String = (1..=3000).map(|i| format!("{i}\n")).collect();
    for (c, blob, pax) in [
        (Compression::None, PAX, true),
        (Compression::None, GNU, false),
        (Compression::Gzip, PAX_GZ, true),
        (Compression::Zstd, GNU_ZST, false),
    ] {
        for sizes in [&[1usize][..], &[7, 512, 3], &[65536]] {
            let (tar, diff_id) = decode(c, blob, sizes).unwrap();
            assert_eq!(diff_id, Digest::sha256(&tar));
            let parsed = parse(&tar, sizes).unwrap();
            differential(&tar, &parsed);
            let by_path: BTreeMap<String, &(Entry, Vec<u8>)> = parsed
                .iter()
                .map(|p| {
                    let path = match classify(&p.0.path).unwrap() {
                        LayerPath::Root => ".".to_owned(),
                        LayerPath::Plain(p) => p,
                        LayerPath::Whiteout { target } => format!("whiteout:{target}"),
                        LayerPath::Opaque { dir } => format!("opaque:{}", dir.unwrap()),
                        LayerPath::WhiteoutMeta(p) => format!("meta:{p}"),
                    };
                    (path, p)
                })
                .collect();
            assert_eq!(by_path.len(), 17, "{:?}", by_path.keys());
            let file = by_path["dir/file"];
            assert_eq!(file.1, b"hello\n");
            assert_eq!(file.0.mode, 0o4755);
            assert_eq!((file.0.uid, file.0.gid), (1000, 1000));
            assert_eq!(file.0.mtime.secs, 1_704_164_645);
            if pax {
                assert_eq!(file.0.mtime.nanos, 123_456_789);
                let x: Vec<_> = file
                    .0
                    .xattrs
                    .iter()
                    .map(|x| (x.name.as_str(), &x.value[..]))
                    .collect();
                assert_eq!(
                    x,
                    [
                        ("trusted.overlay.opaque", &b"y"[..]),
                        ("user.mime_type", b"text/plain")
                    ]
                );
            }
            assert_eq!(by_path["dir/empty"].0.uid, 4_000_000);
            assert_eq!(by_path["dir/empty"].0.gid, 12);
            let hl = by_path["dir/hardlink"];
            assert_eq!(hl.0.kind, EntryKind::HardLink);
            assert_eq!(hl.0.link_target.as_deref(), Some(&b"./dir/file"[..]));
            let sl = by_path["dir/longlink"];
            assert_eq!(sl.0.kind, EntryKind::Symlink);
            assert_eq!(sl.0.link_target.as_deref(), Some(long.as_bytes()));
            assert_eq!(by_path[long.as_str()].1, numbers.as_bytes());
            assert_eq!(by_path["dir/fifo"].0.kind, EntryKind::Fifo);
            assert_eq!(
                (by_path["dir/null"].0.kind, by_path["dir/null"].0.device),
                (EntryKind::CharDevice, Some(Device { major: 1, minor: 3 }))
            );
            assert_eq!(
                (by_path["dir/loop0"].0.kind, by_path["dir/loop0"].0.device),
                (EntryKind::BlockDevice, Some(Device { major: 7, minor: 0 }))
            );
            assert_eq!(by_path["dir/sub"].0.kind, EntryKind::Directory);
            assert!(by_path.contains_key("whiteout:wh/gone"));
            assert!(by_path.contains_key("opaque:wh"));
            assert_eq!(by_path["."].0.kind, EntryKind::Directory);
        }
    }
}
