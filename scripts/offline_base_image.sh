#!/usr/bin/env bash
# Builds a Debian bookworm base image with python3 + boto3 without pulling from any
# registry: debootstrap from the apt mirror this machine already uses, then `docker import`.
# Used where no official Python image can be pulled (the local stack, CI):
#   scripts/offline_base_image.sh && docker build --build-arg BASE_IMAGE=run-job/base:bookworm ...
# Idempotent: does nothing when the image already exists. Honours DOCKER_HOST. Needs root.
# Overrides: OFFLINE_BASE_IMAGE (image name), DEBIAN_MIRROR (apt mirror URL).
set -euo pipefail

image="${OFFLINE_BASE_IMAGE:-run-job/base:bookworm}"
suite=bookworm
sources=/etc/apt/sources.list.d/debian.sources

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "offline_base_image: $image already exists" >&2
    exit 0
fi
if [[ "$(id -u)" -ne 0 ]]; then
    echo "offline_base_image: debootstrap needs root" >&2
    exit 1
fi

mirror="${DEBIAN_MIRROR:-}"
if [[ -z "$mirror" && -r "$sources" ]]; then
    # The first URIs line is the main archive (the others are updates/security).
    mirror="$(awk '/^URIs:/ { print $2; exit }' "$sources")"
fi
if [[ -z "$mirror" ]]; then
    echo "offline_base_image: no mirror in $sources; set DEBIAN_MIRROR" >&2
    exit 1
fi

rootfs="$(mktemp -d /var/tmp/offline-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include=python3,python3-boto3,ca-certificates \
    "$suite" "$rootfs" "$mirror"
# Package caches and lists are dead weight in an image that never runs apt itself.
rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/lib/apt/lists/*

# An imported image has no config: give it the PATH and locale an official image has.
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$image"
echo "offline_base_image: built $image" >&2
