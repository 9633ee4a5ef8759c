package authd_test

import (
	"testing"

	"github.com/authd/authd"
)

// TestRedirectsToAnyLoopbackPort: a redirect URI matches as registered,
// character for character, but for the port of an http URI to a loopback
// IP literal, which a native app takes from the free ones at each sign-in
// (RFC 8252 §7.3); nothing else about it may differ, and `localhost` or
// any other host is matched as written.
func TestRedirectsToAnyLoopbackPort(t *testing.T) {
	c := &authd.OAuthClient{RedirectURIs: []string{"http://127.0.0.1/cb", "http://[::1]:8400/cb?x=1",
		"http://localhost:8400/cb", "https://app.example.org:8443/cb", "com.example.app:/cb"}}
	for uri, want := range map[string]bool{
		"http://127.0.0.1/cb":          true,
		"http://127.0.0.1:51234/cb":    true,
		"http://127.0.0.1:65535/cb":    true,
		"http://[::1]:8400/cb?x=1":     true,
		"http://[::1]:1/cb?x=1":        true,
		"http://[::1]/cb?x=1":          true,
		"http://127.0.0.1:51234/cb/":   false, // the path differs
		"http://127.0.0.1:51234/cb?a":  false, // a query added
		"http://127.0.0.1:51234/CB":    false,
		"http://127.0.0.2:51234/cb":    false, // another address
		"http://127.0.0.1:0/cb":        false,
		"http://127.0.0.1:65536/cb":    false,
		"http://127.0.0.1:051234/cb":   false,
		"http://127.0.0.1:/cb":         false,
		"http://u@127.0.0.1:5/cb":      false,
		"https://127.0.0.1:5/cb":       false,
		"HTTP://127.0.0.1:5/cb":        false, // character for character, but for the port
		"http://[::ffff:127.0.0.1]/cb": false,
		"http://[::1]:8400/cb":         false, // the query differs
		"http://localhost:8400/cb":     true,  // as registered
		"http://localhost:9000/cb":     false, // localhost is matched as written
		"https://app.example.org/cb":   false,
		"com.example.app:/cb":          true,
		"com.example.app:/cb2":         false,
	} {
		if got := c.RedirectsTo(uri); got != want {
			t.Errorf("RedirectsTo(%q) = %v, want %v", uri, got, want)
		}
	}
}
