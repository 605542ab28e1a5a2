package devicews

import (
	"context"
	"fmt"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/protocol"
)

// handleBatch validates a batch and hands it to the ingester. A returned
// error means the session was closed.
func (s *session) handleBatch(b *protocol.Batch) error {
	m := s.h.cfg.Metrics
	if b.Seq <= s.lastRecv {
		s.bad("seq_order")
		s.Close(protocol.CloseProtocolError, "seq not increasing")
		return fmt.Errorf("batch seq %d after %d", b.Seq, s.lastRecv)
	}
	s.lastRecv = b.Seq
	if !s.admit(b.Seq) {
		s.bad("window")
		s.Close(protocol.ClosePolicy, "too many unacked batches")
		return fmt.Errorf("more than %d unacked batches", s.h.cfg.MaxInflight)
	}
	m.AcksPending.Inc()
	s.h.reportDropped(s.dev.ID, b.Dropped)
	if err := b.Validate(s.h.cfg.Limits); err != nil {
		// Acking an invalid batch (after recording it) keeps it from being
		// resent forever from the agent's spool.
		s.bad("invalid")
		shallow(func() { s.deadLetter(b, err) })
		s.stored(b.Seq, nil)
		return nil
	}
	m.Batches.Inc()
	m.Points.Add(float64(len(b.Points)))
	if s.h.cfg.Live != nil {
		s.h.cfg.Live.Publish(s.dev.ID, b) // non-blocking; reads b only, as ingest does
	}
	ib := &hub.IngestBatch{DeviceID: s.dev.ID, Labels: s.dev.Labels, Batch: b}
	seq := b.Seq
	err := s.h.cfg.Ingester.Submit(s.ctx, ib, func(err error) { s.stored(seq, err) })
	if err != nil {
		m.AcksPending.Dec()
		s.Close(protocol.CloseGoingAway, "hub shutting down")
		return fmt.Errorf("submit: %w", err)
	}
	return nil
}

// admit appends seq to the window unless the device exceeds MaxInflight.
func (s *session) admit(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.window) >= s.h.cfg.MaxInflight {
		return false
	}
	s.window = append(s.window, inflight{seq: seq})
	return true
}

// stored runs on an ingest worker when seq's write finished. The ack only
// ever covers a prefix of the window in which every batch is stored: a
// failed batch blocks acks past it, so nothing unstored is acknowledged.
func (s *session) stored(seq uint64, err error) {
	s.h.cfg.Metrics.AcksPending.Dec()
	if err != nil {
		s.h.cfg.Metrics.AbandonedWrites.Inc()
	} else {
		s.h.cfg.Metrics.StoredBatches.Inc()
	}
	s.mu.Lock()
	for i := range s.window {
		if s.window[i].seq == seq {
			s.window[i].done, s.window[i].failed = true, err != nil
			break
		}
	}
	n := 0
	for n < len(s.window) && s.window[n].done && !s.window[n].failed {
		n++
	}
	advanced := n > 0
	if advanced {
		s.acked = s.window[n-1].seq
		s.window = append(s.window[:0], s.window[n:]...)
		if len(s.window) == 0 {
			s.window = nil // an idle device keeps no window array
		}
	}
	s.mu.Unlock()
	if advanced {
		s.ackAdvanced() // a pending ack is sent once, with the newest seq
	}
}

func (s *session) deadLetter(b *protocol.Batch, verr error) {
	s.log().Warn("invalid batch dropped", "seq", b.Seq, "points", len(b.Points), "err", verr)
	if s.h.cfg.DeadLetters == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	dl := []hub.DeadLetter{{
		DeviceID: s.dev.ID,
		Line:     fmt.Sprintf("batch seq=%d points=%d", b.Seq, len(b.Points)),
		Error:    verr.Error(),
		At:       time.Now(),
	}}
	if err := s.h.cfg.DeadLetters.AddDeadLetters(ctx, dl); err != nil {
		s.log().Error("record invalid batch", "err", err)
	}
}
