#!/usr/bin/env bash
# Builds devport's base image for the Docker driver, devport-base:latest, from
# Debian packages: no image registry is needed. debootstrap makes a minimal
# bookworm root file system with a shell, the usual tools and tini as the
# container's init; the script adds the user dev (uid 1000, home /home/dev),
# removes apt's caches and `docker import`s the tree.
#
#   fleet/docker/image/build.sh [--force] [--image NAME] [--mirror URL]
#
# It does nothing when the image exists already, unless --force. It needs root
# (debootstrap), debootstrap, tar and a running Docker engine. `make
# docker-image` runs it.
set -euo pipefail

image=devport-base:latest
mirror=${DEVPORT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
force=0
while (($#)); do
	case $1 in
	--force) force=1 ;;
	--image) image=$2; shift ;;
	--mirror) mirror=$2; shift ;;
	-h | --help) sed -n '2,12p' "$0"; exit 0 ;;
	*) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

die() { echo "build.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root; run it as root (or with sudo)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
command -v docker >/dev/null || die "the docker command is not installed (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed); start dockerd"

if [ "$force" -eq 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
	echo "image $image exists already ($(docker image inspect -f '{{.Id}}' "$image")); --force rebuilds it"
	exit 0
fi

started=$SECONDS
root=$(mktemp -d /tmp/devport-base.XXXXXX)
cleanup() { rm -rf "$root"; }
trap cleanup EXIT

# Packages beyond minbase: what an engineer expects at a prompt, tini as PID 1
# (reaps orphans, stops on SIGTERM) and util-linux's script for terminals.
packages=bash,coreutils,procps,tar,gzip,ca-certificates,less,util-linux,bsdutils,findutils,ncurses-base,ncurses-term,tini
echo "debootstrap --variant=minbase $suite from $mirror with $packages"
debootstrap --variant=minbase --include="$packages" "$suite" "$root/rootfs" "$mirror" >"$root/debootstrap.log" 2>&1 ||
	{ tail -n 30 "$root/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

echo "adding user dev (uid 1000, home /home/dev)"
chroot "$root/rootfs" groupadd --gid 1000 dev
chroot "$root/rootfs" useradd --uid 1000 --gid 1000 --create-home --home-dir /home/dev --shell /bin/bash dev
printf 'export PS1='"'"'\\u@\\h:\\w\\$ '"'"'\n' >>"$root/rootfs/home/dev/.bashrc"

echo "removing apt caches, logs and documentation"
chroot "$root/rootfs" apt-get clean
rm -rf "$root"/rootfs/var/lib/apt/lists/* "$root"/rootfs/var/cache/apt/* \
	"$root"/rootfs/var/log/*.log "$root"/rootfs/var/log/apt/* \
	"$root"/rootfs/usr/share/doc/* "$root"/rootfs/usr/share/man/* \
	"$root"/rootfs/usr/share/info/* "$root"/rootfs/tmp/*
# The engine writes these when it starts a container.
: >"$root/rootfs/etc/hostname"
: >"$root/rootfs/etc/resolv.conf"

echo "importing as $image"
tar --numeric-owner -C "$root/rootfs" -c . | docker import \
	--change 'CMD ["/usr/bin/tini", "--", "sleep", "infinity"]' \
	--change 'ENV LANG=C.UTF-8 HOME=/home/dev USER=dev SHELL=/bin/bash' \
	--change 'USER dev' \
	--change 'WORKDIR /home/dev' \
	--change 'LABEL devport.image=base devport.suite='"$suite" \
	--message "devport base image: debootstrap $suite minbase" \
	- "$image" >/dev/null

echo "built $image in $((SECONDS - started)) s: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
