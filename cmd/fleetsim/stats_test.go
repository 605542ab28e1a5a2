package main

import (
	"testing"
	"time"
)

func TestSlice(t *testing.T) {
	for _, tc := range []struct{ devices, procs int }{{40, 2}, {10, 3}, {45000, 7}, {1, 1}} {
		next := 0
		for k := range tc.procs {
			first, count := slice(tc.devices, k, tc.procs)
			if first != next || count < tc.devices/tc.procs {
				t.Fatalf("%+v: process %d got [%d,+%d)", tc, k, first, count)
			}
			next = first + count
		}
		if next != tc.devices {
			t.Fatalf("%+v: slices cover %d devices", tc, next)
		}
	}
}

func TestPerProc(t *testing.T) {
	// 20,000 open files here: 3 per device (socket, spool lock, spool dir).
	if got := perProc(20000); got != (20000-512)/3 {
		t.Fatalf("perProc(20000) = %d", got)
	}
	if got := perProc(1 << 20); got != maxPerProc {
		t.Fatalf("perProc(1M) = %d", got)
	}
	if got := perProc(256); got < 1 {
		t.Fatalf("perProc(256) = %d", got)
	}
}

func TestMergeAndQuantile(t *testing.T) {
	var h1, h2 histogram
	for range 98 {
		h1.observe(2 * time.Millisecond)
	}
	h2.observe(time.Second)
	h2.observe(time.Second)
	a := &Snapshot{Procs: 1, Devices: 10, Connected: 10, AllConnected: time.Second, Acked: 5, Errors: map[string]uint64{"timeout": 1}, Latency: h1.snapshot()}
	b := &Snapshot{Procs: 1, Devices: 5, Connected: 4, Acked: 7, Errors: map[string]uint64{"timeout": 2, "TLS": 1}, Latency: h2.snapshot()}
	s := mergeAll([]*Snapshot{a, b})
	if s.Procs != 2 || s.Devices != 15 || s.Connected != 14 || s.Acked != 12 || s.AllConnected != 0 {
		t.Fatalf("merged %+v", s)
	}
	if s.Errors["timeout"] != 3 || s.Errors["TLS"] != 1 {
		t.Fatalf("errors %v", s.Errors)
	}
	p50, n := quantile(s.Latency, 0.5)
	if n != 100 || p50 < 2*time.Millisecond || p50 > 2400*time.Microsecond {
		t.Fatalf("p50 %s of %d", p50, n)
	}
	if p99, _ := quantile(s.Latency, 0.99); p99 < time.Second || p99 > 1200*time.Millisecond {
		t.Fatalf("p99 %s", p99)
	}
	b.AllConnected = 2 * time.Second
	if s := mergeAll([]*Snapshot{a, b}); s.AllConnected != 2*time.Second {
		t.Fatalf("all connected %s", s.AllConnected)
	}
}

func TestClassify(t *testing.T) {
	for msg, want := range map[string]string{
		"hub refused the device token (401)":                                                     "unauthorized (401)",
		"hub closed session: 4001 revoked: device revoked":                                       "hub closed: 4001 revoked",
		"dial: dial tcp 127.0.0.2:0->127.0.0.1:1: connect: connection refused":                   "connection refused",
		"dial: dial tcp: lookup x: i/o timeout":                                                  "timeout",
		"dial: tls: failed to verify certificate: x509: certificate signed by unknown authority": "TLS",
		"dial: websocket: bad handshake (HTTP 503)":                                              "HTTP 503",
		"read welcome: unexpected EOF":                                                           "connection lost",
	} {
		if got := classify(msg); got != want {
			t.Errorf("classify(%q) = %q, want %q", msg, got, want)
		}
	}
}
