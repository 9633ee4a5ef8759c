package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Secret is a 32-byte secret that every instance sharing the keys
// directory must hold, in a file of its own there. Its name does not end in
// .pem, so it is never taken for a signing key.
type Secret struct {
	File    string // the file name in the keys directory
	PEMType string // the type of its one PEM block
	Use     string // what it is for, in errors
}

// The shared secrets of the keys directory.
var (
	// RefreshSecret derives each rotated refresh token from its parent.
	RefreshSecret = Secret{File: RefreshKeyFile, PEMType: "AUTHD REFRESH TOKEN KEY", Use: "refresh-token"}
	// MFASecret encrypts TOTP secrets at rest and keys the digests of
	// recovery codes (AES-256-GCM, HMAC-SHA-256). Losing it disables every
	// enrolled TOTP factor.
	MFASecret = Secret{File: MFAKeyFile, PEMType: "AUTHD MFA KEY", Use: "MFA"}
)

// The names of the shared secrets in the keys directory.
const (
	RefreshKeyFile = "refresh-token.key"
	MFAKeyFile     = "mfa.key"
)

// RefreshKey returns the secret from which rotated refresh tokens are
// derived (RefreshSecret.Load).
func RefreshKey(dir string) ([]byte, error) { return RefreshSecret.Load(dir) }

// MFAKey returns the key that protects second factors (MFASecret.Load).
func MFAKey(dir string) ([]byte, error) { return MFASecret.Load(dir) }

// Load returns the secret: 32 random bytes in its file in dir, made on first
// use and shared by every instance using dir. Instances starting at once on
// an empty directory all end up with the one that was written first. A
// file that is there but is not such a key is an error naming it.
func (s Secret) Load(dir string) ([]byte, error) {
	key, _, err := s.Open(dir)
	return key, err
}

// Open is Load, also telling whether this call made the file: false when
// it was there, or when another process made it first.
func (s Secret) Open(dir string) (key []byte, made bool, err error) {
	path := filepath.Join(dir, s.File)
	key, err = s.read(path)
	if !errors.Is(err, os.ErrNotExist) {
		return key, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	key = make([]byte, 32)
	rand.Read(key)
	// Written whole under a temporary name, then linked into place: a link
	// never replaces a file, so of two instances racing, the second finds
	// the first one's key and uses it, and no reader sees half a file.
	// Through one handle on the directory, as Generate writes.
	d, err := os.OpenRoot(dir)
	if err != nil {
		return nil, false, err
	}
	defer d.Close()
	suffix := make([]byte, 8)
	rand.Read(suffix)
	tmp := "." + s.File + "-" + hex.EncodeToString(suffix) + ".tmp"
	defer d.Remove(tmp)
	if err := writeKeyFile(d, tmp, pem.EncodeToMemory(&pem.Block{Type: s.PEMType, Bytes: key})); err != nil {
		return nil, false, fmt.Errorf("write %s: %w", path, err)
	}
	switch err := d.Link(tmp, s.File); {
	case err == nil:
		return key, true, nil
	case errors.Is(err, os.ErrExist):
		key, err := s.read(path)
		return key, false, err
	default:
		return nil, false, fmt.Errorf("create %s: %w", path, err)
	}
}

// Check returns the check value of key, one of this secret's: HMAC-SHA-256
// of a versioned label and the secret's PEM type, hex-encoded. It tells two
// keys apart and, being a MAC of a fixed message, nothing of the key. A
// database keeps it (authd.KeyCheck), so it must never change: a test
// holds it to a known answer.
func (s Secret) Check(key []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("authd key check v1\x00" + s.PEMType))
	return hex.EncodeToString(mac.Sum(nil))
}

// read reads the key at path; its errors never quote the file, which holds
// a secret.
func (s Secret) read(path string) ([]byte, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != s.PEMType || len(block.Bytes) != 32 || len(block.Headers) != 0 || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s: not an authd %s key (one %q PEM block of 32 bytes)", path, s.Use, s.PEMType)
	}
	return block.Bytes, nil
}
