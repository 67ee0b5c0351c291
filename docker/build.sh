#!/usr/bin/env bash
# Builds the backprop Docker image from the repository root, without needing a
# registry: the debian:bookworm-slim base is made locally by
# docker/make-base-image.sh when the engine does not have it.
#
# Usage: docker/build.sh [TAG] [extra docker build args...]
#   TAG defaults to $BACKPROP_IMAGE or backprop:latest.
# Environment:
#   BACKPROP_DOCKER_NETWORK  network for the build's RUN steps. Unset: probe
#                            whether a container on the default bridge reaches
#                            the Debian mirror, and fall back to "host" if not.
#   BACKPROP_BUILD_JOBS      compile jobs inside the build (default 2).
#   BACKPROP_DOCKER_REV      build this git revision (git archive) instead of
#                            the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-${BACKPROP_IMAGE:-backprop:latest}}"
shift || true

bash docker/make-base-image.sh

network="${BACKPROP_DOCKER_NETWORK:-}"
if [[ -z $network ]]; then
  # The base image's apt sources name the mirror; try a TCP connection to it
  # from a throwaway container on the default network.
  if docker run --rm debian:bookworm-slim bash -c '
       uri=$(awk "tolower(\$1) == \"uris:\" { print \$2; exit }" /etc/apt/sources.list.d/debian.sources)
       hostport=${uri#*://}; hostport=${hostport%%/*}
       host=${hostport%%:*}; port=80
       [[ $uri == https://* ]] && port=443
       [[ $hostport == *:* ]] && port=${hostport##*:}
       timeout 10 bash -c "exec 3<>/dev/tcp/$host/$port"' >/dev/null 2>&1; then
    network=default
  else
    echo "build.sh: containers on the default network cannot reach the Debian mirror; building with --network host" >&2
    network=host
  fi
fi

args=(--network "$network" --build-arg JOBS="${BACKPROP_BUILD_JOBS:-2}"
  -f docker/Dockerfile -t "$tag" "$@")
if [[ -n ${BACKPROP_DOCKER_REV:-} ]]; then
  # Build a committed revision (e.g. HEAD) instead of the working tree, which
  # may hold unfinished edits.
  git archive --format=tar "$BACKPROP_DOCKER_REV" | docker build "${args[@]}" -
else
  docker build "${args[@]}" .
fi
