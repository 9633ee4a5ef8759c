package httpapi

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	s := &Server{opts: Options{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	}}}
	tests := []struct {
		name, remote, xff, want string
	}{
		{"direct client", "203.0.113.7:5000", "", "203.0.113.7"},
		{"untrusted peer's header is ignored", "203.0.113.7:5000", "198.51.100.1", "203.0.113.7"},
		{"trusted proxy", "10.1.2.3:443", "198.51.100.1", "198.51.100.1"},
		{"chain of trusted proxies", "10.1.2.3:443", "198.51.100.1, 10.9.9.9", "198.51.100.1"},
		{"spoofed left entries are skipped", "10.1.2.3:443", "1.1.1.1, 198.51.100.1", "198.51.100.1"},
		{"garbage entry stops the walk", "10.1.2.3:443", "198.51.100.1, nonsense", "10.1.2.3"},
		{"trusted proxy without header", "10.1.2.3:443", "", "10.1.2.3"},
		{"IPv6 proxy", "[::1]:443", "2001:db8::5", "2001:db8::5"},
		{"IPv4-mapped peer", "[::ffff:203.0.113.7]:5000", "", "203.0.113.7"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		if got := s.clientIP(r); got != tt.want {
			t.Errorf("%s: clientIP = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func FuzzCheckJSON(f *testing.F) {
	for _, seed := range []string{`{"email":"a@b.c"}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"a":1,"a":2}`, `[`, `{"x":"\u0000"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkJSON(body, nil) // must not panic
	})
}

func TestHSTSOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		s := New(Options{HSTS: on, Ready: func(context.Context) error { return nil }})
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if got := rec.Header().Get("Strict-Transport-Security") != ""; got != on {
			t.Errorf("HSTS option %v: header present %v", on, got)
		}
	}
}

// TestEveryPageContentParses: each content a handler names has its page.
func TestEveryPageContentParses(t *testing.T) {
	for _, name := range []string{"verify-content", "verified-content", "reset-content", "reset-done-content",
		"expired-content", "new-link-content", "problem-content"} {
		if _, ok := pageTemplates[name]; !ok {
			t.Errorf("no page for %q", name)
		}
	}
}
