package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RecordOverhead is what a stored batch costs on disk beyond its encoded
// message; a batch fits in the spool when RecordOverhead+len(message) <=
// MaxBytes.
const RecordOverhead = headerSize

const (
	recordMagic   = "FWSB"
	recordVersion = 1
	headerSize    = 40
	crcOffset     = 36

	stateMagic   = "FWSS"
	stateVersion = 1
	stateSize    = 36

	lockName   = "LOCK"
	stateName  = "STATE"
	batchExt   = ".batch"
	doneExt    = ".done"
	tmpExt     = ".tmp"
	seqDigits  = 20
	stateCRCAt = 32
)

// castagnoli is a lookup table, read-only after init; CRC-32C because it is
// what storage formats use and is hardware accelerated on arm64 and amd64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a record that fails validation.
var errCorrupt = errors.New("corrupt record")

// header is the metadata stored in front of each batch (see doc.go).
type header struct {
	seq     uint64
	dropped uint64
	floor   uint64
}

// encodeRecord returns the complete file content for data.
func encodeRecord(h header, data []byte) []byte {
	buf := make([]byte, headerSize+len(data))
	copy(buf, recordMagic)
	le := binary.LittleEndian
	le.PutUint32(buf[4:], recordVersion)
	le.PutUint64(buf[8:], h.seq)
	le.PutUint64(buf[16:], h.dropped)
	le.PutUint64(buf[24:], h.floor)
	le.PutUint32(buf[32:], uint32(len(data)))
	copy(buf[headerSize:], data)
	le.PutUint32(buf[crcOffset:], recordCRC(buf[:crcOffset], data))
	return buf
}

func recordCRC(head, data []byte) uint32 {
	return crc32.Update(crc32.Checksum(head, castagnoli), castagnoli, data)
}

// decodeRecord validates a whole file's content and returns its header and
// message. The message aliases buf.
func decodeRecord(buf []byte) (header, []byte, error) {
	if len(buf) < headerSize {
		return header{}, nil, fmt.Errorf("%w: %d bytes, shorter than the header", errCorrupt, len(buf))
	}
	le := binary.LittleEndian
	if string(buf[:4]) != recordMagic {
		return header{}, nil, fmt.Errorf("%w: bad magic %q", errCorrupt, buf[:4])
	}
	if v := le.Uint32(buf[4:]); v != recordVersion {
		return header{}, nil, fmt.Errorf("%w: unknown version %d", errCorrupt, v)
	}
	n := int64(le.Uint32(buf[32:]))
	if int64(len(buf)) != headerSize+n {
		return header{}, nil, fmt.Errorf("%w: %d bytes, header says %d", errCorrupt, len(buf), headerSize+n)
	}
	data := buf[headerSize:]
	if got, want := recordCRC(buf[:crcOffset], data), le.Uint32(buf[crcOffset:]); got != want {
		return header{}, nil, fmt.Errorf("%w: crc %08x, header says %08x", errCorrupt, got, want)
	}
	h := header{seq: le.Uint64(buf[8:]), dropped: le.Uint64(buf[16:]), floor: le.Uint64(buf[24:])}
	return h, data, nil
}

// readRecord reads and validates the batch file at path, which must hold seq.
func readRecord(path string, seq uint64) (header, []byte, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return header{}, nil, err
	}
	h, data, err := decodeRecord(buf)
	if err != nil {
		return header{}, nil, err
	}
	if h.seq != seq {
		return header{}, nil, fmt.Errorf("%w: header seq %d in file of seq %d", errCorrupt, h.seq, seq)
	}
	return h, data, nil
}

func fileName(seq uint64, ext string) string {
	return fmt.Sprintf("%0*d%s", seqDigits, seq, ext)
}

// parseName recognises "<seq>.batch" and "<seq>.done".
func parseName(name string) (seq uint64, done, ok bool) {
	var stem string
	switch {
	case strings.HasSuffix(name, batchExt):
		stem = strings.TrimSuffix(name, batchExt)
	case strings.HasSuffix(name, doneExt):
		stem, done = strings.TrimSuffix(name, doneExt), true
	default:
		return 0, false, false
	}
	if len(stem) != seqDigits {
		return 0, false, false
	}
	seq, err := strconv.ParseUint(stem, 10, 64)
	if err != nil || seq == 0 {
		return 0, false, false
	}
	return seq, done, true
}

// state is the content of the STATE file.
type state struct {
	lastSeq uint64
	dropped uint64
	floor   uint64
}

func (st state) encode() []byte {
	buf := make([]byte, stateSize)
	copy(buf, stateMagic)
	le := binary.LittleEndian
	le.PutUint32(buf[4:], stateVersion)
	le.PutUint64(buf[8:], st.lastSeq)
	le.PutUint64(buf[16:], st.dropped)
	le.PutUint64(buf[24:], st.floor)
	le.PutUint32(buf[stateCRCAt:], crc32.Checksum(buf[:stateCRCAt], castagnoli))
	return buf
}

func decodeState(buf []byte) (state, error) {
	le := binary.LittleEndian
	switch {
	case len(buf) != stateSize:
		return state{}, fmt.Errorf("%w: state is %d bytes, want %d", errCorrupt, len(buf), stateSize)
	case string(buf[:4]) != stateMagic:
		return state{}, fmt.Errorf("%w: state has bad magic", errCorrupt)
	case le.Uint32(buf[4:]) != stateVersion:
		return state{}, fmt.Errorf("%w: state version %d", errCorrupt, le.Uint32(buf[4:]))
	case crc32.Checksum(buf[:stateCRCAt], castagnoli) != le.Uint32(buf[stateCRCAt:]):
		return state{}, fmt.Errorf("%w: state crc mismatch", errCorrupt)
	}
	return state{lastSeq: le.Uint64(buf[8:]), dropped: le.Uint64(buf[16:]), floor: le.Uint64(buf[24:])}, nil
}

// writeFileDurable writes content to name in the directory dirf through a
// temporary file and rename, so readers only ever see the old or the
// complete new content. Unless noSync, the file is fsynced before the rename
// and the directory after it, so the name survives a power cut once this
// returns. published reports whether the rename happened, even on error: the
// caller must then treat the name as possibly present after a crash.
func writeFileDurable(dirf *os.File, name string, content []byte, noSync bool) (published bool, err error) {
	final := filepath.Join(dirf.Name(), name)
	tmp := final + tmpExt
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, err
	}
	_, err = f.Write(content)
	if err == nil && !noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return false, err
	}
	if !noSync {
		if err := dirf.Sync(); err != nil {
			return true, fmt.Errorf("sync dir: %w", err)
		}
	}
	return true, nil
}
