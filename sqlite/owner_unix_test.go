//go:build unix

package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/authd/authd/sqlite"
)

// TestLockFileIsTheDatabaseOwners: the migration lock file root makes
// (`sudo authd migrate up`) beside another user's database is that user's,
// 0600: a serve running as that user must be able to take the lock, which
// SQLite would otherwise open read-only, and a read-only lock locks no one.
func TestLockFileIsTheDatabaseOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to make files another user's")
	}
	const nobody = 65534
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "authd.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Chown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrator().Up(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path + "-migrate-lock")
	if err != nil {
		t.Fatal(err)
	}
	if st := info.Sys().(*syscall.Stat_t); st.Uid != nobody || st.Gid != nobody || info.Mode().Perm() != 0o600 {
		t.Errorf("lock file: owner %d:%d, mode %v; want %d:%d, 0600", st.Uid, st.Gid, info.Mode().Perm(), nobody, nobody)
	}
}
