package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes where the benchmarks ran.
type Machine struct {
	Cores  int
	CPU    string // model name from /proc/cpuinfo
	Memory string
	Kernel string
	Go     string
	Influx string
}

// DetectMachine reads /proc and asks the go tool and influxd for their
// versions; what it cannot find reads "unknown (...)".
func DetectMachine(ctx context.Context, influxd string) Machine {
	m := Machine{
		Cores:  runtime.NumCPU(),
		CPU:    procField("/proc/cpuinfo", "model name"),
		Kernel: "Linux " + firstLine(os.ReadFile("/proc/sys/kernel/osrelease")),
		Go:     command(ctx, "go", "version"),
		Influx: influxVersion(ctx, influxd),
	}
	if kb, err := strconv.ParseFloat(strings.Fields(procField("/proc/meminfo", "MemTotal") + " 0")[0], 64); err == nil && kb > 0 {
		m.Memory = fmt.Sprintf("%.1f GiB", kb/(1<<20))
	} else {
		m.Memory = "unknown"
	}
	m.CPU += fmt.Sprintf(" (%s)", runtime.GOARCH)
	return m
}

// procField is the value of the first "key : value" line of a /proc file.
func procField(path, field string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == field {
			return strings.TrimSpace(v)
		}
	}
	return "unknown (no " + field + " in " + path + ")"
}

func firstLine(data []byte, err error) string {
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
	return line
}

// command is the first line of a program's output.
func command(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return fmt.Sprintf("unknown (%s: %v)", name, err)
	}
	return firstLine(out, nil)
}

// influxVersion is what influxd says, or, for a build from `go install`
// (which says "vunknown"), the module version recorded in the binary.
func influxVersion(ctx context.Context, influxd string) string {
	v := command(ctx, influxd, "version")
	if !strings.Contains(v, "vunknown") {
		return v
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "version", "-m", influxd).Output()
	if err != nil {
		return v
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/influxdata/influxdb" {
			return "InfluxDB OSS " + f[2] + " (built with go install; module version from `go version -m`)"
		}
	}
	return v
}
