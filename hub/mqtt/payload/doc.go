// Package payload decodes telemetry that MQTT-only devices publish into the
// hub's own batch type, so it shares the protocol's validation (SPEC.md
// "Limits", "Names") and InfluxDB schema (SPEC.md "InfluxDB schema").
//
// Every decoded batch has Seq 0 (the MQTT bridge's batches need none),
// BaseTime set to the earliest point time in Unix milliseconds and each
// point's DT relative to it. It passes protocol's (*Batch).Validate with the
// caller's Limits. Payloads larger than MaxPayloadBytes are refused before
// parsing. Every error from Decode wraps ErrInvalid.
//
// Names are never rewritten silently: a metric name that is not a valid
// protocol name ([A-Za-z0-9_.-], starting with a letter or '_') is an error
// naming it. The one exception is SenML names beginning with "urn:", below.
//
// # Formats
//
// "cbor": the protocol's own batch message (SPEC.md section 2) as the
// WebSocket transport carries it, envelope included. Seq is reset to 0 and
// the times are rebased so that DT >= 0.
//
// "json": one JSON object, in one of two shapes. The envelope shape is
// recognised by a top-level "points" array:
//
//	{
//	  "time": 1732381200000,            // optional: Unix ms (integer) or RFC 3339 string
//	  "tags": {"site": "plant-2"},      // optional: batch tags
//	  "points": [
//	    {"name": "cpu.usage_percent", "value": 12.5,
//	     "time": "2024-11-23T17:00:00Z", // optional, as above; default: top-level time, else now
//	     "tags": {"core": "0"}}          // optional: point tags
//	  ]
//	}
//
// Other top-level keys are an error in the envelope shape. Any other object
// is the flat shape: each key is a metric name and each value its value, all
// at the time of receipt. Nested objects are flattened with '.', so the
// Tasmota-style {"ENERGY":{"Power":12}} gives the metric "ENERGY.Power".
// Nesting deeper than MaxJSONDepth, arrays and null are errors, as are
// duplicate names. In both shapes a value is a number, a boolean or a
// string; an integral number (no fraction or exponent) is an int64 and must
// fit one, any other number is a float64.
//
// "line": InfluxDB line protocol, timestamps in nanoseconds. Measurement m
// with field f gives the metric "m.f", and the field "value" gives just "m".
// A measurement containing '.' is refused, because the metric would map back
// to a different measurement (SPEC.md section 7). Line tags become point
// tags; integer, unsigned (up to MaxInt64), float, boolean and string fields
// are kept as such. A line without a timestamp is at the time of receipt.
//
// "senml+json" and "senml+cbor": SenML packs (RFC 8428). Base name, base
// time, base unit, base value and base sum are resolved per RFC 8428 §4.6.
// The name is bn+n. The value is v (plus bv, always a float64), vs (string),
// vb (boolean), or, when none of those is present, s (plus bs, float64).
// vd (data value) is refused: the schema has no bytes type. Time is bt+t
// seconds; a result below 2^28 is relative to the time of receipt (RFC 8428
// §4.5.3). The unit (u, else bu), if any, becomes the point tag "unit".
// ut is ignored; bver above 10 and must-understand labels (ending in '_')
// are refused. A resolved name beginning with "urn:" (RFC 8428 names such as
// "urn:dev:ow:10e2073a01080063:temp") is mapped by replacing every byte
// outside [A-Za-z0-9_.-] with '_' ("urn_dev_ow_10e2073a01080063_temp");
// any other invalid name is an error.
package payload
