package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetwire/fleetwire/agent/link"
	"github.com/fleetwire/fleetwire/agent/spool"
	"github.com/fleetwire/fleetwire/agent/trust"
	"github.com/fleetwire/fleetwire/protocol"
)

// ringSize is how many spooled-but-unacked batches per device keep their
// append time for the latency histogram; older ones are not measured (a
// device that far behind is reported by the ack rate anyway).
const ringSize = 8

type stamp struct {
	seq uint64
	at  int64 // UnixNano
}

// device is one simulated device: a real spool and a real link. Its only
// goroutines are the link's own.
type device struct {
	f      *fleet
	id     string
	seed   uint64
	offset time.Duration // collection time within the interval
	sp     *spool.Spool
	lk     *link.Link

	started atomic.Bool
	everUp  atomic.Bool

	mu     sync.Mutex // guards ring, ackSeq and recent (collector vs link goroutine vs timers)
	ring   [ringSize]stamp
	next   int
	ackSeq uint64
	recent []recentCommand // allocated on the first command

	// Owned by the reporter goroutine.
	seenErr   string
	seenRetry time.Duration
}

// devSpool is the spool as the link sees it: acks and the first read of a
// session are counted on the way through.
type devSpool struct{ d *device }

func (s devSpool) Pending(after uint64, max int) ([]spool.Entry, error) {
	if !s.d.everUp.Load() && s.d.everUp.CompareAndSwap(false, true) {
		s.d.f.deviceUp()
	}
	return s.d.sp.Pending(after, max)
}

func (s devSpool) Notify() <-chan struct{} { return s.d.sp.Notify() }

func (s devSpool) Ack(seq uint64) error {
	s.d.acked(seq)
	return s.d.sp.Ack(seq)
}

func (d *device) acked(seq uint64) {
	now := time.Now().UnixNano()
	d.mu.Lock()
	if seq <= d.ackSeq {
		d.mu.Unlock()
		return
	}
	n := seq - d.ackSeq
	d.ackSeq = seq
	var lat [ringSize]time.Duration
	k := 0
	for i := range d.ring {
		if s := &d.ring[i]; s.seq != 0 && s.seq <= seq {
			lat[k] = time.Duration(now - s.at)
			k++
			s.seq = 0
		}
	}
	d.mu.Unlock()
	f := d.f
	f.batchesAcked.Add(n)
	f.pointsAcked.Add(n * uint64(f.cfg.Metrics))
	for _, l := range lat[:k] {
		f.latency.observe(l)
	}
}

// collect appends one batch to the device's spool.
func (d *device) collect(buf []protocol.Point) []protocol.Point {
	f := d.f
	now := time.Now()
	buf = points(f.defs, d.seed, now, f.start, buf[:0])
	seq, err := d.sp.Append(&protocol.Batch{BaseTime: now.UnixMilli(), Points: buf})
	if err != nil {
		f.errors.addExample("spool", err.Error())
		return buf
	}
	f.spooled.Add(1)
	d.mu.Lock()
	d.ring[d.next] = stamp{seq: seq, at: now.UnixNano()}
	d.next = (d.next + 1) % ringSize
	d.mu.Unlock()
	return buf
}

// fleet runs a slice of the simulated devices in this process.
type fleet struct {
	cfg   *Config
	defs  []metricDef
	devs  []*device
	start time.Time
	logf  func(string, ...any)

	started      atomic.Int64
	everUp       atomic.Int64
	allConnected atomic.Int64 // ns after start; 0 = not yet
	spooled      atomic.Uint64
	batchesAcked atomic.Uint64
	pointsAcked  atomic.Uint64
	latency      histogram
	errors       counts // errors by kind
	commands     counts // answered commands by final state
}

func (f *fleet) deviceUp() {
	if f.everUp.Add(1) == int64(len(f.devs)) {
		f.allConnected.Store(int64(max(time.Since(f.start), 1)))
	}
}

// newFleet opens a spool and builds a link for each token; tokens[i] is
// the token of device cfg.First+i.
func newFleet(cfg *Config, tokens []string, logf func(string, ...any)) (*fleet, error) {
	f := &fleet{cfg: cfg, defs: metricDefs(cfg.Metrics), logf: logf}
	tlsCfg, err := hubTLS(cfg)
	if err != nil {
		return nil, err
	}
	dials := sourceDialers(cfg.Sources)
	boot := make([]byte, 8)
	_, _ = rand.Read(boot)
	bootPrefix := hex.EncodeToString(boot)
	for i, tok := range tokens {
		g := cfg.First + i
		d := &device{f: f, id: cfg.deviceID(g), seed: mix(uint64(g) ^ 0x5f1ee7)}
		if cfg.Jitter > 0 {
			d.offset = time.Duration(unit(mix(d.seed)) * float64(cfg.Jitter))
		}
		f.devs = append(f.devs, d)
		if d.lk, err = newLink(cfg, d, tok, tlsCfg, dials, bootPrefix, g); err != nil {
			return nil, fmt.Errorf("device %s: %w", d.id, err)
		}
	}
	if err := f.openSpools(); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// newLink builds device d's link (global index g).
func newLink(cfg *Config, d *device, tok string, tlsCfg *tls.Config, dials []dialFunc, bootPrefix string, g int) (*link.Link, error) {
	var dial dialFunc
	if len(dials) > 0 {
		dial = dials[g%len(dials)]
	}
	return link.New(link.Config{
		URL: cfg.Hub, Token: tok, TLS: tlsCfg, AllowInsecure: cfg.AllowInsecure, Compress: cfg.Compress,
		NetDialContext: dial, Spool: devSpool{d}, OnCommand: d.onCommand,
		Hello: protocol.Hello{
			AgentVersion: "fleetsim-" + version, BootID: fmt.Sprintf("%s-%d", bootPrefix, g),
			Hostname: d.id, Arch: "linux/sim", Capabilities: []string{"telemetry"},
		},
	})
}

// openSpools opens every device's spool, a few at a time: each open is
// several file system calls, which add up for a large fleet.
func (f *fleet) openSpools() error {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		mu    sync.Mutex
		first error
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(f.devs); i = int(next.Add(1) - 1) {
				if err := f.devs[i].openSpool(); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func (d *device) openSpool() error {
	sp, err := spool.Open(filepath.Join(d.f.cfg.WorkDir, d.id), spool.Options{NoSync: true, MaxBytes: d.f.cfg.SpoolBytes})
	if err != nil {
		return fmt.Errorf("device %s: %w", d.id, err)
	}
	// A kept --work-dir continues the seqs of an earlier run: count only
	// acks past what that run left.
	if st := sp.Stats(); st.Batches > 0 {
		d.ackSeq = st.FirstSeq - 1
	} else {
		d.ackSeq = st.NextSeq - 1
	}
	d.sp = sp
	return nil
}

// hubTLS is one TLS config shared by every device (verification as in the
// real agent, plus a shared session cache so reconnects resume).
func hubTLS(cfg *Config) (*tls.Config, error) {
	u, err := url.Parse(cfg.Hub)
	if err != nil {
		return nil, fmt.Errorf("--hub: %w", err)
	}
	if u.Scheme == "ws" {
		return nil, nil
	}
	t, err := trust.ClientConfig(u.Hostname(), cfg.CAFile, cfg.CAFingerprint)
	if err != nil {
		return nil, fmt.Errorf("hub TLS: %w", err)
	}
	t.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	return t, nil
}

type dialFunc = func(context.Context, string, string) (net.Conn, error)

// sourceDialers returns one dial function per source address.
func sourceDialers(srcs []netip.Addr) []dialFunc {
	var out []dialFunc
	for _, a := range srcs {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: a.AsSlice()}, Timeout: 20 * time.Second, KeepAlive: -1}
		out = append(out, d.DialContext)
	}
	return out
}

func (f *fleet) close() {
	for _, d := range f.devs {
		if d.sp != nil {
			d.sp.Close()
		}
	}
}

// run starts the links at the ramp rate and collects until ctx ends, then
// waits for every link to stop. report is called once a second and at the
// end (final) with this process's snapshot.
func (f *fleet) run(ctx context.Context, report func(s *Snapshot, final bool)) {
	f.start = time.Now()
	var links, workers sync.WaitGroup
	collect := make(chan *device, 256)
	for range 4 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			var buf []protocol.Point
			for d := range collect {
				buf = d.collect(buf)
			}
		}()
	}
	done := make(chan struct{})
	go func() { defer close(done); f.schedule(ctx, collect) }()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				report(f.snapshot(), false)
			}
		}
	}()
	f.startLinks(ctx, &links)
	<-ctx.Done()
	<-done
	close(collect)
	workers.Wait()
	links.Wait()
	report(f.snapshot(), true)
}

// startLinks starts one link every 1/ramp seconds.
func (f *fleet) startLinks(ctx context.Context, wg *sync.WaitGroup) {
	gap := time.Duration(float64(time.Second) / f.cfg.Ramp)
	t := time.NewTimer(0)
	defer t.Stop()
	for i, d := range f.devs {
		if wait := time.Until(f.start.Add(time.Duration(i) * gap)); wait > 0 {
			t.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		d.started.Store(true)
		f.started.Add(1)
		wg.Add(1)
		go func() { defer wg.Done(); _ = d.lk.Run(ctx) }()
	}
}

// schedule is the fleet's one collection clock: devices sorted by their
// offset within the interval, one timer, started devices handed to the
// collect workers when due.
func (f *fleet) schedule(ctx context.Context, collect chan<- *device) {
	order := slices.Clone(f.devs)
	sort.SliceStable(order, func(i, j int) bool { return order[i].offset < order[j].offset })
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for cycle := f.start; ; cycle = cycle.Add(f.cfg.Interval) {
		for _, d := range order {
			if wait := time.Until(cycle.Add(d.offset)); wait > time.Millisecond {
				t.Reset(wait)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
			if !d.started.Load() {
				continue
			}
			select {
			case collect <- d:
			case <-ctx.Done():
				return
			}
		}
	}
}

// snapshot reads every link's stats; call it from one goroutine only.
func (f *fleet) snapshot() *Snapshot {
	s := &Snapshot{
		Elapsed: time.Since(f.start), Procs: 1, Devices: len(f.devs), Started: int(f.started.Load()),
		EverUp: int(f.everUp.Load()), AllConnected: time.Duration(f.allConnected.Load()),
		Spooled: f.spooled.Load(), Acked: f.batchesAcked.Load(), Points: f.pointsAcked.Load(),
		Latency: f.latency.snapshot(), RSS: vmRSS(),
	}
	var sessions, reconnects uint64
	for _, d := range f.devs {
		st := d.lk.Stats()
		if st.Connected {
			s.Connected++
		}
		sessions += st.Sessions
		if st.Sessions > 1 {
			reconnects += st.Sessions - 1
		}
		// Each failure sets a new jittered RetryIn with its error, so the
		// pair changes once per failure.
		if st.LastError != "" && (st.LastError != d.seenErr || st.RetryIn != d.seenRetry) {
			d.seenErr, d.seenRetry = st.LastError, st.RetryIn
			f.errors.addExample(classify(st.LastError), st.LastError)
		}
	}
	s.Sessions, s.Reconnects = sessions, reconnects
	s.Errors = f.errors.snapshot()
	s.Examples = f.errors.snapshotExamples()
	s.Commands = f.commands.snapshot()
	return s
}

// onCommand answers a command per --commands. It runs on the link's reader
// goroutine, so nothing here blocks: sleep uses a timer.
func (d *device) onCommand(c protocol.Command) {
	send := d.lk.SendResult
	if !d.firstDelivery(c.ID, send) {
		return
	}
	send(protocol.CommandResult{ID: c.ID, State: "received"})
	start := time.Now()
	finish := func(r protocol.CommandResult) {
		r.ID, r.DurationMs = c.ID, uint64(time.Since(start).Milliseconds())
		d.remember(c.ID, &r)
		send(r)
		d.f.commands.add(r.State)
	}
	switch d.f.cfg.Commands {
	case ModeEcho:
		finish(protocol.CommandResult{State: "succeeded", Stdout: []byte(formatArgs(c.Args))})
	case ModeFail:
		finish(protocol.CommandResult{State: "failed", ExitCode: 1, Stderr: []byte("fleetsim: simulated failure\n")})
	case ModeSleep:
		dur, err := sleepArg(c.Args)
		if err != nil {
			finish(protocol.CommandResult{State: "rejected", Error: err.Error()})
			return
		}
		limit := time.Duration(c.TimeoutMs) * time.Millisecond
		if limit > 0 && dur > limit {
			time.AfterFunc(limit, func() { finish(protocol.CommandResult{State: "timed_out", ExitCode: -1}) })
			return
		}
		time.AfterFunc(dur, func() { finish(protocol.CommandResult{State: "succeeded"}) })
	}
}

// recentCommands is how many command ids a device remembers: the hub may
// deliver a command again (on reconnect, or when a push races the
// delivery on connect) and, like the real agent, a device runs it once.
const recentCommands = 8

type recentCommand struct {
	id     string
	result *protocol.CommandResult // nil while running
}

// firstDelivery records id and reports whether it is new; for a known id
// it re-sends the stored result, if there is one yet.
func (d *device) firstDelivery(id string, send func(protocol.CommandResult)) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, rc := range d.recent {
		if rc.id == id {
			if rc.result != nil {
				send(*rc.result)
			}
			return false
		}
	}
	if len(d.recent) == recentCommands {
		d.recent = d.recent[1:]
	}
	d.recent = append(d.recent, recentCommand{id: id})
	return true
}

func (d *device) remember(id string, r *protocol.CommandResult) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.recent {
		if d.recent[i].id == id {
			d.recent[i].result = r
		}
	}
}

// formatArgs renders args as "key=value" lines in key order.
func formatArgs(args map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(args)) {
		fmt.Fprintf(&b, "%s=%s\n", k, args[k])
	}
	return b.String()
}

// sleepArg reads the sleep duration: args "duration" ("1.5s") or
// "seconds" ("2"); default 1s.
func sleepArg(args map[string]string) (time.Duration, error) {
	if s, ok := args["duration"]; ok {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("duration %q: want e.g. 1.5s", s)
		}
		return d, nil
	}
	if s, ok := args["seconds"]; ok {
		d, err := time.ParseDuration(s + "s")
		if err != nil || d < 0 {
			return 0, fmt.Errorf("seconds %q: want a number", s)
		}
		return d, nil
	}
	return time.Second, nil
}
