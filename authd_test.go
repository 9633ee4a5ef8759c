package authd_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/authd/authd"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func TestUserIsLocked(t *testing.T) {
	tests := []struct {
		name        string
		status      authd.AccountStatus
		until       time.Time
		locked      bool
		lockExpired bool
		active      bool
	}{
		{"active", authd.StatusActive, time.Time{}, false, false, true},
		{"timed lock running", authd.StatusLocked, now.Add(time.Minute), true, false, false},
		{"timed lock run out", authd.StatusLocked, now.Add(-time.Second), false, true, false},
		{"timed lock ends now", authd.StatusLocked, now, false, true, false},
		{"lock without end", authd.StatusLocked, time.Time{}, true, false, false},
		{"lock time on an active account", authd.StatusActive, now.Add(time.Minute), true, false, true},
		{"inactive", authd.StatusInactive, time.Time{}, false, false, false},
		{"deleted", authd.StatusDeleted, time.Time{}, false, false, false},
	}
	for _, tt := range tests {
		u := &authd.User{AccountStatus: tt.status, AccountLockedUntil: tt.until}
		if got := u.IsLocked(now); got != tt.locked {
			t.Errorf("%s: IsLocked = %v, want %v", tt.name, got, tt.locked)
		}
		if got := u.LockExpired(now); got != tt.lockExpired {
			t.Errorf("%s: LockExpired = %v, want %v", tt.name, got, tt.lockExpired)
		}
		if got := u.IsActive(); got != tt.active {
			t.Errorf("%s: IsActive = %v, want %v", tt.name, got, tt.active)
		}
	}
}

func TestParseEnums(t *testing.T) {
	for _, s := range authd.AccountStatuses() {
		if got, err := authd.ParseAccountStatus(string(s)); err != nil || got != s {
			t.Errorf("ParseAccountStatus(%q) = %q, %v", s, got, err)
		}
	}
	for _, e := range authd.EventTypes() {
		if got, err := authd.ParseEventType(string(e)); err != nil || got != e {
			t.Errorf("ParseEventType(%q) = %q, %v", e, got, err)
		}
	}
	// SPEC §4's 19 labels come first, in order; features only append.
	if n := len(authd.EventTypes()); n != 19+8+5+5+1+1+2 || authd.EventTypes()[18] != authd.EventAdminAction ||
		authd.EventTypes()[n-1] != authd.EventEmailChanged {
		t.Errorf("%d event types, want the 19 of SPEC §4, the 8 of issue 9 (MFA), its 5 of passkeys, the 5 of issue 10 (OpenID Connect), its oidc_client_auth_failed and passkey_renamed, and the email change's 2 last", n)
	}
	bad := []func() error{
		func() error { _, err := authd.ParseAccountStatus("Active"); return err },
		func() error { _, err := authd.ParseAccountStatus(""); return err },
		func() error { _, err := authd.ParseTokenType("id"); return err },
		func() error { _, err := authd.ParseVerificationType("magic_link"); return err },
		func() error { _, err := authd.ParseResult("ok"); return err },
		func() error { _, err := authd.ParseEventType("login"); return err },
	}
	for i, f := range bad {
		if err := f(); authd.ErrorCode(err) != authd.EInvalid {
			t.Errorf("bad label %d: error %v, want %s", i, err, authd.EInvalid)
		}
	}
	// The labels allowed, as a person reads a list (not Go's [a b c]).
	if _, err := authd.ParseResult("ok"); authd.ErrorMessage(err) != `unknown result "ok" (one of: success, failure)` {
		t.Errorf("ParseResult(ok): %q", authd.ErrorMessage(err))
	}
}

func TestNewSecurityLog(t *testing.T) {
	user := uuid.New()
	ctx := map[string]any{"k": "v"}
	l := authd.NewSecurityLog(now, authd.EventLoginFailure, authd.ResultFailure, user,
		"192.0.2.1", "curl/8", "invalid password", ctx)
	if l.ID == uuid.Nil || l.ID.Version() != 7 || l.EventType != authd.EventLoginFailure || l.Result != authd.ResultFailure ||
		l.UserID != user || l.Timestamp != now || l.IPAddress != "192.0.2.1" || l.UserAgent != "curl/8" ||
		l.FailureReason != "invalid password" || l.AdditionalContext["k"] != "v" {
		t.Errorf("NewSecurityLog = %+v", l)
	}
	// Hostile input is cut to its column at a rune boundary and cleaned.
	long := authd.NewSecurityLog(now, authd.EventLoginFailure, authd.ResultFailure, uuid.Nil,
		strings.Repeat("9", 100), strings.Repeat("é", 400)+"\x00\xff", strings.Repeat("x", 300), nil)
	if len(long.IPAddress) != authd.MaxIPLength || len(long.UserAgent) > authd.MaxUserAgentLength ||
		!utf8.ValidString(long.UserAgent) || len(long.FailureReason) != authd.MaxFailureReasonLength {
		t.Errorf("over-long fields: ip %d, agent %d (valid %v), reason %d", len(long.IPAddress),
			len(long.UserAgent), utf8.ValidString(long.UserAgent), len(long.FailureReason))
	}
	clean := authd.NewSecurityLog(now, authd.EventLogout, authd.ResultSuccess, uuid.Nil, "", "a\x00b\xffc", "", nil)
	if clean.UserAgent != "ab\uFFFDc" {
		t.Errorf("user agent %q, want NUL dropped and invalid UTF-8 replaced", clean.UserAgent)
	}
}

func TestErrors(t *testing.T) {
	cause := errors.New("connection reset")
	err := fmt.Errorf("login: %w", authd.WrapError(authd.EUnavailable, cause, "the database is unavailable"))
	if authd.ErrorCode(err) != authd.EUnavailable || authd.ErrorMessage(err) != "the database is unavailable" {
		t.Errorf("wrapped: code %q message %q", authd.ErrorCode(err), authd.ErrorMessage(err))
	}
	if !errors.Is(err, cause) {
		t.Error("the cause is not reachable with errors.Is")
	}
	plain := errors.New("secret detail")
	if authd.ErrorCode(plain) != authd.EInternal || strings.Contains(authd.ErrorMessage(plain), "secret") {
		t.Errorf("plain error: code %q message %q; want internal and a generic message", authd.ErrorCode(plain), authd.ErrorMessage(plain))
	}
	if authd.ErrorCode(nil) != "" {
		t.Error("ErrorCode(nil) is not empty")
	}
}

func TestTokenAndSessionState(t *testing.T) {
	tok := &authd.Token{ExpiresAt: now}
	if !tok.Expired(now) || tok.Expired(now.Add(-time.Nanosecond)) {
		t.Error("Token.Expired: want expired at and after ExpiresAt only")
	}
	s := &authd.Session{ExpiresAt: now.Add(time.Hour)}
	if !s.Active(now) || s.Active(now.Add(time.Hour)) {
		t.Error("Session.Active: want active before ExpiresAt only")
	}
	s.RevokedAt = now
	if s.Active(now) {
		t.Error("a revoked session is active")
	}
}

// staleStore answers the revocation reload with what the table held before
// a logout committed, as a reload whose read began just before it would.
type staleStore struct{ authd.Store }

func (staleStore) RevokedSessions(context.Context, time.Time) ([]authd.Revocation, error) {
	return nil, nil
}

func (staleStore) LastRevocationEventID(context.Context) (int64, error) { return 0, nil }

// TestReloadNeverUndoesARevocation: a reload merges what the table says into
// the set; it never drops a revocation that arrived while it was reading.
func TestReloadNeverUndoesARevocation(t *testing.T) {
	svc := authd.NewService(authd.Config{AccessTokenTTL: 15 * time.Minute}, authd.Deps{Store: staleStore{}})
	sid := uuid.New()
	svc.Revocations().Apply(authd.Revocation{At: time.Now(), SessionIDs: []uuid.UUID{sid}})
	if err := svc.LoadRevocations(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !svc.Revocations().Revoked(sid) {
		t.Error("a reload that read before the logout committed undid the logout")
	}
}

// readStore records what the revocation set's loads read.
type readStore struct {
	authd.Store
	since []time.Time // RevokedSessions
	after []int64     // RevocationEvents
	last  int64
	page  []authd.RevocationEvent
	down  bool // every read fails, as with the database gone
}

var errDown = &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable"}

func (s *readStore) RevokedSessions(_ context.Context, since time.Time) ([]authd.Revocation, error) {
	if s.down {
		return nil, errDown
	}
	s.since = append(s.since, since)
	return nil, nil
}

func (s *readStore) LastRevocationEventID(context.Context) (int64, error) {
	if s.down {
		return 0, errDown
	}
	return s.last, nil
}

func (s *readStore) RevocationEvents(_ context.Context, after int64, _ time.Time, _ int) ([]authd.RevocationEvent, error) {
	if s.down {
		return nil, errDown
	}
	s.after = append(s.after, after)
	page := s.page
	s.page = nil
	return page, nil
}

type fixedClock time.Time

func (c *fixedClock) Now() time.Time { return time.Time(*c) }

// TestRevocationLoads: a load reads back the longest token lifetime any
// instance may use (a day, plus the leeway), whatever this one's; a
// catch-up reads the feed's table from the last event it merged, never by
// time, and merges its session events.
func TestRevocationLoads(t *testing.T) {
	store, clock := &readStore{last: 7}, fixedClock(now)
	svc := authd.NewService(authd.Config{AccessTokenTTL: 5 * time.Minute}, authd.Deps{Store: store, Clock: &clock})
	ctx := context.Background()
	if err := svc.CatchUpRevocations(ctx); err != nil { // the first is a load
		t.Fatal(err)
	}
	sid := uuid.New()
	store.page = []authd.RevocationEvent{{ID: 8, Kind: authd.RevokedSession, Subject: sid, CreatedAt: now},
		{ID: 9, Kind: authd.RevokedUser, Subject: uuid.New(), CreatedAt: now}}
	store.last = 9
	for range 2 {
		if err := svc.CatchUpRevocations(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if want := []time.Time{now.Add(-24*time.Hour - 30*time.Second)}; !cmp.Equal(store.since, want) {
		t.Errorf("loads read since %v, want %v", store.since, want)
	}
	if want := []int64{7, 9}; !cmp.Equal(store.after, want) {
		t.Errorf("catch-ups read after %v, want %v", store.after, want)
	}
	if !svc.Revocations().Revoked(sid) || svc.Revocations().Len() != 1 {
		t.Errorf("after the catch-up: %d revoked, want the one session", svc.Revocations().Len())
	}
	// The table's head behind the cursor (a database restored under the
	// server): ids from there on would be skipped, so it loads in full.
	store.last = 3
	if err := svc.CatchUpRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	store.last = 5
	if err := svc.CatchUpRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	if len(store.since) != 2 || !cmp.Equal(store.after, []int64{7, 9, 9, 3}) {
		t.Errorf("after a restore: %d loads, catch-ups after %v; want a second load, then from its head 3", len(store.since), store.after)
	}
}

// commitDuringLoad is a store on which a revocation (of session sid, the
// feed's event 8) commits as a load's first read answers: that read sees
// the table before it, every later one after it.
type commitDuringLoad struct {
	authd.Store
	sid       uuid.UUID
	committed bool
}

func (s *commitDuringLoad) RevokedSessions(context.Context, time.Time) ([]authd.Revocation, error) {
	if !s.committed {
		s.committed = true
		return nil, nil
	}
	return []authd.Revocation{{SessionIDs: []uuid.UUID{s.sid}, At: now}}, nil
}

func (s *commitDuringLoad) LastRevocationEventID(context.Context) (int64, error) {
	if !s.committed {
		s.committed = true
		return 7, nil
	}
	return 8, nil
}

func (s *commitDuringLoad) RevocationEvents(_ context.Context, after int64, _ time.Time, _ int) ([]authd.RevocationEvent, error) {
	if !s.committed || after >= 8 {
		return nil, nil
	}
	return []authd.RevocationEvent{{ID: 8, Kind: authd.RevokedSession, Subject: s.sid, CreatedAt: now}}, nil
}

// TestLoadLosesNoRevocationCommittedDuringIt: a load reads where the feed
// stands before it reads the revoked sessions, so that a revocation
// committed between the two reads is in one or the other; read the other
// way round, it would be in neither (the sessions read before it, the
// position after it) and the set would never learn of it.
func TestLoadLosesNoRevocationCommittedDuringIt(t *testing.T) {
	store, clock := &commitDuringLoad{sid: uuid.New()}, fixedClock(now)
	svc := authd.NewService(authd.Config{AccessTokenTTL: 5 * time.Minute}, authd.Deps{Store: store, Clock: &clock})
	ctx := context.Background()
	if err := svc.LoadRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	if err := svc.CatchUpRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	if !svc.Revocations().Revoked(store.sid) {
		t.Error("a revocation committed between the load's two reads was lost")
	}
}

// TestCatchUpReadsPastAFullPage: a catch-up whose read returns a full page
// (authd.RevocationEventsPage events, a burst such as many users' sessions
// ended at once) reads on from the page's last event in the same catch-up,
// rather than count itself caught up with events it has not read.
func TestCatchUpReadsPastAFullPage(t *testing.T) {
	store, clock := &readStore{last: 7}, fixedClock(now)
	svc := authd.NewService(authd.Config{AccessTokenTTL: 5 * time.Minute}, authd.Deps{Store: store, Clock: &clock})
	ctx := context.Background()
	if err := svc.CatchUpRevocations(ctx); err != nil { // the first is a load
		t.Fatal(err)
	}
	for i := range authd.RevocationEventsPage {
		store.page = append(store.page, authd.RevocationEvent{ID: int64(8 + i), Kind: authd.RevokedSession,
			Subject: uuid.New(), CreatedAt: now})
	}
	store.last = int64(7 + authd.RevocationEventsPage)
	if err := svc.CatchUpRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []int64{7, store.last}; !cmp.Equal(store.after, want) {
		t.Errorf("a catch-up that met a full page read after %v, want %v (on past the page)", store.after, want)
	}
	if n := svc.Revocations().Len(); n != authd.RevocationEventsPage {
		t.Errorf("after the catch-up: %d revoked, want the page's %d", n, authd.RevocationEventsPage)
	}
}

func TestRevocationSetPrune(t *testing.T) {
	set := authd.NewRevocationSet(15 * time.Minute)
	old, recent := uuid.New(), uuid.New()
	set.Apply(authd.Revocation{At: now.Add(-20 * time.Minute), SessionIDs: []uuid.UUID{old}})
	set.Apply(authd.Revocation{At: now.Add(-time.Minute), SessionIDs: []uuid.UUID{recent}})
	set.Prune(now)
	if set.Revoked(old) || !set.Revoked(recent) || set.Len() != 1 {
		t.Errorf("after Prune: old %v, recent %v, len %d; want only the recent session", set.Revoked(old), set.Revoked(recent), set.Len())
	}
}

// TestRevocationSetKeepsTheLatestForget: a session revoked again with an
// earlier time (a reload or a catch-up reading a row stamped by another
// instance's clock) is remembered as long as its latest revocation asks:
// Apply never shortens how long the set keeps a session.
func TestRevocationSetKeepsTheLatestForget(t *testing.T) {
	set := authd.NewRevocationSet(15 * time.Minute)
	sid := uuid.New()
	set.Apply(authd.Revocation{At: now, SessionIDs: []uuid.UUID{sid}})
	set.Apply(authd.Revocation{At: now.Add(-10 * time.Minute), SessionIDs: []uuid.UUID{sid}})
	set.Prune(now.Add(10 * time.Minute))
	if !set.Revoked(sid) {
		t.Error("an earlier revocation applied later made the set forget the session before the latest one's tokens expired")
	}
	set.Prune(now.Add(15 * time.Minute))
	if set.Revoked(sid) || set.Len() != 0 {
		t.Errorf("at the latest revocation's end: revoked %v, len %d; want the session forgotten", set.Revoked(sid), set.Len())
	}
}

// TestRevocationSetChanged: the feed's wake-up fires when a session is
// newly revoked, and not when a reload merely repeats one.
func TestRevocationSetChanged(t *testing.T) {
	set := authd.NewRevocationSet(15 * time.Minute)
	sid := uuid.New()
	changed := set.Changed()
	set.Apply(authd.Revocation{At: now, SessionIDs: []uuid.UUID{sid}})
	select {
	case <-changed:
	default:
		t.Fatal("Changed did not fire for a new revocation")
	}
	again := set.Changed()
	set.Apply(authd.Revocation{At: now, SessionIDs: []uuid.UUID{sid}}) // a reload reading it again
	set.Apply(authd.Revocation{At: now.Add(time.Minute), SessionIDs: []uuid.UUID{sid}})
	select {
	case <-again:
		t.Error("Changed fired for a session already revoked")
	default:
	}
}

// TestRevocationEvents: a revocation's feed rows — one per session, and one
// for the user when every session of the user ended.
func TestRevocationEvents(t *testing.T) {
	s1, s2, user := uuid.New(), uuid.New(), uuid.New()
	until := now.Add(15 * time.Minute)
	evs := authd.Revocation{At: now, Until: until, SessionIDs: []uuid.UUID{s1, s2}, UserID: user, Reason: "logout_all"}.Events()
	want := []authd.RevocationEvent{
		{Kind: authd.RevokedSession, Subject: s1, Reason: "logout_all", ExpiresAt: until, CreatedAt: now},
		{Kind: authd.RevokedSession, Subject: s2, Reason: "logout_all", ExpiresAt: until, CreatedAt: now},
		{Kind: authd.RevokedUser, Subject: user, Reason: "logout_all", ExpiresAt: until, CreatedAt: now},
	}
	if diff := cmp.Diff(want, evs); diff != "" {
		t.Errorf("Events (-want +got):\n%s", diff)
	}
	if evs := (authd.Revocation{At: now, Until: until, SessionIDs: []uuid.UUID{s1}}).Events(); len(evs) != 1 {
		t.Errorf("a session's revocation: %v, want one session event", evs)
	}
}

// TestValidRedirectURIHosts: an https redirect names its host as an RFC
// 1123 host name or an IP address; a host the sign-in pages' CSP could not
// name (an underscore, Unicode, an empty label, a final dot, an empty
// port), or that a browser reads as another (a last label that is a
// number, an IPv4 address mapped into IPv6, a zone), is refused.
func TestValidRedirectURIHosts(t *testing.T) {
	for uri, ok := range map[string]bool{
		"https://rp.example.org/cb":                          true,
		"https://RP.Example.org:8443/cb":                     true,
		"https://xn--bcher-kva.example/cb":                   true,
		"https://192.0.2.7/cb":                               true,
		"https://[2001:db8::1]/cb":                           true,
		"https://localhost/cb":                               true,
		"http://[::1]:8080/cb":                               true,
		"https://a_b.example.org/cb":                         false,
		"https://bücher.example/cb":                          false,
		"https://a..example.org/cb":                          false,
		"https://rp.example.org./cb":                         false,
		"https://-rp.example.org/cb":                         false,
		"https://rp-.example.org/cb":                         false,
		"https://" + strings.Repeat("a", 64) + ".example/cb": false,
		"https://0x7f000001/cb":                              false,
		"https://1.2.3/cb":                                   false,
		"https://rp.123/cb":                                  false,
		"https://rp.0xAB/cb":                                 false,
		"https://999.1.1.1/cb":                               false,
		"https://rp.example.org:/cb":                         false,
		"https://[fe80::1%25eth0]/cb":                        false,
		"https://[::ffff:192.0.2.1]/cb":                      false,
		"http://[::1%25lo]:8080/cb":                          false,
		"http://[::ffff:127.0.0.1]:8080/cb":                  false,
		"https://rp.example.org:0443/cb":                     false,
		"https://rp.0x.example/cb":                           true,
		"https://rp.example.0xyz/cb":                         true,
		"https://" + strings.Repeat("a.", 126) + "ab/cb":     false,
		"https://" + strings.Repeat("a.", 125) + "ab/cb":     true,
	} {
		err := authd.ValidRedirectURI(uri)
		if (err == nil) != ok {
			t.Errorf("ValidRedirectURI(%q) = %v; want ok %v", uri, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "host") && !strings.Contains(err.Error(), "port") {
			t.Errorf("ValidRedirectURI(%q) = %v; want the host's rule", uri, err)
		}
	}
}

// TestValidRedirectURIShapes: besides its host, a redirect URI is refused
// for each rule of ValidRedirectURI on its own: a wildcard anywhere (it
// would be matched literally, not as the administrator meant), a fragment
// even when empty, credentials, a backslash, a control character, text
// that is not UTF-8, more than MaxRedirectURILength bytes, a relative
// reference, http to a host that is not a loopback one, a private-use
// scheme without a dot, and a parameter in the query that authd adds to
// its answers (however spelt); the shapes native apps need are taken.
func TestValidRedirectURIShapes(t *testing.T) {
	long := "https://rp.example.org/" + strings.Repeat("a", authd.MaxRedirectURILength)
	for uri, ok := range map[string]bool{
		"https://rp.example.org/cb?x=1":               true,
		"http://localhost:8080/cb":                    true,
		"http://127.0.0.1/cb":                         true,
		"com.example.app:/oauth":                      true,
		long[:authd.MaxRedirectURILength]:             true,
		long[:authd.MaxRedirectURILength+1]:           false,
		"https://rp.example.org/cb/*":                 false,
		"com.example.app:/*":                          false,
		"https://rp.example.org/cb#":                  false,
		"https://rp.example.org/cb#x":                 false,
		"https://user@rp.example.org/cb":              false,
		"https://rp.example.org\\@evil.example/cb":    false,
		"https://rp.example.org/c\x7fb":               false,
		"https://rp.example.org/\xff":                 false,
		"/cb":                                         false,
		"http://rp.example.org/cb":                    false,
		"http://127.0.0.1.example.org/cb":             false,
		"myapp:/cb":                                   false,
		"https://rp.example.org/cb?state=fixed":       false,
		"https://rp.example.org/cb?x=1&code":          false,
		"http://127.0.0.1/cb?a=1;iss=x":               false,
		"com.example.app:/cb?error=x":                 false,
		"https://rp.example.org/cb?err%6Fr_uri=x":     false,
		"https://rp.example.org/cb?error_description": false,
		"https://rp.example.org/cb?states=1&scode":    true,
		"https://rp.example.org/cb?next=%2Fcode":      true,
	} {
		if err := authd.ValidRedirectURI(uri); (err == nil) != ok {
			t.Errorf("ValidRedirectURI(%q) = %v; want ok %v", truncateForLog(uri), err, ok)
		}
	}
}

// truncateForLog shortens a long test input for a failure message.
func truncateForLog(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
