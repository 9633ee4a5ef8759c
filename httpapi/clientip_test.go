package httpapi

import (
	"context"
	"io/fs"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
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
		// Some load balancers write the client's port too.
		{"entry with a port", "10.1.2.3:443", "198.51.100.1:4711", "198.51.100.1"},
		{"IPv6 entry with a port", "10.1.2.3:443", "[2001:db8::5]:4711", "2001:db8::5"},
		{"proxy entry with a port", "10.1.2.3:443", "198.51.100.1, 10.9.9.9:80", "198.51.100.1"},
		{"a port alone is garbage", "10.1.2.3:443", "198.51.100.1, :4711", "10.1.2.3"},
		// Every entry a trusted proxy: the leftmost one reached, the
		// nearest to the client that can be known.
		{"only trusted proxies", "10.1.2.3:443", "10.9.9.9", "10.9.9.9"},
		{"garbage left of a trusted proxy", "10.1.2.3:443", "nonsense, 10.9.9.9", "10.9.9.9"},
		// An IPv4 client written IPv4-mapped is the one address, not a
		// second identity for the rate limits; a mapped proxy is trusted.
		{"IPv4-mapped entry", "10.1.2.3:443", "::ffff:198.51.100.1", "198.51.100.1"},
		{"IPv4-mapped proxy entry", "10.1.2.3:443", "198.51.100.1, ::ffff:10.9.9.9", "198.51.100.1"},
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
	t.Parallel()
	for _, on := range []bool{false, true} {
		s := New(Options{HSTS: on, Ready: func(context.Context) error { return nil }})
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if got := rec.Header().Get("Strict-Transport-Security") != ""; got != on {
			t.Errorf("HSTS option %v: header present %v", on, got)
		}
		// A year, subdomains included: a browser then refuses plain HTTP
		// to the service long enough to matter.
		if hsts := rec.Header().Get("Strict-Transport-Security"); on && hsts != "max-age=31536000; includeSubDomains" {
			t.Errorf("HSTS %q, want max-age=31536000; includeSubDomains", hsts)
		}
	}
}

// TestEveryPageContentParses: each content a handler names has its page.
func TestEveryPageContentParses(t *testing.T) {
	t.Parallel()
	for _, name := range pageNames {
		if _, ok := embeddedPages[name]; !ok {
			t.Errorf("no page for %q", name)
		}
	}
}

// TestPageOverrides: an operator's pages.html replaces what it defines of
// the embedded one and keeps the rest; one that does not parse or names a
// field pages do not have is refused naming the file; a directory without
// one keeps the embedded pages.
func TestPageOverrides(t *testing.T) {
	t.Parallel()
	embedded, err := fs.ReadFile(pageFiles, PagesFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if p, err := LoadPages(dir); err != nil || len(p) != len(pageNames) {
		t.Fatalf("LoadPages of a directory without pages.html = %d pages, %v; want the embedded ones", len(p), err)
	}
	branded := strings.Replace(string(embedded), "<body>", "<body><p>Acme Corp</p>", 1)
	if branded == string(embedded) {
		t.Fatal("the embedded layout has no <body> to brand")
	}
	os.WriteFile(filepath.Join(dir, PagesFile), []byte(branded), 0o600)
	pages, err := LoadPages(dir)
	if err != nil {
		t.Fatalf("LoadPages of a good override: %v", err)
	}
	s := newServer(Options{Pages: pages})
	rec := httptest.NewRecorder()
	if err := s.renderPage(rec, 200, page{Title: "Confirm", content: "verify-content"}); err != nil || !strings.Contains(rec.Body.String(), "Acme Corp") {
		t.Errorf("a page with the override: %v, %q", err, rec.Body.String())
	}

	// An override of the layout alone (or of a version without the newer
	// pages) keeps the embedded pages it does not define.
	layoutOnly := string(embedded)[:strings.Index(string(embedded), "{{end}}")+len("{{end}}")]
	layoutOnly = strings.Replace(layoutOnly, "<body>", "<body><p>Layout only</p>", 1)
	os.WriteFile(filepath.Join(dir, PagesFile), []byte(layoutOnly), 0o600)
	pages, err = LoadPages(dir)
	if err != nil {
		t.Fatalf("LoadPages of a layout-only override: %v", err)
	}
	rec = httptest.NewRecorder()
	if err := newServer(Options{Pages: pages}).renderPage(rec, 200, page{Title: "Keys", content: "passkeys-content"}); err != nil ||
		!strings.Contains(rec.Body.String(), "Layout only") || !strings.Contains(rec.Body.String(), `id="add"`) {
		t.Errorf("a page the override lacks: %v, %q", err, rec.Body.String())
	}

	for name, text := range map[string]string{
		"does not parse": strings.Replace(string(embedded), "{{end}}", "{{end", 1),
		"unknown field":  strings.Replace(string(embedded), "<body>", "<body>{{.NoSuchField}}", 1),
	} {
		os.WriteFile(filepath.Join(dir, PagesFile), []byte(text), 0o600)
		if _, err := LoadPages(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, PagesFile)) {
			t.Errorf("LoadPages of an override that %s = %v, want an error naming the file", name, err)
		}
	}
}
