package collect

import "golang.org/x/sys/unix"

// diskUsage is df's view of the file system holding path (statfs(2)).
func diskUsage(path string) (usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return usage{}, err
	}
	bs := uint64(st.Bsize)
	return usage{
		total: st.Blocks * bs,
		used:  (st.Blocks - st.Bfree) * bs,
		free:  st.Bavail * bs,
	}, nil
}
