package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// bulkRows inserts, straight into the store, logs security-log rows and
// tokens refresh tokens (in one new session) for the user, and returns
// their ids. Each log row is about a kilobyte in the export, and pad bytes
// more in its context: a large document in few rows, which SQLite under
// the race detector inserts far faster than as many small ones.
func bulkRows(t testing.TB, store authd.Store, u *authd.User, at time.Time, logs, tokens, pad int) (logIDs, tokenIDs []uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	ua := "BulkAgent/1.0 " + strings.Repeat("x", authd.MaxUserAgentLength)
	reason := strings.Repeat("r", authd.MaxFailureReasonLength)
	padding := strings.Repeat("p", pad)
	sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, DeviceInfo: "bulk", CreatedAt: at, LastUsedAt: at,
		ExpiresAt: at.Add(time.Hour)}
	err := store.InTx(ctx, func(tx authd.Queries) error {
		if err := tx.CreateSession(ctx, sess); err != nil {
			return err
		}
		for i := range logs {
			l := authd.NewSecurityLog(at.Add(time.Duration(i)*time.Millisecond), authd.EventLoginFailure, authd.ResultFailure,
				u.ID, "203.0.113.9", ua, reason, map[string]any{"attempt": i, "pad": padding})
			if err := tx.CreateSecurityLog(ctx, l); err != nil {
				return err
			}
			logIDs = append(logIDs, l.ID)
		}
		for i := range tokens {
			tok := &authd.Token{ID: authd.NewID(), JTI: uuid.NewString(), UserID: u.ID, SessionID: sess.ID,
				TokenType: authd.TokenRefresh, TokenValue: fmt.Sprintf("bulk-digest-%s-%d", sess.ID, i),
				IssuedAt: at, ExpiresAt: at.Add(time.Hour), DeviceInfo: "bulk", CreatedAt: at}
			if err := tx.CreateToken(ctx, tok); err != nil {
				return err
			}
			tokenIDs = append(tokenIDs, tok.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("insert bulk rows: %v", err)
	}
	return logIDs, tokenIDs
}

// getExport starts GET /v1/users/me/export; the caller reads the body.
func getExport(t testing.TB, e *env, access string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/users/me/export", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestExportOfManyRowsIsComplete(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("many@example.org", goodPassword)
		access, _ := e.login("many@example.org", goodPassword)
		logIDs, tokenIDs := bulkRows(t, e.store, e.user("many@example.org"), e.clock.Now(), 3000, 2000, 0)

		resp := getExport(t, e, access)
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("export: %d, %v", resp.StatusCode, err)
		}
		if ct, cd := resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"); ct != "application/json" ||
			!strings.HasPrefix(cd, `attachment; filename="authd-export-`) {
			t.Errorf("Content-Type %q, Content-Disposition %q", ct, cd)
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("the export of %d bytes is not one JSON document: %v", len(body), err)
		}
		for _, key := range []string{"exported_at", "users", "consent_history", "sessions", "jwt_tokens",
			"verification_tokens", "security_logs", "mail_outbox", "excluded_columns"} {
			if _, ok := doc[key]; !ok {
				t.Errorf("no %q in the export", key)
			}
		}
		count := func(section string, ids []uuid.UUID) {
			var rows []struct{ ID uuid.UUID }
			if err := json.Unmarshal(doc[section], &rows); err != nil {
				t.Fatalf("%s: %v", section, err)
			}
			seen := map[uuid.UUID]int{}
			for _, r := range rows {
				seen[r.ID]++
			}
			for _, id := range ids {
				if seen[id] != 1 {
					t.Fatalf("%s: row %s appears %d times among %d, want once", section, id, seen[id], len(rows))
				}
			}
		}
		count("security_logs", logIDs)
		count("jwt_tokens", tokenIDs)
		var consent []map[string]any
		if json.Unmarshal(doc["consent_history"], &consent); len(consent) != 1 || consent[0]["consent"] != true {
			t.Errorf("consent history %v, want the registration's", consent)
		}
	})
}

// TestExportMemoryDoesNotGrowWithRows measures the heap while a large
// export is under way: it must hold a buffer, not the document. The old
// export built every row, then the whole JSON, before its first byte.
func TestExportMemoryDoesNotGrowWithRows(t *testing.T) {
	// Not parallel: it reads the heap of the whole test binary.
	for _, store := range []struct {
		name string
		open func(testing.TB) authd.Store
	}{{"sqlite", openSQLite}, {"postgres", openPostgres}} {
		t.Run(store.name, func(t *testing.T) {
			e := newEnv(t, store.open(t))
			e.registerVerified("big@example.org", goodPassword)
			access, _ := e.login("big@example.org", goodPassword)
			bulkRows(t, e.store, e.user("big@example.org"), e.clock.Now(), 2000, 0, 9000) // about 20 MB

			var m runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m)
			before := int64(m.HeapAlloc)
			resp := getExport(t, e, access)
			// Once the first bytes are here the export is under way; the rest
			// waits in the server, which blocks on the unread connection.
			head := make([]byte, 4096)
			if _, err := io.ReadFull(resp.Body, head); err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&m)
			grown := int64(m.HeapAlloc) - before
			rest, err := io.Copy(io.Discard, resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			size := int64(len(head)) + rest
			if size < 16<<20 {
				t.Fatalf("the export has %d bytes; the test needs one far larger than any buffer", size)
			}
			if grown > size/4 {
				t.Errorf("the heap grew by %d bytes during an export of %d; want it bounded, not growing with the rows", grown, size)
			}
		})
	}
}

// failingStore fails the export's read after after security-log rows, as a
// database that goes away mid-read would.
type failingStore struct {
	authd.Store
	after int
}

func (s failingStore) UserData(ctx context.Context, id uuid.UUID, rows authd.UserRows) error {
	yield, n := rows.SecurityLogs, 0
	rows.SecurityLogs = func(l *authd.SecurityLog) error {
		if n++; n > s.after {
			return &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable",
				Err: errors.New("connection reset")}
		}
		return yield(l)
	}
	return s.Store.UserData(ctx, id, rows)
}

func TestExportFailure(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		// A failure of the store, at once or after megabytes of rows, is a
		// problem answer and no download: nothing is sent before the whole
		// document is spooled.
		for _, after := range []int{0, 300} {
			e := newEnv(t, failingStore{Store: open(t), after: after})
			e.registerVerified("fail@example.org", goodPassword)
			access, _ := e.login("fail@example.org", goodPassword)
			bulkRows(t, e.store, e.user("fail@example.org"), e.clock.Now(), 400, 0, 9000) // 3 MB before the failure
			r := e.do("GET", "/v1/users/me/export", nil, bearer(access)...)
			want(t, fmt.Sprintf("export failing after %d rows", after), r, 503, "unavailable")
			if cd := r.header.Get("Content-Disposition"); cd != "" {
				t.Errorf("a failed export offers a download: Content-Disposition %q", cd)
			}
		}
	})
}

// unloggedStore fails the security-log writes made outside a transaction
// while down is set, as when the database fails just then.
type unloggedStore struct {
	authd.Store
	down *atomic.Bool
}

func (s unloggedStore) CreateSecurityLog(ctx context.Context, l *authd.SecurityLog) error {
	if s.down.Load() {
		return &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable"}
	}
	return s.Store.CreateSecurityLog(ctx, l)
}

// TestExportThatCannotBeLoggedIsRefused: an export whose data_exported row
// cannot be written is not handed out (503, no download): every export is
// logged (SPEC 6.8), and a copy of the user's data the log does not show
// is one no one can account for.
func TestExportThatCannotBeLoggedIsRefused(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		down := &atomic.Bool{}
		e := newEnv(t, unloggedStore{open(t), down})
		const email = "unlogged.export@example.org"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		down.Store(true)
		r := e.do("GET", "/v1/users/me/export", nil, bearer(access)...)
		down.Store(false)
		want(t, "an export that cannot be logged", r, 503, "unavailable")
		if cd := r.header.Get("Content-Disposition"); cd != "" || strings.Contains(r.raw, email) {
			t.Errorf("an unlogged export is handed out: Content-Disposition %q, %.200s", cd, r.raw)
		}
	})
}

// TestExportByHeadMakesNone: HEAD of the export is 405 (Allow: GET): it
// would make a whole export, log it and spend one of the hour's exports,
// and send nothing.
func TestExportByHeadMakesNone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("head@example.org", goodPassword)
	access, _ := e.login("head@example.org", goodPassword)
	r := e.do("HEAD", "/v1/users/me/export", nil, bearer(access)...)
	if r.status != 405 || r.header.Get("Allow") != "GET" {
		t.Errorf("HEAD of the export: %d, Allow %q; want 405, GET", r.status, r.header.Get("Allow"))
	}
	if n := e.eventCount("head@example.org", "data_exported/success"); n != 0 {
		t.Errorf("%d exports logged after a HEAD; want none", n)
	}
	want(t, "HEAD without a token", e.do("HEAD", "/v1/users/me/export", nil), 401, "")
	want(t, "the export", e.do("GET", "/v1/users/me/export", nil, bearer(access)...), 200, "")
}

// doneStore records when UserData has returned, that is when the store's
// snapshot (and its database connection) is released.
type doneStore struct {
	authd.Store
	done *atomic.Bool
}

func (s doneStore) UserData(ctx context.Context, id uuid.UUID, rows authd.UserRows) error {
	err := s.Store.UserData(ctx, id, rows)
	s.done.Store(true)
	return err
}

// TestExportReleasesTheDatabaseBeforeSending: a client that does not read
// its export holds no database connection: the snapshot is closed before the
// first byte is sent, so slow clients cannot drain the pool.
func TestExportReleasesTheDatabaseBeforeSending(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		done := &atomic.Bool{}
		e := newEnv(t, doneStore{Store: open(t), done: done})
		e.registerVerified("slow@example.org", goodPassword)
		access, _ := e.login("slow@example.org", goodPassword)
		bulkRows(t, e.store, e.user("slow@example.org"), e.clock.Now(), 1500, 0, 9000) // about 15 MB
		resp := getExport(t, e, access)                                                // headers only; the body is not read
		if !done.Load() {
			t.Fatal("the export began sending while its database snapshot was still open")
		}
		if resp.ContentLength < 10<<20 {
			t.Errorf("Content-Length %d, want the whole document's length", resp.ContentLength)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n != resp.ContentLength {
			t.Errorf("read %d of %d bytes, %v", n, resp.ContentLength, err)
		}
	})
}

// TestExportToASlowReader: a large export read slowly arrives whole,
// though it takes longer than the server's write timeout: each piece gets
// a deadline of its own. It was cut once the write timeout (30 s in serve,
// from the request) ran out.
func TestExportToASlowReader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("slow.reader@example.org", goodPassword)
	access, _ := e.login("slow.reader@example.org", goodPassword)
	bulkRows(t, e.store, e.user("slow.reader@example.org"), e.clock.Now(), 800, 0, 9000) // about 8 MB
	srv := httptest.NewUnstartedServer(e.api)
	srv.Config.WriteTimeout = 300 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(16 << 10) // the kernel must not take the whole export at once
		}
		return c, err
	}}}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/users/me/export", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var n int64
	for { // 256 KiB, then a pause: some 0.6 s in all
		k, err := io.CopyN(io.Discard, resp.Body, 256<<10)
		n += k
		if err != nil {
			if err != io.EOF || n != resp.ContentLength {
				t.Fatalf("read %d of %d bytes: %v", n, resp.ContentLength, err)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n < 5<<20 {
		t.Errorf("an export of %d bytes; want megabytes, more than the buffers hold", n)
	}
}

// TestExportHoldsMailData: a mail still in the outbox is exported with its
// template data, as the data column holds it (what an administrator's
// reset removed, what changed of the factors), not only a lock's end.
func TestExportHoldsMailData(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	const email = "mail.data@example.org"
	access, _, _ := e.mfaUser(email)
	e.mail.flush()
	want(t, "reset-mfa", e.admin("POST", "/v1/admin/users/"+e.user(email).ID.String()+"/reset-mfa", nil), 204, "")
	r := e.do("GET", "/v1/users/me/export", nil, bearer(access)...)
	want(t, "export", r, 200, "")
	var doc struct {
		Mails []struct {
			Kind string         `json:"kind"`
			Data map[string]any `json:"data"`
		} `json:"mail_outbox"`
	}
	if err := json.Unmarshal([]byte(r.raw), &doc); err != nil {
		t.Fatal(err)
	}
	for _, m := range doc.Mails {
		if m.Kind == string(authd.MailMFAReset) {
			if removed, _ := m.Data["removed"].(map[string]any); removed["totp"] != true {
				t.Errorf("the mfa_reset mail's data %v, want what was removed", m.Data)
			}
			return
		}
	}
	t.Errorf("no mfa_reset mail among the exported %+v", doc.Mails)
}

// TestExportHoldsTheAccountsLockouts: the export's users row carries the
// account's lockout state as the table holds it (the wrong passwords and
// codes counted, the last failure, until when codes are refused), not
// merely its columns' names.
func TestExportHoldsTheAccountsLockouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	const email = "lockouts@example.org"
	e.registerVerified(email, goodPassword)
	access, _ := e.login(email, goodPassword)
	u := e.user(email)
	failed, until := e.clock.Now().Add(-time.Minute), e.clock.Now().Add(30*time.Minute)
	u.FailedLoginAttempts, u.LastFailedLogin, u.FailedCodeAttempts, u.CodesLockedUntil = 2, failed, 3, until
	if err := e.store.UpdateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/v1/users/me/export", nil, bearer(access)...)
	want(t, "export", r, 200, "")
	var doc struct {
		Users []map[string]any `json:"users"`
	}
	if err := json.Unmarshal([]byte(r.raw), &doc); err != nil || len(doc.Users) != 1 {
		t.Fatalf("export users %v (%v); want the one row", doc.Users, err)
	}
	row := doc.Users[0]
	for col, want := range map[string]any{"failed_login_attempts": float64(2), "last_failed_login_timestamp": failed.Format(time.RFC3339),
		"failed_code_attempts": float64(3), "codes_locked_until": until.Format(time.RFC3339)} {
		if row[col] != want {
			t.Errorf("export users.%s %v, want %v", col, row[col], want)
		}
	}
}
