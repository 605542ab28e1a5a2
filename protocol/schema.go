package protocol

import "strings"

// DeviceTag is the tag key the hub sets to the device id on every point it
// stores; agents must not send it (Validate rejects it).
const DeviceTag = "device"

// SplitName maps a metric name to its InfluxDB measurement and field key
// (SPEC.md "InfluxDB schema"): the text before the first '.' is the
// measurement and the rest the field key ("cpu.usage_percent" -> "cpu",
// "usage_percent"); a name without '.' is the measurement with field
// "value".
func SplitName(name string) (measurement, field string) {
	m, f, ok := strings.Cut(name, ".")
	if !ok {
		return name, "value"
	}
	return m, f
}

// StoredTags returns the tag set the hub stores for a point, merged in
// increasing precedence: batch tags, point tags, the device's labels, then
// DeviceTag=deviceID, which always wins. The inputs are not modified.
func StoredTags(batchTags, pointTags, labels map[string]string, deviceID string) map[string]string {
	out := make(map[string]string, len(batchTags)+len(pointTags)+len(labels)+1)
	for _, m := range []map[string]string{batchTags, pointTags, labels} {
		for k, v := range m {
			out[k] = v
		}
	}
	out[DeviceTag] = deviceID
	return out
}
