package config

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

type testConfig struct {
	DataDir  string            `mapstructure:"data_dir"`
	Listen   string            `mapstructure:"listen"`
	Interval time.Duration     `mapstructure:"interval"`
	Influx   testInflux        `mapstructure:"influx"`
	Spool    testSpool         `mapstructure:"spool"`
	Hosts    []string          `mapstructure:"hosts"`
	Labels   map[string]string `mapstructure:"labels"`
	Exec     []testExec        `mapstructure:"exec"`
	Admin    testAdmin         `mapstructure:"admin"`
}

type testInflux struct {
	URL     string        `mapstructure:"url"`
	Token   string        `mapstructure:"token" secret:"true"`
	Timeout time.Duration `mapstructure:"timeout"`
}

type testSpool struct {
	Dir      string   `mapstructure:"dir"`
	MaxBytes ByteSize `mapstructure:"max_bytes"`
}

type testExec struct {
	Name    string        `mapstructure:"name"`
	Timeout time.Duration `mapstructure:"timeout"`
}

type testAdmin struct {
	User     string `mapstructure:"user"`
	Password string `mapstructure:"password"`
	APIKey   string `mapstructure:"api_key" secret:"true"`
}

func defaults() testConfig {
	return testConfig{
		DataDir:  "/var/lib/x",
		Listen:   ":8443",
		Interval: 10 * time.Second,
		Influx:   testInflux{URL: "http://default:8086", Timeout: 5 * time.Second},
		Spool:    testSpool{Dir: "/spool", MaxBytes: 64 << 20},
		Hosts:    []string{"a"},
		Exec:     []testExec{{Name: "default", Timeout: time.Minute}},
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cfg.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func flags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("config", "", "")
	fs.String("listen", "", "")
	fs.String("influx.url", "flag-default-must-not-apply", "")
	fs.Duration("interval", 0, "")
	fs.String("spool.max_bytes", "", "")
	fs.StringSlice("hosts", nil, "")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestDefaultsSurviveWithoutSources(t *testing.T) {
	got := defaults()
	if err := Load("", "TCFG", flags(t), &got); err != nil {
		t.Fatal(err)
	}
	if want := defaults(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestPrecedenceFileEnvFlags(t *testing.T) {
	path := writeFile(t, `
listen: file:1
data_dir: /file
influx:
  url: http://file:8086
  timeout: 30s
interval: 1m
`)
	t.Setenv("TCFG_LISTEN", "env:2")
	t.Setenv("TCFG_INFLUX_URL", "http://env:8086")
	fs := flags(t, "--listen", "flag:3", "--config", path)

	got := defaults()
	if err := Load(path, "TCFG", fs, &got); err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"listen (flag beats env and file)", got.Listen, "flag:3"},
		{"influx.url (env beats file; flag unset so its default is unused)", got.Influx.URL, "http://env:8086"},
		{"data_dir (file beats default)", got.DataDir, "/file"},
		{"influx.timeout (file)", got.Influx.Timeout.String(), "30s"},
		{"interval (file)", got.Interval.String(), "1m0s"},
		{"spool.dir (default kept)", got.Spool.Dir, "/spool"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestEnvPrefixWithTrailingUnderscore(t *testing.T) {
	t.Setenv("TCFG_DATA_DIR", "/env")
	got := defaults()
	if err := Load("", "TCFG_", nil, &got); err != nil {
		t.Fatal(err)
	}
	if got.DataDir != "/env" {
		t.Fatalf("data_dir = %q, want /env", got.DataDir)
	}
}

func TestEnvNestedKeyNotInFile(t *testing.T) {
	path := writeFile(t, "listen: :1\n")
	t.Setenv("TCFG_SPOOL_MAX_BYTES", "512KiB")
	t.Setenv("TCFG_INFLUX_TOKEN", "tok")
	t.Setenv("TCFG_HOSTS", "h1,h2")
	got := defaults()
	if err := Load(path, "TCFG", nil, &got); err != nil {
		t.Fatal(err)
	}
	if got.Spool.MaxBytes != 512<<10 {
		t.Errorf("spool.max_bytes = %d, want %d", got.Spool.MaxBytes, 512<<10)
	}
	if got.Influx.Token != "tok" {
		t.Errorf("influx.token = %q", got.Influx.Token)
	}
	if !reflect.DeepEqual(got.Hosts, []string{"h1", "h2"}) {
		t.Errorf("hosts = %q", got.Hosts)
	}
}

func TestFlagTypes(t *testing.T) {
	got := defaults()
	fs := flags(t, "--interval", "250ms", "--spool.max_bytes", "1GB", "--hosts", "x,y", "--hosts", "z")
	if err := Load("", "TCFG", fs, &got); err != nil {
		t.Fatal(err)
	}
	if got.Interval != 250*time.Millisecond {
		t.Errorf("interval = %s", got.Interval)
	}
	if got.Spool.MaxBytes != 1_000_000_000 {
		t.Errorf("spool.max_bytes = %d", got.Spool.MaxBytes)
	}
	if !reflect.DeepEqual(got.Hosts, []string{"x", "y", "z"}) {
		t.Errorf("hosts = %q", got.Hosts)
	}
}

func TestUnknownKeyNamed(t *testing.T) {
	path := writeFile(t, "influx:\n  urll: http://x\nlisten: :1\n")
	got := defaults()
	err := Load(path, "TCFG", nil, &got)
	if err == nil || !strings.Contains(err.Error(), `unknown key "influx.urll"`) {
		t.Fatalf("err = %v, want it to name influx.urll", err)
	}
	path = writeFile(t, "bogus: 1\nother:\n  x: 2\n")
	err = Load(path, "TCFG", nil, &got)
	if err == nil || !strings.Contains(err.Error(), `unknown keys "bogus", "other.x"`) {
		t.Fatalf("err = %v, want both keys named", err)
	}
}

func TestUnknownKeyInsideList(t *testing.T) {
	path := writeFile(t, "exec:\n  - name: a\n    timout: 5s\n")
	got := defaults()
	err := Load(path, "TCFG", nil, &got)
	if err == nil || !strings.Contains(err.Error(), `unknown key "exec[0].timout"`) {
		t.Fatalf("err = %v, want it to name timout", err)
	}
}

func TestMapKeysAndListsReplaceDefaults(t *testing.T) {
	path := writeFile(t, `
labels:
  site: lab
  rack: r1
exec:
  - name: fromfile
hosts: []
`)
	got := defaults()
	got.Labels = map[string]string{"old": "x"}
	if err := Load(path, "TCFG", nil, &got); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"site": "lab", "rack": "r1"}; !reflect.DeepEqual(got.Labels, want) {
		t.Errorf("labels = %v, want %v", got.Labels, want)
	}
	// The file's list element must not inherit the default element's timeout.
	if want := []testExec{{Name: "fromfile"}}; !reflect.DeepEqual(got.Exec, want) {
		t.Errorf("exec = %+v, want %+v", got.Exec, want)
	}
	if len(got.Hosts) != 0 {
		t.Errorf("hosts = %q, want empty", got.Hosts)
	}
}

func TestDurationsAndByteSizesFromFile(t *testing.T) {
	cases := []struct {
		yaml string
		want ByteSize
	}{
		{"64MiB", 64 << 20},
		{"512KiB", 512 << 10},
		{"1GB", 1_000_000_000},
		{"1.5 GiB", 3 << 29},
		{"4096", 4096},
		{`"100b"`, 100},
	}
	for _, c := range cases {
		path := writeFile(t, "spool:\n  max_bytes: "+c.yaml+"\ninflux:\n  timeout: 1m30s\n")
		got := defaults()
		if err := Load(path, "TCFG", nil, &got); err != nil {
			t.Fatalf("%s: %v", c.yaml, err)
		}
		if got.Spool.MaxBytes != c.want {
			t.Errorf("%s: max_bytes = %d, want %d", c.yaml, got.Spool.MaxBytes, c.want)
		}
		if got.Influx.Timeout != 90*time.Second {
			t.Errorf("timeout = %s", got.Influx.Timeout)
		}
	}
	for _, bad := range []string{"64M", "-1", "lots", "0.5B", "99999999999TiB"} {
		path := writeFile(t, "spool:\n  max_bytes: "+bad+"\n")
		got := defaults()
		err := Load(path, "TCFG", nil, &got)
		if err == nil || !strings.Contains(err.Error(), "max_bytes") {
			t.Errorf("%s: err = %v, want an error naming max_bytes", bad, err)
		}
	}
	path := writeFile(t, "interval: soon\n")
	got := defaults()
	if err := Load(path, "TCFG", nil, &got); err == nil || !strings.Contains(err.Error(), "interval") {
		t.Errorf("bad duration: err = %v", err)
	}
}

func TestMissingFile(t *testing.T) {
	got := defaults()
	err := Load(filepath.Join(t.TempDir(), "nope.yaml"), "TCFG", nil, &got)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

func TestBadYAML(t *testing.T) {
	path := writeFile(t, "listen: [unclosed\n")
	got := defaults()
	if err := Load(path, "TCFG", nil, &got); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want a parse error naming the file", err)
	}
}

func TestLoadRejectsNonPointer(t *testing.T) {
	if err := Load("", "TCFG", nil, defaults()); err == nil {
		t.Fatal("Load accepted a struct value")
	}
}

func TestPrintRedactsAndRoundTrips(t *testing.T) {
	cfg := defaults()
	cfg.Influx.Token = "s3cret-influx"
	cfg.Admin = testAdmin{User: "root", Password: "hunter2", APIKey: "k-123"}
	cfg.Labels = map[string]string{"b": "2", "a": "1", "db_password": "pw-in-map"}
	var buf bytes.Buffer
	if err := Print(&buf, &cfg); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, secret := range []string{"s3cret-influx", "hunter2", "k-123", "pw-in-map"} {
		if strings.Contains(out, secret) {
			t.Errorf("output leaks %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{
		"data_dir: /var/lib/x\n", "interval: 10s\n", "max_bytes: 64MiB\n",
		`token: "***"`, `password: "***"`, `api_key: "***"`, "user: root\n",
		"hosts: [a]\n", "a: \"1\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "a: \"1\"") > strings.Index(out, "b: \"2\"") {
		t.Errorf("map keys not sorted:\n%s", out)
	}

	// Printed output (secrets aside) is a valid config file for Load.
	cfg.Influx.Token, cfg.Admin.Password, cfg.Admin.APIKey = "", "", ""
	cfg.Labels = map[string]string{"a": "1"}
	buf.Reset()
	if err := Print(&buf, cfg); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, buf.String())
	var back testConfig
	if err := Load(path, "", nil, &back); err != nil {
		t.Fatalf("reload printed config: %v\n%s", err, buf.String())
	}
	if !reflect.DeepEqual(back, cfg) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, cfg)
	}
}

func TestPrintEmptySecretShowsEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := Print(&buf, defaults()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "token: \"\"\n") {
		t.Fatalf("empty token should print as \"\":\n%s", buf.String())
	}
	if err := Print(&buf, 3); err == nil {
		t.Fatal("Print accepted an int")
	}
}

func TestByteSizeString(t *testing.T) {
	for _, c := range []struct {
		in   ByteSize
		want string
	}{{0, "0B"}, {64 << 20, "64MiB"}, {512 << 10, "512KiB"}, {1_000_000_000, "1GB"}, {1_000_001, "1000001B"}, {3 << 40, "3TiB"}} {
		if got := c.in.String(); got != c.want {
			t.Errorf("%d: String() = %q, want %q", int64(c.in), got, c.want)
		}
		back, err := ParseByteSize(c.in.String())
		if err != nil || back != c.in {
			t.Errorf("ParseByteSize(%q) = %d, %v", c.in.String(), back, err)
		}
	}
	var b ByteSize
	if err := b.UnmarshalText([]byte("2MiB")); err != nil || b != 2<<20 {
		t.Errorf("UnmarshalText: %d, %v", b, err)
	}
}
