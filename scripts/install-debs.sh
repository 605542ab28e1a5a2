#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when missing.
set -euo pipefail
need=()
command -v qemu-arm-static >/dev/null 2>&1 || need+=(qemu-user-static)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v chromium >/dev/null 2>&1 || need+=(chromium)   # dashboard tests drive a real browser
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)      # dashboard build (Node 20.19+)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)   # MQTT bridge tests: a real broker
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v xxd >/dev/null 2>&1 || need+=(xxd)                 # protocol/MQTT.md's CBOR examples, run by a test
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)   # deploy tests: systemd-analyze verify of the units
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)               # deploy tests: inspect, install, upgrade, purge the .debs
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)          # deploy tests: unshare/nsenter for the throwaway overlay root
if ((${#need[@]} == 0)); then
	exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
echo ">> installing Debian packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
