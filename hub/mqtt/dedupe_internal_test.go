package mqtt

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// fakeMsg is a paho.Message that counts its acks.
type fakeMsg struct {
	topic   string
	payload []byte
	dup     bool
	id      uint16
	acks    atomic.Int32
}

var _ paho.Message = (*fakeMsg)(nil)

func (m *fakeMsg) Duplicate() bool   { return m.dup }
func (m *fakeMsg) Qos() byte         { return 1 }
func (m *fakeMsg) Retained() bool    { return false }
func (m *fakeMsg) Topic() string     { return m.topic }
func (m *fakeMsg) MessageID() uint16 { return m.id }
func (m *fakeMsg) Payload() []byte   { return m.payload }
func (m *fakeMsg) Ack()              { m.acks.Add(1) }

func newMsg(topic, payload string, dup bool) *fakeMsg {
	return &fakeMsg{topic: topic, payload: []byte(payload), dup: dup}
}

func (m *fakeMsg) key() [16]byte { return messageKey(m.topic, m.payload) }

func TestDedupeFresh(t *testing.T) {
	d := newDedupe(8)
	m := newMsg("fleetwire/a/telemetry", "x=1", false)
	e, st := d.begin(m.key(), m)
	if st != fresh || e == nil {
		t.Fatalf("begin = %v, %d; want fresh", e, st)
	}
	ws := d.finish(m.key(), e, true)
	if len(ws) != 1 || ws[0] != m {
		t.Fatalf("finish returned %v, want the message", ws)
	}
	// A DUP flag on a message never seen is fresh too.
	m2 := newMsg("fleetwire/a/telemetry", "x=2", true)
	if _, st := d.begin(m2.key(), m2); st != fresh {
		t.Errorf("unseen DUP: state %d, want fresh", st)
	}
	if m.acks.Load() != 0 {
		t.Errorf("dedupe acked the message itself")
	}
}

func TestDedupeDupOfStored(t *testing.T) {
	d := newDedupe(8)
	m := newMsg("t/a", "p", false)
	e, _ := d.begin(m.key(), m)
	d.finish(m.key(), e, true)
	dup := newMsg("t/a", "p", true)
	if got, st := d.begin(dup.key(), dup); st != alreadyStored || got != e {
		t.Fatalf("DUP of stored: state %d (entry %p, want %p), want alreadyStored", st, got, e)
	}
	// Same bytes on another topic are another message.
	other := newMsg("t/b", "p", true)
	if _, st := d.begin(other.key(), other); st != fresh {
		t.Errorf("DUP on another topic: state %d, want fresh", st)
	}
}

func TestDedupeDupJoinsInProgress(t *testing.T) {
	d := newDedupe(8)
	m := newMsg("t/a", "p", false)
	e, _ := d.begin(m.key(), m)
	dup1 := newMsg("t/a", "p", true)
	dup2 := newMsg("t/a", "p", true)
	for _, x := range []*fakeMsg{dup1, dup2} {
		if got, st := d.begin(x.key(), x); st != joined || got != e {
			t.Fatalf("DUP of in-progress: state %d, want joined with the original entry", st)
		}
	}
	ws := d.finish(m.key(), e, true)
	if len(ws) != 3 || ws[0] != m || ws[1] != dup1 || ws[2] != dup2 {
		t.Fatalf("finish returned %v, want the original and both DUPs", ws)
	}
	// Settled waiters are not returned twice.
	if ws := d.finish(m.key(), e, true); len(ws) != 0 {
		t.Errorf("second finish returned %v", ws)
	}
	if _, st := d.begin(m.key(), newMsg("t/a", "p", true)); st != alreadyStored {
		t.Errorf("DUP after joined finish: state %d, want alreadyStored", st)
	}
}

func TestDedupeFailedFinishForgets(t *testing.T) {
	d := newDedupe(8)
	m := newMsg("t/a", "p", false)
	e, _ := d.begin(m.key(), m)
	dup := newMsg("t/a", "p", true)
	d.begin(dup.key(), dup)
	ws := d.finish(m.key(), e, false)
	if len(ws) != 2 {
		t.Fatalf("failed finish returned %d messages, want 2 (original and joined DUP)", len(ws))
	}
	again := newMsg("t/a", "p", true)
	e2, st := d.begin(again.key(), again)
	if st != fresh || e2 == e {
		t.Fatalf("DUP after failed finish: state %d, want fresh with a new entry", st)
	}
	d.finish(again.key(), e2, true)
	if _, st := d.begin(again.key(), newMsg("t/a", "p", true)); st != alreadyStored {
		t.Errorf("DUP after the retry was stored: state %d, want alreadyStored", st)
	}
}

func TestDedupeNonDupSameBytesIsFresh(t *testing.T) {
	d := newDedupe(8)
	m := newMsg("t/a", "p", false)
	e, _ := d.begin(m.key(), m)
	d.finish(m.key(), e, true)
	// A sensor without a clock repeating its value: not a redelivery.
	m2 := newMsg("t/a", "p", false)
	e2, st := d.begin(m2.key(), m2)
	if st != fresh || e2 == e {
		t.Fatalf("non-DUP with the same bytes: state %d, want fresh with a new entry", st)
	}
	// While m2 is in progress, its DUP joins m2, not the stored m.
	dup := newMsg("t/a", "p", true)
	if got, st := d.begin(dup.key(), dup); st != joined || got != e2 {
		t.Fatalf("DUP while the repeat is in progress: state %d, want joined with the repeat", st)
	}
	// A non-DUP repeat while the first copy is in progress is fresh too, and
	// finishing the older entry must not forget the newer one.
	m3 := newMsg("t/a", "p", false)
	e3, st := d.begin(m3.key(), m3)
	if st != fresh {
		t.Fatalf("second repeat in progress: state %d, want fresh", st)
	}
	if ws := d.finish(m2.key(), e2, false); len(ws) != 2 {
		t.Fatalf("finish of e2 returned %d messages, want 2", len(ws))
	}
	if got, st := d.begin(dup.key(), newMsg("t/a", "p", true)); st != joined || got != e3 {
		t.Errorf("failed finish of an older entry dropped the newer one: state %d", st)
	}
}

func TestDedupeRingEvictsOnlyStored(t *testing.T) {
	d := newDedupe(4)
	msgs := make([]*fakeMsg, 8)
	entries := make([]*dedupeEntry, 8)
	for i := range msgs {
		msgs[i] = newMsg("t/a", fmt.Sprint(i), false)
	}
	begin := func(i int) {
		t.Helper()
		e, st := d.begin(msgs[i].key(), msgs[i])
		if st != fresh {
			t.Fatalf("message %d: state %d, want fresh", i, st)
		}
		entries[i] = e
	}
	dupState := func(i int) dedupeState {
		_, st := d.begin(msgs[i].key(), &fakeMsg{topic: msgs[i].topic, payload: msgs[i].payload, dup: true})
		return st
	}
	// 0 stays in progress; 1..3 are stored.
	for i := range 4 {
		begin(i)
		if i > 0 {
			d.finish(msgs[i].key(), entries[i], true)
		}
	}
	for i := 1; i < 4; i++ {
		if st := dupState(i); st != alreadyStored {
			t.Fatalf("message %d at capacity: state %d, want alreadyStored", i, st)
		}
	}
	// 4 takes 0's slot: 0 is in progress and must survive.
	begin(4)
	d.finish(msgs[4].key(), entries[4], true)
	if st := dupState(0); st != joined {
		t.Errorf("in-progress entry evicted: DUP state %d, want joined", st)
	}
	// 5 takes 1's slot: 1 is stored and goes.
	begin(5)
	d.finish(msgs[5].key(), entries[5], true)
	for _, i := range []int{2, 3, 4, 5} {
		if st := dupState(i); st != alreadyStored {
			t.Errorf("message %d: DUP state %d, want alreadyStored", i, st)
		}
	}
	if st := dupState(1); st != fresh {
		t.Errorf("stored entry at a reused slot not evicted: DUP state %d, want fresh", st)
	}
	// That DUP of 1 was fresh and took the next slot, 2's.
	if st := dupState(2); st != fresh {
		t.Errorf("message 2 after its slot was reused: DUP state %d, want fresh", st)
	}
	// Remembered: 0 (in progress) and the ring's 4 slots.
	if len(d.m) > 5 {
		t.Errorf("%d entries remembered with a ring of 4", len(d.m))
	}
	// The in-progress entry still settles its original and the joined DUP.
	if ws := d.finish(msgs[0].key(), entries[0], true); len(ws) != 2 {
		t.Errorf("finish of the kept entry returned %d messages, want 2", len(ws))
	}
}

// TestDedupeConcurrent runs begin/finish from many goroutines (meant for
// -race): every message is returned by exactly one finish, or reported
// alreadyStored.
func TestDedupeConcurrent(t *testing.T) {
	d := newDedupe(64)
	const goroutines, perG = 8, 500
	var released, stored atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				// Few distinct keys so begin/finish of the same key race.
				m := newMsg("t/a", fmt.Sprint(i%16), (g+i)%2 == 0)
				e, st := d.begin(m.key(), m)
				switch st {
				case alreadyStored:
					stored.Add(1)
				case joined:
					// Settled by the owner's finish.
				case fresh:
					for _, w := range d.finish(m.key(), e, i%5 != 0) {
						w.Ack()
						released.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if got := released.Load() + stored.Load(); got != goroutines*perG {
		t.Errorf("released %d + alreadyStored %d = %d, want %d", released.Load(), stored.Load(), got, goroutines*perG)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, e := range d.m {
		if len(e.waiters) != 0 {
			t.Errorf("entry %x left with %d waiters", k, len(e.waiters))
		}
	}
}
