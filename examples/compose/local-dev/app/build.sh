#!/usr/bin/env bash
# Builds the example app image, FROM scratch: a static busybox (Debian
# package busybox-static) for the shell and tools app.sh uses, an `app` user
# (uid 1000), app.sh. Nothing secret goes in.
#   TAG=name:tag   image name (default hushbox-compose-app:local)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "build.sh: needs a static busybox: apt-get install busybox-static" >&2; exit 1; }
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs/bin" "$context/rootfs/etc" "$context/rootfs/app" "$context/rootfs/run/secrets"
cp "$busybox" "$context/rootfs/bin/busybox"
for tool in sh id stat wc sleep echo test cat; do ln -s busybox "$context/rootfs/bin/$tool"; done
printf 'root:x:0:0:root:/:/bin/sh\napp:x:1000:1000:app:/app:/bin/sh\n' > "$context/rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' > "$context/rootfs/etc/group"
cp "$here/app.sh" "$context/rootfs/app/app.sh"
cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
USER app
ENTRYPOINT ["/app/app.sh"]
DOCKERFILE
docker build --quiet --tag "${TAG:-hushbox-compose-app:local}" "$context" >/dev/null
echo "build.sh: built ${TAG:-hushbox-compose-app:local}"
