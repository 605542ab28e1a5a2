package influxtest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/fleetwire/fleetwire/hub/influx/influxtest"
)

// TestKillRestartKeepsData: a point written before a SIGKILL is there after
// Restart, on the same URL.
func TestKillRestartKeepsData(t *testing.T) {
	srv := influxtest.Start(t)
	resp, err := http.Post(srv.URL+"/write?db="+srv.Database+"&precision=ms", "text/plain",
		strings.NewReader("m,device=d1 f=1.5 1700000000000\nm,device=d1 f=2.5 1700000000001\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("write status %d", resp.StatusCode)
	}
	if n := srv.CountPoints(t, "m", "f", "d1"); n != 2 {
		t.Fatalf("before kill: %d points, want 2", n)
	}
	srv.Kill(t)
	if srv.Running() {
		t.Fatal("running after Kill")
	}
	if _, err := http.Get(srv.URL + "/ping"); err == nil {
		t.Fatal("ping answered after Kill")
	}
	srv.Restart(t)
	if n := srv.CountPoints(t, "m", "f", "d1"); n != 2 {
		t.Errorf("after restart: %d points, want 2", n)
	}
	recs := srv.Query(t, `from(bucket: "fleet/autogen") |> range(start: 2023-01-01T00:00:00Z, stop: 2024-01-01T00:00:00Z) |> sort(columns: ["_time"])`)
	if len(recs) != 2 || recs[0]["_value"] != 1.5 || recs[1]["_value"] != 2.5 {
		t.Errorf("records %v", recs)
	}
	if err := srv.InfluxQL(`SHOW DATABASES`); err != nil {
		t.Errorf("influxql: %v", err)
	}
	if err := srv.InfluxQL(`SHOW NONSENSE`); err == nil {
		t.Error("influxql: bad statement accepted")
	}
}
