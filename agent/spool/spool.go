package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/fleetwire/fleetwire/protocol"
)

// Size bounds of Options.MaxBytes.
const (
	DefaultMaxBytes = 64 << 20
	MinMaxBytes     = 64 << 10
)

// Errors returned by the spool; wrapped errors carry the detail.
var (
	ErrLocked   = errors.New("spool directory is in use by another process")
	ErrTooLarge = errors.New("batch larger than the spool")
	ErrClosed   = errors.New("spool is closed")
)

// Options configure a Spool.
type Options struct {
	MaxBytes int64        // total size bound of stored batches (default 64 MiB); must be >= 64 KiB
	Logger   *slog.Logger // may be nil -> discard
	NoSync   bool         // tests/benchmarks only: skip fsync
}

func (o Options) maxBytes() (int64, error) {
	switch {
	case o.MaxBytes == 0:
		return DefaultMaxBytes, nil
	case o.MaxBytes < MinMaxBytes:
		return 0, fmt.Errorf("spool: max bytes %d below the minimum %d", o.MaxBytes, MinMaxBytes)
	}
	return o.MaxBytes, nil
}

// Entry is a stored batch ready to send.
type Entry struct {
	Seq  uint64
	Data []byte // the encoded protocol message (protocol.Encode(batch))
}

// Stats describe the spool's content.
type Stats struct {
	Batches  int    // unacknowledged batches stored
	Bytes    int64  // their size on disk, RecordOverhead included
	Dropped  uint64 // batches lost (dropped when full or found corrupt), cumulative since the spool was created; persisted
	FirstSeq uint64 // oldest stored seq, 0 when empty
	LastSeq  uint64 // newest stored seq, 0 when empty
	NextSeq  uint64 // seq the next Append assigns
	Corrupt  uint64 // corrupt batches found since Open (also counted in Dropped)
}

// entry indexes one pending batch file.
type entry struct {
	seq  uint64
	size int64 // whole file
}

// Spool is a bounded on-disk queue of unacknowledged batches. It is safe for
// concurrent use: typically the collector calls Append while the link calls
// Pending and Ack.
type Spool struct {
	dir    string
	max    int64
	noSync bool
	log    *slog.Logger
	lockf  *os.File
	dirf   *os.File
	notify chan struct{}

	// wmu serialises everything that changes the directory (Append, Ack,
	// discarding corrupt files, Close), including their disk I/O, so that
	// Pending is never blocked behind an fsync. Lock order: wmu, then mu.
	wmu sync.Mutex

	// mu guards the fields below. It is never held across disk I/O. They
	// are written only with wmu held too, so wmu holders may read them
	// without mu.
	mu      sync.Mutex
	pending []entry // seq order
	bytes   int64
	lastSeq uint64
	dropped uint64
	floor   uint64 // every seq <= floor was acked or dropped
	corrupt uint64
	newest  string // name of the newest batch file on disk ("" if none); never deleted before a newer one is durable
	closed  bool
}

// Open opens (creating it if needed) the spool in dir, takes its lock and
// recovers its content, skipping corrupt records (see the package doc).
func Open(dir string, opt Options) (*Spool, error) {
	max, err := opt.maxBytes()
	if err != nil {
		return nil, err
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	lockf, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	dirf, err := os.Open(dir)
	if err != nil {
		_ = unlockDir(lockf)
		return nil, fmt.Errorf("open spool: %w", err)
	}
	s := &Spool{
		dir: dir, max: max, noSync: opt.NoSync, log: log,
		lockf: lockf, dirf: dirf, notify: make(chan struct{}, 1),
	}
	if err := s.load(); err != nil {
		_ = dirf.Close()
		_ = unlockDir(lockf)
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	st := s.Stats()
	log.Info("spool opened", "dir", dir, "batches", st.Batches, "bytes", st.Bytes,
		"next_seq", st.NextSeq, "dropped", st.Dropped, "corrupt", st.Corrupt)
	return s, nil
}

// appendPlan is what Append decided before touching the disk.
type appendPlan struct {
	h    header
	rec  []byte
	drop []entry // oldest pending batches to delete once rec is durable
}

// Append assigns b.Seq (= last seq ever assigned + 1; never reused, even
// after every batch was acked and the agent restarted), sets b.Dropped to the
// cumulative drop count, encodes it with protocol.Encode, stores it durably
// (returns only after fsync), then drops the oldest batches while total
// bytes > MaxBytes (counting and logging them). b.Dropped includes the
// batches this Append drops, so the hub learns of a loss with the batch that
// caused it. A single batch larger than MaxBytes is refused with ErrTooLarge
// and does not use up a seq.
func (s *Spool) Append(b *protocol.Batch) (uint64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.isClosed() {
		return 0, ErrClosed
	}
	p, err := s.plan(b)
	if err != nil {
		return 0, err
	}
	name := fileName(p.h.seq, batchExt)
	if published, err := writeFileDurable(s.dirf, name, p.rec, s.noSync); err != nil {
		if published {
			// The file may survive a crash, so its seq must not be
			// handed out again: burn it.
			s.mu.Lock()
			s.lastSeq = p.h.seq
			s.mu.Unlock()
			_ = os.Remove(filepath.Join(s.dir, name))
		}
		return 0, fmt.Errorf("append seq %d: %w", p.h.seq, err)
	}
	stale := s.commit(p, name)
	if len(p.drop) > 0 {
		s.logDrop(p)
	}
	for _, e := range p.drop {
		s.remove(fileName(e.seq, batchExt))
	}
	if stale != "" {
		s.remove(stale)
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return p.h.seq, nil
}

// plan encodes b with the next seq and chooses the batches to drop. The
// encoded size depends on b.Dropped, which depends on how many must go, so
// it iterates; the size never shrinks as the count grows, so it ends.
// Caller holds wmu.
func (s *Spool) plan(b *protocol.Batch) (appendPlan, error) {
	k := 0
	for {
		b.Seq = s.lastSeq + 1
		b.Dropped = s.dropped + uint64(k)
		data, err := protocol.Encode(b)
		if err != nil {
			return appendPlan{}, fmt.Errorf("append: %w", err)
		}
		size := int64(headerSize + len(data))
		if size > s.max || uint64(len(data)) > math.MaxUint32 {
			return appendPlan{}, fmt.Errorf("append: %w: %d bytes stored > max %d", ErrTooLarge, size, s.max)
		}
		need := 0
		for excess := s.bytes + size - s.max; excess > 0; need++ {
			excess -= s.pending[need].size
		}
		if need <= k {
			h := header{seq: b.Seq, dropped: b.Dropped, floor: s.floor}
			if k > 0 {
				h.floor = max(h.floor, s.pending[k-1].seq)
			}
			return appendPlan{h: h, rec: encodeRecord(h, data), drop: s.pending[:k:k]}, nil
		}
		k = need
	}
}

// commit records a durable append in memory and returns the name of a file
// that is no longer needed (the previous newest, if it is not pending).
// Caller holds wmu.
func (s *Spool) commit(p appendPlan, name string) (stale string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var dropBytes int64
	for _, e := range p.drop {
		dropBytes += e.size
	}
	s.pending = append(s.pending[len(p.drop):], entry{seq: p.h.seq, size: int64(len(p.rec))})
	s.bytes += int64(len(p.rec)) - dropBytes
	s.lastSeq, s.dropped, s.floor = p.h.seq, p.h.dropped, p.h.floor
	if old := s.newest; old != "" {
		if seq, done, _ := parseName(old); done || seq <= s.floor {
			stale = old
		}
	}
	s.newest = name
	return stale
}

func (s *Spool) logDrop(p appendPlan) {
	var bytes int64
	for _, e := range p.drop {
		bytes += e.size
	}
	s.log.Warn("spool full: dropped oldest batches",
		"count", len(p.drop), "bytes", bytes,
		"first_seq", p.drop[0].seq, "last_seq", p.drop[len(p.drop)-1].seq,
		"dropped_total", p.h.dropped, "max_bytes", s.max)
}

// Pending returns up to max stored entries with Seq > after, in seq order.
// max <= 0 returns nothing. Files are read without holding any lock; a batch
// acked or dropped meanwhile is left out, and one found corrupt is logged,
// counted as dropped and discarded.
func (s *Spool) Pending(after uint64, max int) ([]Entry, error) {
	if max <= 0 {
		return nil, nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	i := sort.Search(len(s.pending), func(i int) bool { return s.pending[i].seq > after })
	want := make([]entry, min(max, len(s.pending)-i))
	copy(want, s.pending[i:])
	s.mu.Unlock()

	out := make([]Entry, 0, len(want))
	for _, e := range want {
		_, data, err := readRecord(filepath.Join(s.dir, fileName(e.seq, batchExt)), e.seq)
		switch {
		case err == nil:
			out = append(out, Entry{Seq: e.seq, Data: data})
		case errors.Is(err, fs.ErrNotExist):
			// Acked or dropped after the index was copied.
		case errors.Is(err, errCorrupt):
			if err := s.discardCorrupt(e.seq, err); err != nil {
				return out, fmt.Errorf("pending: %w", err)
			}
		default:
			return out, fmt.Errorf("pending: read seq %d: %w", e.seq, err)
		}
	}
	return out, nil
}

// discardCorrupt drops a pending batch whose file rotted after Open. The
// loss is counted and made durable in STATE before the file goes.
func (s *Spool) discardCorrupt(seq uint64, cause error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	i := sort.Search(len(s.pending), func(i int) bool { return s.pending[i].seq >= seq })
	if s.closed || i == len(s.pending) || s.pending[i].seq != seq {
		s.mu.Unlock()
		return nil // acked, dropped or already discarded meanwhile
	}
	s.bytes -= s.pending[i].size
	s.pending = append(s.pending[:i:i], s.pending[i+1:]...)
	s.dropped++
	s.corrupt++
	st := state{lastSeq: s.lastSeq, dropped: s.dropped, floor: s.floor}
	name := fileName(seq, batchExt)
	if s.newest == name {
		s.newest = "" // STATE carries the counters from now on
	}
	s.mu.Unlock()

	s.log.Error("spool: corrupt batch discarded", "seq", seq, "err", cause, "dropped_total", st.dropped)
	if _, err := writeFileDurable(s.dirf, stateName, st.encode(), s.noSync); err != nil {
		// Keep the file: its name still proves its seq was assigned.
		return fmt.Errorf("write state: %w", err)
	}
	s.remove(name)
	return nil
}

// Ack deletes every stored batch with Seq <= seq (idempotent; acks for seqs
// never stored or already dropped are fine). Nothing is fsynced: after a
// power cut an acked batch may be sent again, which the hub tolerates.
func (s *Spool) Ack(seq uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	// An ack beyond the last assigned seq must not cover future batches.
	seq = min(seq, s.lastSeq)
	if seq <= s.floor {
		s.mu.Unlock()
		return nil
	}
	n := sort.Search(len(s.pending), func(i int) bool { return s.pending[i].seq > seq })
	acked := s.pending[:n:n]
	for _, e := range acked {
		s.bytes -= e.size
	}
	s.pending = s.pending[n:]
	s.floor = seq
	carrier, done := "", ""
	if nseq, isDone, ok := parseName(s.newest); ok && !isDone && nseq <= seq {
		// The newest file carries lastSeq/dropped/floor for Open: keep it,
		// renamed so that Open knows it was acked.
		carrier, done = s.newest, fileName(nseq, doneExt)
		s.newest = done
	}
	s.mu.Unlock()

	for _, e := range acked {
		if name := fileName(e.seq, batchExt); name != carrier {
			s.remove(name)
		}
	}
	if carrier != "" {
		if err := os.Rename(filepath.Join(s.dir, carrier), filepath.Join(s.dir, done)); err != nil {
			return fmt.Errorf("ack %d: mark done: %w", seq, err)
		}
	}
	return nil
}

// remove deletes a file the spool no longer needs. Failure costs only disk
// space or a resend, so it is logged, not returned.
func (s *Spool) remove(name string) {
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("spool: remove file", "file", name, "err", err)
	}
}

// Stats returns a snapshot of the spool's counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Batches: len(s.pending), Bytes: s.bytes, Dropped: s.dropped,
		NextSeq: s.lastSeq + 1, Corrupt: s.corrupt,
	}
	if n := len(s.pending); n > 0 {
		st.FirstSeq, st.LastSeq = s.pending[0].seq, s.pending[n-1].seq
	}
	return st
}

// Notify returns a channel that receives (non-blocking, capacity 1) after
// each Append; the link's sender waits on it.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

func (s *Spool) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close releases the directory lock. It waits for a running Append or Ack;
// later calls return ErrClosed. Close is idempotent.
func (s *Spool) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.dirf.Close()
	if uerr := unlockDir(s.lockf); err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("close spool: %w", err)
	}
	return nil
}
