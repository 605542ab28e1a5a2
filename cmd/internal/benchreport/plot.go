package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// errNoSamples: a samples file exists but is empty; treated like a
// missing one.
var errNoSamples = errors.New("no samples")

// maxCDFPoints bounds the points drawn per CDF line, so an SVG stays small
// however many samples a benchmark wrote.
const maxCDFPoints = 500

// Samples is one CDF series: latencies in milliseconds.
type Samples struct {
	Label  string
	Values []float64
}

// ConnRow is one line of idle-connections.txt.
type ConnRow struct{ Conns, KiBPerConn, RSSMiB float64 }

// readNumbers reads a samples file: whitespace-separated numbers, want per
// line; blank lines and lines starting with '#' are skipped.
func readNumbers(r io.Reader, want int) ([][]float64, error) {
	var rows [][]float64
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != want {
			return nil, fmt.Errorf("line %d: %d fields, want %d", n, len(f), want)
		}
		row := make([]float64, want)
		for i, s := range f {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			row[i] = v
		}
		rows = append(rows, row)
	}
	return rows, sc.Err()
}

// quantile of sorted values, nearest rank.
func quantile(sorted []float64, q float64) float64 {
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// CDFPlot draws the cumulative distribution of each series, p50 and p99
// marked and labelled; the x axis is logarithmic when the values span more
// than two decades.
func CDFPlot(title string, series []Samples) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "fraction of samples ≤ x"
	p.X.Label.Text = "latency (ms)"
	p.Y.Min, p.Y.Max = 0, 1
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, v := range s.Values {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	logX := lo > 0 && hi/lo > 100
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.X.Label.Text = "latency (ms, log scale)"
	}
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.XOffs = -vg.Millimeter * 2
	p.Legend.YOffs = vg.Centimeter
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	for i, s := range series {
		if len(s.Values) == 0 {
			return nil, fmt.Errorf("series %q has no samples", s.Label)
		}
		if err := addCDF(p, s, plotutil.Color(i)); err != nil {
			return nil, err
		}
	}
	p.Add(plotter.NewGrid())
	if !logX {
		p.X.Tick.Marker = plainTicks{}
	}
	return p, nil
}

// plainTicks are gonum's default ticks labelled without trailing zeros
// ("2,500" rather than "2500.00").
type plainTicks struct{}

func (plainTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = plain(ticks[i].Value)
		}
	}
	return ticks
}

func addCDF(p *plot.Plot, s Samples, c color.Color) error {
	sorted := slices.Clone(s.Values)
	slices.Sort(sorted)
	n := len(sorted)
	steps := min(n, maxCDFPoints)
	xys := make(plotter.XYs, 0, steps)
	for k := range steps {
		i := k * (n - 1) / max(1, steps-1)
		xys = append(xys, plotter.XY{X: sorted[i], Y: float64(i+1) / float64(n)})
	}
	line, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("series %q: %w", s.Label, err)
	}
	line.Color = c
	line.Width = vg.Points(1.5)
	p50, p99 := quantile(sorted, 0.50), quantile(sorted, 0.99)
	marks := plotter.XYs{{X: p50, Y: 0.5}, {X: p99, Y: 0.99}}
	dots, err := plotter.NewScatter(marks)
	if err != nil {
		return err
	}
	dots.Color, dots.Shape, dots.Radius = c, draw.CircleGlyph{}, vg.Points(3)
	p.Add(line, dots)
	// The values go in the legend: labels next to the dots collide when
	// two series are close.
	p.Legend.Add(fmt.Sprintf("%s, %s samples: p50 %s ms, p99 %s ms (dots)", s.Label, plain(float64(n)), sig3(p50), sig3(p99)), line)
	return nil
}

// ConnectionsPlots are two plots against the number of connections: the
// hub's RSS and the KiB each connection costs.
func ConnectionsPlots(title string, rows []ConnRow) ([]*plot.Plot, error) {
	if len(rows) == 0 {
		return nil, errors.New("no rows")
	}
	rows = slices.Clone(rows)
	slices.SortFunc(rows, func(a, b ConnRow) int { return int(a.Conns - b.Conns) })
	rss, kib := make(plotter.XYs, len(rows)), make(plotter.XYs, len(rows))
	for i, r := range rows {
		rss[i] = plotter.XY{X: r.Conns, Y: r.RSSMiB}
		kib[i] = plotter.XY{X: r.Conns, Y: r.KiBPerConn}
	}
	var plots []*plot.Plot
	for i, s := range []struct {
		name, y string
		xys     plotter.XYs
	}{{title + ": RSS", "hub RSS (MiB)", rss}, {title + ": per connection", "KiB per connection", kib}} {
		p := plot.New()
		p.Title.Text = s.name
		p.X.Label.Text = "idle connections"
		p.Y.Label.Text = s.y
		p.Y.Min = 0
		p.X.Tick.Marker, p.Y.Tick.Marker = plainTicks{}, plainTicks{}
		line, points, err := plotter.NewLinePoints(s.xys)
		if err != nil {
			return nil, err
		}
		line.Color, points.Color = plotutil.Color(i), plotutil.Color(i)
		p.Add(plotter.NewGrid(), line, points)
		plots = append(plots, p)
	}
	return plots, nil
}

// writeSVG draws plots side by side into one SVG.
func writeSVG(w io.Writer, plots []*plot.Plot, width, height vg.Length) error {
	c := vgsvg.New(width*vg.Length(len(plots)), height)
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Millimeter * 6, PadTop: vg.Millimeter * 2,
		PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align([][]*plot.Plot{plots}, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	_, err := c.WriteTo(w)
	return err
}

// MakePlot draws p from the samples in dir into outDir/<p.Name>.svg. A
// missing samples file skips its series (or the whole plot) with a note;
// only unreadable data or a failed write is an error.
func MakePlot(p Plot, dir, outDir string) (path string, notes []string, err error) {
	var plots []*plot.Plot
	switch p.Kind {
	case PlotCDF:
		var series []Samples
		for _, s := range p.Series {
			rows, err := readSamples(filepath.Join(dir, s.File), 1)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNoSamples) {
				notes = append(notes, fmt.Sprintf("%s: no samples (%s missing or empty), not plotted.", s.Label, s.File))
				continue
			} else if err != nil {
				return "", notes, err
			}
			vals := make([]float64, len(rows))
			for i, r := range rows {
				vals[i] = r[0]
			}
			series = append(series, Samples{Label: s.Label, Values: vals})
		}
		if len(series) == 0 {
			return "", []string{fmt.Sprintf("Plot %q skipped: no samples files in %s.", p.Title, dir)}, nil
		}
		cdf, err := CDFPlot(p.Title, series)
		if err != nil {
			return "", notes, err
		}
		plots = []*plot.Plot{cdf}
	case PlotConnections:
		rows, err := readSamples(filepath.Join(dir, p.Series[0].File), 3)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNoSamples) {
			return "", []string{fmt.Sprintf("Plot %q skipped: %s missing or empty in %s.", p.Title, p.Series[0].File, dir)}, nil
		} else if err != nil {
			return "", nil, err
		}
		conns := make([]ConnRow, len(rows))
		for i, r := range rows {
			conns[i] = ConnRow{Conns: r[0], KiBPerConn: r[1], RSSMiB: r[2]}
		}
		if plots, err = ConnectionsPlots(p.Title, conns); err != nil {
			return "", nil, fmt.Errorf("%s: %w", p.Series[0].File, err)
		}
	}
	var buf bytes.Buffer
	if err := writeSVG(&buf, plots, 6*vg.Inch, 4*vg.Inch); err != nil {
		return "", notes, fmt.Errorf("plot %s: %w", p.Name, err)
	}
	path = filepath.Join(outDir, p.Name+".svg")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", notes, err
	}
	return path, notes, nil
}

func readSamples(path string, fields int) ([][]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := readNumbers(f, fields)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: %w", path, errNoSamples)
	}
	return rows, nil
}
