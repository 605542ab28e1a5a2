package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fleetwire/fleetwire/hub"
)

// touchReq is one TouchDevice call waiting for its group commit.
type touchReq struct {
	id      string
	seen    int64
	version string
	done    chan error // capacity 1
}

// toucher commits last-seen updates in groups: every device session
// touches its device on connect and on disconnect, so a hub restart under
// 10,000 devices makes 20,000 of them within seconds. One transaction per
// group instead of per call keeps the single SQLite connection free for
// token checks. Callers still wait for their own row's result.
type toucher struct {
	mu      sync.Mutex
	pending []*touchReq
	closed  bool
	wake    chan struct{} // capacity 1
	stop    chan struct{}
	exited  chan struct{}
}

const maxTouchGroup = 2000 // updates per transaction

func (s *Store) startToucher() {
	s.touch = &toucher{wake: make(chan struct{}, 1), stop: make(chan struct{}), exited: make(chan struct{})}
	go s.runToucher()
}

// TouchDevice records that the device was seen, and the version of its
// agent. ErrNotFound if there is no such device. Concurrent calls share a
// transaction.
func (s *Store) TouchDevice(ctx context.Context, id string, seen time.Time, agentVersion string) error {
	req := &touchReq{id: id, seen: unixNano(seen), version: agentVersion, done: make(chan error, 1)}
	t := s.touch
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return fmt.Errorf("touch device: %w", errStoreClosed)
	}
	t.pending = append(t.pending, req)
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("touch device: %w", ctx.Err())
	}
}

func (s *Store) runToucher() {
	t := s.touch
	defer close(t.exited)
	for {
		select {
		case <-t.wake:
		case <-t.stop:
			s.flushTouches() // whatever arrived before Close
			return
		}
		s.flushTouches()
	}
}

// flushTouches commits every pending touch, maxTouchGroup per transaction.
func (s *Store) flushTouches() {
	t := s.touch
	for {
		t.mu.Lock()
		n := min(len(t.pending), maxTouchGroup)
		group := t.pending[:n:n]
		t.pending = t.pending[n:]
		t.mu.Unlock()
		if n == 0 {
			return
		}
		s.commitTouches(group)
	}
}

func (s *Store) commitTouches(group []*touchReq) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fail := func(err error) {
		for _, r := range group {
			r.done <- fmt.Errorf("touch device: %w", err)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		fail(err)
		return
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `UPDATE devices SET last_seen = ?, agent_version = ? WHERE id = ?`)
	if err != nil {
		fail(err)
		return
	}
	results := make([]error, len(group))
	for i, r := range group {
		res, err := stmt.ExecContext(ctx, r.seen, r.version, r.id)
		if err != nil {
			fail(err)
			return
		}
		if n, err := res.RowsAffected(); err != nil {
			results[i] = fmt.Errorf("touch device: %w", err)
		} else if n == 0 {
			results[i] = fmt.Errorf("touch device %s: %w", r.id, hub.ErrNotFound)
		}
	}
	if err := tx.Commit(); err != nil {
		fail(err)
		return
	}
	for i, r := range group {
		r.done <- results[i]
	}
}

// closeToucher commits what is pending and refuses later touches.
func (s *Store) closeToucher() {
	t := s.touch
	t.mu.Lock()
	already := t.closed
	t.closed = true
	t.mu.Unlock()
	if !already {
		close(t.stop)
	}
	<-t.exited
}

var errStoreClosed = errors.New("store closed")
