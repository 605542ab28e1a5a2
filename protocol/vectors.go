package protocol

import "math"

// Vector is a named example message. Its encoding is pinned byte for byte
// in testdata/golden/<Name>.cbor, so hub, agent and non-Go implementations
// can test against the same bytes.
type Vector struct {
	Name string // file stem, e.g. "batch"
	Desc string // what the vector exercises
	// Msg is a pointer to a message struct holding exactly what Decode
	// returns for the vector's bytes (ints as int64, floats as float64).
	Msg any
}

// GoldenVectors returns the golden vectors, one or more per message type.
// The values are fresh on every call; callers may modify them.
func GoldenVectors() []Vector {
	return []Vector{
		{"hello", "hello with every field", &Hello{
			AgentVersion:    "0.1.0",
			ProtocolVersion: 1,
			BootID:          "3f1c9a6e-8d2b-4c51-9e0f-5a7b2c4d6e81",
			Capabilities:    []string{"commands"},
			Hostname:        "pi-0001",
			Arch:            "linux/arm64",
		}},
		{"hello_minimal", "hello with the required fields only", &Hello{
			AgentVersion:    "0.1.0",
			ProtocolVersion: 1,
			BootID:          "b",
		}},
		{"welcome", "welcome with the default settings", &Welcome{
			SessionID:  "s-01HZY3",
			ServerTime: SampleBaseTime + 1234,
			DeviceID:   "pi-0001",
			Settings: Settings{
				MaxMessageBytes: DefaultMaxMessageBytes,
				MaxBatchPoints:  5000,
				MaxInflight:     64,
				PingIntervalMs:  20_000,
			},
		}},
		{"batch", "the SPEC.md worked example: batch tag, a float and a tagged int", &Batch{
			Seq:      42,
			BaseTime: SampleBaseTime,
			Tags:     map[string]string{"site": "lab"},
			Points: []Point{
				{Name: "cpu.usage_percent", Value: 12.5},
				{Name: "net.rx_bytes", DT: 1000, Value: int64(123456789), Tags: map[string]string{"iface": "eth0"}},
			},
		}},
		{"batch_types", "every value type and float width, negative dt, dropped", &Batch{
			Seq:      math.MaxUint32 + 1,
			BaseTime: SampleBaseTime,
			Points: []Point{
				{Name: "f16", Value: 1.5},
				{Name: "f32", Value: float64(float32(0.1))},
				{Name: "f64", Value: 0.1},
				{Name: "f_neg_zero", Value: math.Copysign(0, -1)},
				{Name: "f_integral", Value: 42.0},
				{Name: "i_small", Value: int64(23)},
				{Name: "i_neg", Value: int64(-1)},
				{Name: "i_max", Value: int64(math.MaxInt64)},
				{Name: "i_min", Value: int64(math.MinInt64)},
				{Name: "b", DT: -500, Value: true},
				{Name: "s", DT: 65_536, Value: "héllo"},
			},
			Dropped: 3,
		}},
		{"batch_sample", "SampleBatch(1, 10)", SampleBatch(1, 10)},
		{"ack", "ack of seq 42", &Ack{Seq: 42}},
		{"command", "command with args and timeout", &Command{
			ID:        "c-7",
			Name:      "reboot",
			Args:      map[string]string{"delay": "5s"},
			TimeoutMs: 30_000,
		}},
		{"command_result", "finished command with output", &CommandResult{
			ID:         "c-7",
			State:      "succeeded",
			Stdout:     []byte("ok\n"),
			DurationMs: 1520,
		}},
		{"command_result_failed", "failed command: negative exit code, stderr, truncated, error", &CommandResult{
			ID:         "c-8",
			State:      "failed",
			ExitCode:   -9,
			Stderr:     []byte{0xff, 0x00, 'x'},
			DurationMs: 30_000,
			Truncated:  true,
			Error:      "killed",
		}},
	}
}
