package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// diskFile is one batch file found by Open.
type diskFile struct {
	name string
	seq  uint64
	done bool
	size int64
	err  error // validation failure, nil when intact
}

// recovery is what Open learned from the directory.
type recovery struct {
	st      state // maxima over STATE, names and intact headers
	files   []diskFile
	newest  int // index in files of the highest seq, -1 if none
	pending []diskFile
	corrupt []diskFile
	stale   []diskFile // acked or dropped before; delete without counting
	bounded []diskFile // dropped now to fit MaxBytes
}

// load rebuilds the in-memory index from the directory. It runs before
// the Spool is shared, so it takes no locks.
func (s *Spool) load() error {
	r := recovery{newest: -1}
	if err := s.scan(&r); err != nil {
		return err
	}
	r.classify()
	r.bound(s.max)

	lost := uint64(len(r.corrupt) + len(r.bounded))
	r.st.dropped += lost
	for _, f := range r.bounded {
		r.st.floor = max(r.st.floor, f.seq)
	}
	removing := append(append(append([]diskFile(nil), r.corrupt...), r.bounded...), r.stale...)
	newestGone := false
	for _, f := range removing {
		newestGone = newestGone || (r.newest >= 0 && f.name == r.files[r.newest].name)
	}
	// The counters must be durable before the files they account for go.
	if lost > 0 || newestGone {
		if _, err := writeFileDurable(s.dirf, stateName, r.st.encode(), s.noSync); err != nil {
			return fmt.Errorf("write state: %w", err)
		}
	}
	for _, f := range r.corrupt {
		s.log.Error("spool: corrupt batch skipped", "file", f.name, "err", f.err)
	}
	if len(r.bounded) > 0 {
		s.log.Warn("spool over max bytes at open: dropped oldest batches",
			"count", len(r.bounded), "first_seq", r.bounded[0].seq,
			"last_seq", r.bounded[len(r.bounded)-1].seq, "max_bytes", s.max)
	}
	for _, f := range removing {
		s.remove(f.name)
	}

	s.lastSeq, s.dropped, s.floor = r.st.lastSeq, r.st.dropped, r.st.floor
	s.corrupt = uint64(len(r.corrupt))
	for _, f := range r.pending {
		s.pending = append(s.pending, entry{seq: f.seq, size: f.size})
		s.bytes += f.size
	}
	if r.newest >= 0 && !newestGone {
		s.newest = r.files[r.newest].name
	}
	return nil
}

// scan reads STATE and validates every batch file. Leftover temporary files
// are writes that never completed, so no caller was told they were stored:
// they are removed without being counted.
func (s *Spool) scan(r *recovery) error {
	buf, err := os.ReadFile(filepath.Join(s.dir, stateName))
	switch {
	case err == nil:
		if r.st, err = decodeState(buf); err != nil {
			// Not fatal: names and headers usually carry the same
			// counters; refusing to start would stop all telemetry.
			s.log.Error("spool: ignoring unreadable state file", "err", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read state: %w", err)
	}
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	for _, de := range des { // sorted by name, hence by seq
		name := de.Name()
		if strings.HasSuffix(name, tmpExt) {
			s.remove(name)
			continue
		}
		seq, done, ok := parseName(name)
		if !ok {
			if name != lockName && name != stateName {
				s.log.Warn("spool: ignoring unknown file", "file", name)
			}
			continue
		}
		f := diskFile{name: name, seq: seq, done: done}
		h, data, err := readRecord(filepath.Join(s.dir, name), seq)
		switch {
		case err == nil:
			f.size = int64(headerSize + len(data))
			r.st.dropped = max(r.st.dropped, h.dropped)
			r.st.floor = max(r.st.floor, h.floor)
		case errors.Is(err, errCorrupt):
			f.err = err
		default:
			return fmt.Errorf("read %s: %w", name, err)
		}
		r.st.lastSeq = max(r.st.lastSeq, seq)
		if done {
			r.st.floor = max(r.st.floor, seq)
		}
		r.files = append(r.files, f)
		r.newest = len(r.files) - 1
	}
	return nil
}

// classify sorts the files once the floor is known. The newest file is kept
// unless it is a corrupt pending batch, so that its name and header keep
// carrying the counters.
func (r *recovery) classify() {
	for i, f := range r.files {
		live := !f.done && f.seq > r.st.floor
		switch {
		case live && f.err == nil:
			r.pending = append(r.pending, f)
		case live:
			r.corrupt = append(r.corrupt, f)
		case i != r.newest:
			r.stale = append(r.stale, f)
		}
	}
}

// bound drops the oldest pending batches while they exceed max (MaxBytes
// may have been lowered since they were written).
func (r *recovery) bound(max int64) {
	var total int64
	for _, f := range r.pending {
		total += f.size
	}
	k := 0
	for ; total > max; k++ {
		total -= r.pending[k].size
	}
	r.bounded, r.pending = r.pending[:k:k], r.pending[k:]
}
