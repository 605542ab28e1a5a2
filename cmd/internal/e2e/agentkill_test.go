package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/agent/collect"
	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
	"github.com/fleetwire/fleetwire/protocol"
)

// envDeviceProc makes the test binary run as a device process (the agent
// code with a deterministic collector), so a test can SIGKILL an agent.
const envDeviceProc = "FLEETWIRE_E2E_DEVICE"

// deviceProcMain runs the agent packages until SIGTERM/SIGKILL. Each batch
// is recorded (fsynced) to E2E_RECORD after it is durably spooled; a batch
// spooled just before a kill may be unrecorded.
func deviceProcMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	rec, err := os.OpenFile(os.Getenv("E2E_RECORD"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	start, _ := strconv.ParseInt(os.Getenv("E2E_COUNTER_START"), 10, 64)
	parts, err := buildAgent(agentSetup{
		spoolDir: os.Getenv("E2E_SPOOL"), url: os.Getenv("E2E_URL"), caFile: os.Getenv("E2E_CA"),
		token: os.Getenv("E2E_TOKEN"), version: "e2e-proc", interval: 20 * time.Millisecond,
		collectors: []collect.Collector{&counter{n: start}},
		onSpooled: func(b *protocol.Batch) {
			line, _ := json.Marshal(b)
			rec.Write(append(line, '\n'))
			rec.Sync()
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer parts.close()
	go parts.link.Run(ctx)
	parts.batcher.Run(ctx)
	return 0
}

type deviceProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startDeviceProc(t *testing.T, h *hubProc, token, dir string, counterStart int) *deviceProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envDeviceProc+"=1",
		"E2E_SPOOL="+filepath.Join(dir, "spool"), "E2E_RECORD="+filepath.Join(dir, "record.jsonl"),
		"E2E_CA="+h.caFile(), "E2E_URL="+h.deviceURL(), "E2E_TOKEN="+token,
		"E2E_COUNTER_START="+strconv.Itoa(counterStart))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &deviceProc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { d.cmd.Process.Kill(); <-d.done })
	return d
}

func (d *deviceProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatal("device process did not exit")
	}
}

// recorded reads the batches the device process recorded.
func recorded(t *testing.T, dir string) []protocol.Batch {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "record.jsonl"))
	if os.IsNotExist(err) {
		return nil // nothing spooled yet
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []protocol.Batch
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var b protocol.Batch
		if err := json.Unmarshal(sc.Bytes(), &b); err != nil {
			continue // a line torn by SIGKILL
		}
		for i := range b.Points { // JSON numbers come back as float64
			if b.Points[i].Name == "e2e.n" {
				b.Points[i].Value = int64(b.Points[i].Value.(float64))
			}
		}
		out = append(out, b)
	}
	return out
}

// TestAgentKilledWithUnackedBatches: the agent is SIGKILLed while the hub
// cannot store (InfluxDB stopped), so its spool holds unacked batches; after
// the agent restarts they arrive. Nothing recorded is lost, nothing doubled.
func TestAgentKilledWithUnackedBatches(t *testing.T) {
	ix := influxtest.Start(t)
	h := startHub(t, ix)
	tok := h.addDevice("pi-agentkill", labels)
	dir := t.TempDir()
	d := startDeviceProc(t, h, tok, dir, 0)
	eventually(t, 20*time.Second, "first batches recorded", func() bool { return len(recorded(t, dir)) >= 5 })
	ix.Stop(t)
	before := len(recorded(t, dir))
	eventually(t, 20*time.Second, "batches spooled during the outage", func() bool { return len(recorded(t, dir)) >= before+20 })
	d.signal(t, syscall.SIGKILL)
	ix.Restart(t)
	// The restarted agent continues the counter far away so its points are
	// distinguishable; it must deliver the killed run's spool too.
	d = startDeviceProc(t, h, tok, dir, 1_000_000)
	want := recorded(t, dir)
	eventually(t, 60*time.Second, "spooled batches delivered", func() bool {
		return len(stored(t, ix, "pi-agentkill")) >= 2*countPoints(want)
	})
	d.signal(t, syscall.SIGTERM)
	// Everything recorded must be stored exactly once. A batch spooled in the
	// instant before SIGKILL may be stored without a record line: allow
	// that single extra batch, but check it is well-formed.
	all := recorded(t, dir)
	wantMap := expected("pi-agentkill", labels, all)
	got := stored(t, ix, "pi-agentkill")
	seen := map[string]bool{}
	extra := 0
	for _, p := range got {
		if seen[p.key] {
			t.Errorf("duplicate %s", p.key)
		}
		seen[p.key] = true
		if w, ok := wantMap[p.key]; !ok {
			extra++
		} else if w != p.value {
			t.Errorf("%s = %v, want %v", p.key, p.value, w)
		}
	}
	// Points of the second run spooled after its last ack may not be
	// stored yet; only the killed run's records must all be there.
	for _, b := range want {
		for k := range expected("pi-agentkill", labels, []protocol.Batch{b}) {
			if !seen[k] {
				t.Errorf("killed run's point %s lost", k)
			}
		}
	}
	if extra > 2 {
		t.Errorf("%d stored points were never recorded (want at most one batch = 2 points)", extra)
	}
}

func countPoints(bs []protocol.Batch) int {
	n := 0
	for _, b := range bs {
		n += len(b.Points)
	}
	return n
}
