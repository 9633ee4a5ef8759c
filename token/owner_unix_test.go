//go:build unix

package token

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
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

// TestKeyFilesThatAreNoFiles: a key file that links to a device or a FIFO
// (planted by its directory's owner for a root running the keys commands)
// is refused at once, not read without end or waited on.
func TestKeyFilesThatAreNoFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for target, name := range map[string]string{"/dev/zero": RefreshKeyFile, fifo: MFAKeyFile} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := RefreshSecret.Load(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a key linked to /dev/zero: %v", err)
	}
	if _, err := MFASecret.Load(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a key linked to a FIFO: %v", err)
	}
	// A FIFO made in the directory itself (no link out of it): refused at
	// once, not waited on for a writer.
	inside := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(inside, MFAKeyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := MFASecret.Load(inside); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a key that is a FIFO: %v", err)
	}
	// A link within the directory (Kubernetes' ..data/ layout) is read.
	linked := t.TempDir()
	if err := os.Mkdir(filepath.Join(linked, "..data"), 0o700); err != nil {
		t.Fatal(err)
	}
	want, _, err := RefreshSecret.Open(filepath.Join(linked, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", RefreshKeyFile), filepath.Join(linked, RefreshKeyFile)); err != nil {
		t.Fatal(err)
	}
	if got, err := RefreshSecret.Load(linked); err != nil || !bytes.Equal(got, want) {
		t.Errorf("a key linked within its directory: %v", err)
	}
	big := filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(big, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(big, "huge.pem"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than any key") {
		t.Errorf("a 1 MiB key file: %v", err)
	}
}
