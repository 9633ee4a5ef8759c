package main

import (
	"context"
	"strings"
	"testing"

	"github.com/authd/authd"
)

// TestAdminCLIResetMFANotice: `authd admin users reset-mfa` queues exactly
// one mfa_reset mail to the account's address, naming what went; a second
// reset, with nothing left to remove, queues none and says what it says.
func TestAdminCLIResetMFANotice(t *testing.T) {
	t.Parallel()
	for name, newEnv := range map[string]func(*testing.T) map[string]string{"sqlite": sqliteEnv, "postgres": postgresEnv} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newEnv(t)
			ctx := context.Background()
			db, u := migratedWithUser(t, env, "told@example.org")
			addPasskey(t, db, u, "cli-notice-credential")
			pending := func() []*authd.OutboxMail {
				t.Helper()
				mails, err := db.Mails(ctx, authd.MailFilter{Limit: authd.MaxListLimit})
				if err != nil {
					t.Fatal(err)
				}
				return mails
			}
			before := len(pending())
			code, stdout, stderr := runCLI(t, env, "admin", "users", "reset-mfa", "told@example.org")
			if code != exitOK || !strings.Contains(stdout, "removed every second factor of told@example.org (1 passkey)") {
				t.Fatalf("reset-mfa: exit %d, %q %q", code, stdout, stderr)
			}
			var notices []*authd.OutboxMail
			for _, m := range pending() {
				if m.Kind == authd.MailMFAReset {
					notices = append(notices, m)
				}
			}
			if len(pending()) != before+1 || len(notices) != 1 || notices[0].To != u.Email ||
				notices[0].Removed != (authd.MFARemoval{Passkeys: 1}) {
				t.Fatalf("outbox after reset-mfa: %d mails, notices %+v; want one mfa_reset to %s removing 1 passkey",
					len(pending())-before, notices, u.Email)
			}
			code, stdout, stderr = runCLI(t, env, "admin", "users", "reset-mfa", "told@example.org")
			if code != exitOK || !strings.Contains(stdout, "told@example.org had no second factor to remove") {
				t.Errorf("second reset-mfa: exit %d, %q %q; want it told that nothing was there", code, stdout, stderr)
			}
			if n := len(pending()) - before; n != 1 {
				t.Errorf("%d mails after a second reset with nothing to remove, want still 1", n)
			}
		})
	}
}
