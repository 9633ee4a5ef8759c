package verify

import (
	"testing"
	"time"
)

// SetIntrospectionTimeout sets introspectionTimeout to d until t ends
// (after t's Verifiers are closed, when t makes them after this call). Not
// for parallel tests.
func SetIntrospectionTimeout(t testing.TB, d time.Duration) {
	old := introspectionTimeout
	introspectionTimeout = d
	t.Cleanup(func() { introspectionTimeout = old })
}

// LowS is lowS: token spelt with the lower s of its ES256 signature.
func (v *Verifier) LowS(token string) string { return v.lowS(token) }
