//go:build unix

package token

import (
	"os"
	"syscall"
)

// giveToDirOwner hands the file f, just written into dir, to dir's owner
// when this process runs as root and dir is another user's: `sudo authd
// keys rotate` (or `keys secrets`) in the directory of a `serve` that runs
// as its own user must not leave a key readable by root alone (every key
// file is 0600), which that serve could not load.
func giveToDirOwner(f *os.File, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}
