//go:build !linux

package collect

import (
	"context"

	"github.com/shirou/gopsutil/v4/disk"
)

// diskUsage is df's view of the file system holding path. The agent ships
// for Linux only; elsewhere gopsutil keeps the package working for
// development.
func diskUsage(path string) (usage, error) {
	u, err := disk.UsageWithContext(context.Background(), path)
	if err != nil {
		return usage{}, err
	}
	return usage{total: u.Total, used: u.Used, free: u.Free}, nil
}
