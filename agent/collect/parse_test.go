package collect

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/fleetwire/fleetwire/protocol"
)

func TestParseLine(t *testing.T) {
	tags := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	maxName := strings.Repeat("n", protocol.DefaultLimits.MaxNameLen-len("s."))
	maxStr := strings.Repeat("x", protocol.DefaultLimits.MaxStringLen)
	var sixteen, seventeen []string
	want16 := map[string]string{}
	for i := range 17 {
		kv := fmt.Sprintf("k%d=v%d", i, i)
		if i < 16 {
			sixteen = append(sixteen, kv)
			want16[fmt.Sprintf("k%d", i)] = fmt.Sprintf("v%d", i)
		}
		seventeen = append(seventeen, kv)
	}
	ok := []struct {
		line string
		want protocol.Point
	}{
		{"t 42", protocol.Point{Name: "s.t", Value: int64(42)}},
		{"t -3", protocol.Point{Name: "s.t", Value: int64(-3)}},
		{"t +7", protocol.Point{Name: "s.t", Value: int64(7)}},
		{"t 9223372036854775807", protocol.Point{Name: "s.t", Value: int64(math.MaxInt64)}},
		{"t -9223372036854775808", protocol.Point{Name: "s.t", Value: int64(math.MinInt64)}},
		{"t 21.5", protocol.Point{Name: "s.t", Value: 21.5}},
		{"t 1e3", protocol.Point{Name: "s.t", Value: 1000.0}},
		{"t -2.5E-1", protocol.Point{Name: "s.t", Value: -0.25}},
		{"t 1e+2", protocol.Point{Name: "s.t", Value: 100.0}},
		{"t .5", protocol.Point{Name: "s.t", Value: 0.5}},
		{"t 42.0", protocol.Point{Name: "s.t", Value: 42.0}},
		{"t true", protocol.Point{Name: "s.t", Value: true}},
		{"t false", protocol.Point{Name: "s.t", Value: false}},
		{`t "hello world"`, protocol.Point{Name: "s.t", Value: "hello world"}},
		{`t ""`, protocol.Point{Name: "s.t", Value: ""}},
		{`t "say \"hi\" \\o/"`, protocol.Point{Name: "s.t", Value: `say "hi" \o/`}},
		{`t "k=v #x" a=b`, protocol.Point{Name: "s.t", Value: "k=v #x", Tags: tags("a", "b")}},
		{`t "grüße ✓"`, protocol.Point{Name: "s.t", Value: "grüße ✓"}},
		{"t 1 room=attic", protocol.Point{Name: "s.t", Value: int64(1), Tags: tags("room", "attic")}},
		{"t\t1\t\troom=attic   floor=2  ", protocol.Point{Name: "s.t", Value: int64(1), Tags: tags("room", "attic", "floor", "2")}},
		{"t 1 url=a=b", protocol.Point{Name: "s.t", Value: int64(1), Tags: tags("url", "a=b")}},
		{"room.temp_c 1", protocol.Point{Name: "s.room.temp_c", Value: int64(1)}},
		{"_x-y 1", protocol.Point{Name: "s._x-y", Value: int64(1)}},
		{maxName + " 1", protocol.Point{Name: "s." + maxName, Value: int64(1)}},
		{`t "` + maxStr + `"`, protocol.Point{Name: "s.t", Value: maxStr}},
		{"t 1 " + strings.Join(sixteen, " "), protocol.Point{Name: "s.t", Value: int64(1), Tags: want16}},
	}
	for _, tt := range ok {
		got, err := parseLine("s", tt.line)
		if err != nil {
			t.Errorf("parseLine(%.60q): %v", tt.line, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseLine(%.60q) = %#v, want %#v", tt.line, got, tt.want)
		}
		checkPoints(t, []protocol.Point{got})
	}

	bad := []struct{ line, want string }{
		{"t", "missing value"},
		{"9t 1", "not allowed"},
		{"t! 1", "not allowed"},
		{"t. 1", "must not end with '.'"},
		{maxName + "n 1", "129 bytes"},
		{"t 9223372036854775808", "out of range"},
		{"t -9223372036854775809", "out of range"},
		{"t 1e400", "not a finite decimal"},
		{"t 1.2.3", "not a finite decimal"},
		{"t -", "not a finite decimal"},
		{"t nan", "want an integer"},
		{"t NaN", "want an integer"},
		{"t inf", "want an integer"},
		{"t -Inf", "want an integer"},
		{"t 0x10", "want an integer"},
		{"t 1_000", "want an integer"},
		{"t True", "want an integer"},
		{"t yes", "want an integer"},
		{"t 'x'", "want an integer"},
		{`t "open`, "no closing quote"},
		{`t "a\"`, "no closing quote"},
		{`t "a\n"`, "bad escape"},
		{`t "a\`, "bad escape"},
		{`t "a"b`, "closing quote not followed by a space"},
		{`t "` + maxStr + `x"`, "4097 bytes"},
		{"t \"\xff\"", "not UTF-8"},
		{"t 1 room", "want key=value"},
		{"t 1 =x", "tag key"},
		{"t 1 9k=x", "tag key"},
		{"t 1 k=", "value length 0"},
		{"t 1 k=a\\b", "backslash"},
		{"t 1 k=\x01", "control character"},
		{"t 1 device=pi", "reserved"},
		{"t 1 a=1 a=2", "given twice"},
		{"t 1 k=" + strings.Repeat("v", 257), "value length 257"},
		{"t 1 " + strings.Join(seventeen, " "), "more than 16 tags"},
	}
	for _, tt := range bad {
		_, err := parseLine("s", tt.line)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseLine(%.60q) error = %v, want it to contain %q", tt.line, err, tt.want)
		}
	}
}

func TestParseOutputLines(t *testing.T) {
	out := "# header\n\n  \t\ngood 1\r\nbad\n   # indented comment\nalso_good 2 k=v\n9bad 1\nlast \"no newline\""
	pts, err := ParseOutput("m", []byte(out))
	want := []protocol.Point{
		{Name: "m.good", Value: int64(1)},
		{Name: "m.also_good", Value: int64(2), Tags: map[string]string{"k": "v"}},
		{Name: "m.last", Value: "no newline"},
	}
	if !reflect.DeepEqual(pts, want) {
		t.Errorf("points = %#v, want %#v", pts, want)
	}
	var perr *ParseError
	if !errors.As(err, &perr) {
		t.Fatalf("err = %v, want *ParseError", err)
	}
	if perr.Bad != 2 || len(perr.Lines) != 2 || perr.Lines[0].Line != 5 || perr.Lines[1].Line != 8 {
		t.Errorf("ParseError = %+v, want lines 5 and 8", perr)
	}
	if s := err.Error(); !strings.Contains(s, "2 bad output line(s): line 5: missing value, line 8:") {
		t.Errorf("Error() = %q", s)
	}

	if pts, err := ParseOutput("m", []byte("# nothing\n\n")); len(pts) != 0 || err != nil {
		t.Errorf("comments only: %v, %v; want nothing", pts, err)
	}
	if pts, err := ParseOutput("m", nil); len(pts) != 0 || err != nil {
		t.Errorf("empty: %v, %v; want nothing", pts, err)
	}
}

func TestParseOutputLimits(t *testing.T) {
	out := []byte(strings.Repeat("x 1\n", MaxExecPoints))
	pts, err := ParseOutput("m", out)
	if err != nil || len(pts) != MaxExecPoints {
		t.Fatalf("at the limit: %d points, %v; want %d, nil", len(pts), err, MaxExecPoints)
	}
	out = append(out, "x 2\nx 3\n"...)
	pts, err = ParseOutput("m", out)
	var perr *ParseError
	if len(pts) != MaxExecPoints || !errors.As(err, &perr) || perr.Bad != 2 || perr.Lines[0].Line != MaxExecPoints+1 {
		t.Fatalf("past the limit: %d points, %v; want %d and lines %d, %d bad", len(pts), err, MaxExecPoints, MaxExecPoints+1, MaxExecPoints+2)
	}

	// Only the first few bad lines are described; the rest are counted.
	pts, err = ParseOutput("m", []byte(strings.Repeat("bad\n", maxLineErrors+5)))
	if len(pts) != 0 || !errors.As(err, &perr) || perr.Bad != maxLineErrors+5 || len(perr.Lines) != maxLineErrors {
		t.Fatalf("many bad lines: %v, %+v", pts, err)
	}
	if !strings.HasSuffix(err.Error(), "(and 5 more)") {
		t.Errorf("Error() = %q, want it to end with the count of the rest", err)
	}
}

// formatPoint writes p in the exec output format; parsing the line gives
// p back.
func formatPoint(name string, p protocol.Point) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte(' ')
	switch v := p.Value.(type) {
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case float64:
		s := strconv.FormatFloat(v, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0" // else it would read back as an int
		}
		b.WriteString(s)
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case string:
		b.WriteByte('"')
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v))
		b.WriteByte('"')
	}
	for k, v := range p.Tags {
		b.WriteString(" " + k + "=" + v)
	}
	return b.String()
}

func FuzzParseOutput(f *testing.F) {
	f.Add([]byte("temperature 21.5 room=attic\nhumidity 48\nok true\nstatus \"warming \\\"up\\\"\"\n"))
	f.Add([]byte("# c\n\nbad\nx 1e3 a=b c=d\r\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		pts, err := ParseOutput("fz", out)
		lines := strings.Count(string(out), "\n") + 1
		if err != nil {
			var perr *ParseError
			if !errors.As(err, &perr) || perr.Bad < 1 || len(perr.Lines) < 1 || len(perr.Lines) > maxLineErrors {
				t.Fatalf("error %v (%T) is not a well-formed *ParseError", err, err)
			}
			if len(pts)+perr.Bad > lines {
				t.Fatalf("%d points + %d bad lines > %d lines", len(pts), perr.Bad, lines)
			}
		} else if len(pts) > lines {
			t.Fatalf("%d points from %d lines", len(pts), lines)
		}
		checkPoints(t, pts)
		for _, p := range pts {
			line := formatPoint(strings.TrimPrefix(p.Name, "fz."), p)
			again, err := parseLine("fz", line)
			if err != nil {
				t.Fatalf("point %#v formatted as %q does not parse: %v", p, line, err)
			}
			if !reflect.DeepEqual(again, p) {
				t.Fatalf("round trip of %q: got %#v, want %#v", line, again, p)
			}
		}
	})
}
