#!/bin/sh
# Regenerates the real-world tar fixtures used by the archive tests (run as root, GNU tar 1.34).
# Each archive holds the same tree: a file with xattrs, a long name (> 100 and > 155 bytes), a
# long symlink target, a hard link, a fifo, a character and a block device, an empty file and
# an opaque-whiteout marker and a whiteout, all with fixed owners, modes and times.
set -eu
out=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir -p root/dir/sub root/wh
cd root
printf 'hello\n' > dir/file
python3 -c "import os; os.setxattr('dir/file', 'user.mime_type', b'text/plain'); os.setxattr('dir/file', 'trusted.overlay.opaque', b'y')"
long=$(printf 'd%.0s' $(seq 1 60))/$(printf 'e%.0s' $(seq 1 60))/$(printf 'f%.0s' $(seq 1 60))
mkdir -p "$long"
seq 1 3000 > "$long/numbers.txt"
ln -s "$long/numbers.txt" dir/longlink
ln dir/file dir/hardlink
mkfifo dir/fifo
mknod dir/null c 1 3
mknod dir/loop0 b 7 0
: > dir/empty
: > wh/.wh..wh..opq
: > wh/.wh.gone
chown -R 1000:1000 .
chown 4000000:12 dir/empty
chmod 4755 dir/file
find . -exec touch -h -d '2024-01-02 03:04:05.123456789' {} +
cd ..
tar --numeric-owner --xattrs --xattrs-include='*' --format=pax -cf "$out/pax.tar" -C root .
tar --numeric-owner --format=gnu -cf "$out/gnu.tar" -C root .
gzip -9 -n -c "$out/pax.tar" > "$out/pax.tar.gz"
zstd -q -19 -c "$out/gnu.tar" > "$out/gnu.tar.zst"
