package live

import (
	"fmt"
	"testing"
	"time"

	"github.com/fleetwire/fleetwire/protocol"
)

// BenchmarkPublish: one 100-point batch into the window, one fleet and one
// device subscriber (whose reader keeps up).
func BenchmarkPublish(b *testing.B) {
	br := New(Config{})
	s := br.Subscribe(b.Context())
	defer s.Close()
	_ = s.SubscribeFleet()
	_ = s.SubscribeDevice("d")
	go func() {
		for {
			select {
			case <-s.Out():
			case <-s.Done():
				return
			}
		}
	}()
	pts := make([]protocol.Point, 100)
	for i := range pts {
		pts[i] = protocol.Point{Name: "cpu.usage_percent", Value: float64(i), Tags: map[string]string{"cpu": fmt.Sprint(i % 8)}}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		br.Publish("d", &protocol.Batch{Seq: uint64(i + 1), BaseTime: time.Now().UnixMilli(), Points: pts})
	}
}
