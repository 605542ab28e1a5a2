package dashws

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/live"
	wire "github.com/fleetwire/fleetwire/protocol/live"
)

// RecentResponse is the body of GET /api/v1/devices/{id}/recent.
type RecentResponse struct {
	Device        string               `json:"device"`
	WindowSeconds int64                `json:"window_seconds"`
	Series        []live.SeriesSamples `json:"series"`
}

// NewRecentHandler serves GET /api/v1/devices/{id}/recent?since=5m: the
// device's recent in-memory window (viewer role), newer than since
// (a Go duration, default and at most the whole window). Register it on a
// pattern with an {id} wildcard.
func NewRecentHandler(b *live.Broker, auth Authenticate) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := viewDevice(w, r, auth)
		if !ok {
			return
		}
		span := b.Window()
		if v := r.URL.Query().Get("since"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				http.Error(w, "since: want a positive duration such as 5m", http.StatusBadRequest)
				return
			}
			span = min(d, span)
		}
		resp := RecentResponse{Device: id, WindowSeconds: int64(b.Window() / time.Second),
			Series: b.Recent(id, time.Now().Add(-span))}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(resp)
	})
}

// viewDevice is the common start of the device read routes: GET or HEAD,
// an authenticated viewer, a valid {id}. It answers the request itself and
// reports false when any of them fails.
func viewDevice(w http.ResponseWriter, r *http.Request, auth Authenticate) (string, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return "", false
	}
	_, role, err := auth(r)
	if err != nil {
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return "", false
	}
	if !role.Allows(hub.RoleViewer) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return "", false
	}
	id := r.PathValue("id")
	if err := wire.ValidDeviceID(id); err != nil {
		http.Error(w, "invalid device id", http.StatusBadRequest)
		return "", false
	}
	return id, true
}
