#!/usr/bin/env bash
# Builds a local container base image that stands in for the official Node.js image, on a machine
# that cannot reach any image registry but can reach Debian's package mirror.
# (A copy of the workplace's shared/tools/local-node-base.sh, so that CI needs nothing outside
# the repository.)
#
#   scripts/local-node-base.sh [TAG]        (default TAG: localhost/node:24-bookworm-slim)
#
# Result: a minimal Debian bookworm root with this machine's own node and npm copied in, imported
# into podman under TAG. Build the project's image on it with, for example:
#
#   podman --runtime runc --cgroup-manager=cgroupfs build --network=host \
#     --build-arg NODE_IMAGE=localhost/node:24-bookworm-slim -t predify-serve .
#   podman --runtime runc --cgroup-manager=cgroupfs run --rm --network=host predify-serve
#
# Needs: root, `apt-get install -y podman runc debootstrap`. Takes a few minutes the first time;
# later calls reuse the image when it exists (pass --force to rebuild).
set -euo pipefail

tag="${1:-localhost/node:24-bookworm-slim}"
force="${2:-}"
[ "$tag" = "--force" ] && { tag="localhost/node:24-bookworm-slim"; force="--force"; }

podman_() { podman --runtime runc --cgroup-manager=cgroupfs "$@"; }

if [ "$force" != "--force" ] && podman_ image exists "$tag"; then
  echo "local-node-base: $tag already exists (pass --force to rebuild)"
  exit 0
fi

# The node copied in is the one first on PATH: it must be the version the tag names.
want=$(echo "$tag" | sed -nE 's/.*:([0-9]+)-.*/\1/p')
have=$(node -p 'process.versions.node.split(".")[0]')
[ -z "$want" ] || [ "$want" = "$have" ] || { echo "local-node-base: $tag wants node $want, but node on PATH is $(node --version) (. scripts/use-node-24.sh)" >&2; exit 1; }

for bin in podman runc debootstrap; do
  command -v "$bin" >/dev/null || { echo "local-node-base: $bin is missing: apt-get install -y podman runc debootstrap" >&2; exit 1; }
done

# The Debian mirror this machine is already configured to use.
mirror=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
[ -n "$mirror" ] || mirror=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
[ -n "$mirror" ] || { echo "local-node-base: no Debian mirror found in apt's sources" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"

echo "local-node-base: bootstrapping Debian bookworm (minbase)..."
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }

# Point apt inside the image at the same mirror, so RUN apt-get works during builds.
cp /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/" 2>/dev/null || true
# Trust what this machine trusts: package registries here may be reached through a proxy whose
# certificate authority is installed locally.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" /usr/sbin/update-ca-certificates >/dev/null 2>&1 || true
fi

echo "local-node-base: copying node $(node --version) and npm $(npm --version)..."
node_bin=$(command -v node)
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
install -m 0755 "$node_bin" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
mkdir -p "$root/usr/local/etc"
echo "cafile=/etc/ssl/certs/ca-certificates.crt" >"$root/usr/local/etc/npmrc"
# The official image has a non-root user 'node' (uid 1000); keep that convention.
chroot "$root" /usr/sbin/groupadd --gid 1000 node
chroot "$root" /usr/sbin/useradd --uid 1000 --gid node --shell /bin/bash --create-home node
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*

tar -C "$root" -cf "$work/root.tar" .
podman_ import --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["node"]' "$work/root.tar" "$tag" >/dev/null
echo "local-node-base: built $tag"
