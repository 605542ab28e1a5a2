package collect

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fleetwire/fleetwire/protocol"
)

// MaxExecPoints is the most points one run of a program may yield; further
// lines are reported as bad. It is the hub's per-batch limit, which keeps
// a runaway script from growing the agent's memory.
const MaxExecPoints = 5000

// maxLineErrors is how many bad lines a ParseError describes; the rest are
// only counted, so a broken script cannot produce huge log lines.
const maxLineErrors = 10

// ParseError lists the lines of a program's output that were skipped. It
// comes back from Collect (wrapped) together with the points of the good
// lines; the agent logs it.
type ParseError struct {
	Bad   int         // number of bad lines
	Lines []LineError // the first few bad lines, in order
}

// LineError is one bad line of output.
type LineError struct {
	Line int   // 1-based line number
	Err  error // what is wrong with it
}

// Error lists the bad line numbers with their reasons.
func (e *ParseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d bad output line(s)", e.Bad)
	for i, l := range e.Lines {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%sline %d: %v", sep, l.Line, l.Err)
	}
	if more := e.Bad - len(e.Lines); more > 0 {
		fmt.Fprintf(&b, " (and %d more)", more)
	}
	return b.String()
}

func (e *ParseError) add(line int, err error) {
	e.Bad++
	if len(e.Lines) < maxLineErrors {
		e.Lines = append(e.Lines, LineError{Line: line, Err: err})
	}
}

// ParseOutput turns a program's output into points named
// "<measurement>.<name>" (format in doc.go, "Exec output format"). Bad
// lines are skipped; when there are any, the error is a *ParseError and
// the points of the good lines are returned with it.
func ParseOutput(measurement string, out []byte) ([]protocol.Point, error) {
	var pts []protocol.Point
	var perr ParseError
	for n := 1; len(out) > 0; n++ {
		var raw []byte
		raw, out, _ = bytes.Cut(out, []byte{'\n'})
		raw = bytes.TrimSuffix(raw, []byte{'\r'})
		raw = bytes.TrimLeft(raw, " \t")
		if len(raw) == 0 || raw[0] == '#' {
			continue
		}
		if len(pts) == MaxExecPoints {
			perr.add(n, fmt.Errorf("more than %d points", MaxExecPoints))
			continue
		}
		p, err := parseLine(measurement, string(raw))
		if err != nil {
			perr.add(n, err)
			continue
		}
		pts = append(pts, p)
	}
	if perr.Bad > 0 {
		return pts, &perr
	}
	return pts, nil
}

// parseLine parses `<name> <value> [<key>=<value> ...]` with no leading
// whitespace.
func parseLine(measurement, line string) (protocol.Point, error) {
	name, rest := nextField(line)
	if err := protocol.ValidName(name, protocol.DefaultLimits.MaxNameLen); err != nil {
		return protocol.Point{}, err
	}
	if strings.HasSuffix(name, ".") {
		return protocol.Point{}, fmt.Errorf("name %q: must not end with '.'", short(name))
	}
	full := measurement + "." + name
	if len(full) > protocol.DefaultLimits.MaxNameLen {
		return protocol.Point{}, fmt.Errorf("name %q: %d bytes with its prefix > %d", short(name), len(full), protocol.DefaultLimits.MaxNameLen)
	}
	if rest == "" {
		return protocol.Point{}, errors.New("missing value")
	}
	v, rest, err := parseValue(rest)
	if err != nil {
		return protocol.Point{}, err
	}
	tags, err := parseTags(rest)
	if err != nil {
		return protocol.Point{}, err
	}
	return protocol.Point{Name: full, Value: v, Tags: tags}, nil
}

// parseValue reads the value at the start of s and returns what follows.
func parseValue(s string) (any, string, error) {
	if s[0] == '"' {
		return parseQuoted(s)
	}
	tok, rest := nextField(s)
	switch {
	case tok == "true":
		return true, rest, nil
	case tok == "false":
		return false, rest, nil
	case isInteger(tok):
		i, err := strconv.ParseInt(tok, 10, 64)
		if err != nil {
			return nil, "", fmt.Errorf("integer %q out of range", short(tok))
		}
		return i, rest, nil
	case isDecimal(tok):
		f, err := strconv.ParseFloat(tok, 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, "", fmt.Errorf("number %q: not a finite decimal", short(tok))
		}
		return f, rest, nil
	}
	return nil, "", fmt.Errorf("value %q: want an integer, a decimal, true, false or a \"quoted string\"", short(tok))
}

// parseQuoted reads a double-quoted string whose only escapes are \" and
// \\, followed by whitespace or the end of the line.
func parseQuoted(s string) (any, string, error) {
	var b strings.Builder
	plain := true // no escapes so far: the result is a substring of s
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			v := s[1:i]
			if !plain {
				v = b.String()
			}
			rest := s[i+1:]
			if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
				return nil, "", errors.New("string: closing quote not followed by a space")
			}
			if err := checkString(v); err != nil {
				return nil, "", err
			}
			return v, skipSpace(rest), nil
		case '\\':
			if i+1 == len(s) || (s[i+1] != '"' && s[i+1] != '\\') {
				return nil, "", fmt.Errorf("string: bad escape at byte %d (only \\\" and \\\\)", i)
			}
			if plain {
				b.WriteString(s[1:i])
				plain = false
			}
			i++
			b.WriteByte(s[i])
		default:
			if !plain {
				b.WriteByte(c)
			}
		}
	}
	return nil, "", errors.New("string: no closing quote")
}

func checkString(v string) error {
	if len(v) > protocol.DefaultLimits.MaxStringLen {
		return fmt.Errorf("string of %d bytes > %d", len(v), protocol.DefaultLimits.MaxStringLen)
	}
	if !utf8.ValidString(v) {
		return errors.New("string is not UTF-8")
	}
	return nil
}

// parseTags reads whitespace-separated key=value pairs.
func parseTags(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	tags := make(map[string]string, 2)
	for s != "" {
		var kv string
		kv, s = nextField(s)
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("tag %q: want key=value", short(kv))
		}
		if err := protocol.ValidName(k, protocol.DefaultLimits.MaxTagKeyLen); err != nil {
			return nil, fmt.Errorf("tag key: %v", err)
		}
		if k == protocol.DeviceTag {
			return nil, fmt.Errorf("tag key %q is reserved", k)
		}
		if _, dup := tags[k]; dup {
			return nil, fmt.Errorf("tag %s: given twice", k)
		}
		if err := validTagValue(v); err != nil {
			return nil, fmt.Errorf("tag %s: %v", k, err)
		}
		if len(tags) == protocol.DefaultLimits.MaxTags {
			return nil, fmt.Errorf("more than %d tags", protocol.DefaultLimits.MaxTags)
		}
		tags[k] = v
	}
	return tags, nil
}

// nextField splits s at the first run of spaces or tabs.
func nextField(s string) (field, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], skipSpace(s[i:])
}

func skipSpace(s string) string { return strings.TrimLeft(s, " \t") }

// isInteger reports whether s is an optional sign followed by digits.
func isInteger(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isDecimal reports whether s uses only the characters of a decimal
// number with optional exponent. It keeps out what strconv.ParseFloat
// would also accept but the format does not: inf, nan, hex floats and
// underscores. ParseFloat checks the syntax itself.
func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && c != '.' && c != 'e' && c != 'E' && c != '-' && c != '+' {
			return false
		}
	}
	return true
}

// short bounds how much of a bad token an error message repeats.
func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
