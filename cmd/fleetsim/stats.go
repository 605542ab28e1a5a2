package main

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Latency histogram: bucket i holds latencies up to latBase * 2^(i/4), so
// quantiles are exact to within 19%; the last bucket takes the rest.
const (
	latBase    = 100 * time.Microsecond
	latBuckets = 96 // up to ~1,700 s
)

type histogram [latBuckets]atomic.Uint64

func latBucket(d time.Duration) int {
	if d <= latBase {
		return 0
	}
	i := int(math.Ceil(4 * math.Log2(float64(d)/float64(latBase))))
	return min(i, latBuckets-1)
}

func (h *histogram) observe(d time.Duration) { h[latBucket(d)].Add(1) }

func (h *histogram) snapshot() []uint64 {
	out := make([]uint64, latBuckets)
	for i := range h {
		out[i] = h[i].Load()
	}
	return out
}

// quantile returns the upper bound of the bucket holding quantile q of
// counts, and the number of samples.
func quantile(counts []uint64, q float64) (time.Duration, uint64) {
	var n uint64
	for _, c := range counts {
		n += c
	}
	if n == 0 {
		return 0, 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= max(rank, 1) {
			return time.Duration(float64(latBase) * math.Pow(2, float64(i)/4)), n
		}
	}
	return 0, n
}

// Snapshot is the state of one process's devices (or the sum over the
// processes). Counters are cumulative. Children send it to the parent
// as one JSON line per second.
type Snapshot struct {
	Elapsed      time.Duration     `json:"elapsed"`
	Procs        int               `json:"procs"`
	Devices      int               `json:"devices"`
	Started      int               `json:"started"`   // links running (ramp)
	Connected    int               `json:"connected"` // links with a session now
	EverUp       int               `json:"ever_up"`   // devices that had a session
	AllConnected time.Duration     `json:"all_connected,omitempty"`
	Sessions     uint64            `json:"sessions"`
	Reconnects   uint64            `json:"reconnects"`
	Spooled      uint64            `json:"spooled"` // batches appended to spools
	Acked        uint64            `json:"acked"`   // batches acked by the hub
	Points       uint64            `json:"points"`  // points in acked batches
	Commands     map[string]uint64 `json:"commands,omitempty"`
	Errors       map[string]uint64 `json:"errors,omitempty"`
	Examples     map[string]string `json:"examples,omitempty"` // one message per error kind
	Latency      []uint64          `json:"latency,omitempty"`
	RSS          int64             `json:"rss"` // bytes
	Final        bool              `json:"final,omitempty"`
}

// merge adds o into s. AllConnected is the slowest process's, and only
// once every process has all its devices up.
func (s *Snapshot) merge(o *Snapshot) {
	s.Elapsed = max(s.Elapsed, o.Elapsed)
	s.Procs += max(o.Procs, 1)
	s.Devices += o.Devices
	s.Started += o.Started
	s.Connected += o.Connected
	s.EverUp += o.EverUp
	s.AllConnected = max(s.AllConnected, o.AllConnected)
	s.Sessions += o.Sessions
	s.Reconnects += o.Reconnects
	s.Spooled += o.Spooled
	s.Acked += o.Acked
	s.Points += o.Points
	s.Commands = addCounts(s.Commands, o.Commands)
	s.Errors = addCounts(s.Errors, o.Errors)
	for k, v := range o.Examples {
		if s.Examples == nil {
			s.Examples = map[string]string{}
		}
		if _, ok := s.Examples[k]; !ok {
			s.Examples[k] = v
		}
	}
	if len(s.Latency) < len(o.Latency) {
		s.Latency = append(s.Latency, make([]uint64, len(o.Latency)-len(s.Latency))...)
	}
	for i, c := range o.Latency {
		s.Latency[i] += c
	}
	s.RSS += o.RSS
}

// mergeAll sums snapshots; AllConnected is kept only if every part has it.
func mergeAll(parts []*Snapshot) *Snapshot {
	sum := &Snapshot{}
	all := len(parts) > 0
	for _, p := range parts {
		if p == nil {
			all = false
			continue
		}
		sum.merge(p)
		all = all && p.AllConnected > 0
	}
	if !all {
		sum.AllConnected = 0
	}
	return sum
}

func addCounts(dst, src map[string]uint64) map[string]uint64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]uint64{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}

func sumCounts(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// counts is a concurrent map of counters by kind, with the first
// message seen of each kind.
type counts struct {
	mu       sync.Mutex
	m        map[string]uint64
	examples map[string]string
}

func (c *counts) add(kind string) { c.addExample(kind, "") }

func (c *counts) addExample(kind, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m, c.examples = map[string]uint64{}, map[string]string{}
	}
	c.m[kind]++
	if _, ok := c.examples[kind]; !ok && msg != "" {
		c.examples[kind] = msg
	}
}

func (c *counts) snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}

func (c *counts) snapshotExamples() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.examples)
}

// progressLine is the once-a-second status; prev (may be nil) gives rates.
func progressLine(s, prev *Snapshot) string {
	var rate = func(cur, old uint64) float64 { return 0 }
	if prev != nil && s.Elapsed > prev.Elapsed {
		secs := (s.Elapsed - prev.Elapsed).Seconds()
		rate = func(cur, old uint64) float64 { return float64(cur-old) / secs }
	}
	var pa, pp uint64
	if prev != nil {
		pa, pp = prev.Acked, prev.Points
	}
	line := fmt.Sprintf("%5.0fs  connected %d/%d  acked %.1f batches/s  %.0f points/s  reconnects %d  errors %d  commands %d",
		s.Elapsed.Seconds(), s.Connected, s.Devices, rate(s.Acked, pa), rate(s.Points, pp),
		s.Reconnects, sumCounts(s.Errors), sumCounts(s.Commands))
	if s.Started < s.Devices {
		line += fmt.Sprintf("  (starting %d/%d)", s.Started, s.Devices)
	}
	if s.RSS > 0 {
		line += fmt.Sprintf("  rss %s", mib(s.RSS))
	}
	return line
}

func mib(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

// writeSummary prints the final report.
func writeSummary(w io.Writer, s *Snapshot) {
	fmt.Fprintf(w, "fleetsim summary: %d devices in %d process(es), ran %s\n", s.Devices, max(s.Procs, 1), s.Elapsed.Round(time.Millisecond))
	if s.AllConnected > 0 {
		fmt.Fprintf(w, "  all connected after   %s\n", s.AllConnected.Round(time.Millisecond))
	} else {
		fmt.Fprintf(w, "  connected at least once: %d of %d (not all)\n", s.EverUp, s.Devices)
	}
	secs := max(s.Elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "  batches               spooled %d, acked %d (%.1f/s), points acked %d (%.0f/s)\n",
		s.Spooled, s.Acked, float64(s.Acked)/secs, s.Points, float64(s.Points)/secs)
	if p50, n := quantile(s.Latency, 0.50); n > 0 {
		p99, _ := quantile(s.Latency, 0.99)
		fmt.Fprintf(w, "  ack latency           p50 <= %s, p99 <= %s (%d batches, spool append to ack)\n", roundDur(p50), roundDur(p99), n)
	}
	fmt.Fprintf(w, "  sessions              %d (reconnects %d)\n", s.Sessions, s.Reconnects)
	fmt.Fprintf(w, "  commands answered     %d%s\n", sumCounts(s.Commands), byKind(s.Commands))
	fmt.Fprintf(w, "  errors                %d%s\n", sumCounts(s.Errors), byKind(s.Errors))
	for _, k := range slices.Sorted(maps.Keys(s.Examples)) {
		fmt.Fprintf(w, "    e.g. %s: %s\n", k, s.Examples[k])
	}
	if s.RSS > 0 && s.Devices > 0 {
		fmt.Fprintf(w, "  memory (VmRSS)        %s, %.1f KiB per device\n", mib(s.RSS), float64(s.RSS)/1024/float64(s.Devices))
	}
}

func roundDur(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

func byKind(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" (")
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", k, m[k])
	}
	b.WriteString(")")
	return b.String()
}

// classify names the kind of a link error for the summary.
func classify(msg string) string {
	switch {
	case strings.Contains(msg, "refused the device token"):
		return "unauthorized (401)"
	case strings.HasPrefix(msg, "hub closed session: "):
		f := strings.Fields(strings.TrimPrefix(msg, "hub closed session: "))
		if len(f) >= 2 {
			return "hub closed: " + strings.Trim(f[0]+" "+f[1], ":")
		}
		return "hub closed"
	case strings.Contains(msg, "too many open files"):
		return "too many open files"
	case strings.Contains(msg, "cannot assign requested address"), strings.Contains(msg, "address already in use"):
		return "no free source port"
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case strings.Contains(msg, "connection reset"):
		return "connection reset"
	case strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline exceeded"):
		return "timeout"
	case strings.Contains(msg, "x509"), strings.Contains(msg, "tls:"), strings.Contains(msg, "certificate"):
		return "TLS"
	case strings.Contains(msg, "(HTTP "):
		rest := msg[strings.Index(msg, "(HTTP ")+1:]
		code, _, _ := strings.Cut(rest, ")")
		return code
	case strings.Contains(msg, "EOF"), strings.Contains(msg, "close 1006"):
		return "connection lost"
	}
	return "other"
}

// vmRSS reads this process's resident set size from /proc/self/status
// (0 where there is none).
func vmRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(data) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(v))
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
