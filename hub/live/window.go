package live

import (
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// SeriesSamples is one series of a device's recent window, oldest first.
// T holds Unix milliseconds; columns (not pairs) because that is what chart
// libraries such as uPlot take as is.
type SeriesSamples struct {
	Name string            `json:"name"`
	Tags map[string]string `json:"tags,omitempty"`
	T    []int64           `json:"t"`
	V    []float64         `json:"v"`
}

type sample struct {
	t int64 // Unix ms
	v float64
}

// ring is a series' samples in arrival order, at most max of them. Its
// buffer doubles up to max so a rarely reported series stays small; once
// full, the oldest sample is overwritten. Pruning only moves head, so a 1 Hz
// series costs O(1) per sample.
type ring struct {
	buf  []sample
	head int // index of the oldest sample
	n    int
	max  int
}

func (r *ring) len() int { return r.n }

func (r *ring) at(i int) sample { return r.buf[(r.head+i)%len(r.buf)] }

// push adds s and reports whether the ring grew (false: it overwrote).
func (r *ring) push(s sample) bool {
	if r.n == len(r.buf) {
		if len(r.buf) == r.max {
			r.buf[r.head] = s
			r.head = (r.head + 1) % len(r.buf)
			return false
		}
		nb := make([]sample, min(r.max, max(8, 2*len(r.buf))))
		for i := 0; i < r.n; i++ {
			nb[i] = r.at(i)
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = s
	r.n++
	return true
}

// prune drops samples older than cutoff from the front and returns how many.
// Samples arrive roughly in time order; an out-of-order old sample behind a
// newer one survives until its neighbours age out, which the count cap bounds.
func (r *ring) prune(cutoff int64) int {
	n := 0
	for r.n > 0 && r.at(0).t < cutoff {
		r.head = (r.head + 1) % len(r.buf)
		r.n--
		n++
	}
	if r.n == 0 {
		r.buf, r.head = nil, 0 // an idle series gives its buffer back
	}
	return n
}

type series struct {
	name string
	tags map[string]string
	r    ring
}

// deviceState is what the broker knows of one device: presence, the newest
// key-metric values (the fleet summary) and its recent window.
type deviceState struct {
	online   bool
	lastSeen int64
	metrics  map[string]float64
	series   map[string]*series // by seriesKey
}

func (d *deviceState) summary(id string) fleetEntry {
	return fleetEntry{id: id, online: d.online, lastSeen: d.lastSeen, metrics: maps.Clone(d.metrics)}
}

// seriesKey identifies a series: the name and its sorted tags. It runs
// once per point on the ingest path, so it avoids allocating beyond the key.
func seriesKey(name string, tags map[string]string) string {
	if len(tags) == 0 {
		return name
	}
	var stack [16]string // protocol limits tags per point to 16 by default
	keys := stack[:0]
	n := len(name)
	for k, v := range tags {
		keys = append(keys, k)
		n += len(k) + len(v) + 2
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(n)
	b.WriteString(name)
	for _, k := range keys {
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(tags[k])
	}
	return b.String()
}

// numeric returns v as a float64 if it is a finite number.
func numeric(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	case int:
		f = float64(x)
	default:
		return 0, false
	}
	return f, !math.IsNaN(f) && !math.IsInf(f, 0)
}

// addSample records one sample under b.winMu. It returns a drop reason or "".
func (b *Broker) addSample(d *deviceState, key, name string, tags map[string]string, s sample, now time.Time) string {
	cutoff := now.Add(-b.cfg.Window).UnixMilli()
	if s.t < cutoff {
		return "" // already outside the window: nothing to keep, nothing lost
	}
	sr := d.series[key]
	if sr == nil {
		if len(d.series) >= b.cfg.MaxSeriesPerDevice {
			return "window_device_series"
		}
		if b.nseries >= b.cfg.MaxSeries {
			return "window_series"
		}
		sr = &series{name: name, tags: tags, r: ring{max: b.cfg.MaxSamplesPerSeries}}
		d.series[key] = sr
		b.nseries++
	}
	b.nsamples -= sr.r.prune(cutoff)
	if sr.r.len() < sr.r.max && b.nsamples >= b.cfg.MaxSamples {
		return "window_samples"
	}
	if sr.r.push(s) {
		b.nsamples++
	}
	return ""
}

// Recent returns deviceID's samples at or after since, per series, sorted by
// series name then tags. It is the device page's instant fill.
func (b *Broker) Recent(deviceID string, since time.Time) []SeriesSamples {
	now := b.cfg.Clock()
	cutoff := max(since.UnixMilli(), now.Add(-b.cfg.Window).UnixMilli())
	b.winMu.Lock()
	defer b.winMu.Unlock()
	d := b.devices[deviceID]
	if d == nil {
		return []SeriesSamples{}
	}
	keys := slices.Sorted(maps.Keys(d.series))
	out := make([]SeriesSamples, 0, len(keys))
	for _, k := range keys {
		sr := d.series[k]
		ss := SeriesSamples{Name: sr.name, Tags: sr.tags}
		for i := 0; i < sr.r.len(); i++ {
			if s := sr.r.at(i); s.t >= cutoff {
				ss.T = append(ss.T, s.t)
				ss.V = append(ss.V, s.v)
			}
		}
		if len(ss.T) > 0 {
			out = append(out, ss)
		}
	}
	return out
}

// Sweep drops samples that left the window and series and devices left
// empty, so devices that stopped reporting give their memory back. Run
// calls it periodically.
func (b *Broker) Sweep() {
	cutoff := b.cfg.Clock().Add(-b.cfg.Window).UnixMilli()
	b.winMu.Lock()
	defer b.winMu.Unlock()
	for id, d := range b.devices {
		for k, sr := range d.series {
			b.nsamples -= sr.r.prune(cutoff)
			if sr.r.len() == 0 {
				delete(d.series, k)
				b.nseries--
			}
		}
		// Keep an online device's state (its presence matters to new fleet
		// subscribers) and anything still holding samples.
		if len(d.series) == 0 && !d.online && d.lastSeen < cutoff {
			delete(b.devices, id)
		}
	}
}
