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
