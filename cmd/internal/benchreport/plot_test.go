package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
)

// checkSVG fails unless data is well-formed XML with an <svg> root.
func checkSVG(t *testing.T, data []byte) {
	t.Helper()
	if len(data) == 0 {
		t.Fatal("empty SVG")
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("invalid SVG: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
}

func TestCDFPlotSVG(t *testing.T) {
	wide := Samples{Label: "wide", Values: []float64{0.8, 1, 1.2, 2, 3, 5, 40, 250}}
	var narrow Samples
	narrow.Label = "narrow"
	for i := range 2000 { // more than maxCDFPoints
		narrow.Values = append(narrow.Values, 10+float64(i%97)/10)
	}
	for name, series := range map[string][]Samples{"log": {wide, narrow}, "linear": {narrow}} {
		p, err := CDFPlot("latency "+name, series)
		if err != nil {
			t.Fatal(err)
		}
		if _, isLog := p.X.Scale.(plot.LogScale); isLog != (name == "log") {
			t.Errorf("%s: x scale %T", name, p.X.Scale)
		}
		var buf bytes.Buffer
		if err := writeSVG(&buf, []*plot.Plot{p}, 6*vg.Inch, 4*vg.Inch); err != nil {
			t.Fatal(err)
		}
		checkSVG(t, buf.Bytes())
		if !strings.Contains(buf.String(), "p99 ") {
			t.Errorf("%s: p99 not marked", name)
		}
	}
}

func TestMakePlot(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("rtt-1000.txt", "1.5\n2.25\n# comment\n\n3\n40\n")
	write("idle-connections.txt", "1000 14.2 40.1\n19000 12.9 260.3\n5000 13.1 80.5\n")
	cdf := Plot{Name: "rtt", Title: "RTT", Kind: PlotCDF, Series: []Series{
		{Label: "1,000", File: "rtt-1000.txt"}, {Label: "10,000", File: "rtt-10000.txt"}}}
	path, notes, err := MakePlot(cdf, dir, out)
	if err != nil || path != filepath.Join(out, "rtt.svg") || len(notes) != 1 || !strings.Contains(notes[0], "rtt-10000.txt") {
		t.Fatalf("MakePlot(cdf) = %q %q %v", path, notes, err)
	}
	conns := Plot{Name: "idle", Title: "Idle", Kind: PlotConnections, Series: []Series{{File: "idle-connections.txt"}}}
	if path, notes, err = MakePlot(conns, dir, out); err != nil || len(notes) != 0 {
		t.Fatalf("MakePlot(conns) = %q %q %v", path, notes, err)
	}
	for _, name := range []string{"rtt.svg", "idle.svg"} {
		data, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		checkSVG(t, data)
	}
	missing := Plot{Name: "none", Title: "None", Kind: PlotConnections, Series: []Series{{File: "nope.txt"}}}
	if path, notes, err = MakePlot(missing, dir, out); err != nil || path != "" || len(notes) != 1 {
		t.Fatalf("MakePlot(missing) = %q %q %v, want a note and no error", path, notes, err)
	}
	write("bad.txt", "1 2\n")
	bad := Plot{Name: "bad", Title: "Bad", Kind: PlotCDF, Series: []Series{{Label: "bad", File: "bad.txt"}}}
	if _, _, err = MakePlot(bad, dir, out); err == nil {
		t.Fatal("MakePlot accepted a line with two numbers for a CDF")
	}
}
