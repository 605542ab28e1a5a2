package spool

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// logBuf collects log output; safe for concurrent use.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openT(t testing.TB, dir string, opt Options) *Spool {
	t.Helper()
	s, err := Open(dir, opt)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func closeT(t testing.TB, s *Spool) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// testBatch is a small batch whose BaseTime identifies it.
func testBatch(id int64) *protocol.Batch {
	return &protocol.Batch{
		BaseTime: 1_700_000_000_000 + id,
		Tags:     map[string]string{"site": "lab"},
		Points: []protocol.Point{
			{Name: "cpu.temp", Value: 41.5},
			{Name: "load1", DT: 5, Value: int64(id)},
		},
	}
}

// blobBatch has one string point of l bytes, to control the encoded size.
func blobBatch(l int) *protocol.Batch {
	return &protocol.Batch{
		BaseTime: 1_700_000_000_000,
		Points:   []protocol.Point{{Name: "blob", Value: strings.Repeat("x", l)}},
	}
}

// recordSize is what b takes in the spool once stamped with seq and dropped.
func recordSize(t testing.TB, b *protocol.Batch, seq, dropped uint64) int64 {
	t.Helper()
	c := *b
	c.Seq, c.Dropped = seq, dropped
	data, err := protocol.Encode(&c)
	if err != nil {
		t.Fatal(err)
	}
	return int64(RecordOverhead + len(data))
}

// sizedBatch returns a batch taking exactly want bytes in the spool when
// Append stamps it with seq and dropped.
func sizedBatch(t testing.TB, seq, dropped uint64, want int64) *protocol.Batch {
	t.Helper()
	l := int(want) - RecordOverhead - 32
	for range 10 {
		b := blobBatch(l)
		got := recordSize(t, b, seq, dropped)
		if got == want {
			return b
		}
		l += int(want - got)
	}
	t.Fatalf("cannot build a batch of %d bytes", want)
	return nil
}

func appendT(t testing.TB, s *Spool, b *protocol.Batch) uint64 {
	t.Helper()
	seq, err := s.Append(b)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}

func pendingSeqs(t testing.TB, s *Spool, after uint64, max int) []uint64 {
	t.Helper()
	es, err := s.Pending(after, max)
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	seqs := []uint64{}
	for _, e := range es {
		seqs = append(seqs, e.Seq)
	}
	return seqs
}

func decodeBatch(t testing.TB, data []byte) *protocol.Batch {
	t.Helper()
	msg, err := protocol.Decode(data, 0)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	b, ok := msg.(*protocol.Batch)
	if !ok {
		t.Fatalf("decoded %T, want *protocol.Batch", msg)
	}
	return b
}

func wantSeqs(t testing.TB, got []uint64, want ...uint64) {
	t.Helper()
	if want == nil {
		want = []uint64{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("seqs = %v, want %v", got, want)
	}
}

// dirNames lists the spool's batch files.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if de.Name() != lockName && de.Name() != stateName {
			names = append(names, de.Name())
		}
	}
	return names
}

func TestAppendPendingAck(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	var want int64
	for i := int64(1); i <= 3; i++ {
		b := testBatch(i)
		seq := appendT(t, s, b)
		if seq != uint64(i) || b.Seq != seq {
			t.Fatalf("Append #%d: seq %d, b.Seq %d", i, seq, b.Seq)
		}
		want += recordSize(t, b, seq, 0)
	}
	es, err := s.Pending(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		b := decodeBatch(t, e.Data)
		if b.Seq != e.Seq || b.BaseTime != testBatch(int64(i+1)).BaseTime || len(b.Points) != 2 {
			t.Fatalf("entry %d: seq %d, decoded %+v", i, e.Seq, b)
		}
	}
	wantSeqs(t, pendingSeqs(t, s, 0, 10), 1, 2, 3)
	wantSeqs(t, pendingSeqs(t, s, 1, 10), 2, 3)
	wantSeqs(t, pendingSeqs(t, s, 0, 2), 1, 2)
	wantSeqs(t, pendingSeqs(t, s, 0, 1), 1)
	wantSeqs(t, pendingSeqs(t, s, 3, 10))
	wantSeqs(t, pendingSeqs(t, s, 0, 0))
	st := s.Stats()
	if st != (Stats{Batches: 3, Bytes: want, FirstSeq: 1, LastSeq: 3, NextSeq: 4}) {
		t.Fatalf("Stats = %+v, want 3 batches of %d bytes", st, want)
	}

	if err := s.Ack(2); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, pendingSeqs(t, s, 0, 10), 3)
	for _, seq := range []uint64{2, 1, 0} { // idempotent, and older acks are no-ops
		if err := s.Ack(seq); err != nil {
			t.Fatalf("Ack(%d): %v", seq, err)
		}
	}
	wantSeqs(t, pendingSeqs(t, s, 0, 10), 3)
	if st := s.Stats(); st.Batches != 1 || st.FirstSeq != 3 || st.LastSeq != 3 || st.Bytes != recordSize(t, testBatch(3), 3, 0) {
		t.Fatalf("Stats after ack = %+v", st)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{fileName(3, batchExt)}) {
		t.Fatalf("files after ack = %v", got)
	}
}

func TestRestartKeepsUnacked(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	for i := range int64(5) {
		appendT(t, s, testBatch(i))
	}
	if err := s.Ack(2); err != nil {
		t.Fatal(err)
	}
	before, err := s.Pending(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	closeT(t, s)

	s = openT(t, dir, Options{})
	after, err := s.Pending(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 3 || len(before) != 3 {
		t.Fatalf("pending before %d, after restart %d, want 3", len(before), len(after))
	}
	for i := range after {
		if after[i].Seq != before[i].Seq || !bytes.Equal(after[i].Data, before[i].Data) {
			t.Fatalf("entry %d differs after restart: seq %d vs %d", i, after[i].Seq, before[i].Seq)
		}
	}
	if seq := appendT(t, s, testBatch(9)); seq != 6 {
		t.Fatalf("seq after restart = %d, want 6", seq)
	}
}

func TestSeqNeverReusedAfterAckAll(t *testing.T) {
	dir := t.TempDir()
	next := uint64(1)
	for round := range 4 {
		s := openT(t, dir, Options{})
		if st := s.Stats(); st.Batches != 0 || st.NextSeq != next {
			t.Fatalf("round %d: Stats after open = %+v, want empty with next seq %d", round, st, next)
		}
		for range 3 {
			if seq := appendT(t, s, testBatch(int64(next))); seq != next {
				t.Fatalf("round %d: seq %d, want %d", round, seq, next)
			}
			next++
		}
		if err := s.Ack(next - 1); err != nil {
			t.Fatal(err)
		}
		wantSeqs(t, pendingSeqs(t, s, 0, 10))
		closeT(t, s)
		// Only the acked newest batch remains, as the seq carrier.
		if got := dirNames(t, dir); !slices.Equal(got, []string{fileName(next-1, doneExt)}) {
			t.Fatalf("round %d: files = %v", round, got)
		}
	}
	// Restarting without appending keeps the seq too.
	closeT(t, openT(t, dir, Options{}))
	s := openT(t, dir, Options{})
	if seq := appendT(t, s, testBatch(0)); seq != next {
		t.Fatalf("seq after idle restarts = %d, want %d", seq, next)
	}
}

func TestAckBeyondLastSeqDoesNotCoverLaterBatches(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	appendT(t, s, testBatch(1))
	appendT(t, s, testBatch(2))
	if err := s.Ack(1000); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, pendingSeqs(t, s, 0, 10))
	if seq := appendT(t, s, testBatch(3)); seq != 3 {
		t.Fatalf("seq = %d, want 3", seq)
	}
	wantSeqs(t, pendingSeqs(t, s, 0, 10), 3)
	closeT(t, s)
	s = openT(t, dir, Options{})
	wantSeqs(t, pendingSeqs(t, s, 0, 10), 3)
}

func TestBoundDropsOldest(t *testing.T) {
	dir := t.TempDir()
	logs := &logBuf{}
	const max = MinMaxBytes
	s := openT(t, dir, Options{MaxBytes: max, Logger: logs.logger()})
	// ~10 KB records: 6 fit in 64 KiB, so 10 appends drop the 4 oldest.
	var dropped uint64
	for i := range 10 {
		b := blobBatch(10_000)
		seq := appendT(t, s, b)
		st := s.Stats()
		if st.Bytes > max {
			t.Fatalf("append %d: %d bytes > max %d", i, st.Bytes, max)
		}
		if st.Dropped < dropped || b.Dropped != st.Dropped {
			t.Fatalf("append %d: batch carries dropped %d, stats %d (was %d)", i, b.Dropped, st.Dropped, dropped)
		}
		dropped = st.Dropped
		if st.LastSeq != seq || st.FirstSeq != dropped+1 || uint64(st.Batches) != seq-dropped {
			t.Fatalf("append %d: Stats = %+v", i, st)
		}
	}
	st := s.Stats()
	if st.Dropped != 4 || st.Batches != 6 || st.FirstSeq != 5 || st.LastSeq != 10 {
		t.Fatalf("Stats = %+v, want 4 dropped, 5..10 kept", st)
	}
	es, err := s.Pending(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		// Seq 7 caused the first drop: the batches from there on report it.
		want := uint64(0)
		if e.Seq >= 7 {
			want = e.Seq - 6
		}
		if got := decodeBatch(t, e.Data).Dropped; got != want {
			t.Fatalf("seq %d carries dropped %d, want %d", e.Seq, got, want)
		}
	}
	if got := len(dirNames(t, dir)); got != 6 {
		t.Fatalf("%d files on disk, want 6", got)
	}
	if !strings.Contains(logs.String(), "spool full") {
		t.Fatalf("drop not logged: %s", logs.String())
	}
	closeT(t, s)

	// Persisted across restart, and after everything was acked.
	s = openT(t, dir, Options{MaxBytes: max})
	if st := s.Stats(); st.Dropped != 4 || st.FirstSeq != 5 || st.LastSeq != 10 {
		t.Fatalf("Stats after reopen = %+v", st)
	}
	b := blobBatch(10_000)
	appendT(t, s, b)
	if b.Dropped != 5 {
		t.Fatalf("batch after reopen carries dropped %d, want 5", b.Dropped)
	}
	if err := s.Ack(11); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	s = openT(t, dir, Options{MaxBytes: max})
	if st := s.Stats(); st.Dropped != 5 || st.Batches != 0 || st.NextSeq != 12 {
		t.Fatalf("Stats after ack-all + reopen = %+v", st)
	}
}

func TestBatchLargerThanMaxRefused(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MaxBytes: MinMaxBytes})
	appendT(t, s, testBatch(1))
	_, err := s.Append(blobBatch(MinMaxBytes))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append of a huge batch: err = %v, want ErrTooLarge", err)
	}
	if st := s.Stats(); st.Batches != 1 || st.NextSeq != 2 || st.Dropped != 0 {
		t.Fatalf("refused batch changed the spool: %+v", st)
	}
	if seq := appendT(t, s, testBatch(2)); seq != 2 {
		t.Fatalf("seq after refusal = %d, want 2", seq)
	}
	if got := len(dirNames(t, dir)); got != 2 {
		t.Fatalf("%d files on disk, want 2", got)
	}
}

func TestMaxBytesEdge(t *testing.T) {
	const max = MinMaxBytes
	t.Run("one batch of exactly max", func(t *testing.T) {
		s := openT(t, t.TempDir(), Options{MaxBytes: max})
		appendT(t, s, sizedBatch(t, 1, 0, max))
		if st := s.Stats(); st.Bytes != max || st.Dropped != 0 {
			t.Fatalf("Stats = %+v, want exactly %d bytes", st, max)
		}
		// One byte over is refused, even though it would replace everything.
		if _, err := s.Append(sizedBatch(t, 2, 1, max+1)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("max+1: err = %v, want ErrTooLarge", err)
		}
		appendT(t, s, sizedBatch(t, 2, 1, max))
		if st := s.Stats(); st.Bytes != max || st.Dropped != 1 || st.FirstSeq != 2 {
			t.Fatalf("Stats = %+v, want seq 2 alone, 1 dropped", st)
		}
	})
	t.Run("two halves fill it exactly", func(t *testing.T) {
		s := openT(t, t.TempDir(), Options{MaxBytes: max})
		appendT(t, s, sizedBatch(t, 1, 0, max/2))
		appendT(t, s, sizedBatch(t, 2, 0, max/2))
		if st := s.Stats(); st.Bytes != max || st.Dropped != 0 || st.Batches != 2 {
			t.Fatalf("Stats = %+v, want 2 batches, exactly %d bytes", st, max)
		}
		b := testBatch(3)
		appendT(t, s, b)
		if st := s.Stats(); st.Dropped != 1 || st.FirstSeq != 2 || b.Dropped != 1 {
			t.Fatalf("Stats = %+v (batch dropped %d), want seq 1 dropped", st, b.Dropped)
		}
	})
	t.Run("options", func(t *testing.T) {
		for _, bad := range []int64{MinMaxBytes - 1, -1} {
			if s, err := Open(t.TempDir(), Options{MaxBytes: bad}); err == nil {
				_ = s.Close()
				t.Fatalf("MaxBytes %d accepted", bad)
			}
		}
		openT(t, t.TempDir(), Options{MaxBytes: MinMaxBytes})
		s := openT(t, t.TempDir(), Options{}) // default 64 MiB
		appendT(t, s, blobBatch(4*MinMaxBytes))
	})
}

func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, fmt.Sprint(os.Getpid())) {
		t.Fatalf("error %q should name the dir and the holder's pid", msg)
	}
	closeT(t, s)
	closeT(t, s) // idempotent
	s2 := openT(t, dir, Options{})
	appendT(t, s2, testBatch(1))
}

func TestClosed(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	if _, err := s.Append(testBatch(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append: %v", err)
	}
	if _, err := s.Pending(0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pending: %v", err)
	}
	if err := s.Ack(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ack: %v", err)
	}
}

func TestNotify(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	ch := s.Notify()
	select {
	case <-ch:
		t.Fatal("notified before any Append")
	default:
	}
	appendT(t, s, testBatch(1))
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification after Append")
	}
	// Appends never block on an unread notification; they coalesce.
	appendT(t, s, testBatch(2))
	appendT(t, s, testBatch(3))
	<-ch
	select {
	case <-ch:
		t.Fatal("two notifications buffered, want capacity 1")
	default:
	}
}

// TestConcurrent runs a collector and a link against one spool, as the
// agent does; run with -race.
func TestConcurrent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		max   int64
		blob  int
		drops bool
	}{
		{"no drops", 1 << 20, 100, false},
		{"with drops", MinMaxBytes, 4000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 400
			s := openT(t, t.TempDir(), Options{MaxBytes: tc.max, NoSync: true})
			done := make(chan error, 1)
			go func() {
				for i := range n {
					b := blobBatch(tc.blob)
					b.BaseTime = int64(i + 1)
					if _, err := s.Append(b); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() { // a metrics reader
				for {
					select {
					case <-stop:
						return
					default:
						if st := s.Stats(); st.Bytes > tc.max {
							t.Errorf("Stats.Bytes %d > max", st.Bytes)
							return
						}
					}
				}
			})
			got, last := 0, uint64(0)
			appendDone := false
			deadline := time.After(20 * time.Second)
			for last < n {
				es, err := s.Pending(last, 16)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range es {
					b := decodeBatch(t, e.Data)
					if e.Seq <= last || b.Seq != e.Seq || (!tc.drops && b.BaseTime != int64(e.Seq)) {
						t.Fatalf("entry seq %d after %d, decoded seq %d base %d", e.Seq, last, b.Seq, b.BaseTime)
					}
					last = e.Seq
					got++
				}
				if len(es) > 0 {
					if err := s.Ack(last); err != nil {
						t.Fatal(err)
					}
					continue
				}
				select {
				case <-s.Notify():
				case err := <-done:
					if err != nil {
						t.Fatal(err)
					}
					appendDone = true
				case <-deadline:
					t.Fatalf("link stuck at seq %d (append done %v), Stats %+v", last, appendDone, s.Stats())
				}
			}
			close(stop)
			wg.Wait()
			st := s.Stats()
			if st.Batches != 0 || st.NextSeq != n+1 {
				t.Fatalf("final Stats = %+v", st)
			}
			if !tc.drops && (got != n || st.Dropped != 0) {
				t.Fatalf("received %d, dropped %d; want all %d", got, st.Dropped, n)
			}
			if tc.drops && uint64(got)+st.Dropped < n {
				t.Fatalf("received %d + dropped %d < %d appended", got, st.Dropped, n)
			}
		})
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("NoSync=%v", noSync), func(b *testing.B) {
			s := openT(b, b.TempDir(), Options{NoSync: noSync})
			batch := &protocol.Batch{BaseTime: 1_700_000_000_000, Tags: map[string]string{"site": "lab"}}
			for i := range 50 {
				batch.Points = append(batch.Points, protocol.Point{Name: fmt.Sprintf("m%d", i), DT: int64(i), Value: float64(i) * 1.5})
			}
			b.ReportAllocs()
			for b.Loop() {
				seq, err := s.Append(batch)
				if err != nil {
					b.Fatal(err)
				}
				if seq%64 == 0 { // like a link acking as it goes
					if err := s.Ack(seq); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "batches/s")
		})
	}
}

// corruptFile applies mutate to the content of the file for seq.
func corruptFile(t *testing.T, dir string, seq uint64, mutate func([]byte) []byte) {
	t.Helper()
	path := filepath.Join(dir, fileName(seq, batchExt))
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, mutate(buf), 0o600); err != nil {
		t.Fatal(err)
	}
}
