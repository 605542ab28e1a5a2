package collect

import (
	"context"
	"testing"
)

// BenchmarkBuiltins measures one collection by every built-in collector,
// the agent's per-interval cost (target: well under 5 ms of CPU, since the
// agent's budget is 0.5% of a core at a 1 s interval).
func BenchmarkBuiltins(b *testing.B) {
	cs, err := New(Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range cs {
		c.Collect(ctx) // the cpu baseline wait happens once, here
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range cs {
			if _, err := c.Collect(ctx); err != nil {
				b.Fatalf("%s: %v", c.Name(), err)
			}
		}
	}
}

// BenchmarkParseOutput measures parsing a typical script's output.
func BenchmarkParseOutput(b *testing.B) {
	out := []byte("# sensor\ntemperature 21.5 room=attic\nhumidity 48 room=attic\nok true\nstatus \"warming up\"\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseOutput("sensor", out); err != nil {
			b.Fatal(err)
		}
	}
}
