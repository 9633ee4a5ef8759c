package httpapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authd/authd/httpapi"
)

// TestPagesOverride: a file in the templates directory replaces its
// embedded page; a broken one is an error naming the file.
func TestPagesOverride(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	custom := `{{define "expired-content"}}<p id="custom">This link is spent. {{.Title}}</p>{{end}}`
	if err := os.WriteFile(filepath.Join(dir, "expired.html"), []byte(custom), 0o600); err != nil {
		t.Fatal(err)
	}
	pages, err := httpapi.LoadPages(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, openSQLite(t))
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.svc, Pages: pages, PasswordMinLength: 12}))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/verify-email?token=" + strings.Repeat("A", 43))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `<p id="custom">This link is spent.`) || !strings.Contains(string(body), "<!DOCTYPE html>") {
		t.Errorf("the overriding page was not used (in the embedded layout): %d\n%s", resp.StatusCode, body)
	}
	for name, text := range map[string]string{
		"reset.html":  `{{define "reset-content"}}{{.NoSuchField}}{{end}}`,
		"layout.html": `{{define "layout"}}{{template "content" .}}`,
		"verify.html": `{{define "other"}}{{end}}`,
	} {
		bad := t.TempDir()
		if err := os.WriteFile(filepath.Join(bad, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := httpapi.LoadPages(bad); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("a broken %s: %v; want an error naming it", name, err)
		}
	}
}
