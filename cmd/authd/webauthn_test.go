package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/storetest"
)

// TestWebAuthnRelyingParty: the relying party follows AUTHD_PUBLIC_URL
// unless set, is off on an IP address, and a mismatch stops start-up.
func TestWebAuthnRelyingParty(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env     map[string]string
		rpID    string
		origins []string
		err     string
	}{
		{env: map[string]string{}, rpID: "", origins: []string{"http://127.0.0.1:8080"}},
		{env: map[string]string{"AUTHD_PUBLIC_URL": "https://Auth.Example.org/base"}, rpID: "auth.example.org",
			origins: []string{"https://auth.example.org"}}, // the public URL's host in lower case, as browsers send origins
		{env: map[string]string{"AUTHD_PUBLIC_URL": "http://localhost:8080"}, rpID: "localhost",
			origins: []string{"http://localhost:8080"}},
		{env: map[string]string{"AUTHD_PUBLIC_URL": "https://auth.example.org", "AUTHD_WEBAUTHN_RP_ID": "example.org",
			"AUTHD_WEBAUTHN_ORIGINS": "https://auth.example.org, https://app.example.org"}, rpID: "example.org",
			origins: []string{"https://auth.example.org", "https://app.example.org"}},
		{env: map[string]string{"AUTHD_PUBLIC_URL": "https://auth.example.org", "AUTHD_WEBAUTHN_ORIGINS": "https://example.org"},
			err: "AUTHD_WEBAUTHN_RP_ID"},
		{env: map[string]string{"AUTHD_WEBAUTHN_RP_ID": "localhost"}, err: "registrable suffix"},
	}
	for _, tt := range tests {
		cfg, err := loadConfig(nil, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: %v; want an error naming %s", tt.env, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tt.env, err)
			continue
		}
		if cfg.WebAuthnRPID != tt.rpID || !slices.Equal(cfg.WebAuthnOrigins, tt.origins) {
			t.Errorf("%v: RP ID %q, origins %q; want %q, %q", tt.env, cfg.WebAuthnRPID, cfg.WebAuthnOrigins, tt.rpID, tt.origins)
		}
		if s := cfg.service(); s.WebAuthnRPID != tt.rpID {
			t.Errorf("%v: the service gets RP ID %q", tt.env, s.WebAuthnRPID)
		}
	}
}

// TestAdminCLIPasskeys: `authd admin users mfa` lists passkeys and
// `reset-mfa` removes them.
func TestAdminCLIPasskeys(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	ctx := context.Background()
	db, u := migratedWithUser(t, env, "keyed@example.org")
	addPasskey(t, db, u, "cli-credential")
	code, stdout, stderr := runCLI(t, env, "admin", "users", "mfa", "keyed@example.org")
	if code != exitOK || !strings.Contains(stdout, "passkey") || !strings.Contains(stdout, "Desk key") {
		t.Errorf("admin users mfa: exit %d, %q %q; want the passkey listed", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, env, "admin", "users", "reset-mfa", "keyed@example.org"); code != exitOK {
		t.Fatalf("reset-mfa: %s", stderr)
	}
	if keys, err := db.Passkeys(ctx, u.ID); err != nil || len(keys) != 0 {
		t.Errorf("passkeys after reset-mfa: %v, %v", keys, err)
	}
}

// addPasskey gives u a passkey named "Desk key" with the credential id.
func addPasskey(t *testing.T, db database, u *authd.User, credentialID string) {
	t.Helper()
	if err := db.CreatePasskey(context.Background(), &authd.Passkey{ID: authd.NewID(), UserID: u.ID, Name: "Desk key",
		CredentialID: []byte(credentialID), PublicKey: []byte{1}, AttestationType: "none",
		CreatedAt: storetest.Epoch}); err != nil {
		t.Fatal(err)
	}
}
