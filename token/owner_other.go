//go:build !unix

package token

import "os"

// giveToDirOwner does nothing where files have no Unix owner.
func giveToDirOwner(*os.File, string) error { return nil }
