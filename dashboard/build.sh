#!/usr/bin/env bash
# Build the dashboard into dashboard/dist (embedded by embed.go).
# Idempotent: `npm ci` runs only when node_modules is missing or older than
# package-lock.json. Needs Node >= 20.19 and npm from the npm registry.
set -euo pipefail
cd "$(dirname "$0")"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "dashboard/build.sh: $tool not found; install Node.js 20+ and npm (Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
done

stamp=node_modules/.package-lock.json   # written by npm ci / npm install
if [[ ! -f $stamp || package-lock.json -nt $stamp || package.json -nt $stamp ]]; then
  echo ">> npm ci (dashboard)"
  npm ci --no-audit --no-fund
fi

echo ">> vite build (dashboard)"
npm run --silent build
touch dist/.gitkeep   # vite empties dist/; keep the committed placeholder
