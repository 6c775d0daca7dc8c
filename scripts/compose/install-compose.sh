#!/usr/bin/env bash
# Docker Compose v2 as a Docker CLI plugin (~/.docker/cli-plugins/docker-compose), when `docker compose` is missing.
#
# Debian bookworm packages only the old Python docker-compose 1.29, so v2 is built from its Go module:
# `go install github.com/docker/compose/v2/cmd@VERSION` refuses it (its go.mod has exclude directives), but
# `go mod download` + `go build ./cmd` in a writable copy of the module works: 3 minutes on 2 idle cores, about 10
# on busy ones. The binary is cached in ~/.cache/streamwreck/compose/VERSION/ for every later clone on this machine.
set -euo pipefail

VERSION=${COMPOSE_VERSION:-v2.40.3}
CACHE=${STREAMWRECK_CACHE:-$HOME/.cache/streamwreck}/compose/$VERSION
PLUGIN_DIR=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
PLUGIN=$PLUGIN_DIR/docker-compose

say() { echo "compose-install: $*" >&2; }

if docker compose version 2>/dev/null | grep -q "${VERSION#v}"; then
  exit 0
fi
if [ ! -x "$CACHE/docker-compose" ]; then
  command -v go >/dev/null || { say "Go is missing: install Go 1.24+ (https://go.dev/dl) to build Docker Compose $VERSION"; exit 2; }
  say "building Docker Compose $VERSION from its Go module (3-10 minutes, once per machine) into $CACHE"
  began=$(date +%s)
  dir=$(go mod download -json "github.com/docker/compose/v2@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$CACHE/src" && mkdir -p "$CACHE"
  cp -r "$dir" "$CACHE/src" && chmod -R u+w "$CACHE/src"
  (cd "$CACHE/src" && CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$VERSION" -o "$CACHE/docker-compose.part" ./cmd)
  mv "$CACHE/docker-compose.part" "$CACHE/docker-compose"
  rm -rf "$CACHE/src"
  say "built in $(($(date +%s) - began)) s"
fi
mkdir -p "$PLUGIN_DIR"
install -m 0755 "$CACHE/docker-compose" "$PLUGIN"
docker compose version
