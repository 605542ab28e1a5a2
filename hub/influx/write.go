package influx

import (
	"context"
	"fmt"
	"net/http"
	"time"

	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"

	"github.com/fleetwire/fleetwire/hub"
)

// Write stores the batches' points. It returns nil once InfluxDB accepted
// every point, except points it refused as invalid (400/422 down to a single
// point), which are dead-lettered instead, as are points line protocol
// cannot carry unchanged (never sent). Transient failures are retried with
// backoff until ctx ends; then Write returns ctx's error and the caller
// must not ack (the points may be partly stored, which is harmless: writes
// are idempotent).
//
// The points are rendered once into a pooled buffer; each request body
// (at most MaxPointsPerWrite lines) and each bisected half is a slice of it.
func (s *Sink) Write(ctx context.Context, batches []*hub.IngestBatch) error {
	e := s.encoders.Get().(*encoder)
	defer s.putEncoder(e)
	e.reset()
	for _, b := range batches {
		e.appendBatch(b)
	}
	w := writeRun{s: s, e: e}
	for _, r := range e.refused {
		w.dead = append(w.dead, hub.DeadLetter{DeviceID: r.device, Line: r.line, Error: r.err, At: time.Now().UTC()})
	}
	n := len(e.ends)
	for start := 0; start < n; start += s.cfg.MaxPointsPerWrite {
		end := min(start+s.cfg.MaxPointsPerWrite, n)
		if err := w.write(ctx, start, end); err != nil {
			return err
		}
	}
	return w.storeDeadLetters(ctx)
}

// maxPooledBuffer caps the buffer an encoder keeps between writes: an
// unusual write of long strings should not pin its memory for good.
const maxPooledBuffer = 8 << 20

func (s *Sink) putEncoder(e *encoder) {
	if cap(e.buf) > maxPooledBuffer {
		return
	}
	e.reset()
	s.encoders.Put(e)
}

// writeRun is the state of one Write call.
type writeRun struct {
	s    *Sink
	e    *encoder // the rendered points
	dead []hub.DeadLetter
}

// write stores lines [from, to) of the run's encoder, retrying transient
// failures and bisecting rejected requests. It returns an error only when
// ctx ends.
func (w *writeRun) write(ctx context.Context, from, to int) error {
	s := w.s
	for attempt := 0; ; attempt++ {
		err := s.post(ctx, w.e.span(from, to))
		if err == nil {
			s.m.pointsWritten.Add(float64(to - from))
			if attempt > 0 {
				s.log.Info("influxdb write succeeded after retries", "attempts", attempt+1, "points", to-from)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("influx write: %w", ctx.Err())
		}
		kind, herr := classify(err)
		if kind == rejected {
			s.m.writeErrors.WithLabelValues(kindRejected).Inc()
			return w.bisect(ctx, from, to, err)
		}
		s.m.writeErrors.WithLabelValues(kindTransient).Inc()
		s.logTransient(herr, err, attempt, to-from)
		if err := s.sleep(ctx, s.backoff(attempt, herr)); err != nil {
			return fmt.Errorf("influx write: %w", err)
		}
		s.m.retries.Inc()
	}
}

// bisect handles a rejected request. InfluxDB refuses a whole request for
// one bad point (1.8 stores the good ones and answers 400 "partial write"),
// so halves are rewritten — harmless, as writes are idempotent — until the
// bad points stand alone; those become dead letters.
func (w *writeRun) bisect(ctx context.Context, from, to int, err error) error {
	if to-from == 1 {
		w.dead = append(w.dead, hub.DeadLetter{
			DeviceID: w.e.devices[from],
			Line:     string(w.e.line(from)),
			Error:    err.Error(),
			At:       time.Now().UTC(),
		})
		return nil
	}
	mid := from + (to-from)/2
	if err := w.write(ctx, from, mid); err != nil {
		return err
	}
	return w.write(ctx, mid, to)
}

// storeDeadLetters saves the run's dead letters. A failing store is retried
// like a failing InfluxDB: the batch must not be acked before its refused
// points are kept somewhere.
func (w *writeRun) storeDeadLetters(ctx context.Context) error {
	if len(w.dead) == 0 {
		return nil
	}
	s := w.s
	s.log.Warn("influxdb refused points as invalid; kept as dead letters",
		"count", len(w.dead), "first_device", w.dead[0].DeviceID, "first_error", w.dead[0].Error)
	for attempt := 0; ; attempt++ {
		err := s.dead.AddDeadLetters(ctx, w.dead)
		if err == nil {
			s.m.deadLetters.Add(float64(len(w.dead)))
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("store dead letters: %w", ctx.Err())
		}
		s.log.Error("store dead letters failed, retrying", "count", len(w.dead), "attempt", attempt+1, "err", err)
		if err := s.sleep(ctx, s.backoff(attempt, nil)); err != nil {
			return fmt.Errorf("store dead letters: %w", err)
		}
	}
}

// post makes one write request of rendered lines, bounded by the
// configured timeout.
func (s *Sink) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	start := time.Now()
	err := s.write.WriteRecord(ctx, string(body))
	s.m.writeDuration.Observe(time.Since(start).Seconds())
	return err
}

// logTransient explains a transient failure; the configuration problems get
// a message that says what to fix.
func (s *Sink) logTransient(herr *ihttp.Error, err error, attempt, points int) {
	status := 0
	if herr != nil {
		status = herr.StatusCode
	}
	attrs := []any{"status", status, "attempt", attempt + 1, "points", points, "err", err}
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		s.log.Error("influxdb refused the credentials: check influx.token (on 1.8: user:password) and its write permission on the bucket; retrying", attrs...)
	case http.StatusNotFound:
		s.log.Error("influxdb bucket not found: check influx.bucket (on 1.8: database/retention-policy; the database must be created first); retrying", attrs...)
	default:
		s.log.Warn("influxdb write failed, retrying", attrs...)
	}
}

// backoff returns the delay before retry number attempt+1: full jitter over
// [0, min(MaxBackoff, MinBackoff*2^attempt)], but at least the server's
// Retry-After (still capped at MaxBackoff).
func (s *Sink) backoff(attempt int, herr *ihttp.Error) time.Duration {
	// Doubling stops at the cap, so it cannot overflow.
	ceiling := s.cfg.MinBackoff
	for i := 0; i < attempt && ceiling < s.cfg.MaxBackoff; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, s.cfg.MaxBackoff)
	s.randMu.Lock()
	d := time.Duration(s.cfg.Rand.Int64N(int64(ceiling) + 1))
	s.randMu.Unlock()
	if herr != nil && herr.RetryAfter > 0 {
		d = max(d, time.Duration(herr.RetryAfter)*time.Second)
	}
	return min(d, s.cfg.MaxBackoff)
}

// sleep waits d or until ctx ends.
func (s *Sink) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
