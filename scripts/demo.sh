#!/usr/bin/env bash
# make demo: a local InfluxDB, a hub with auto-generated TLS, one real
# agent collecting this machine's metrics and a small simulated fleet
# (fleetsim, DEMO_SIM_DEVICES devices, 0 for none) so the dashboard looks
# alive. Everything lives under .demo/ (git-ignored). Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.demo
bin=$PWD/bin
influxd=${FLEETWIRE_INFLUXD:-$PWD/.tools/bin/influxd}
influx_port=${DEMO_INFLUX_PORT:-18086}
hub_port=${DEMO_HUB_PORT:-8443}
sim_devices=${DEMO_SIM_DEVICES:-25}
mkdir -p "$root"/{influx,hub,agent,sim}

pids=()
stopping=
cleanup() {
	trap - INT TERM EXIT
	stopping=1
	echo
	echo ">> stopping demo"
	for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	echo ">> stopped; data kept in $root (make clean removes it)"
}
trap cleanup INT TERM EXIT

wait_for() { # url what
	for _ in $(seq 1 150); do
		if curl -fs -o /dev/null ${3:-} "$1" 2>/dev/null; then return 0; fi
		sleep 0.2
	done
	echo "demo: $2 did not come up; see $root/*.log" >&2
	exit 1
}

cat > "$root/influx/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$((influx_port + 1))"
[meta]
  dir = "$root/influx/meta"
[data]
  dir = "$root/influx/data"
  wal-dir = "$root/influx/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$influx_port"
  flux-enabled = true
  log-enabled = false
[logging]
  level = "warn"
[monitor]
  store-enabled = false
CONF
echo ">> starting InfluxDB 1.8 on 127.0.0.1:$influx_port"
"$influxd" run -config "$root/influx/influxdb.conf" >"$root/influx.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$influx_port/ping" InfluxDB
curl -fsS -o /dev/null -XPOST "http://127.0.0.1:$influx_port/query" --data-urlencode 'q=CREATE DATABASE "fleet"'

echo ">> starting fleethub on https://127.0.0.1:$hub_port"
"$bin/fleethub" --data_dir "$root/hub" --listen "127.0.0.1:$hub_port" \
	--public_url "https://127.0.0.1:$hub_port" \
	--influx.url "http://127.0.0.1:$influx_port" --influx.bucket fleet/autogen \
	>"$root/hub.out" 2>"$root/hub.log" &
pids+=($!)
wait_for "https://127.0.0.1:$hub_port/healthz" fleethub "--cacert $root/hub/ca.pem"

export FLEETCTL_HUB="https://127.0.0.1:$hub_port"
export FLEETCTL_CA_FILE="$root/hub/ca.pem"
export FLEETCTL_TOKEN
FLEETCTL_TOKEN=$(cat "$root/hub/admin.token")
device="demo-$(hostname | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9.-' '-' | cut -c1-40 | sed 's/-*$//')"
if [ ! -s "$root/agent/fleetagent.yaml" ]; then
	echo ">> registering device $device"
	"$bin/fleetctl" device add "$device" --label site=demo --config-out "$root/agent/fleetagent.yaml" >/dev/null
fi
echo ">> starting fleetagent for $device (interval 5s)"
FLEETAGENT_HUB_URL="wss://127.0.0.1:$hub_port/v1/device" FLEETAGENT_HUB_CA_FILE="$root/hub/ca.pem" \
FLEETAGENT_HUB_CA_FINGERPRINT="" FLEETAGENT_SPOOL_DIR="$root/agent/spool" FLEETAGENT_INTERVAL=5s \
	"$bin/fleetagent" --config "$root/agent/fleetagent.yaml" >"$root/agent.log" 2>&1 &
pids+=($!)

if [ "$sim_devices" -gt 0 ]; then
	# Registered once through the API; the tokens file makes re-runs reuse them.
	echo ">> starting fleetsim: $sim_devices simulated devices (site=demo-sim, interval 2s)"
	FLEETSIM_ADMIN_TOKEN="$FLEETCTL_TOKEN" "$bin/fleetsim" \
		--hub "wss://127.0.0.1:$hub_port/v1/device" --ca-file "$root/hub/ca.pem" \
		--devices "$sim_devices" --id-prefix demo-sim- --labels site=demo-sim \
		--create --api-url "$FLEETCTL_HUB" --tokens "$root/sim/tokens" \
		--work-dir "$root/sim/spool" --interval 2s --ramp 50 --commands echo \
		>"$root/sim.log" 2>&1 &
	pids+=($!)
fi

cat <<TXT

Fleetwire demo is running. Logs: $root/{influx,hub,agent,sim}.log

  Dashboard:    https://127.0.0.1:$hub_port/   (the hub's own CA: trust $root/hub/ca.pem,
                or accept the certificate warning for this local demo)
  Sign in:      admin / $(cat "$root/hub/admin.password" 2>/dev/null || echo "see $root/hub/admin.password")

  Devices:      FLEETCTL_HUB=$FLEETCTL_HUB FLEETCTL_CA_FILE=$FLEETCTL_CA_FILE \\
                FLEETCTL_TOKEN=\$(cat $root/hub/admin.token) bin/fleetctl device list
  Metrics:      curl --cacert $root/hub/ca.pem https://127.0.0.1:$hub_port/metrics
  Data (InfluxQL):
    curl -sG http://127.0.0.1:$influx_port/query --data-urlencode db=fleet \\
      --data-urlencode "q=SELECT last(usage_percent) FROM cpu WHERE device='$device'"
  Data (Flux):
    curl -s http://127.0.0.1:$influx_port/api/v2/query -H 'Content-Type: application/vnd.flux' \\
      -d 'from(bucket:"fleet/autogen") |> range(start:-5m) |> filter(fn:(r)=> r._measurement=="mem") |> last()'

Press Ctrl-C to stop.
TXT
wait -n "${pids[@]}" || true
if [ -z "$stopping" ]; then
	echo "demo: a process exited unexpectedly; see the logs in $root" >&2
	exit 1
fi
