#!/usr/bin/env bash
# Assembles rootfs/ for the example image: a static hushbox, a static
# busybox (Debian package busybox-static) for the shell and tools the example
# server uses, /etc/passwd with an `app` user, the manifest and the
# encrypted store. The image's manifest pins the store's integrity key, read
# from integrity.key (`hushbox store verify --print-key > integrity.key`):
# nothing persists in the container to remember it by.
#
#   HUSHBOX_BIN=path  use this hushbox instead of building a static one; if it
#                     is dynamically linked, its libraries are copied too.
#
# Without HUSHBOX_BIN it builds the static binary first (glibc static-pie, the
# command scripts/image documents), and says so: the first build takes minutes.
#
# The store is made readable by every user of the image (files 0644,
# directories 0755, owned by root as COPY leaves them): it is encrypted, and
# an image started as a non-root user (`docker run --user 1000:1000`) must
# still read it, its integrity file included. Nobody but root can change it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rootfs="$here/rootfs"
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "build.sh: needs a static busybox: apt-get install busybox-static" >&2; exit 1; }
if [ -z "${HUSHBOX_BIN:-}" ]; then
  target=$(rustc -vV | sed -n 's/^host: //p')
  echo "build.sh: building a static hushbox for $target (set HUSHBOX_BIN=path to use one you have)" >&2
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet \
    --manifest-path "$root/Cargo.toml" --bin hushbox --target "$target"
  HUSHBOX_BIN="${CARGO_TARGET_DIR:-$root/target}/$target/release/hushbox"
fi
rm -rf "$rootfs"
mkdir -p "$rootfs"/{bin,etc,app,run/hushbox,tmp}
cp "$HUSHBOX_BIN" "$rootfs/hushbox"
# A dynamically linked hushbox (the test build) brings its libraries along.
# (ldd fails on a static binary, which needs nothing: hence `|| true`.)
libs=$(ldd "$HUSHBOX_BIN" 2>/dev/null | grep -o '/[^ ]*' || true)
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp "$busybox" "$rootfs/bin/busybox"
for tool in sh id stat cat wc sleep echo ls; do ln -s busybox "$rootfs/bin/$tool"; done
printf 'root:x:0:0:root:/:/bin/sh\napp:x:1000:1000:app:/app:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' > "$rootfs/etc/group"
[ -s "$here/integrity.key" ] || {
  echo "build.sh: the image pins the store's integrity key: run" >&2
  echo "  hushbox --identity identity.txt store verify --print-key > integrity.key" >&2
  exit 1
}
key=$(tr -d '[:space:]' < "$here/integrity.key")
cp "$here/server.sh" "$rootfs/app/"
# integrity_key goes into the store's own section, after its `kind` line.
sed "/^kind = \"age\"/a integrity_key = \"$key\"" "$here/hushbox.toml" > "$rootfs/app/hushbox.toml"
cp -r "$here/secrets" "$rootfs/app/secrets"
chmod -R a+rX,go-w "$rootfs/app/secrets"
chmod 0644 "$rootfs/app/hushbox.toml"
echo "build.sh: rootfs ready in $rootfs"
