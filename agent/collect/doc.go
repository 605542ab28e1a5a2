// Package collect holds fleetagent's metric collectors: cheap readers of
// /proc, /sys and statfs(2) for the built-in metrics, and the exec
// collector, which turns the output of a user's program into points.
//
// New builds the enabled collectors from a Config; the agent's batcher
// calls each one's Collect once per interval from one goroutine and stamps
// the points with the collection time (every point has DT 0).
//
// # Metrics
//
// A metric name is "<measurement>.<field>" (protocol.SplitName). Bytes and
// counters are int64; percentages are float64 in 0..100 with two decimals.
//
//	collector  metric                  type   unit     tags
//	cpu        cpu.usage_percent       float  percent  -
//	cpu        cpu.count               int    CPUs     -
//	mem        mem.total_bytes         int    bytes    -
//	mem        mem.available_bytes     int    bytes    -
//	mem        mem.used_bytes          int    bytes    -
//	mem        mem.used_percent        float  percent  -
//	mem        mem.swap_used_bytes     int    bytes    -
//	disk       disk.total_bytes        int    bytes    path
//	disk       disk.used_bytes         int    bytes    path
//	disk       disk.free_bytes         int    bytes    path
//	disk       disk.used_percent       float  percent  path
//	net        net.rx_bytes            int    bytes    iface
//	net        net.tx_bytes            int    bytes    iface
//	net        net.rx_packets          int    packets  iface
//	net        net.tx_packets          int    packets  iface
//	net        net.rx_errors           int    errors   iface
//	net        net.tx_errors           int    errors   iface
//	load       load.load1              float  -        -
//	load       load.load5              float  -        -
//	load       load.load15             float  -        -
//	uptime     system.uptime_seconds   int    seconds  -
//	temp       temp.celsius            float  °C       zone
//	exec       <name>.<line name>      any    -        from the output
//
// Details:
//
//   - cpu.usage_percent is the busy share of all CPUs since the previous
//     collection (/proc/stat; idle and iowait count as idle). The first
//     collection measures over a 200 ms baseline. It is left out when the
//     counters did not move forward (a suspended VM).
//   - mem.used_bytes is total minus available, so reclaimable page cache
//     does not count as used; mem.used_percent is used / total.
//   - disk metrics are those of df for each configured mount point (tag
//     path, e.g. "/"): used + free can be less than total because of blocks
//     reserved for root, and disk.used_percent is used / (used + free). An
//     unreadable mount point is an error; the others are still reported.
//   - net metrics are counters since boot from /proc/net/dev, one set per
//     interface (tag iface, e.g. "eth0"): the configured ones, or all but
//     the loopback "lo". A configured interface that is absent is an
//     error; the others are still reported.
//   - load.* are the 1, 5 and 15 minute load averages of /proc/loadavg.
//   - temp.celsius comes from each Linux thermal zone: <dir>/thermal_zoneN/
//     temp (millidegrees) and type, which becomes tag zone (on a Raspberry
//     Pi "cpu-thermal"). When several zones share a type, each gets its
//     zone number appended ("acpitz-0", "acpitz-1"); a zone whose type is
//     unreadable is named after its directory ("thermal_zone3"). No thermal
//     directory or no zones (a VM) yields no points and no error.
//
// # Exec output format
//
// An exec collector runs ExecConfig.Command directly (no shell) with stdin
// /dev/null and the environment PATH=/usr/local/sbin:/usr/local/bin:
// /usr/sbin:/usr/bin:/sbin:/bin and LANG=C. The program prints one point
// per line on stdout, UTF-8, lines ending in "\n" (a "\r" before it is
// ignored):
//
//	<name> <value> [<tagkey>=<tagvalue> ...]
//
// Fields are separated by one or more spaces or tabs; leading and trailing
// spaces are ignored. Empty lines and lines whose first non-blank
// character is '#' are skipped; there are no comments after a point.
//
//   - name: 1 to 128 bytes of [A-Za-z0-9_.-], starting with a letter or
//     '_', not ending with '.'. The point is named "<ExecConfig.Name>.<name>"
//     (at most 128 bytes in all), so ExecConfig.Name is the InfluxDB
//     measurement and name the field.
//   - value, one of:
//     an integer: an optional '+' or '-' and decimal digits ("42", "-3"),
//     within int64, becomes an int;
//     a decimal: digits with a '.' and/or an exponent ("21.5", "-0.25",
//     "1e3", "6.02E23"), finite, becomes a float (no inf, nan, hex or '_');
//     true or false (lower case) becomes a bool;
//     a string in double quotes, where \" is a quote and \\ a backslash
//     (no other escapes) and the closing quote is followed by a space, a
//     tab or the end of the line; it may contain spaces; at most 4096
//     bytes; becomes a string.
//   - tags: up to 16 key=value pairs; a key follows the name rules (at most
//     64 bytes), is not "device" (the hub sets it) and appears once; a value
//     is 1 to 256 bytes without spaces, tabs, other control characters or
//     backslashes (it runs to the next space, '=' included).
//
// Example:
//
//	# DHT22 on GPIO 4
//	temperature 21.5 room=attic
//	humidity 48 room=attic
//	ok true
//	status "warming up" room=attic
//
// With ExecConfig.Name "sensor" this yields sensor.temperature (float),
// sensor.humidity (int), sensor.ok (bool) and sensor.status (string).
// Keep a field's type stable: InfluxDB rejects a point whose field changed
// type, e.g. "humidity 48" then "humidity 48.5"; print "48.0" when the
// field is a float.
//
// A bad line is skipped; the good lines are still reported, and Collect
// returns with them an error wrapping a *ParseError that lists the bad line
// numbers and reasons (the agent logs it). At most MaxExecPoints points per
// run are kept. A run yields no points, only an error, when the program
// exits with a non-zero status, writes more than MaxOutput bytes to stdout
// (it is killed then), or outlives Timeout (its whole process group is
// killed with SIGKILL). Stderr is not parsed; its first 256 bytes explain
// a failure. Two lines with the same name and tags are both sent and the
// later one wins in InfluxDB.
//
// Runs follow ExecConfig.Interval (0: at every collection) in the
// collector's own goroutine. Collect starts a due run and waits for it
// only until the collection deadline; a run finishing later is reported
// at the next collection, and a run still going when the next is due
// delays that one. Each result is reported once.
package collect
