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

func newMsg(topic, payload string, id uint16, dup bool) *fakeMsg {
	return &fakeMsg{topic: topic, payload: []byte(payload), id: id, dup: dup}
}

func (m *fakeMsg) key() dedupeKey { return messageKey(m.topic, m.id, m.payload) }

// redelivery is the broker's resend of m.
func (m *fakeMsg) redelivery() *fakeMsg { return newMsg(m.topic, string(m.payload), m.id, true) }

func TestDedupeFresh(t *testing.T) {
	d := newDedupe()
	m := newMsg("fleetwire/a/telemetry", "x=1", 1, false)
	e, st := d.begin(m.key(), m)
	if st != fresh || e == nil {
		t.Fatalf("begin = %v, %d; want fresh", e, st)
	}
	if ws := d.finish(m.key(), e, true); len(ws) != 1 || ws[0] != m {
		t.Fatalf("finish returned %v, want the message", ws)
	}
	// A DUP flag on a message never seen is fresh too.
	m2 := newMsg("fleetwire/a/telemetry", "x=2", 2, true)
	if _, st := d.begin(m2.key(), m2); st != fresh {
		t.Errorf("unseen DUP: state %d, want fresh", st)
	}
	if m.acks.Load() != 0 {
		t.Errorf("dedupe acked the message itself")
	}
}

func TestDedupeDupOfStored(t *testing.T) {
	d := newDedupe()
	m := newMsg("t/a", "p", 7, false)
	e, _ := d.begin(m.key(), m)
	d.finish(m.key(), e, true)
	if got, st := d.begin(m.key(), m.redelivery()); st != alreadyStored || got != e {
		t.Fatalf("DUP of stored: state %d, want alreadyStored", st)
	}
	// Same bytes and id on another topic are another message.
	other := newMsg("t/b", "p", 7, true)
	if _, st := d.begin(other.key(), other); st != fresh {
		t.Errorf("DUP on another topic: state %d, want fresh", st)
	}
}

// TestDedupeSameBytesOtherID: a sensor without a clock repeats its value;
// the repeat, redelivered, must be stored, not taken for the first one.
func TestDedupeSameBytesOtherID(t *testing.T) {
	d := newDedupe()
	first := newMsg("t/a", `{"on":true}`, 1, false)
	e, _ := d.begin(first.key(), first)
	d.finish(first.key(), e, true)
	repeat := newMsg("t/a", `{"on":true}`, 2, true) // its first delivery was lost
	if _, st := d.begin(repeat.key(), repeat); st != fresh {
		t.Fatalf("redelivered repeat with another packet id: state %d, want fresh", st)
	}
}

func TestDedupeDupJoinsInProgress(t *testing.T) {
	d := newDedupe()
	m := newMsg("t/a", "p", 3, false)
	e, _ := d.begin(m.key(), m)
	dup1, dup2 := m.redelivery(), m.redelivery()
	for _, x := range []*fakeMsg{dup1, dup2} {
		if got, st := d.begin(x.key(), x); st != joined || got != e {
			t.Fatalf("DUP of in-progress: state %d, want joined", st)
		}
	}
	ws := d.finish(m.key(), e, true)
	if len(ws) != 3 || ws[0] != m || ws[1] != dup1 || ws[2] != dup2 {
		t.Fatalf("finish returned %v, want the message and both DUPs", ws)
	}
	if ws := d.finish(m.key(), e, true); len(ws) != 0 {
		t.Errorf("second finish returned %d messages", len(ws))
	}
}

func TestDedupeFailedFinishForgets(t *testing.T) {
	d := newDedupe()
	m := newMsg("t/a", "p", 4, false)
	e, _ := d.begin(m.key(), m)
	dup := m.redelivery()
	d.begin(dup.key(), dup)
	if ws := d.finish(m.key(), e, false); len(ws) != 2 {
		t.Fatalf("failed finish returned %d messages, want 2", len(ws))
	}
	// Not stored: the broker's next redelivery is new work.
	if _, st := d.begin(m.key(), m.redelivery()); st != fresh {
		t.Errorf("DUP after a failed store: state %d, want fresh", st)
	}
}

// TestDedupeIDReuse: a broker reuses a packet id only after the message
// that had it was acked, so the older entry goes; memory stays bounded by
// the id space however many messages pass.
func TestDedupeIDReuse(t *testing.T) {
	d := newDedupe()
	old := newMsg("t/a", "same", 9, false)
	e, _ := d.begin(old.key(), old)
	d.finish(old.key(), e, true)
	again := newMsg("t/a", "same", 9, false) // id reused, same bytes: a new message
	e2, st := d.begin(again.key(), again)
	if st != fresh || e2 == e {
		t.Fatalf("reused id: state %d, want fresh with a new entry", st)
	}
	if got, st := d.begin(again.key(), again.redelivery()); st != joined || got != e2 {
		t.Errorf("DUP after reuse: state %d, want joined with the new message", st)
	}
	d.finish(again.key(), e2, true)

	for i := range 200_000 {
		m := newMsg("t/a", fmt.Sprint(i), uint16(i), false)
		e, _ := d.begin(m.key(), m)
		d.finish(m.key(), e, true)
	}
	if len(d.m) > 1<<16 || len(d.byID) > 1<<16 {
		t.Errorf("%d entries, %d ids remembered after 200,000 messages; want at most 65,536", len(d.m), len(d.byID))
	}
}

// TestDedupeConcurrent runs begin/finish from many goroutines (meant for
// -race): every message is returned by exactly one finish, or reported
// alreadyStored.
func TestDedupeConcurrent(t *testing.T) {
	d := newDedupe()
	const goroutines, perG = 8, 500
	var released, stored atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				// Few distinct keys so begin/finish of the same key race.
				m := newMsg("t/a", fmt.Sprint(i%16), uint16(i%16), (g+i)%2 == 0)
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
			t.Errorf("entry %v left with %d waiters", k, len(e.waiters))
		}
	}
}
