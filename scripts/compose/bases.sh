#!/usr/bin/env bash
# The base images the Dockerfiles and docker-compose.yml name, in the engine DOCKER_HOST points at.
#
# Each is used as it is when present or when `docker pull` gets it. Where Docker Hub cannot be reached (one pull is
# tried; its failure stops further tries), a local STAND-IN is built with the same tag from Debian bookworm's
# packages (debootstrap, docker import, then scripts/compose/standins/*.Dockerfile), labelled
# org.streamwreck.stand-in=<recipe hash> so that a changed recipe rebuilds it. Stand-ins carry this machine's CA
# bundle (copied in after apt-get) so that pip, npm and Maven reach the registries through its TLS: they are for
# this machine only and are never pushed. The stand-ins used are listed in build/compose/standins.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."

STANDINS=scripts/compose/standins
OUT=build/compose
CA_BUNDLE=${STANDIN_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
PULL_TIMEOUT=${PULL_TIMEOUT:-120}
export DOCKER_BUILDKIT=0  # the classic builder: BuildKit would fetch its Dockerfile frontend from Docker Hub

# tag -> stand-in recipe, in build order (the LocalStack stand-in builds on the Python one)
BASES=(
  "python:3.11.13-slim-bookworm python"
  "eclipse-temurin:17.0.13_11-jre-jammy temurin-jre"
  "maven:3.9.9-eclipse-temurin-17 maven"
  "memcached:1.6.32-alpine memcached"
  "localstack/localstack:4.0.3 localstack"
)
DEBIAN=streamwreck-standin/debian:bookworm
ROOTFS=streamwreck-standin/bookworm-rootfs:minbase-2  # bump when the import changes

say() { echo "bases: $*" >&2; }

recipe=$(cat "$STANDINS"/*.Dockerfile "$STANDINS"/*.py "$STANDINS"/localstack/* package-lock.json | sha256sum | cut -c1-16)
label() { docker image inspect -f '{{index .Config.Labels "org.streamwreck.stand-in"}}' "$1" 2>/dev/null; }
present() { docker image inspect "$1" >/dev/null 2>&1; }

context=$OUT/standin-context
prepare_context() {
  [ -d "$context" ] && return
  [ -s "$CA_BUNDLE" ] || { say "no CA bundle at $CA_BUNDLE (set STANDIN_CA_BUNDLE)"; exit 2; }
  mkdir -p "$context"
  cp -r "$STANDINS"/. "$context"/
  cp package-lock.json "$context"/
  cp "$CA_BUNDLE" "$context"/ca-certificates.crt
}

build_standin() {  # TAG RECIPE
  prepare_context
  local began=$SECONDS
  say "building the stand-in $1 ($context/$2.Dockerfile)"
  docker build --network host --label "org.streamwreck.stand-in=$recipe" -t "$1" -f "$context/$2.Dockerfile" \
    "$context" >"$OUT/standin-$2.log" 2>&1 || { say "the stand-in $1 failed to build:"; tail -n 30 "$OUT/standin-$2.log" >&2; exit 2; }
  say "stand-in $1 built in $((SECONDS - began)) s"
}

debian_base() {
  if [ "$(label "$DEBIAN")" = "$recipe" ]; then return; fi
  if ! present "$ROOTFS"; then
    command -v debootstrap >/dev/null || { say "debootstrap is missing (Debian package debootstrap)"; exit 2; }
    local rootfs=$OUT/rootfs began=$SECONDS
    say "debootstrap of Debian bookworm (minbase) for the stand-ins (about a minute)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
      >"$OUT/debootstrap.log" 2>&1 || { say "debootstrap failed:"; tail -n 20 "$OUT/debootstrap.log" >&2; exit 2; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*  # what debootstrap downloaded
    tar -C "$rootfs" -c . | docker import - "$ROOTFS" >/dev/null
    rm -rf "$rootfs"
    say "imported $ROOTFS in $((SECONDS - began)) s"
  fi
  build_standin "$DEBIAN" debian
}

mkdir -p "$OUT"
rm -rf "$context"
: >"$OUT/standins.txt"
hub=unknown
for entry in "${BASES[@]}"; do
  read -r tag name <<<"$entry"
  current=$(label "$tag" || true)
  if present "$tag" && [ -z "$current" ]; then
    continue  # the real image
  fi
  if [ -z "$current" ] && [ "$hub" != unreachable ]; then
    if timeout "$PULL_TIMEOUT" docker pull -q "$tag" >"$OUT/pull.log" 2>&1; then
      hub=reachable
      say "pulled $tag"
      continue
    fi
    hub=unreachable
    say "cannot pull $tag ($(tail -n 1 "$OUT/pull.log")): building local stand-ins"
  fi
  if [ "$current" != "$recipe" ]; then
    debian_base
    build_standin "$tag" "$name"
  fi
  echo "$tag" >>"$OUT/standins.txt"
done
rm -rf "$context"
# Stand-ins of an older recipe, now untagged: their copies would only fill the cached image store.
docker image prune --force --filter label=org.streamwreck.stand-in >/dev/null

if [ -s "$OUT/standins.txt" ]; then
  {
    echo "################################################################################################"
    echo "# STAND-IN BASE IMAGES IN USE (Docker Hub cannot be reached from here):"
    sed 's/^/#   /' "$OUT/standins.txt"
    echo "# built locally from Debian bookworm's packages (scripts/compose/standins/), NOT the pinned images;"
    echo "# they carry this machine's CA bundle: never push them. LocalStack's is moto + kinesis-local."
    echo "################################################################################################"
  } >&2
fi
