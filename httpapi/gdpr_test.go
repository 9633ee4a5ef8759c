package httpapi_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/sqlite"
	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
)

// The request identity of the person whose data is erased, sent through
// the trusted proxy so that it lands in the rows.
const (
	personIP = "198.51.100.77"
	personUA = "ErasureTestAgent/1.0 (distinctive)"
)

func person() []string { return []string{"X-Forwarded-For", personIP, "User-Agent", personUA} }

// userTables are the tables that refer to a user: users, every table
// with a foreign key to it (the catalog tests prove SeedSchema is live), and
// revocation_events, whose subject_id is a user's or a session's id.
func userTables() map[string][]string {
	tables := map[string][]string{}
	referring := map[string]bool{"users": true, "revocation_events": true}
	for _, fk := range storetest.SeedSchema.ForeignKeys {
		if fk.RefTable == "users" {
			referring[fk.Table] = true
		}
	}
	for _, c := range storetest.SeedSchema.Columns {
		if referring[c.Table] {
			tables[c.Table] = append(tables[c.Table], c.Name)
		}
	}
	return tables
}

func TestExportIsComplete(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("exp@example.org", goodPassword)
		access, refresh := e.login("exp@example.org", goodPassword)
		want(t, "refresh", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}), 200, "")
		ended, _ := e.login("exp@example.org", goodPassword) // a session that ends: a revocation event
		want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(ended)...), 204, "")
		want(t, "consent", e.do("PUT", "/v1/users/me/consent", map[string]bool{"consent": false}, bearer(access)...), 200, "")
		e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "exp@example.org"})
		e.mail.flush()                                                                                       // mints the reset token
		e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "exp@example.org"}, person()...) // stays in the outbox
		// A second factor, its recovery codes and a pending sign-in challenge.
		r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
		want(t, "enrol", r, 200, "")
		secret := r.str("secret")
		want(t, "confirm", e.do("POST", "/v1/users/me/mfa/totp/confirm", map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 200, "")
		e.mfaLogin("exp@example.org")
		// A passkey and a passkey ceremony in flight.
		u := e.user("exp@example.org")
		ctx := context.Background()
		if err := e.store.CreatePasskey(ctx, &authd.Passkey{ID: authd.NewID(), UserID: u.ID, Name: "Laptop",
			CredentialID: []byte("exported-credential"), PublicKey: []byte{1, 2, 3}, AttestationType: "none",
			Transports: []string{"internal"}, CreatedAt: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.CreateWebAuthnChallenge(ctx, &authd.WebAuthnChallenge{ID: authd.NewID(), Challenge: "exported",
			UserID: u.ID, Purpose: authd.PurposeRegister, SessionData: "{}", CreatedAt: e.clock.Now(),
			ExpiresAt: e.clock.Now().Add(authd.WebAuthnChallengeTTL)}); err != nil {
			t.Fatal(err)
		}
		// What signing in to a relying party leaves: a consent and a code.
		oidcRows(t, e.store, u, e.clock.Now())

		r = e.do("GET", "/v1/users/me/export", nil, bearer(access)...)
		want(t, "export", r, 200, "")
		if cd := r.header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment; filename=") {
			t.Errorf("Content-Disposition %q", cd)
		}
		if strings.Contains(r.raw, "$argon2id") || strings.Contains(r.raw, refresh) || strings.Contains(r.raw, secret) {
			t.Error("the export holds a secret")
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal([]byte(r.raw), &doc); err != nil {
			t.Fatal(err)
		}
		var excluded map[string]string
		json.Unmarshal(doc["excluded_columns"], &excluded)
		for table, columns := range userTables() {
			var rows []map[string]any
			if err := json.Unmarshal(doc[table], &rows); err != nil || len(rows) == 0 {
				t.Errorf("export section %q: %v rows (%v); want the user's rows", table, len(rows), err)
				continue
			}
			for _, col := range columns {
				_, inExport := rows[0][col]
				_, isExcluded := excluded[table+"."+col]
				if inExport == isExcluded {
					t.Errorf("%s.%s: in the export %v, listed as excluded %v; want exactly one", table, col, inExport, isExcluded)
				}
			}
		}
		var consent []map[string]any
		json.Unmarshal(doc["consent_history"], &consent)
		if len(consent) != 2 || consent[1]["consent"] != false {
			t.Errorf("consent history %v, want the registration's consent and its withdrawal", consent)
		}
		evs := e.events("exp@example.org")
		if evs[len(evs)-1] != "data_exported/success" || !strings.Contains(string(doc["security_logs"]), "data_exported") {
			t.Errorf("data_exported not logged or not exported: %v", evs)
		}
	})
}

// oidcRows stores a client, the user's consent to it and a code issued to
// it, as signing in to a relying party does.
func oidcRows(t *testing.T, store authd.Store, u *authd.User, now time.Time) {
	t.Helper()
	ctx := context.Background()
	now = now.UTC().Truncate(time.Microsecond)
	sessions, err := store.Sessions(ctx, u.ID, now)
	if err != nil || len(sessions) == 0 {
		t.Fatalf("sessions of %s: %v, %v", u.Email, sessions, err)
	}
	c := &authd.OAuthClient{ID: "gdpr-app", Name: "App", Type: authd.ClientPublic,
		RedirectURIs: []string{"https://app.example.org/cb"}, CreatedAt: now, UpdatedAt: now}
	err = errors.Join(store.CreateClient(ctx, c),
		store.SaveConsent(ctx, &authd.Consent{ID: authd.NewID(), UserID: u.ID, ClientID: c.ID,
			Scopes: []string{"openid"}, GrantedAt: now}),
		store.CreateAuthCode(ctx, &authd.AuthCode{ID: authd.NewID(), Digest: authd.Digest("gdpr-code"), ClientID: c.ID,
			UserID: u.ID, SessionID: sessions[0].ID, RedirectURI: c.RedirectURIs[0], Scopes: []string{"openid"},
			AuthTime: now, AMR: []string{authd.AMRPassword}, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}))
	if err != nil {
		t.Fatalf("OpenID rows: %v", err)
	}
}

// scanText searches every text column of the database for each needle and
// says where it found one.
func scanText(t *testing.T, store authd.Store, needles ...string) []string {
	t.Helper()
	ctx := context.Background()
	var columns string
	var count func(table, column, needle string) (int, error)
	var query func(string) (rowsIter, error)
	switch s := store.(type) {
	case *postgres.Store:
		columns = `SELECT table_name, column_name FROM information_schema.columns
			WHERE table_schema = 'public' AND data_type IN ('character varying', 'text', 'jsonb', 'USER-DEFINED')`
		query = func(q string) (rowsIter, error) {
			return s.Pool().Query(ctx, q)
		}
		count = func(table, column, needle string) (n int, err error) {
			q := fmt.Sprintf(`SELECT count(*) FROM %q WHERE %q::text ILIKE '%%' || $1 || '%%'`, table, column)
			return n, s.Pool().QueryRow(ctx, q, needle).Scan(&n)
		}
	case *sqlite.Store:
		columns = `SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table'`
		query = func(q string) (rowsIter, error) {
			rows, err := s.DB().QueryContext(ctx, q)
			return sqlRows{rows}, err
		}
		count = func(table, column, needle string) (n int, err error) {
			q := fmt.Sprintf(`SELECT count(*) FROM %q WHERE CAST(%q AS TEXT) LIKE '%%' || ? || '%%'`, table, column)
			return n, s.DB().QueryRowContext(ctx, q, needle).Scan(&n)
		}
	}
	rows, err := query(columns)
	if err != nil {
		t.Fatal(err)
	}
	var cols [][2]string
	for rows.Next() {
		var c [2]string
		if err := rows.Scan(&c[0], &c[1]); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	rows.Close()
	var found []string
	for _, c := range cols {
		for _, needle := range needles {
			n, err := count(c[0], c[1], needle)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				found = append(found, fmt.Sprintf("%s.%s holds %q", c[0], c[1], needle))
			}
		}
	}
	return found
}

// rowsIter is what pgx.Rows and *sql.Rows have in common, for scanText.
type rowsIter interface {
	Next() bool
	Scan(...any) error
	Close()
}

// sqlRows gives *sql.Rows the Close of pgx.Rows.
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

func TestErasure(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		email := "erase.me@example.org"
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": email, "password": goodPassword, "consent": true}, person()...), 202, "")
		tok := tokenOf(t, e.mail.last(t, authd.MailVerifyEmail, email))
		want(t, "verify", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": tok}, person()...), 200, "")
		r := e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": goodPassword, "device_info": "Pixel of Erasure"}, person()...)
		want(t, "login", r, 200, "")
		access, refresh := r.str("access_token"), r.str("refresh_token")
		e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": "wrong password here"}, person()...)
		e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}, person()...) // an unsent mail and its token
		if found := scanText(t, e.store, email, personIP, personUA, "Pixel of Erasure"); len(found) == 0 {
			t.Fatal("the person's data is nowhere before erasure; the scan proves nothing")
		}

		want(t, "wrong password", e.do("DELETE", "/v1/users/me", map[string]string{"password": "not my password"}, bearer(access)...), 401, "invalid_credentials")
		want(t, "erase", e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword}, append(bearer(access), person()...)...), 204, "")
		want(t, "access token after erasure", e.do("GET", "/v1/users/me", nil, bearer(access)...), 401, "invalid_token")
		want(t, "refresh after erasure", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}, person()...), 401, "invalid_token")
		want(t, "login after erasure", e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": goodPassword}), 401, "invalid_credentials")
		if e.mail.count(authd.MailAccountDeleted, email) != 1 { // delivers the notice, which then leaves the outbox
			t.Error("no deletion notice to the old address")
		}
		if found := scanText(t, e.store, email, personIP, personUA, "Pixel of Erasure"); len(found) > 0 {
			t.Errorf("after erasure:\n%s", strings.Join(found, "\n"))
		}
		all, _ := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{EventType: authd.EventAccountDeleted})
		if len(all) != 2 || all[0].Result != authd.ResultSuccess || all[1].Result != authd.ResultFailure {
			t.Fatalf("account_deleted rows %+v; want the failed attempt and the erasure", all)
		}
		for _, l := range all {
			if l.IPAddress != "" || l.UserAgent != "" {
				t.Errorf("account_deleted row %+v keeps an IP or user agent", l)
			}
		}
		u, err := e.store.User(context.Background(), all[0].UserID)
		if err != nil || u.AccountStatus != authd.StatusDeleted || u.PasswordHash != "" || u.ConsentStatus || u.Email != authd.Tombstone(u.ID) ||
			!u.LastFailedLogin.IsZero() || !u.LastLoginTimestamp.IsZero() || u.LockReason != "" {
			t.Errorf("erased user %+v, %v", u, err)
		}
		// The address can register again, as a new account.
		want(t, "register again", e.do("POST", "/v1/auth/register", map[string]any{"email": email, "password": goodPassword, "consent": true}), 202, "")
		if again := e.user(email); again.ID == u.ID {
			t.Error("registering again revived the erased account")
		}
	})
}

// TestErasureClearsTheAccountsState: an erased account keeps none of its
// state beside the tombstone, whoever erased it: the address is no longer
// verified, the failures counted toward a lock, their time and a lock
// (its end and its reason) are cleared, and the account_deleted row says
// who erased it ("admin" or "user").
func TestErasureClearsTheAccountsState(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		for _, email := range []string{"by.admin@example.org", "by.user@example.org"} {
			e.registerVerified(email, goodPassword)
			for range 3 {
				want(t, "a wrong password", e.do("POST", "/v1/auth/login",
					map[string]string{"email": email, "password": "not the password"}), 401, "invalid_credentials")
			}
		}
		admin := e.user("by.admin@example.org")
		until := e.clock.Now().Add(time.Hour).Format(time.RFC3339)
		want(t, "lock", e.admin("POST", "/v1/admin/users/"+admin.ID.String()+"/lock", map[string]string{"until": until}), 204, "")
		if u := e.user("by.admin@example.org"); u.FailedLoginAttempts != 3 || u.AccountLockedUntil.IsZero() || u.LockReason != authd.LockAdmin {
			t.Fatalf("before the erasure: %d failures, locked until %v (%q); the test proves nothing", u.FailedLoginAttempts,
				u.AccountLockedUntil, u.LockReason)
		}
		want(t, "erasure by the administrator", e.admin("DELETE", "/v1/admin/users/"+admin.ID.String(), nil), 204, "")
		access, _ := e.login("by.user@example.org", goodPassword)
		self := e.user("by.user@example.org")
		want(t, "erasure by the user", e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword}, bearer(access)...), 204, "")

		for by, id := range map[string]uuid.UUID{"admin": admin.ID, "user": self.ID} {
			u, err := e.store.User(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if u.AccountStatus != authd.StatusDeleted || u.EmailVerified || u.FailedLoginAttempts != 0 || u.FailedCodeAttempts != 0 ||
				!u.LastFailedLogin.IsZero() || !u.AccountLockedUntil.IsZero() || u.LockReason != "" || !u.CodesLockedUntil.IsZero() {
				t.Errorf("erased by the %s: %+v; want deleted, unverified, with no failures and no lock", by, u)
			}
			logs, err := e.store.SecurityLogs(context.Background(),
				authd.SecurityLogFilter{UserID: id, EventType: authd.EventAccountDeleted, Limit: authd.MaxListLimit})
			if err != nil {
				t.Fatal(err)
			}
			if len(logs) != 1 || logs[0].AdditionalContext["by"] != by {
				t.Errorf("erased by the %s: account_deleted rows %+v; want one, by %q", by, logs, by)
			}
		}
	})
}

// TestRefreshOfAnErasedAccount: a refresh token of an erased account,
// live or rotated out past its grace window, is refused as the account's
// erasure (account deleted), not as an ended session or a reuse, which
// would name a session the erasure ended.
func TestRefreshOfAnErasedAccount(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("erased@example.org", goodPassword)
		_, rotated := e.login("erased@example.org", goodPassword)
		r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": rotated})
		want(t, "refresh", r, 200, "")
		id := e.user("erased@example.org").ID
		want(t, "erase", e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword}, bearer(r.str("access_token"))...), 204, "")
		e.clock.Advance(time.Minute) // past the grace window
		for name, tok := range map[string]string{"the live token": r.str("refresh_token"), "the rotated token": rotated} {
			since := e.clock.Now()
			want(t, name, e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": tok}), 401, "invalid_token")
			logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: id, Since: since})
			var got []string
			for _, l := range logs {
				got = append(got, string(l.EventType)+"/"+l.FailureReason)
			}
			if err != nil || len(got) != 1 || got[0] != "token_refreshed/account deleted" {
				t.Errorf("%s: logged %v, %v; want one token_refreshed refusal, account deleted", name, got, err)
			}
			e.clock.Advance(time.Second)
		}
	})
}

// TestTombstoneCannotBeTaken: the address erasure will give an account
// (deleted-<id>@invalid, and the id is every token's sub) cannot be
// registered first, which would make that erasure fail for good.
func TestTombstoneCannotBeTaken(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("victim@example.org", goodPassword)
		access, _ := e.login("victim@example.org", goodPassword)
		sub := jwtClaims(t, access)["sub"].(string)
		want(t, "register the tombstone", e.do("POST", "/v1/auth/register", map[string]any{"email": "deleted-" + sub + "@invalid",
			"password": goodPassword, "consent": true}), 400, "validation_failed")
		want(t, "erase", e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword}, bearer(access)...), 204, "")
	})
}

func TestOwnSecurityLogPagination(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("pages@example.org", goodPassword)
		var access string
		for range 3 {
			e.clock.Advance(time.Second)
			access, _ = e.login("pages@example.org", goodPassword)
		}
		// registration, verification sent, verified, 3 logins = 6 events.
		var seen []string
		cursor := ""
		for page := 0; ; page++ {
			r := e.do("GET", "/v1/users/me/security-log?limit=4"+cursor, nil, bearer(access)...)
			want(t, "security log", r, 200, "")
			items := r.body["items"].([]any)
			for _, it := range items {
				m := it.(map[string]any)
				seen = append(seen, m["timestamp"].(string)+" "+m["event_type"].(string))
				if m["user_id"] == nil {
					t.Error("own log row without the user")
				}
			}
			next, _ := r.body["next_cursor"].(string)
			if next == "" {
				break
			}
			if page > 3 {
				t.Fatal("pagination does not end")
			}
			cursor = "&cursor=" + next
		}
		if len(seen) != 6 || len(slices.Compact(slices.Clone(seen))) != 6 {
			t.Errorf("%d events over the pages, want 6: %v", len(seen), seen)
		}
		if !slices.IsSortedFunc(seen, func(a, b string) int { return strings.Compare(b[:20], a[:20]) }) {
			t.Errorf("not newest first: %v", seen)
		}
		// A page that holds exactly what is left is the last: no cursor to
		// an empty page.
		r := e.do("GET", "/v1/users/me/security-log?limit=6", nil, bearer(access)...)
		want(t, "a page of all six", r, 200, "")
		if items, _ := r.body["items"].([]any); len(items) != 6 || r.body["next_cursor"] != nil {
			t.Errorf("a page holding every event: %d items, next_cursor %v; want 6 and null", len(items), r.body["next_cursor"])
		}
		// The bounds themselves are pages (SPEC §5: max 200).
		for _, q := range []string{"?limit=1", "?limit=200"} {
			want(t, "list parameters "+q, e.do("GET", "/v1/users/me/security-log"+q, nil, bearer(access)...), 200, "")
		}
		for _, q := range []string{"?limit=0", "?limit=201", "?limit=x", "?cursor=garbage", "?cursor=eyJ9"} {
			want(t, "bad list parameters "+q, e.do("GET", "/v1/users/me/security-log"+q, nil, bearer(access)...), 400, "validation_failed")
		}
	})
}

// TestErasureRacingChecks: password checks that were hashing while the
// account was erased neither count a failure on it (five would lock it,
// and the lock's end would make it an account again) nor leave a row
// holding the person's IP address or user agent, for a wrong password at a
// re-authentication or a right one at login.
func TestErasureRacingChecks(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		var hold *holdOnce
		e := newEnv(t, open(t), holdingOnce(&hold))
		const email = "racing@example.org"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		id := e.user(email).ID
		const n = 5
		done := make(chan response, n+1)
		for range n {
			hold.arm()
			go func() {
				done <- e.do("DELETE", "/v1/users/me", map[string]string{"password": "not the password at all"},
					append(bearer(access), person()...)...)
			}()
			<-hold.entered
		}
		hold.arm()
		go func() {
			done <- e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": goodPassword}, person()...)
		}()
		<-hold.entered
		want(t, "erase", e.admin("DELETE", "/v1/admin/users/"+id.String(), nil), 204, "")
		close(hold.release)
		for range n + 1 {
			if r := <-done; r.status != 401 {
				t.Errorf("a check that straddled the erasure: %d %s; want 401", r.status, r.raw)
			}
		}
		if found := scanText(t, e.store, personIP, personUA); len(found) > 0 {
			t.Errorf("rows written after the erasure hold the person's client:\n%s", strings.Join(found, "\n"))
		}
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: id, Limit: authd.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		deleted := 0
		for _, l := range logs {
			if l.EventType == authd.EventAccountDeleted && l.Result == authd.ResultFailure && l.FailureReason == "account deleted" {
				deleted++
			}
		}
		if deleted != n {
			t.Errorf("%d of the %d re-authentications refused for the erasure were logged (SPEC 6.10: every flow writes its row)", deleted, n)
		}
		e.clock.Advance(e.cfg.LockoutDuration + time.Minute)
		if _, err := e.svc.UnlockExpired(context.Background()); err != nil {
			t.Fatal(err)
		}
		if u, err := e.store.User(context.Background(), id); err != nil || u.AccountStatus != authd.StatusDeleted || u.FailedLoginAttempts != 0 {
			t.Errorf("the erased account after the checks and the unlock sweep: %+v, %v; want deleted, no failures", u, err)
		}
	})
}

// TestErasedAccountLeavesWithItsLogs: an erased account's tombstone row
// stays while its security-log rows do (the audit trail names it) and goes
// with the retention purge that deletes the last of them.
func TestErasedAccountLeavesWithItsLogs(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		ctx := context.Background()
		e.registerVerified("gone@example.org", goodPassword)
		e.login("gone@example.org", goodPassword)
		gone := e.user("gone@example.org").ID
		want(t, "erase", e.admin("DELETE", "/v1/admin/users/"+gone.String(), nil), 204, "")
		e.clock.Advance(31 * 24 * time.Hour) // its session and tokens are purged; its logs are not
		if res, err := e.svc.Purge(ctx, 90*24*time.Hour, false); err != nil || res.ErasedAccounts != 0 || res.Sessions != 1 {
			t.Fatalf("purge after 31 days: %+v, %v; want the session, not the account", res, err)
		}
		if u, err := e.store.User(ctx, gone); err != nil || u.AccountStatus != authd.StatusDeleted {
			t.Fatalf("the tombstone while its logs last: %+v, %v", u, err)
		}
		e.clock.Advance(60 * 24 * time.Hour) // 91 days: the last of its logs goes, and it with them
		if dry, err := e.svc.Purge(ctx, 90*24*time.Hour, true); err != nil || dry.ErasedAccounts != 1 {
			t.Errorf("dry run after 91 days: %+v, %v; want the account counted", dry, err)
		}
		if res, err := e.svc.Purge(ctx, 90*24*time.Hour, false); err != nil || res.ErasedAccounts != 1 || res.SecurityLogs == 0 {
			t.Fatalf("purge after 91 days: %+v, %v; want its logs and the account", res, err)
		}
		if _, err := e.store.User(ctx, gone); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("the tombstone after retention: %v, want it gone", err)
		}
	})
}

// erasingSnapshot erases the user (erase) as an export's snapshot begins,
// between the service's check of the token and the store's read.
type erasingSnapshot struct {
	authd.Store
	erase func()
}

func (s *erasingSnapshot) UserData(ctx context.Context, userID uuid.UUID, rows authd.UserRows) error {
	if erase := s.erase; erase != nil {
		s.erase = nil // once: the erasure must not find itself here
		erase()
	}
	return s.Store.UserData(ctx, userID, rows)
}

// TestExportRacingErasure: an account erased as its export was being read
// is no export (the tombstone's data answered 200): the token is refused.
func TestExportRacingErasure(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		store := &erasingSnapshot{Store: open(t)}
		e := newEnv(t, store)
		e.registerVerified("racing@example.org", goodPassword)
		access, _ := e.login("racing@example.org", goodPassword)
		id := e.user("racing@example.org").ID
		store.erase = func() {
			want(t, "erase", e.admin("DELETE", "/v1/admin/users/"+id.String(), nil), 204, "")
		}
		want(t, "export of an account erased meanwhile", e.do("GET", "/v1/users/me/export", nil, bearer(access)...),
			401, "invalid_token")
	})
}
