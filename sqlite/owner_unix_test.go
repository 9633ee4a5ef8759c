//go:build unix

package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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
	s := openAt(t, path)
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

// TestLockFileAlreadyThereIsNotGivenAway: a lock file already beside the
// database is taken as it is, never given to the database's owner: a link
// that owner planted (to a file of root's) would hand them that file.
func TestLockFileAlreadyThereIsNotGivenAway(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to make files another user's")
	}
	const nobody = 65534
	ctx := context.Background()
	for name, plant := range map[string]func(target, link string) error{"symlink": os.Symlink, "hard link": os.Link} {
		t.Run(name, func(t *testing.T) {
			victim := filepath.Join(t.TempDir(), "root's")
			if err := os.WriteFile(victim, []byte("root's own\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "authd.db")
			s := openAt(t, path)
			if err := os.Chown(path, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			if err := plant(victim, path+"-migrate-lock"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Migrator().Up(ctx); err == nil {
				t.Error("migrated with a lock file that is no database")
			}
			info, err := os.Stat(victim)
			if err != nil {
				t.Fatal(err)
			}
			if st := info.Sys().(*syscall.Stat_t); st.Uid != 0 {
				t.Errorf("the file the lock file links to is %d's now", st.Uid)
			}
		})
	}
}

// TestLockFileLinkedToNothing: a lock file planted as a link to a path
// where nothing is does not have a migration make that file (SQLite opens
// the lock by name, and would follow the link, as root too).
func TestLockFileLinkedToNothing(t *testing.T) {
	ctx := context.Background()
	target := filepath.Join(t.TempDir(), "nologin") // as /etc/nologin would be
	path := filepath.Join(t.TempDir(), "authd.db")
	s := openAt(t, path)
	if err := os.Symlink(target, path+"-migrate-lock"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrator().Up(ctx); err == nil || !strings.Contains(err.Error(), "is not a plain file") {
		t.Errorf("migrate up with the lock file a link: %v; want refused", err)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Error("the migration made the file the planted link names")
	}
}

// TestSymlinkedDatabaseMigrates: a database file that is a link to
// another directory (a data volume) migrates, its lock file beside the
// link.
func TestSymlinkedDatabaseMigrates(t *testing.T) {
	ctx := context.Background()
	real := filepath.Join(t.TempDir(), "real.db")
	path := filepath.Join(t.TempDir(), "authd.db")
	if err := os.WriteFile(real, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	s := openAt(t, path)
	if _, err := s.Migrator().Up(ctx); err != nil {
		t.Fatalf("migrate up of a linked database: %v", err)
	}
	if _, err := os.Stat(path + "-migrate-lock"); err != nil {
		t.Errorf("lock file beside the link: %v", err)
	}
}
