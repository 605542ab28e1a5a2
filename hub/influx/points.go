package influx

import (
	"math"
	"slices"
	"time"

	"github.com/influxdata/influxdb-client-go/v2/api/write"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/protocol"
)

// DeviceTag is the tag every stored point carries with its device ID.
const DeviceTag = protocol.DeviceTag

// DefaultField is the field key of a point whose name has no '.'.
const DefaultField = "value"

// Points converts one batch to InfluxDB points, following the schema in
// protocol/SPEC.md "InfluxDB schema":
//
//   - name "cpu.usage_percent" -> measurement "cpu", field "usage_percent"
//     (split at the first '.'); a name without '.' -> measurement = name,
//     field "value";
//   - tags: batch tags, overridden by point tags, overridden by device
//     labels, and always device=<DeviceID>;
//   - time: BaseTime + DT, Unix milliseconds;
//   - value: float64, int64, bool and string as is; uint64 as int64 (InfluxDB
//     integers are signed; values above MaxInt64 become float64, which
//     Validate forbids anyway).
func Points(b *hub.IngestBatch) []*write.Point {
	batch := b.Batch
	out := make([]*write.Point, 0, len(batch.Points))
	// The tag set of a point without its own tags is the same for the whole
	// batch: merge and sort it once.
	base := protocol.StoredTags(batch.Tags, nil, b.Labels, b.DeviceID)
	baseKeys := sortedKeys(base)
	for i := range batch.Points {
		p := &batch.Points[i]
		tags, keys := base, baseKeys
		if len(p.Tags) > 0 {
			tags = protocol.StoredTags(batch.Tags, p.Tags, b.Labels, b.DeviceID)
			keys = sortedKeys(tags)
		}
		out = append(out, toPoint(p, batch.BaseTime, tags, keys))
	}
	return out
}

func toPoint(p *protocol.Point, baseTime int64, tags map[string]string, keys []string) *write.Point {
	measurement, field := protocol.SplitName(p.Name)
	wp := write.NewPointWithMeasurement(measurement)
	for _, k := range keys {
		wp.AddTag(k, tags[k])
	}
	wp.AddField(field, fieldValue(p.Value))
	wp.SetTime(time.UnixMilli(baseTime + p.DT))
	return wp
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// fieldValue normalises a decoded value to a line protocol field type. The
// client would write uint64 with the 'u' suffix, which InfluxDB 1.8 refuses.
func fieldValue(v any) any {
	switch v := v.(type) {
	case uint64:
		if v > math.MaxInt64 {
			return float64(v)
		}
		return int64(v)
	case int:
		return int64(v)
	case float32:
		return float64(v)
	}
	return v
}
