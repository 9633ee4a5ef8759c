//go:build unix

// Package owner hands a file that root makes in another user's place (a
// key in the directory of a serve that runs as its own user) to that
// user, who could not read it otherwise: authd's files are 0600.
package owner

import (
	"io/fs"
	"os"
	"syscall"
)

// Match gives f the owner and group of like, the file or directory whose
// user should own it, when this process runs as root and like is not
// root's; otherwise it does nothing.
func Match(f *os.File, like fs.FileInfo) error {
	if os.Geteuid() != 0 {
		return nil
	}
	st, ok := like.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}
