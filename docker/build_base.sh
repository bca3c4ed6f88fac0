#!/usr/bin/env bash
# A local Debian bookworm base image, for building and testing the image where no registry is reachable
# (`make docker-base`, then `make docker-test BASE_IMAGE=localhost/debian-bookworm-base`). It has python3.11 in
# its own apt, so the Dockerfile needs no PPA. Needs root and debootstrap (apt-get install debootstrap).
#   docker/build_base.sh [TAG]       TAG default localhost/debian-bookworm-base
#   MIRROR=http://...  SECURITY_MIRROR=http://...  SUITE=bookworm   (default: the mirrors this host's apt uses)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=docker/engine.sh
. "$here/engine.sh"

TAG=${1:-localhost/debian-bookworm-base}
SUITE=${SUITE:-bookworm}

# The host's Debian mirrors (deb822 .sources or one-line .list), else deb.debian.org.
host_uri() {  # host_uri debian|debian-security
  local pat="/$1/?\$"
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print ($2 ~ /^\[/) ? $3 : $2}'
  } | grep -E "$pat" | head -1 || true
}
MIRROR=${MIRROR:-$(host_uri debian)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(host_uri debian-security)}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}

[ "$(id -u)" = 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
engine=$(detect_engine)

rootfs=$(mktemp -d /var/tmp/debootstrap-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
note "debootstrap --variant=minbase $SUITE from $MIRROR into $rootfs"
start=$(date +%s)
$HEAVY debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR"
cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log \
  "$rootfs"/var/log/apt/* "$rootfs"/var/cache/debconf/*-old "$rootfs/debootstrap"
# No DNS/host config from the host machine in the image (the engine provides them at run time).
: > "$rootfs/etc/resolv.conf"
: > "$rootfs/etc/hostname"

changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["bash"]')
note "importing as $TAG with $engine"
case "$engine" in
  docker) tar -C "$rootfs" --numeric-owner -c . | $HEAVY docker import "${changes[@]}" - "$TAG" ;;
  podman) tar -C "$rootfs" --numeric-owner -c . | $HEAVY podman "${STORAGE[@]}" import "${changes[@]}" - "$TAG" ;;
  buildah)
    ctr=$(buildah "${STORAGE[@]}" from scratch)
    mnt=$(buildah "${STORAGE[@]}" mount "$ctr")
    tar -C "$rootfs" --numeric-owner -c . | tar -C "$mnt" --numeric-owner -xp
    buildah "${STORAGE[@]}" umount "$ctr" >/dev/null
    buildah "${STORAGE[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash "$ctr"
    $HEAVY buildah "${STORAGE[@]}" commit --rm "$ctr" "$TAG" ;;
esac
note "$TAG ready in $(( $(date +%s) - start )) s"
