package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authd/authd/internal/syncbuf"
)

// TestServeRefusesDevMailerOnPublicURL: with a public AUTHD_PUBLIC_URL and
// no SMTP, serve refuses to start (leaving no database behind) unless
// AUTHD_DEV_MAILER=on, and then warns; on this machine it starts quietly.
func TestServeRefusesDevMailerOnPublicURL(t *testing.T) {
	t.Parallel()
	const warning = "AUTHD_DEV_MAILER=on"
	tests := []struct {
		name    string
		set     map[string]string
		refused bool
		warned  bool
	}{
		{"public URL, no SMTP", map[string]string{"AUTHD_PUBLIC_URL": "https://auth.example.org"}, true, false},
		{"public IP, no SMTP", map[string]string{"AUTHD_PUBLIC_URL": "http://203.0.113.7:8080"}, true, false},
		{"public URL, dev mailer off", map[string]string{"AUTHD_PUBLIC_URL": "https://auth.example.org",
			"AUTHD_DEV_MAILER": "off"}, true, false},
		{"public URL, dev mailer on", map[string]string{"AUTHD_PUBLIC_URL": "https://auth.example.org",
			"AUTHD_DEV_MAILER": "on"}, false, true},
		{"public URL, SMTP", map[string]string{"AUTHD_PUBLIC_URL": "https://auth.example.org",
			"AUTHD_SMTP_URL": "smtp://127.0.0.1:2525"}, false, false},
		{"default URL", nil, false, false},
		{"localhost", map[string]string{"AUTHD_PUBLIC_URL": "http://localhost:8080"}, false, false},
		{"IPv6 loopback", map[string]string{"AUTHD_PUBLIC_URL": "http://[::1]:8080"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := sqliteEnv(t)
			env["AUTHD_HTTP_ADDR"], env["AUTHD_ADMIN_ADDR"] = "127.0.0.1:0", ""
			for k, v := range tt.set {
				env[k] = v
			}
			if tt.refused {
				code, _, stderr := runCLI(t, env, "serve")
				if code != exitFailure || !strings.Contains(stderr, "AUTHD_SMTP_URL") ||
					!strings.Contains(stderr, "AUTHD_DEV_MAILER") || !strings.Contains(stderr, "hint:") {
					t.Errorf("serve: exit %d, stderr %q; want 1 naming AUTHD_SMTP_URL and AUTHD_DEV_MAILER, with a hint", code, stderr)
				}
				if _, err := os.Stat(filepath.Join(env["AUTHD_DATA_DIR"], "authd.db")); err == nil {
					t.Error("the refused start created the database")
				}
				return
			}
			var logs syncbuf.Buffer
			app := NewApp(configOf(t, env), slog.New(slog.NewTextHandler(&logs, nil)))
			if err := app.Open(context.Background()); err != nil {
				t.Fatalf("Open: %v", err)
			}
			app.Close()
			if warned := strings.Contains(logs.String(), warning); warned != tt.warned {
				t.Errorf("warned about the dev mailer: %v, want %v; logs:\n%s", warned, tt.warned, logs.String())
			}
		})
	}
	// A loopback public URL but a listener on every interface (a container):
	// allowed, with a warning that the logged links are live.
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"], env["AUTHD_ADMIN_ADDR"] = "0.0.0.0:0", ""
	var logs syncbuf.Buffer
	app := NewApp(configOf(t, env), slog.New(slog.NewTextHandler(&logs, nil)))
	if err := app.Open(context.Background()); err != nil {
		t.Fatalf("Open on 0.0.0.0: %v", err)
	}
	app.Close()
	if !strings.Contains(logs.String(), "other machines can reach") {
		t.Errorf("no warning about the dev mailer on a reachable listener; logs:\n%s", logs.String())
	}

	env = sqliteEnv(t)
	env["AUTHD_DEV_MAILER"] = "yes"
	if code, _, stderr := runCLI(t, env, "serve"); code != exitFailure || !strings.Contains(stderr, "AUTHD_DEV_MAILER=") {
		t.Errorf("AUTHD_DEV_MAILER=yes: exit %d, stderr %q; want 1 naming the variable", code, stderr)
	}
}
