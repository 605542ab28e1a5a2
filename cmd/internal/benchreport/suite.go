package main

// The benchmark suite: one entry per BENCHMARKS.md section. Edit here to add
// a benchmark, a row or a plot; nothing else needs to change.
//
// Benchmark names are written without the "Benchmark" prefix and without the
// "-GOMAXPROCS" suffix, as benchstat shows them. A row whose name has no
// result is rendered "not measured (<why>)" and the rest still renders.

// Suite is the list of sections, in the order BENCHMARKS.md shows them.
var Suite = []Section{
	{
		ID:    "codec",
		Title: "Codec (`protocol`)",
		Prose: "Encoding and decoding (with validation) of a 100-point batch of typical agent " +
			"metrics (`protocol.SampleBatch`) on one core: the work every batch costs the agent " +
			"and the hub before any I/O.",
		Runs: []Run{{Pkg: "./protocol", Bench: "EncodeBatch|DecodeBatch"}},
		Tables: []Table{{
			RowHeader: "benchmark",
			Columns:   []Column{{Header: "points/s", Unit: "points/s"}, {Header: "MB/s", Unit: "MB/s"}, {Header: "allocs/op", Unit: "allocs/op"}},
			Rows:      []Row{{Label: "encode", Bench: "EncodeBatch"}, {Label: "decode + validate", Bench: "DecodeBatch"}},
		}},
	},
	{
		ID:    "wire",
		Title: "Wire efficiency",
		Prose: "Bytes on the wire per point for batches of 10, 30 and 100 points (what a 1 s, 3 s " +
			"and 10 s collection interval gives) in each encoding, and the ratio to InfluxDB line " +
			"protocol with the `device` tag (what the hub writes). Agents send CBOR in " +
			"permessage-deflate messages (`cbor+deflate`). Deterministic: the same bytes every run.",
		Runs: []Run{{Pkg: "./protocol", Bench: "WireEfficiency", Benchtime: "1x"}},
		Tables: []Table{{
			RowHeader: "batch / encoding",
			Columns:   []Column{{Header: "bytes/point", Unit: "B/point"}, {Header: "× line protocol", Unit: "x-line-protocol"}},
			Auto:      "WireEfficiency/",
		}},
	},
	{
		ID:    "ingest",
		Title: "Hub ingest",
		Prose: "The real device endpoint over real loopback WebSockets (plain `ws://`; TLS cost not " +
			"included), clients keeping their 64-batch in-flight window full, 100-point batches, " +
			"counted from first send to last ack (only stored and acked points count). The end-to-end " +
			"benchmark also feeds the same InfluxDB directly (pre-rendered line protocol, same batch " +
			"size and concurrency), half just before and half just after the hub's run, and reports " +
			"the ratio (`x-direct`) and the CPU seconds the hub process and influxd used. Baselines " +
			"from `hub/influx`: the sink alone (5,000-point writes), InfluxDB direct (pre-rendered " +
			"line protocol POSTed to `/api/v2/write`), and rendering batches to line protocol (no " +
			"I/O). InfluxDB and the hub share the machine's 2 cores: CPU the hub saves is CPU " +
			"InfluxDB gets.",
		Runs: []Run{
			{Pkg: "./hub/devicews", Bench: "Ingest", Benchtime: "20000x"},
			{Pkg: "./hub/influx", Bench: "Direct|Write|Points"},
		},
		Tables: []Table{{
			RowHeader: "path",
			Baseline:  "InfluxDirectLineProtocol",
			Columns: []Column{
				{Header: "points/s", Unit: "points/s"},
				{Header: "vs InfluxDB direct (separate runs)", Unit: "points/s", Ratio: true},
				{Header: "InfluxDB direct, same run", Unit: "direct-points/s"},
				{Header: "× direct, same run", Unit: "x-direct"},
				{Header: "hub CPU s", Unit: "hub-cpu-s"},
				{Header: "influxd CPU s", Unit: "influxd-cpu-s"},
			},
			Rows: []Row{
				{Label: "hub → discard sink, 1 device", Bench: "IngestDiscard/devices=1"},
				{Label: "hub → discard sink, 16 devices", Bench: "IngestDiscard/devices=16"},
				{Label: "hub → real InfluxDB, 16 devices (end to end, acked)", Bench: "IngestInfluxDB", Bold: true, Ratio: true},
				{Label: "`hub/influx` sink alone (5,000-point writes)", Bench: "WriteInflux", Ratio: true},
				{Label: "InfluxDB direct (line protocol, 5,000-point POSTs)", Bench: "InfluxDirectLineProtocol", Bold: true, Ratio: true},
				{Label: "batch → line protocol rendering (no I/O)", Bench: "Points"},
			},
		}},
	},
	{
		ID:    "mqtt",
		Title: "MQTT bridge ingest",
		Prose: "Devices publishing to a real Mosquitto, the hub's MQTT bridge storing their points in a " +
			"real InfluxDB: 16 devices, 4 publishing clients keeping 256 QoS 1 publishes each in flight, " +
			"messages of 10 points with their own time (a sensor board's reading) in each payload " +
			"format, timed from the first publish until the bridge has stored every point (acked to " +
			"the broker only after InfluxDB, as in production). Same run: the same points written " +
			"into the same InfluxDB directly by the hub's writer (`x-direct`), and the transport's " +
			"ceiling: one paho client receiving and acking the same messages from the same broker, " +
			"storing nothing. Mosquitto, InfluxDB, publishers and bridge share the machine's 2 cores.",
		Runs: []Run{{Pkg: "./hub/mqtt", Bench: "MQTTIngest|MQTTReceiveOnly", Benchtime: "40000x"}},
		Tables: []Table{{
			RowHeader: "path",
			Columns: []Column{
				{Header: "messages/s", Unit: "msgs/s"},
				{Header: "points/s", Unit: "points/s"},
				{Header: "InfluxDB direct, same run (points/s)", Unit: "direct-points/s"},
				{Header: "× direct, same run", Unit: "x-direct"},
			},
			Rows: []Row{
				{Label: "bridge, JSON envelope", Bench: "MQTTIngest/format=json", Bold: true},
				{Label: "bridge, line protocol", Bench: "MQTTIngest/format=line"},
				{Label: "bridge, protocol CBOR batch", Bench: "MQTTIngest/format=cbor"},
				{Label: "transport alone: receive and ack, no storage", Bench: "MQTTReceiveOnly"},
			},
		}},
	},
	{
		ID:    "connections",
		Title: "Memory per idle connection",
		Prose: "The memory a real `fleethub` process (TLS, production ping interval) holds per idle " +
			"device connection: its RSS before any device connects and once N simulated devices " +
			"(child processes of at most 5,000 each, no telemetry) are online and have been idle " +
			"for the measurement window; heap, stack and goroutines per connection from the hub.",
		Runs: []Run{{Pkg: "./cmd/internal/e2e", Bench: "IdleConnections", Benchtime: "1x", Count: 1, Timeout: "30m"}},
		Tables: []Table{{
			RowHeader: "connections",
			Columns: []Column{{Header: "KiB/conn (RSS)", Unit: "KiB/conn"}, {Header: "hub RSS (MiB)", Unit: "hub-rss-MiB"},
				{Header: "heap KiB/conn", Unit: "heap-KiB/conn"}, {Header: "stack KiB/conn", Unit: "stack-KiB/conn"},
				{Header: "goroutines/conn", Unit: "goroutines/conn"}},
			Auto: "IdleConnections/",
		}},
		Plots: []Plot{{Name: "idle-connections", Title: "Hub memory vs idle TLS connections", Kind: PlotConnections,
			Series: []Series{{File: "idle-connections.txt"}}}},
	},
	{
		ID:    "latency",
		Title: "Latency",
		Prose: "Device → dashboard socket: simulated devices (child process) each send one 2-point batch " +
			"per second stamped with their send time; a dashboard client subscribed to 64 device " +
			"topics records arrival minus the device's timestamp (on the socket, not rendered). " +
			"Command round trip: from `Send` to the stored `succeeded` result, one command at a " +
			"time to a different device each time. Device → pixels: the whole path through a real " +
			"`fleethub`, InfluxDB and headless Chromium on the fleet overview, until the row is " +
			"painted. Dashboard cost: hub CPU and Go heap with D fleet-overview dashboards open.",
		Runs: []Run{
			{Pkg: "./cmd/internal/e2e", Bench: "DeviceToBrowser|CommandRoundTrip", Benchtime: "2000x"},
			{Pkg: "./cmd/internal/e2e", Bench: "DeviceToRender", Benchtime: "2000x"},
			{Pkg: "./cmd/internal/e2e", Bench: "DashboardCost", Benchtime: "1x"},
		},
		Tables: []Table{
			{
				RowHeader: "path, devices connected",
				Columns:   []Column{{Header: "p50 (ms)", Unit: "p50-ms"}, {Header: "p99 (ms)", Unit: "p99-ms"}},
				Rows: []Row{
					{Label: "device → dashboard socket, 1,000", Bench: "DeviceToBrowser/devices=1000"},
					{Label: "device → dashboard socket, 10,000", Bench: "DeviceToBrowser/devices=10000", Bold: true},
					{Label: "command round trip, 1,000", Bench: "CommandRoundTrip/devices=1000"},
					{Label: "command round trip, 10,000", Bench: "CommandRoundTrip/devices=10000", Bold: true},
					{Label: "device → pixels in Chromium, 1,000", Bench: "DeviceToRender"},
				},
			},
			{
				RowHeader: "dashboards open (1,000 devices at 1 Hz)",
				Columns:   []Column{{Header: "hub CPU (% of one core)", Unit: "cpu-%core"}, {Header: "hub Go heap (MiB)", Unit: "heap-MiB"}},
				Auto:      "DashboardCost/",
			},
		},
		Plots: []Plot{
			{Name: "device-to-browser", Title: "Device → dashboard socket latency", Kind: PlotCDF, Series: []Series{
				{Label: "1,000 devices", File: "device-to-browser-1000.txt"},
				{Label: "10,000 devices", File: "device-to-browser-10000.txt"},
			}},
			{Name: "command-rtt", Title: "Command round trip", Kind: PlotCDF, Series: []Series{
				{Label: "1,000 devices", File: "command-rtt-1000.txt"},
				{Label: "10,000 devices", File: "command-rtt-10000.txt"},
			}},
			{Name: "device-to-render", Title: "Device → pixels in Chromium", Kind: PlotCDF, Series: []Series{
				{Label: "1,000 devices", File: "device-to-render-1000.txt"},
			}},
		},
	},
	{
		ID:    "reconnect",
		Title: "Reconnect storm",
		Prose: "10,000 `fleetsim` devices (the agent's real link with its jittered backoff and " +
			"Retry-After handling, over TLS from two source addresses) connected to a real `fleethub`; " +
			"the hub is stopped gracefully and started again on the same data and address. Seconds " +
			"from the new hub answering `/healthz` until every device is back, and from the stop " +
			"signal; the peak admission rate (250 ms scrapes of `fleethub_device_accepts_total`); " +
			"devices told to come back later by the accept-rate limit; the hub's goroutines once all " +
			"are back minus before the restart.",
		Runs: []Run{{Pkg: "./cmd/internal/e2e", Bench: "ReconnectStorm", Benchtime: "1x", Count: 1}},
		Tables: []Table{{
			RowHeader: "run",
			Columns: []Column{{Header: "s until all back", Unit: "s-all-back"}, {Header: "s from stop", Unit: "s-restart-to-all"},
				{Header: "peak accepts/s", Unit: "peak-accepts/s"}, {Header: "limited", Unit: "limited"},
				{Header: "goroutines delta", Unit: "goroutines-delta"}},
			Auto: "ReconnectStorm",
		}},
	},
	{
		ID:    "agent",
		Title: "Agent footprint",
		Prose: "The real `fleetagent` binary as shipped (every default collector, compression on) " +
			"against a real hub and InfluxDB at a 1 s interval: after a 10 s warm-up, VmRSS sampled " +
			"every second for 30 s (peak and last sample) and the CPU it used (utime + stime) as a " +
			"share of one core. Binary size: static, stripped builds per architecture.",
		Runs: []Run{{Pkg: "./cmd/internal/e2e", Bench: "AgentFootprint|AgentBinarySize", Benchtime: "1x"}},
		Tables: []Table{
			{
				RowHeader: "agent",
				Columns: []Column{{Header: "peak RSS (MiB)", Unit: "rss-MiB"}, {Header: "final RSS (MiB)", Unit: "rss-final-MiB"},
					{Header: "anonymous RSS (MiB)", Unit: "rss-anon-MiB"},
					{Header: "CPU (% of one core)", Unit: "cpu-%core"}},
				Auto: "AgentFootprint",
			},
			{
				RowHeader: "binary size (MiB)",
				Columns: []Column{{Header: "armv6", Unit: "MiB-armv6"}, {Header: "armv7", Unit: "MiB-armv7"},
					{Header: "arm64", Unit: "MiB-arm64"}, {Header: "amd64", Unit: "MiB-amd64"}},
				Rows: []Row{{Label: "`fleetagent`", Bench: "AgentBinarySize"}},
			},
		},
	},
	{
		ID:    "bulk",
		Title: "Bulk commands",
		Prose: "One `ping` to every connected device by label selector, from `SendBulk` until every " +
			"command is final (in-process hub with the real SQLite store; devices in a child process).",
		Runs: []Run{{Pkg: "./cmd/internal/e2e", Bench: "BulkSend", Benchtime: "1x"}},
		Tables: []Table{{
			RowHeader: "devices connected",
			Columns:   []Column{{Header: "s per bulk send", Unit: "s/bulk"}},
			Rows:      []Row{{Label: "1,000", Bench: "BulkSend/devices=1000"}, {Label: "10,000", Bench: "BulkSend/devices=10000"}},
		}},
	},
	{
		ID:    "spool",
		Title: "Agent spool",
		Prose: "One batch of 50 typical metrics per `Append`: write + fsync + rename + directory fsync " +
			"(production), and without fsync (tests only).",
		Runs: []Run{{Pkg: "./agent/spool", Bench: "Append"}},
		Tables: []Table{{
			RowHeader: "benchmark",
			Columns:   []Column{{Header: "batches/s", Unit: "batches/s"}, {Header: "allocs/op", Unit: "allocs/op"}},
			Rows: []Row{
				{Label: "Append with fsync (production)", Bench: "Append/NoSync=false"},
				{Label: "Append without fsync (tests only)", Bench: "Append/NoSync=true"},
			},
		}},
	},
}

// Targets are issue 5's goals, checked against the medians.
var Targets = []Target{
	{What: "memory per idle TLS connection (19,000 connections)", Section: "connections",
		Measure: metric("IdleConnections/conns=19000", "KiB/conn"), Cmp: AtMost, Limit: 16, Unit: "KiB/conn"},
	{What: "ingest into InfluxDB vs InfluxDB direct", Section: "ingest",
		Measure: firstOf(metric("IngestInfluxDB", "x-direct"), ratio("IngestInfluxDB", "InfluxDirectLineProtocol", "points/s")),
		Cmp:     AtLeast, Limit: 0.9, Unit: "×"},
	{What: "hub ingest into a discard sink (16 devices)", Section: "ingest",
		Measure: metric("IngestDiscard/devices=16", "points/s"), Cmp: AtLeast, Limit: 1_000_000, Unit: "points/s"},
	{What: "device → dashboard p99 at 10,000 devices", Section: "latency",
		Measure: metric("DeviceToBrowser/devices=10000", "p99-ms"), Cmp: AtMost, Limit: 20, Unit: "ms"},
	{What: "command round trip p99 at 10,000 devices", Section: "latency",
		Measure: metric("CommandRoundTrip/devices=10000", "p99-ms"), Cmp: AtMost, Limit: 20, Unit: "ms"},
	{What: "10,000 devices reconnected after a hub restart", Section: "reconnect",
		Measure: metric("ReconnectStorm", "s-all-back"),
		Cmp:     Below, Limit: 15, Unit: "s"},
	{What: "agent RSS", Section: "agent",
		Measure: metric("AgentFootprint", "rss-MiB"), Cmp: AtMost, Limit: 12, Unit: "MiB"},
	{What: "agent CPU", Section: "agent",
		Measure: metric("AgentFootprint", "cpu-%core"), Cmp: AtMost, Limit: 0.5, Unit: "% of a core"},
	{What: "agent binary (largest of armv6, armv7, arm64, amd64)", Section: "agent",
		Measure: maxOf("AgentBinarySize", "MiB-armv6", "MiB-armv7", "MiB-arm64", "MiB-amd64"), Cmp: AtMost, Limit: 10, Unit: "MiB"},
	{What: "wire bytes vs line protocol (100 points, CBOR + permessage-deflate)", Section: "wire",
		Measure: metric("WireEfficiency/points=100/cbor+deflate", "x-line-protocol"), Cmp: AtMost, Limit: 0.35, Unit: "×"},
}
