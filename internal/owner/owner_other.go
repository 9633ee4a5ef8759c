//go:build !unix

// Package owner hands a file that root makes in another user's place to
// that user; where files have no Unix owner it does nothing.
package owner

import (
	"io/fs"
	"os"
)

// Match does nothing where files have no Unix owner.
func Match(*os.File, fs.FileInfo) error { return nil }
