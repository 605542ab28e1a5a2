package protocol

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func validBatch() *Batch {
	return &Batch{Seq: 1, BaseTime: SampleBaseTime, Points: []Point{{Name: "cpu.usage_percent", Value: 1.0}}}
}

func nTags(prefix string, n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("%s%d", prefix, i)] = "v"
	}
	return m
}

func TestValidateLimitEdges(t *testing.T) {
	big := func(n int) *Batch {
		b := validBatch()
		b.Points = make([]Point, n)
		for i := range b.Points {
			b.Points[i] = Point{Name: "m", DT: int64(i), Value: int64(i)}
		}
		return b
	}
	cases := []struct {
		name  string
		lim   Limits
		batch func() *Batch
		err   string // "" = valid
	}{
		{"points at default", Limits{}, func() *Batch { return big(5000) }, ""},
		{"points past default", Limits{}, func() *Batch { return big(5001) }, "5001 points > limit 5000"},
		{"points at custom", Limits{MaxPoints: 3}, func() *Batch { return big(3) }, ""},
		{"points past custom", Limits{MaxPoints: 3}, func() *Batch { return big(4) }, "4 points > limit 3"},
		{"tags at limit (batch+point)", Limits{}, func() *Batch {
			b := validBatch()
			b.Tags, b.Points[0].Tags = nTags("b", 8), nTags("p", 8)
			return b
		}, ""},
		{"tags past limit (batch+point)", Limits{}, func() *Batch {
			b := validBatch()
			b.Tags, b.Points[0].Tags = nTags("b", 8), nTags("p", 9)
			return b
		}, "point 0: 17 tags > limit 16"},
		{"batch tags past limit", Limits{}, func() *Batch {
			b := validBatch()
			b.Tags = nTags("b", 17)
			return b
		}, "batch tags: 17 tags > limit 16"},
		{"custom tags at limit", Limits{MaxTags: 2}, func() *Batch {
			b := validBatch()
			b.Tags, b.Points[0].Tags = nTags("b", 1), nTags("p", 1)
			return b
		}, ""},
		{"custom tags past limit", Limits{MaxTags: 2}, func() *Batch {
			b := validBatch()
			b.Tags, b.Points[0].Tags = nTags("b", 1), nTags("p", 2)
			return b
		}, "3 tags > limit 2"},
		{"name at limit", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Name = strings.Repeat("a", 128); return b }, ""},
		{"name past limit", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Name = strings.Repeat("a", 129); return b }, "length 129 not in 1..128"},
		{"name empty", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Name = ""; return b }, "length 0 not in 1..128"},
		{"tag key at limit", Limits{}, func() *Batch { b := validBatch(); b.Tags = map[string]string{strings.Repeat("k", 64): "v"}; return b }, ""},
		{"tag key past limit", Limits{}, func() *Batch { b := validBatch(); b.Tags = map[string]string{strings.Repeat("k", 65): "v"}; return b }, "length 65 not in 1..64"},
		{"tag value at limit", Limits{}, func() *Batch { b := validBatch(); b.Tags = map[string]string{"k": strings.Repeat("v", 256)}; return b }, ""},
		{"tag value past limit", Limits{}, func() *Batch { b := validBatch(); b.Tags = map[string]string{"k": strings.Repeat("v", 257)}; return b }, "value length 257 not in 1..256"},
		{"tag value empty", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Tags = map[string]string{"k": ""}; return b }, "value length 0 not in 1..256"},
		{"tag value custom past", Limits{MaxTagValueLen: 2}, func() *Batch { b := validBatch(); b.Tags = map[string]string{"k": "abc"}; return b }, "value length 3 not in 1..2"},
		{"string at limit", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Value = strings.Repeat("s", 4096); return b }, ""},
		{"string past limit", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Value = strings.Repeat("s", 4097); return b }, "string value of 4097 bytes > limit 4096"},
		{"string not utf8", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Value = "\xff"; return b }, "not UTF-8"},
		{"uint64 at int64 max", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Value = uint64(math.MaxInt64); return b }, ""},
		{"uint64 past int64 max", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Value = uint64(math.MaxInt64) + 1; return b }, "integer value 9223372036854775808 > 9223372036854775807"},
		{"int value (Go int) not allowed", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Value = 5; return b }, "type int not allowed"},
		{"float32 not allowed", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Value = float32(1); return b }, "type float32 not allowed"},
		{"+Inf", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Value = math.Inf(1); return b }, "not finite"},
		{"device tag in point", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Tags = map[string]string{"device": "x"}; return b }, `"device" is reserved`},
		{"tag value backslash", Limits{}, func() *Batch { b := validBatch(); b.Tags = map[string]string{"path": `C:\x`}; return b }, "byte 2 of value is a control character or backslash"},
		{"tag value DEL", Limits{}, func() *Batch { b := validBatch(); b.Tags = map[string]string{"k": "a\x7f"}; return b }, "control character"},
		{"tag value unicode", Limits{}, func() *Batch { b := validBatch(); b.Tags = map[string]string{"city": "Zürich"}; return b }, ""},
		{"tag value not utf8", Limits{}, func() *Batch { b := validBatch(); b.Tags = map[string]string{"k": "\xc3"}; return b }, "not UTF-8"},
		{"name ends with dot", Limits{}, func() *Batch { b := validBatch(); b.Points[0].Name = "cpu."; return b }, "must not end with '.'"},
		{"second point named", Limits{}, func() *Batch {
			b := validBatch()
			b.Points = append(b.Points, Point{Name: "9lives", Value: true})
			return b
		}, "point 1: name \"9lives\": byte 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.batch().Validate(c.lim)
			if c.err == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			checkErr(t, err, ErrInvalid, c.err)
		})
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "_", "A9", "cpu.usage_percent", "net-if.rx", "a..b", strings.Repeat("z", 20)} {
		if err := ValidName(ok, 20); err != nil {
			t.Errorf("ValidName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "9a", ".a", "-a", "a b", "a,b", "a=b", "ä", "a/b", strings.Repeat("z", 21)} {
		if err := ValidName(bad, 20); err == nil {
			t.Errorf("ValidName(%q) accepted", bad)
		}
	}
}

func TestSampleBatch(t *testing.T) {
	for _, n := range []int{1, 9, 10, 100, 5000} {
		b := SampleBatch(7, n)
		if err := b.Validate(Limits{}); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(b.Points) != n {
			t.Fatalf("n=%d: %d points", n, len(b.Points))
		}
		kinds := map[string]int{}
		seen := map[string]bool{}
		for _, p := range b.Points {
			kinds[fmt.Sprintf("%T", p.Value)]++
			key := fmt.Sprint(p.Name, p.Tags, p.DT)
			if seen[key] {
				t.Fatalf("n=%d: duplicate series point %s", n, key)
			}
			seen[key] = true
		}
		wantOne := 0
		if n >= 10 {
			wantOne = 1
		}
		if kinds["bool"] != wantOne || kinds["string"] != wantOne {
			t.Errorf("n=%d: %d bools, %d strings; want %d each", n, kinds["bool"], kinds["string"], wantOne)
		}
		if n >= 3 && (kinds["float64"] == 0 || kinds["int64"] == 0) {
			t.Errorf("n=%d: value kinds %v, want floats and ints", n, kinds)
		}
	}
	a, _ := Encode(SampleBatch(3, 50))
	b, _ := Encode(SampleBatch(3, 50))
	c, _ := Encode(SampleBatch(4, 50))
	if string(a) != string(b) {
		t.Error("SampleBatch is not deterministic")
	}
	if string(a) == string(c) {
		t.Error("SampleBatch ignores seq")
	}
	s := SampleBatch(1, 10)
	s.Points[4].Tags["iface"] = "wlan0"
	if SampleBatch(1, 10).Points[4].Tags["iface"] != "eth0" {
		t.Error("SampleBatch shares tag maps between calls")
	}
}

func TestSplitName(t *testing.T) {
	for name, want := range map[string][2]string{
		"cpu.usage_percent": {"cpu", "usage_percent"},
		"uptime":            {"uptime", "value"},
		"net.eth0.rx":       {"net", "eth0.rx"},
	} {
		m, f := SplitName(name)
		if m != want[0] || f != want[1] {
			t.Errorf("SplitName(%q) = %q, %q; want %q, %q", name, m, f, want[0], want[1])
		}
	}
}

func TestStoredTagsPrecedence(t *testing.T) {
	batch := map[string]string{"a": "batch", "b": "batch", "c": "batch", "device": "spoof"}
	point := map[string]string{"b": "point", "c": "point"}
	labels := map[string]string{"c": "label", "device": "label"}
	got := StoredTags(batch, point, labels, "pi-0001")
	want := map[string]string{"a": "batch", "b": "point", "c": "label", "device": "pi-0001"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("StoredTags = %v, want %v", got, want)
	}
	if batch["device"] != "spoof" || len(point) != 2 {
		t.Error("StoredTags modified its input")
	}
}
