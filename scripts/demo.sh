#!/bin/bash
# demo.sh - the main job, end to end on this machine: build berth, start berthd, start a local
# docker-registry holding a busybox image built here, pull it with `berth image pull` (berthd
# downloads and unpacks it into an overlayfs snapshot), mount it and run its busybox from the
# mounted tree, run it as containers with `berth run` (runc, supervised by berth-shim), pull it
# again with containerd's own `ctr` and run it with `ctr run` too. Everything started here is
# stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >/dev/null
# berthd, berth and berth-shim (one per container) as shipped: size-optimised, statically linked
scripts/build-release.sh
BIN=${CARGO_TARGET_DIR:-$PWD/target}/dist
WORK=$(mktemp -d /tmp/berth-demo.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# a registry on a free loopback port
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
printf 'version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: %s/registry}\nhttp:\n  addr: %s\n' "$WORK" "$REG" >"$WORK/registry.yml"
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

# a one-layer busybox image, pushed with the distribution API
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc"
cp "$(command -v busybox)" "$WORK/rootfs/bin/busybox"; ln -s busybox "$WORK/rootfs/bin/sh"
echo 'root:x:0:0:root:/root:/bin/sh' >"$WORK/rootfs/etc/passwd"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$WORK/rootfs" -cf "$WORK/layer.tar" .
gzip -n -c "$WORK/layer.tar" >"$WORK/layer.tar.gz"
sha() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
push_blob() { local loc; loc=$(curl -fsS -X POST -D - -o /dev/null "http://$REG/v2/demo/busybox/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case $loc in http*) ;; *) loc="http://$REG$loc";; esac
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" "$loc&digest=$(sha "$1")" >/dev/null; }
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["%s"]}}' "$(sha "$WORK/layer.tar")" >"$WORK/config.json"
push_blob "$WORK/layer.tar.gz"; push_blob "$WORK/config.json"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}' \
  "$(sha "$WORK/config.json")" "$(stat -c %s "$WORK/config.json")" "$(sha "$WORK/layer.tar.gz")" "$(stat -c %s "$WORK/layer.tar.gz")" >"$WORK/manifest.json"
curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$WORK/manifest.json" "http://$REG/v2/demo/busybox/manifests/latest" >/dev/null

# berthd on a private socket and root
SOCK=$WORK/berth.sock
"$BIN/berthd" --address "$SOCK" --root "$WORK/root" --state "$WORK/state" >"$WORK/berthd.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done

B() { "$BIN/berth" --address "$SOCK" "$@"; }
echo "== berth image pull (berthd downloads and unpacks)"
B image pull "$REG/demo/busybox:latest"
B image ls
B snapshot ls
echo "== berth image mount, and the image's busybox run from the mounted tree"
mkdir -p "$WORK/mnt"
B image mount "$REG/demo/busybox:latest" "$WORK/mnt"
chroot "$WORK/mnt" /bin/sh -c 'echo "hello from the image: $(busybox | head -1)"'
B image unmount --rm "$WORK/mnt"

echo "== berth run: containers through runc, each supervised by a berth-shim"
B run --rm "$REG/demo/busybox:latest" /bin/busybox echo "hello from a container run by berth run"
B run -d --name demo-bg "$REG/demo/busybox:latest" /bin/busybox sleep 600
B task ls
B task exec demo-bg /bin/busybox sh -c 'echo "exec in demo-bg: pid 1 is $(cat /proc/1/cmdline | tr "\\0" " ")"'
B task rm -f demo-bg
B container rm demo-bg
set +e; B run --rm "$REG/demo/busybox:latest" /bin/busybox sh -c 'exit 3'; echo "berth run passed on exit code $?"; set -e

echo "== ctr (containerd 1.6's client) against berthd"
ctr -a "$SOCK" version 2>/dev/null
ctr -a "$SOCK" images pull --plain-http "$REG/demo/busybox:latest"
ctr -a "$SOCK" images check
echo "== a container, run through runc and berth-shim"
ctr -a "$SOCK" run --rm "$REG/demo/busybox:latest" demo1 /bin/busybox echo "hello from a container run by berthd"
echo "== berth content ls"
B content ls
LAYER=$(sha "$WORK/layer.tar.gz")
"$BIN/berth" --address "$SOCK" content get "$LAYER" | cmp - "$WORK/layer.tar.gz" && echo "layer $LAYER: byte-identical to the pushed blob"
