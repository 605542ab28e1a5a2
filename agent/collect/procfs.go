package collect

import (
	"errors"
	"io"
	"os"
	"strconv"
)

// procFile is a /proc file kept open and re-read from offset 0 at every
// collection. The kernel regenerates a seq_file's text on each read from
// the start, so this sees fresh values with two pread(2)s (the second finds
// the end) instead of open, fstat, read, read and close, and allocates
// nothing once buf has grown to the file's size.
type procFile struct {
	path string
	f    *os.File
	buf  []byte
}

// procBufSize holds /proc/meminfo, /proc/net/dev with a few interfaces and
// /proc/stat of a 4-core board; larger files grow the buffer once.
const procBufSize = 4 << 10

// read returns the whole file. The result is valid until the next call.
// After an error the file is closed, so the next call opens it again.
func (p *procFile) read() ([]byte, error) {
	if p.f == nil {
		f, err := os.Open(p.path)
		if err != nil {
			return nil, err
		}
		p.f = f
	}
	if p.buf == nil {
		p.buf = make([]byte, procBufSize)
	}
	for {
		n, err := p.f.ReadAt(p.buf, 0)
		switch {
		case errors.Is(err, io.EOF) || (err == nil && n < len(p.buf)):
			return p.buf[:n], nil
		case err != nil:
			p.Close()
			return nil, err
		}
		// Full buffer: there may be more.
		p.buf = make([]byte, 2*len(p.buf))
	}
}

// Close closes the file; a later read opens it again.
func (p *procFile) Close() error {
	if p.f == nil {
		return nil
	}
	err := p.f.Close()
	p.f = nil
	return err
}

// cutLine returns the first line of b (without '\n') and the rest.
func cutLine(b []byte) (line, rest []byte) {
	for i, c := range b {
		if c == '\n' {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

// cutField skips leading spaces and tabs and returns the next run of
// other bytes and what follows it.
func cutField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	j := i
	for j < len(b) && b[j] != ' ' && b[j] != '\t' {
		j++
	}
	return b[i:j], b[j:]
}

// parseUint parses a decimal counter as the kernel prints it.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// parseFloat parses a short decimal such as a load average. The string
// conversion does not allocate: ParseFloat does not keep its argument.
func parseFloat(b []byte) (float64, bool) {
	f, err := strconv.ParseFloat(string(b), 64)
	return f, err == nil
}

// parseUints fills dst with the leading decimal fields of b and reports
// whether there were enough.
func parseUints(b []byte, dst []uint64) bool {
	for i := range dst {
		var f []byte
		f, b = cutField(b)
		v, ok := parseUint(f)
		if !ok {
			return false
		}
		dst[i] = v
	}
	return true
}
