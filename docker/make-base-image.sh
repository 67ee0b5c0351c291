#!/usr/bin/env bash
# Makes the local Docker image `debian:bookworm-slim` from Debian's own
# archive when the Docker engine does not have it and cannot pull it (this
# build machine has no registry access, only a Debian mirror).
#
# It runs `debootstrap --variant=minbase bookworm` against the same mirror the
# host's apt uses, trims it the way Docker's official slim images are trimmed
# (no docs/man pages/locales, no cached .debs or apt lists), gives it an apt
# sources list that points at that mirror, and `docker import`s it.
#
# Usage: docker/make-base-image.sh [--force] [IMAGE_TAG]
#   IMAGE_TAG defaults to debian:bookworm-slim. Does nothing when the image
#   already exists, unless --force.
set -euo pipefail

force=0
if [[ "${1:-}" == --force ]]; then
  force=1
  shift
fi
tag="${1:-debian:bookworm-slim}"
suite=bookworm

if [[ $force == 0 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "make-base-image: $tag already present"
  exit 0
fi

sudo=""
if [[ $(id -u) != 0 ]]; then sudo="sudo"; fi

# Prints the first URI of the host's apt sources that serves Debian's main
# archive (not the security archive), from deb822 .sources files or the
# one-line sources.list format.
host_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    while read -r uri; do
      if [[ $uri != *security* ]]; then
        echo "$uri"
        return 0
      fi
    done < <(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f")
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    uri=$(awk '$1 == "deb" {
             for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; exit }
           }' "$f" | grep -v security | grep -i debian | head -n1 || true)
    if [[ -n $uri ]]; then
      echo "$uri"
      return 0
    fi
  done
  return 1
}

# Same for the security archive (may be absent).
host_security_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    # Only "URIs:" fields and "deb" lines; comments may name other archives.
    uri=$(grep -Ev '^[[:space:]]*#' "$f" | grep -Ei '^(uris:|deb )' |
      grep -Eo '(https?|file)://[^ ]*debian-security[^ ]*' | head -n1 || true)
    if [[ -n $uri ]]; then
      echo "$uri"
      return 0
    fi
  done
  return 1
}

mirror="${BACKPROP_DEBIAN_MIRROR:-$(host_mirror || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"
mirror="${mirror%/}"
security_mirror="$(host_security_mirror || true)"
security_mirror="${security_mirror%/}"
echo "make-base-image: mirror $mirror${security_mirror:+, security $security_mirror}"

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "make-base-image: installing debootstrap"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends debootstrap
fi

# debootstrap needs a filesystem that allows device nodes and exec, which
# /tmp may not; /var/tmp is on the root filesystem here.
root=$(mktemp -d /var/tmp/bookworm-rootfs.XXXXXX)
cleanup() { $sudo rm -rf --one-file-system "$root"; }
trap cleanup EXIT

$sudo debootstrap --variant=minbase "$suite" "$root" "$mirror"

# apt sources: the same mirror(s) as the host, deb822 like the official image.
$sudo rm -f "$root/etc/apt/sources.list"
{
  echo "Types: deb"
  echo "URIs: $mirror"
  echo "Suites: $suite $suite-updates"
  echo "Components: main"
  echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
  if [[ -n $security_mirror ]]; then
    echo
    echo "Types: deb"
    echo "URIs: $security_mirror"
    echo "Suites: $suite-security"
    echo "Components: main"
    echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
  fi
} | $sudo tee "$root/etc/apt/sources.list.d/debian.sources" >/dev/null

# debootstrap installs the release as first published; bring it up to date
# with bookworm-updates and bookworm-security like the official images are.
# The chroot resolves the mirror the way the host does (the host may map it
# in /etc/hosts).
$sudo cp /etc/resolv.conf "$root/etc/resolv.conf"
$sudo cp /etc/hosts "$root/etc/hosts"
$sudo chroot "$root" apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo chroot "$root" apt-get -y -q upgrade
$sudo chroot "$root" apt-get clean

# Slim-image conventions: do not install documentation, keep no .debs, no
# lists after the image is made, and no daemons started by package scripts.
$sudo tee "$root/etc/dpkg/dpkg.cfg.d/docker-slim" >/dev/null <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CFG
$sudo tee "$root/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
$sudo tee "$root/etc/apt/apt.conf.d/docker-no-recommends" >/dev/null <<'CFG'
APT::Install-Recommends "false";
CFG
printf '#!/bin/sh\nexit 101\n' | $sudo tee "$root/usr/sbin/policy-rc.d" >/dev/null
$sudo chmod 755 "$root/usr/sbin/policy-rc.d"
# Files already installed before the dpkg excludes existed.
$sudo find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
$sudo rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
  "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
  "$root"/var/log/* "$root"/tmp/* "$root"/root/.bash_history
# The container engine provides these.
$sudo rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' |
  $sudo tee "$root/etc/hosts" >/dev/null
$sudo truncate -s 0 "$root/etc/machine-id" 2>/dev/null || true

$sudo tar --numeric-owner -C "$root" -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase $suite $mirror" \
    - "$tag"
docker image ls "$tag"
