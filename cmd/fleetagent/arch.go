package main

import (
	"runtime"
	"runtime/debug"
)

// arch names the build's architecture the way Pi users know it (armv6,
// armv7), from the GOARM setting recorded in the binary.
func arch() string {
	if runtime.GOARCH != "arm" {
		return runtime.GOARCH
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" {
				return "armv" + s.Value
			}
		}
	}
	return "arm"
}
