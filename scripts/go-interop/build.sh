#!/usr/bin/env bash
# Build the go-plugin test host offline in GOPATH mode from Debian's Go packages:
#   apt-get install -y golang-go golang-github-hashicorp-go-plugin-dev golang-google-grpc-dev \
#       golang-github-hashicorp-go-hclog-dev
# Usage: scripts/go-interop/build.sh OUTPUT [GOCACHE-DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: build.sh OUTPUT [GOCACHE-DIR]}"
cache="${2:-${GOCACHE:-$(mktemp -d)}}"
cd "$here"
GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= GOCACHE="$cache" go build -o "$out" .
