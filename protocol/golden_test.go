package protocol

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// -update rewrites testdata/golden and the committed fuzz seed corpus from
// GoldenVectors and hostileInputs. Review the diff: a changed golden file is
// a wire format change.
var update = flag.Bool("update", false, "rewrite golden files and fuzz seed corpus")

const (
	goldenDir = "testdata/golden"
	corpusDir = "testdata/fuzz/FuzzDecode"
)

// manifestEntry describes one golden file for readers in other languages.
type manifestEntry struct {
	Name     string `json:"name"`
	File     string `json:"file"`
	Type     Type   `json:"type"`
	TypeName string `json:"type_name"`
	Size     int    `json:"size"`
	Hex      string `json:"hex"`
	Desc     string `json:"desc"`
}

func TestGolden(t *testing.T) {
	vecs := GoldenVectors()
	seen := map[Type]bool{}
	var manifest []manifestEntry
	for _, v := range vecs {
		typ, err := typeOf(v.Msg)
		if err != nil {
			t.Fatal(err)
		}
		seen[typ] = true
		got, err := Encode(v.Msg)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		path := filepath.Join(goldenDir, v.Name+".cbor")
		if *update {
			writeFile(t, path, got)
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run go test -run TestGolden -update)", v.Name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: encoding changed\n got %x\nwant %x", v.Name, got, want)
		}
		dec, err := Decode(want, 0)
		if err != nil {
			t.Fatalf("%s: decode golden: %v", v.Name, err)
		}
		if !reflect.DeepEqual(dec, v.Msg) {
			t.Errorf("%s: decoded\n%#v\nwant\n%#v", v.Name, dec, v.Msg)
		}
		if b, ok := dec.(*Batch); ok {
			if err := b.Validate(Limits{}); err != nil {
				t.Errorf("%s: golden batch invalid: %v", v.Name, err)
			}
		}
		manifest = append(manifest, manifestEntry{
			Name: v.Name, File: v.Name + ".cbor", Type: typ, TypeName: typ.String(),
			Size: len(want), Hex: hex.EncodeToString(want), Desc: v.Desc,
		})
	}
	for typ := TypeHello; typ <= TypeCommandResult; typ++ {
		if !seen[typ] {
			t.Errorf("no golden vector for %s", typ)
		}
	}
	checkManifest(t, manifest)
	checkNoStrayFiles(t, vecs)
}

func checkManifest(t *testing.T, manifest []manifestEntry) {
	t.Helper()
	want, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	path := filepath.Join(goldenDir, "manifest.json")
	if *update {
		writeFile(t, path, want)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale (run go test -run TestGolden -update)", path)
	}
}

// checkNoStrayFiles catches a vector renamed without its old file removed:
// implementers in other languages test against every file there.
func checkNoStrayFiles(t *testing.T, vecs []Vector) {
	t.Helper()
	names := map[string]bool{"manifest.json": true}
	for _, v := range vecs {
		names[v.Name+".cbor"] = true
	}
	ents, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !names[e.Name()] {
			t.Errorf("stray file %s/%s", goldenDir, e.Name())
		}
	}
	if len(ents) != len(names) {
		t.Errorf("%s holds %d files, want %d", goldenDir, len(ents), len(names))
	}
}

// TestSeedCorpus keeps the committed fuzz seeds in step with the golden
// vectors and hostile inputs, so `go test` always replays all of them.
func TestSeedCorpus(t *testing.T) {
	want := map[string][]byte{}
	for _, v := range GoldenVectors() {
		data, err := Encode(v.Msg)
		if err != nil {
			t.Fatal(err)
		}
		want["golden-"+v.Name] = data
	}
	for _, h := range hostileInputs() {
		want["hostile-"+h.name] = h.data
	}
	for name, data := range want {
		content := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
		path := filepath.Join(corpusDir, name)
		if *update {
			writeFile(t, path, content)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("seed %s: %v (run go test -run TestSeedCorpus -update)", name, err)
			continue
		}
		if !bytes.Equal(got, content) {
			t.Errorf("seed %s is stale (run go test -run TestSeedCorpus -update)", name)
		}
	}
	ents, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		// Inputs the fuzzer found are kept under their hash names; only
		// the named seeds must match this list.
		n := e.Name()
		if _, ok := want[n]; !ok && (strings.HasPrefix(n, "golden-") || strings.HasPrefix(n, "hostile-")) {
			t.Errorf("stray seed %s", n)
		}
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
