package command

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// Retention of the state dir (doc.go "State dir").
const (
	keepNewest = 1000               // ids always kept, newest first
	keepAge    = 7 * 24 * time.Hour // younger records are kept beyond keepNewest...
	keepMax    = 10000              // ...up to this many, so the dir stays bounded
	pruneEvery = 100                // records written between prunes
)

// record is what the state dir knows about one command id. A record
// without Final means the command was started and has not finished.
type record struct {
	ID      string                  `json:"id"`
	Name    string                  `json:"name"`
	Started time.Time               `json:"started"`
	Final   *protocol.CommandResult `json:"final,omitempty"`
}

// store keeps one JSON file per command id. Files are named by the SHA-256
// of the id, so any id maps to a safe, fixed-length name.
type store struct {
	dir string
	log *slog.Logger
}

func openStore(dir string, log *slog.Logger) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	// MkdirAll keeps the mode of an existing dir; results may hold
	// sensitive output, so tighten it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	return &store{dir: dir, log: log}, nil
}

func (s *store) path(id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(s.dir, hex.EncodeToString(sum[:])+".json")
}

// load returns the record of id. found is false when there is none; err
// is set when a file exists but cannot be read or parsed.
func (s *store) load(id string) (rec record, found bool, err error) {
	b, err := os.ReadFile(s.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, true, fmt.Errorf("read record: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return record{}, true, fmt.Errorf("parse record: %w", err)
	}
	if rec.ID != id {
		return record{}, true, fmt.Errorf("parse record: holds id %q", clip(rec.ID))
	}
	return rec, true, nil
}

// save writes rec durably: temp file, fsync, rename, fsync of the dir. A
// crash leaves either the old record or the new one, never a torn file.
func (s *store) save(rec record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	f, err := os.CreateTemp(s.dir, ".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("save record: %w", err)
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("save record: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save record: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save record: %w", err)
	}
	if err := os.Rename(f.Name(), s.path(rec.ID)); err != nil {
		return fmt.Errorf("save record: %w", err)
	}
	return s.syncDir()
}

// syncDir makes the rename itself durable.
func (s *store) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	return nil
}

// prune deletes records beyond the retention (keepNewest, keepAge,
// keepMax), judged by file modification time so that even an unreadable
// record ages out, and temp files a crash left behind.
func (s *store) prune(now time.Time) error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	type file struct {
		name string
		mod  time.Time
	}
	var files []file
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		switch {
		case strings.HasPrefix(e.Name(), ".tmp-") && now.Sub(info.ModTime()) > time.Hour:
			s.remove(e.Name())
		case strings.HasSuffix(e.Name(), ".json") && e.Type().IsRegular():
			files = append(files, file{e.Name(), info.ModTime()})
		}
	}
	slices.SortFunc(files, func(a, b file) int { return b.mod.Compare(a.mod) })
	for i, f := range files {
		if i >= keepMax || (i >= keepNewest && now.Sub(f.mod) > keepAge) {
			s.remove(f.name)
		}
	}
	return nil
}

func (s *store) remove(name string) {
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("prune command record", "file", name, "err", err)
	}
}
