package dashws

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/fleetwire/fleetwire/hub/influx"
	"github.com/fleetwire/fleetwire/hub/live"
	"github.com/fleetwire/fleetwire/protocol"
)

// HistorySource answers history queries; *influx.Sink implements it.
type HistorySource interface {
	History(ctx context.Context, q influx.HistoryQuery) ([]influx.Series, error)
}

// historyTimeout bounds one history query.
const historyTimeout = 30 * time.Second

// HistoryResponse is the body of GET /api/v1/devices/{id}/history. Series
// has the shape of RecentResponse.Series (name, tags, t in Unix ms, v), so
// one parser reads both; each t is the end of an EverySeconds window and v
// the window's mean.
type HistoryResponse struct {
	Device       string               `json:"device"`
	RangeSeconds int64                `json:"range_seconds"`
	EverySeconds int64                `json:"every_seconds"`
	Series       []live.SeriesSamples `json:"series"`
}

// NewHistoryHandler serves
// GET /api/v1/devices/{id}/history?metric=cpu.usage_percent&range=24h:
// the metric's stored history over the last 1h, 24h or 7d (default 1h),
// averaged into at most influx.DefaultMaxPoints windows per tag set
// (viewer role). Register it on a pattern with an {id} wildcard.
func NewHistoryHandler(h HistorySource, auth Authenticate) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := viewDevice(w, r, auth)
		if !ok {
			return
		}
		params := r.URL.Query()
		metric := params.Get("metric")
		if err := protocol.ValidName(metric, protocol.DefaultLimits.MaxNameLen); err != nil {
			http.Error(w, "metric: want a metric name such as cpu.usage_percent", http.StatusBadRequest)
			return
		}
		span := influx.Range1h
		if v := params.Get("range"); v != "" {
			var err error
			if span, err = influx.ParseRange(v); err != nil {
				http.Error(w, "range: want 1h, 24h or 7d", http.StatusBadRequest)
				return
			}
		}
		q := influx.HistoryQuery{Device: id, Metric: metric, Range: span, MaxPoints: influx.DefaultMaxPoints}
		ctx, cancel := context.WithTimeout(r.Context(), historyTimeout)
		defer cancel()
		series, err := h.History(ctx, q)
		switch {
		case errors.Is(err, influx.ErrNotNumeric):
			http.Error(w, "metric: not a numeric metric", http.StatusBadRequest)
			return
		case errors.Is(err, influx.ErrInvalidQuery):
			http.Error(w, "invalid query: "+err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			http.Error(w, "history unavailable", http.StatusBadGateway)
			return
		}
		resp := HistoryResponse{Device: id, RangeSeconds: int64(span / time.Second),
			EverySeconds: int64(q.Every() / time.Second), Series: make([]live.SeriesSamples, 0, len(series))}
		for _, s := range series {
			resp.Series = append(resp.Series, live.SeriesSamples{Name: metric, Tags: s.Tags, T: s.T, V: s.V})
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(resp)
	})
}
