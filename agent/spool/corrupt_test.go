package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fiveBatches fills a fresh spool in dir with seqs 1..5 and closes it.
func fiveBatches(t *testing.T, dir string) {
	t.Helper()
	s := openT(t, dir, Options{})
	for i := range int64(5) {
		appendT(t, s, testBatch(i+1))
	}
	closeT(t, s)
}

func TestOpenRecoversFromCorruptRecords(t *testing.T) {
	mutations := map[string]func([]byte) []byte{
		"flip byte in the middle": func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b },
		"flip last byte":          func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b },
		"flip seq in header":      func(b []byte) []byte { b[8] ^= 0x02; return b },
		"flip length in header":   func(b []byte) []byte { b[32]++; return b },
		"truncate mid message":    func(b []byte) []byte { return b[:headerSize+3] },
		"truncate mid header":     func(b []byte) []byte { return b[:headerSize-1] },
		"empty file":              func(b []byte) []byte { return nil },
		"trailing garbage":        func(b []byte) []byte { return append(b, 0) },
		"bad magic":               func(b []byte) []byte { b[0] = 'X'; return b },
	}
	for name, mutate := range mutations {
		for _, target := range []uint64{1, 3, 5} { // oldest, middle, newest
			t.Run(fmt.Sprintf("%s/seq %d", name, target), func(t *testing.T) {
				dir := t.TempDir()
				fiveBatches(t, dir)
				corruptFile(t, dir, target, mutate)
				logs := &logBuf{}
				s := openT(t, dir, Options{Logger: logs.logger()})

				want := slices.DeleteFunc([]uint64{1, 2, 3, 4, 5}, func(q uint64) bool { return q == target })
				wantSeqs(t, pendingSeqs(t, s, 0, 10), want...)
				if st := s.Stats(); st.Corrupt != 1 || st.Dropped != 1 || st.NextSeq != 6 || st.Batches != 4 {
					t.Fatalf("Stats = %+v, want 1 corrupt, 4 batches, next seq 6", st)
				}
				if l := logs.String(); !strings.Contains(l, "corrupt") || !strings.Contains(l, fileName(target, batchExt)) {
					t.Fatalf("corruption not logged with the file name: %s", l)
				}
				if slices.Contains(dirNames(t, dir), fileName(target, batchExt)) {
					t.Fatal("corrupt file left in the spool")
				}
				closeT(t, s)

				// The loss stays counted, is not counted twice, and the seq
				// of a lost newest batch is not handed out again.
				s = openT(t, dir, Options{})
				if st := s.Stats(); st.Corrupt != 0 || st.Dropped != 1 || st.NextSeq != 6 {
					t.Fatalf("Stats after second open = %+v", st)
				}
				b := testBatch(6)
				if seq := appendT(t, s, b); seq != 6 || b.Dropped != 1 {
					t.Fatalf("append after recovery: seq %d dropped %d, want 6 and 1", seq, b.Dropped)
				}
			})
		}
	}
}

func TestOpenRemovesTornTempFile(t *testing.T) {
	dir := t.TempDir()
	fiveBatches(t, dir)
	// A power cut before the rename leaves a partial temporary file: the
	// Append never returned, so it is not a stored batch and not a loss.
	tmp := filepath.Join(dir, fileName(6, batchExt)+tmpExt)
	if err := os.WriteFile(tmp, []byte("FWSB\x01partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir, Options{})
	if st := s.Stats(); st.Batches != 5 || st.Dropped != 0 || st.Corrupt != 0 || st.NextSeq != 6 {
		t.Fatalf("Stats = %+v", st)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file not removed: %v", err)
	}
}

func TestOpenSurvivesCorruptStateFile(t *testing.T) {
	dir := t.TempDir()
	fiveBatches(t, dir)
	// Lose the newest batch so STATE gets written, then damage STATE.
	corruptFile(t, dir, 5, func(b []byte) []byte { return b[:10] })
	closeT(t, openT(t, dir, Options{}))
	if err := os.WriteFile(filepath.Join(dir, stateName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	s := openT(t, dir, Options{Logger: logs.logger()})
	wantSeqs(t, pendingSeqs(t, s, 0, 10), 1, 2, 3, 4)
	if !strings.Contains(logs.String(), "unreadable state") {
		t.Fatalf("bad state not logged: %s", logs.String())
	}
}

func TestPendingDiscardsRecordCorruptedAfterOpen(t *testing.T) {
	dir := t.TempDir()
	logs := &logBuf{}
	s := openT(t, dir, Options{Logger: logs.logger()})
	for i := range int64(3) {
		appendT(t, s, testBatch(i+1))
	}
	corruptFile(t, dir, 2, func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b })
	wantSeqs(t, pendingSeqs(t, s, 0, 10), 1, 3)
	if st := s.Stats(); st.Corrupt != 1 || st.Dropped != 1 || st.Batches != 2 {
		t.Fatalf("Stats = %+v", st)
	}
	if !strings.Contains(logs.String(), "corrupt batch discarded") {
		t.Fatalf("not logged: %s", logs.String())
	}
	closeT(t, s)
	s = openT(t, dir, Options{})
	wantSeqs(t, pendingSeqs(t, s, 0, 10), 1, 3)
	if st := s.Stats(); st.Dropped != 1 {
		t.Fatalf("Dropped after reopen = %d, want 1", st.Dropped)
	}
}

// TestDropSurvivesLostUnlink simulates a power cut after Append made the new
// batch durable but before the unlinks of the batches it dropped reached the
// disk: they must not come back, nor be counted twice.
func TestDropSurvivesLostUnlink(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MaxBytes: MinMaxBytes})
	for range 6 {
		appendT(t, s, blobBatch(10_000))
	}
	oldest, err := os.ReadFile(filepath.Join(dir, fileName(1, batchExt)))
	if err != nil {
		t.Fatal(err)
	}
	appendT(t, s, blobBatch(10_000)) // drops seq 1
	if st := s.Stats(); st.Dropped != 1 || st.FirstSeq != 2 {
		t.Fatalf("Stats = %+v, want seq 1 dropped", st)
	}
	closeT(t, s)
	if err := os.WriteFile(filepath.Join(dir, fileName(1, batchExt)), oldest, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Options{MaxBytes: MinMaxBytes})
	if st := s.Stats(); st.Dropped != 1 || st.FirstSeq != 2 || st.LastSeq != 7 {
		t.Fatalf("Stats after reopen = %+v, want seq 1 gone and counted once", st)
	}
	if slices.Contains(dirNames(t, dir), fileName(1, batchExt)) {
		t.Fatal("dropped batch file not cleaned up")
	}
}

func TestOpenEnforcesLowerMaxBytes(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MaxBytes: 1 << 20})
	for range 10 {
		appendT(t, s, blobBatch(10_000))
	}
	closeT(t, s)

	s = openT(t, dir, Options{MaxBytes: MinMaxBytes})
	st := s.Stats()
	if st.Dropped != 4 || st.Batches != 6 || st.FirstSeq != 5 || st.Bytes > MinMaxBytes {
		t.Fatalf("Stats = %+v, want the 4 oldest dropped", st)
	}
	closeT(t, s)
	s = openT(t, dir, Options{MaxBytes: MinMaxBytes})
	if st := s.Stats(); st.Dropped != 4 || st.FirstSeq != 5 {
		t.Fatalf("Stats after reopen = %+v, want the drop persisted once", st)
	}
}
