package token

import (
	"bytes"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// RefreshKeyFile is the name of the refresh-token key in the keys
// directory. It does not end in .pem, so it is never taken for a signing key.
const RefreshKeyFile = "refresh-token.key"

const refreshKeyType = "AUTHD REFRESH TOKEN KEY"

// RefreshKey returns the secret from which rotated refresh tokens are
// derived: 32 random bytes in RefreshKeyFile in dir, made on first use and
// shared by every instance using dir. Instances starting at once on an
// empty directory all end up with the one that was written first. A file
// that is there but is not such a key is an error naming it.
func RefreshKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, RefreshKeyFile)
	key, err := readRefreshKey(path)
	if !errors.Is(err, os.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key = make([]byte, 32)
	rand.Read(key)
	// Written whole under a temporary name, then linked into place: a link
	// never replaces a file, so of two instances racing, the second finds
	// the first one's key and uses it, and no reader sees half a file.
	tmp, err := os.CreateTemp(dir, ".refresh-token-*.tmp") // mode 0600
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(pem.EncodeToMemory(&pem.Block{Type: refreshKeyType, Bytes: key}))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	switch err := os.Link(tmp.Name(), path); {
	case err == nil:
		return key, nil
	case errors.Is(err, os.ErrExist):
		return readRefreshKey(path)
	default:
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
}

// readRefreshKey reads the key at path; its errors never quote the file,
// which holds a secret.
func readRefreshKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != refreshKeyType || len(block.Bytes) != 32 || len(block.Headers) != 0 || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s: not an authd refresh-token key (one %q PEM block of 32 bytes)", path, refreshKeyType)
	}
	return block.Bytes, nil
}
