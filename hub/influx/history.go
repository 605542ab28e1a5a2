package influx

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
	wire "github.com/fleetwire/fleetwire/protocol/live"
)

// History ranges a device page may ask for.
const (
	Range1h  = time.Hour
	Range24h = 24 * time.Hour
	Range7d  = 7 * 24 * time.Hour
)

// DefaultMaxPoints is HistoryQuery.MaxPoints when zero; MaxMaxPoints is the
// largest accepted.
const (
	DefaultMaxPoints = 600
	MaxMaxPoints     = 10000
)

// ErrInvalidQuery wraps every HistoryQuery validation error (a client
// mistake, not a server failure).
var ErrInvalidQuery = errors.New("invalid history query")

// ErrNotNumeric is returned (wrapped) when the metric's field holds booleans
// or strings, which cannot be averaged.
var ErrNotNumeric = errors.New("metric is not numeric")

// HistoryQuery asks for one metric of one device over the last Range,
// averaged into at most MaxPoints windows per series.
type HistoryQuery struct {
	Device    string        // device id
	Metric    string        // metric name, e.g. cpu.usage_percent
	Range     time.Duration // Range1h, Range24h or Range7d
	MaxPoints int           // points per series at most (default DefaultMaxPoints)
}

// Series is one tag set of a metric: window end times (Unix ms) and the
// mean of each window, oldest first. Tags are the stored tags (point and
// batch tags, device labels) without "device".
type Series struct {
	Tags map[string]string
	T    []int64
	V    []float64
}

// ParseRange maps the range names the API accepts ("1h", "24h", "7d") to
// durations.
func ParseRange(s string) (time.Duration, error) {
	switch s {
	case "1h":
		return Range1h, nil
	case "24h":
		return Range24h, nil
	case "7d":
		return Range7d, nil
	}
	return 0, fmt.Errorf("%w: range %q: want 1h, 24h or 7d", ErrInvalidQuery, s)
}

// Validate checks q and returns it with defaults applied.
func (q HistoryQuery) Validate() (HistoryQuery, error) {
	if err := wire.ValidDeviceID(q.Device); err != nil {
		return q, fmt.Errorf("%w: device: %v", ErrInvalidQuery, err)
	}
	if err := protocol.ValidName(q.Metric, protocol.DefaultLimits.MaxNameLen); err != nil {
		return q, fmt.Errorf("%w: metric: %v", ErrInvalidQuery, err)
	}
	if q.Range != Range1h && q.Range != Range24h && q.Range != Range7d {
		return q, fmt.Errorf("%w: range %s: want 1h, 24h or 7d", ErrInvalidQuery, q.Range)
	}
	if q.MaxPoints == 0 {
		q.MaxPoints = DefaultMaxPoints
	}
	if q.MaxPoints < 1 || q.MaxPoints > MaxMaxPoints {
		return q, fmt.Errorf("%w: max points %d not in 1..%d", ErrInvalidQuery, q.MaxPoints, MaxMaxPoints)
	}
	return q, nil
}

// Every is the aggregation window of q: Range/MaxPoints rounded up to a
// whole second (at least 1 s), so that Range holds at most MaxPoints
// windows. q must be valid.
func (q HistoryQuery) Every() time.Duration {
	mp := q.MaxPoints
	if mp == 0 {
		mp = DefaultMaxPoints
	}
	secs := int64(math.Ceil(q.Range.Seconds() / float64(mp)))
	return time.Duration(max(secs, 1)) * time.Second
}

// HistorySpan returns the time span History queries for q at now:
// [start, now) with start the first multiple of every (since the Unix epoch)
// not before now-Range, so windows are aligned, at most MaxPoints of them
// fit, and repeated queries land on the same windows.
func HistorySpan(q HistoryQuery, now time.Time) (start time.Time, every time.Duration) {
	every = q.Every()
	from := now.Add(-q.Range).UnixNano()
	e := every.Nanoseconds()
	s := from / e * e
	if s < from {
		s += e
	}
	return time.Unix(0, s).UTC(), every
}

// historyFlux is the Flux query of q over [start, stop).
func (s *Sink) historyFlux(q HistoryQuery, start, stop time.Time, every time.Duration) string {
	measurement, field := protocol.SplitName(q.Metric)
	return fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == %s and r._field == %s and r.device == %s)
  |> aggregateWindow(every: %ds, fn: mean, createEmpty: false)
  |> drop(columns: ["_start", "_stop"])`,
		fluxString(s.cfg.Bucket),
		start.UTC().Format(time.RFC3339Nano), stop.UTC().Format(time.RFC3339Nano),
		fluxString(measurement), fluxString(field), fluxString(q.Device),
		int64(every/time.Second))
}

// History returns q's metric of q's device over the last q.Range, averaged
// per window of q.Every(): one Series per tag set, sorted by tags. Errors
// wrapping ErrInvalidQuery or ErrNotNumeric are the caller's mistakes.
func (s *Sink) History(ctx context.Context, q HistoryQuery) ([]Series, error) {
	q, err := q.Validate()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	start, every := HistorySpan(q, now)
	return s.history(ctx, q, start, now, every)
}

func (s *Sink) history(ctx context.Context, q HistoryQuery, start, stop time.Time, every time.Duration) ([]Series, error) {
	res, err := s.client.QueryAPI(s.cfg.Org).Query(ctx, s.historyFlux(q, start, stop, every))
	if err != nil {
		return nil, s.historyError(ctx, q, start, stop, err)
	}
	defer res.Close()
	bySet := map[string]*Series{}
	for res.Next() {
		rec := res.Record()
		var v float64
		switch x := rec.Value().(type) {
		case float64:
			v = x
		case int64:
			v = float64(x)
		case uint64:
			v = float64(x)
		case nil:
			continue
		default:
			return nil, fmt.Errorf("history %s: %w (%T values)", q.Metric, ErrNotNumeric, x)
		}
		tags := map[string]string{}
		for k, val := range rec.Values() {
			if k == "" || strings.HasPrefix(k, "_") || k == "result" || k == "table" || k == "device" {
				continue
			}
			if sv, ok := val.(string); ok {
				tags[k] = sv
			}
		}
		key := tagKey(tags)
		sr := bySet[key]
		if sr == nil {
			sr = &Series{Tags: tags}
			bySet[key] = sr
		}
		sr.T = append(sr.T, rec.Time().UnixMilli())
		sr.V = append(sr.V, v)
	}
	if err := res.Err(); err != nil {
		return nil, s.historyError(ctx, q, start, stop, err)
	}
	out := make([]Series, 0, len(bySet))
	for _, k := range slices.Sorted(maps.Keys(bySet)) {
		out = append(out, *bySet[k])
	}
	return out, nil
}

// historyError explains a failed history query: when mean failed because
// the field holds booleans or strings it says so (ErrNotNumeric).
func (s *Sink) historyError(ctx context.Context, q HistoryQuery, start, stop time.Time, qerr error) error {
	measurement, field := protocol.SplitName(q.Metric)
	probe := fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == %s and r._field == %s and r.device == %s)
  |> limit(n: 1)`,
		fluxString(s.cfg.Bucket),
		start.UTC().Format(time.RFC3339Nano), stop.UTC().Format(time.RFC3339Nano),
		fluxString(measurement), fluxString(field), fluxString(q.Device))
	res, err := s.client.QueryAPI(s.cfg.Org).Query(ctx, probe)
	if err == nil {
		defer res.Close()
		for res.Next() {
			switch x := res.Record().Value().(type) {
			case bool, string:
				return fmt.Errorf("history %s: %w (%T field)", q.Metric, ErrNotNumeric, x)
			}
		}
	}
	return fmt.Errorf("history %s: %w", q.Metric, qerr)
}

// tagKey is a canonical string of tags (sorted key=value pairs).
func tagKey(tags map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		fmt.Fprintf(&b, "%q=%q,", k, tags[k])
	}
	return b.String()
}
