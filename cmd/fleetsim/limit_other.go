//go:build !unix

package main

// openFileLimit: no such limit to read here; assume a modest one.
func openFileLimit() uint64 { return 8192 }
