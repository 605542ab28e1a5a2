package e2e

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/agent/collect"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/protocol"
)

// faultDevice is one simulated device of the fault suite: its agents (a
// killed one is replaced by a new one on the same spool) and everything
// they produced.
type faultDevice struct {
	id, token, spool string
	agent            *testAgent
	mu               sync.Mutex
	earlier          []protocol.Batch // produced by agents killed before
}

func (d *faultDevice) produced() []protocol.Batch {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append(append([]protocol.Batch(nil), d.earlier...), d.agent.batches()...)
}

// TestFaultInjection streams from several devices through a fault proxy
// while the network, InfluxDB, the hub and the agents fail in turn, then
// checks that the points stored are exactly the points produced (nothing
// lost, nothing duplicated) and that the hub's goroutines are back to
// their idle count. `make test` runs one round of each fault (about a
// minute); `make soak` sets FLEETWIRE_SOAK_ROUNDS for more, with longer
// faults.
func TestFaultInjection(t *testing.T) {
	// spell: batches each device produces while a fault is on (50 ms each:
	// at least 1 s in make test, 10 s in make soak).
	rounds, spell := 1, 20
	if n, err := strconv.Atoi(os.Getenv("FLEETWIRE_SOAK_ROUNDS")); err == nil && n > 0 {
		rounds, spell = n, 200
	}
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	mc := &metricsClient{h: h, c: h.client()}
	idle := mc.metric("go_goroutines")
	proxy := newFaultProxy(t, h.addr)
	url := "wss://" + proxy.addr() + "/v1/device"
	devices := make([]*faultDevice, 4)
	for i := range devices {
		d := &faultDevice{id: fmt.Sprintf("pi-fault-%d", i), spool: t.TempDir()}
		d.token = h.addDevice(d.id, labels)
		d.agent = startAgent(t, h, d.token, agentOpts{url: url, spoolDir: d.spool, interval: 50 * time.Millisecond, collectors: []collect.Collector{&counter{}}})
		devices[i] = d
	}
	// Sample the hub's memory and goroutines through the run (peaks for
	// RELIABILITY.md); a scrape of a hub being killed just fails.
	var peakRSS, peakGoroutines float64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				peakRSS = max(peakRSS, mc.metric("process_resident_memory_bytes"))
				peakGoroutines = max(peakGoroutines, mc.metric("go_goroutines"))
			}
		}
	}()
	progress := func(what string) {
		t.Helper()
		// Every device stores more after the fault: the system recovered.
		before := make([]int, len(devices))
		for i, d := range devices {
			before[i] = len(d.produced())
		}
		eventually(t, 90*time.Second, "every device acked again after "+what, func() bool {
			for i, d := range devices {
				if len(d.produced()) < before[i]+5 || !d.agent.drained() {
					return false
				}
			}
			return true
		})
		t.Logf("recovered after %s", what)
	}
	// holdWhile keeps a fault on until every device has produced spell
	// more batches under it (spooled: production does not need the
	// network) and cond holds for every device.
	holdWhile := func(what string, cond func(*faultDevice) bool) {
		t.Helper()
		before := make([]int, len(devices))
		for i, d := range devices {
			before[i] = len(d.produced())
		}
		eventually(t, 120*time.Second, what+" held", func() bool {
			for i, d := range devices {
				if len(d.produced()) < before[i]+spell || (cond != nil && !cond(d)) {
					return false
				}
			}
			return true
		})
	}
	disconnected := func(d *faultDevice) bool { return !d.agent.link.Stats().Connected }
	progress("start")
	for round := range rounds {
		t.Logf("round %d/%d", round+1, rounds)
		proxy.setLatency(200 * time.Millisecond)
		holdWhile("200 ms latency", nil)
		proxy.setLatency(0)
		progress("200 ms latency")

		proxy.setBandwidth(8 << 10)
		holdWhile("8 KiB/s bandwidth", nil)
		proxy.setBandwidth(0)
		progress("8 KiB/s bandwidth")

		for range 4 {
			sessions := make([]uint64, len(devices))
			for i, d := range devices {
				sessions[i] = d.agent.link.Stats().Sessions
			}
			proxy.resetAll()
			eventually(t, 60*time.Second, "every agent reconnected after a reset", func() bool {
				for i, d := range devices {
					if d.agent.link.Stats().Sessions <= sessions[i] {
						return false
					}
				}
				return true
			})
		}
		progress("connection resets")

		proxy.setBlackhole(true)
		holdWhile("blackhole (until every agent's ping timed out)", disconnected)
		proxy.setBlackhole(false)
		progress("blackhole")

		ix.Pause(t)
		holdWhile("InfluxDB paused", nil)
		ix.Resume(t)
		progress("InfluxDB paused (SIGSTOP)")

		ix.Kill(t)
		holdWhile("InfluxDB down", nil)
		ix.Restart(t)
		progress("InfluxDB killed")

		for _, d := range devices[:2] { // kill half the agents mid-stream
			d.mu.Lock()
			d.agent.stop()
			d.earlier = append(d.earlier, d.agent.batches()...)
			// A real agent's restart takes far longer than a millisecond;
			// this one could start within the one its predecessor last
			// collected in, and give a series two values at one time.
			if n := len(d.earlier); n > 0 {
				last := d.earlier[n-1].BaseTime
				eventually(t, time.Second, "the clock past the last agent's last millisecond", func() bool { return time.Now().UnixMilli() > last })
			}
			d.agent = startAgent(t, h, d.token, agentOpts{url: url, spoolDir: d.spool, interval: 50 * time.Millisecond, collectors: []collect.Collector{&counter{}}})
			d.mu.Unlock()
		}
		progress("agents killed and restarted")

		h.kill()
		holdWhile("hub down (until every agent noticed)", disconnected)
		h.start()
		progress("hub killed and restarted")
	}
	for _, d := range devices {
		d.agent.finish(t)
	}
	close(stopSampling)
	<-sampled
	produced := 0
	for _, d := range devices {
		checkExactlyOnce(t, ix, d.id, labels, d.produced())
		for _, b := range d.produced() {
			produced += len(b.Points)
		}
	}
	t.Logf("fault suite: %d rounds, faults held for %d batches per device; %d devices produced %d points, all stored once; hub peak RSS %.1f MiB, peak goroutines %.0f (idle %.0f)",
		rounds, spell, len(devices), produced, peakRSS/(1<<20), peakGoroutines, idle)
	// The hub holds nothing for the gone devices: its goroutines settle
	// back to an idle hub's count.
	eventually(t, 30*time.Second, fmt.Sprintf("hub goroutines back to the idle %v", idle), func() bool {
		g := mc.metric("go_goroutines")
		return g > 0 && g <= idle+5
	})
	t.Logf("resets injected: %d; hub RSS %.1f MiB, heap in use %.1f MiB", proxy.resets,
		mc.metric("process_resident_memory_bytes")/(1<<20), mc.metric("go_memstats_heap_inuse_bytes")/(1<<20))
}
