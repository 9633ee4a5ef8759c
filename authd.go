// Package authd is the domain of the authd authentication service: accounts,
// tokens, verification tokens and the security log, the errors the service
// returns, and the interfaces its adapters implement (Store, Clock).
//
// The package imports none of the project's own packages. Adapters live in
// sub-packages (postgres, sqlite, httpapi, …) and only cmd/authd wires them.
package authd

import "time"

// Clock tells the time. Flows take it from here so that expiry, lockout and
// retention can be tested without sleeping.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock, in UTC.
type SystemClock struct{}

// Now returns the current time in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC() }
