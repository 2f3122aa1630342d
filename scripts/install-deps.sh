#!/bin/bash
# install-deps.sh - install what berth's build, tests and demo need on Debian 12, idempotently:
#   Debian packages: containerd (for the real `ctr` client the tests drive), runc,
#   docker-registry (a local registry the tests start on a free loopback port), busybox-static
#   (the test image), gcc/g++ (C ABI tests), tar, gzip, zstd (test layers), attr (setfattr and
#   getfattr for the xattr checks), curl;
#   cargo tools: cbindgen (C header drift check), cargo-fuzz (fuzz smoke runs).
# Package scripts are kept from starting services: the stock docker-registry and containerd
# units would otherwise listen on the machine.
set -euo pipefail
PKGS="containerd runc crun docker-registry busybox-static gcc g++ tar gzip zstd attr curl ca-certificates"
if ! dpkg -s $PKGS >/dev/null 2>&1; then
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PKGS
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
if ! command -v cbindgen >/dev/null || [ "$(cbindgen --version | awk '{print $2}')" != "0.29.4" ]; then
  cargo install cbindgen --locked --version 0.29.4
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
