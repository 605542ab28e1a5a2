package protocol

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const benchPoints = 100

func BenchmarkEncodeBatch(b *testing.B) {
	batch := SampleBatch(1, benchPoints)
	data, err := Encode(batch)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchPoints)/b.Elapsed().Seconds(), "points/s")
}

func BenchmarkDecodeBatch(b *testing.B) {
	data, err := Encode(SampleBatch(1, benchPoints))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		msg, err := Decode(data, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := msg.(*Batch).Validate(Limits{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchPoints)/b.Elapsed().Seconds(), "points/s")
}

// lineProtocol renders a batch as the hub stores it (SPEC.md "InfluxDB
// schema"), millisecond precision, one line per point. Names and tag keys
// need no escaping (ValidName); tag values escape ',', '=' and ' '.
func lineProtocol(b *Batch, labels map[string]string, deviceID string) string {
	var sb strings.Builder
	esc := strings.NewReplacer(",", `\,`, "=", `\=`, " ", `\ `)
	for _, p := range b.Points {
		m, f := SplitName(p.Name)
		sb.WriteString(m)
		tags := StoredTags(b.Tags, p.Tags, labels, deviceID)
		keys := make([]string, 0, len(tags))
		for k := range tags {
			keys = append(keys, k)
		}
		sort.Strings(keys) // InfluxDB's preferred order
		for _, k := range keys {
			sb.WriteString("," + k + "=" + esc.Replace(tags[k]))
		}
		sb.WriteString(" " + f + "=" + lineValue(p.Value))
		sb.WriteString(" " + strconv.FormatInt(b.BaseTime+p.DT, 10) + "\n")
	}
	return sb.String()
}

func lineValue(v any) string {
	switch v := v.(type) {
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case int64:
		return strconv.FormatInt(v, 10) + "i"
	case bool:
		return strconv.FormatBool(v)
	case string:
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
	}
	panic(fmt.Sprintf("value type %T", v))
}

func TestLineProtocolWorkedExample(t *testing.T) {
	// The SPEC.md worked example; keep the two in step.
	b := GoldenVectors()[3].Msg.(*Batch)
	got := lineProtocol(b, map[string]string{"site": "plant-2"}, "pi-0001")
	want := "cpu,device=pi-0001,site=plant-2 usage_percent=12.5 1767225600000\n" +
		"net,device=pi-0001,iface=eth0,site=plant-2 rx_bytes=123456789i 1767225601000\n"
	if got != want {
		t.Errorf("line protocol\n%s\nwant\n%s", got, want)
	}
}
