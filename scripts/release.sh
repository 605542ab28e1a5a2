#!/usr/bin/env bash
# Cross-compiles static, stripped, version-stamped binaries into dist/.
set -euo pipefail
version=${1:-dev}
cd "$(dirname "$0")/.."
mkdir -p dist
flags=(-trimpath -ldflags "-s -w -X main.version=${version}")
build() { # name os arch arm cmd
	local out="dist/$1"
	echo ">> $out"
	CGO_ENABLED=0 GOOS=$2 GOARCH=$3 GOARM=$4 go build "${flags[@]}" -o "$out" "./cmd/$5"
}
build fleetagent-linux-armv6 linux arm 6 fleetagent
build fleetagent-linux-armv7 linux arm 7 fleetagent
build fleetagent-linux-arm64 linux arm64 "" fleetagent
build fleetagent-linux-amd64 linux amd64 "" fleetagent
build fleethub-linux-amd64 linux amd64 "" fleethub
build fleethub-linux-arm64 linux arm64 "" fleethub
build fleetctl-linux-amd64 linux amd64 "" fleetctl
build fleetctl-linux-arm64 linux arm64 "" fleetctl
(cd dist && sha256sum fleet* > SHA256SUMS)
ls -l dist
