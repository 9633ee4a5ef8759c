//go:build unix

package token

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestKeysOfRootGoToTheDirectorysOwner: keys that root makes in another
// user's directory (`sudo authd keys rotate` beside a `serve` running as
// its own user) are that user's, or the serve could not read them (0600).
func TestKeysOfRootGoToTheDirectorysOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to make files another user's")
	}
	const nobody = 65534
	dir := t.TempDir()
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	k, err := Generate(dir, "EdDSA", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := RefreshSecret.Open(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{k.ID + ".pem", RefreshKeyFile} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st := info.Sys().(*syscall.Stat_t); st.Uid != nobody || st.Gid != nobody || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: owner %d:%d, mode %v; want %d:%d, 0600", name, st.Uid, st.Gid, info.Mode().Perm(), nobody, nobody)
		}
	}

	// Root's own directory keeps root's keys.
	own := t.TempDir()
	k, err = Generate(own, "EdDSA", now)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(filepath.Join(own, k.ID+".pem"))
	if st := info.Sys().(*syscall.Stat_t); st.Uid != 0 {
		t.Errorf("a key in root's directory is %d's", st.Uid)
	}
}
