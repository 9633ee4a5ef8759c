package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// Epoch is the fixed time the suite's rows are stamped with; stores keep
// microseconds, so fixtures use no finer times.
var Epoch = time.Date(2026, 11, 27, 10, 30, 0, 123456000, time.UTC)

// NewUser returns an active, verified user with the email, ready to insert.
func NewUser(email string) *authd.User {
	return &authd.User{
		ID:                    authd.NewID(),
		Email:                 email,
		PasswordHash:          "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		EmailVerified:         true,
		AccountStatus:         authd.StatusActive,
		RegistrationTimestamp: Epoch,
		LastPasswordChange:    Epoch,
		ConsentTimestamp:      Epoch,
		ConsentStatus:         true,
		CreatedAt:             Epoch,
		UpdatedAt:             Epoch,
	}
}

// Run is the contract suite: every authd.Store must pass it. open returns a
// new, migrated, empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) authd.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s authd.Store)
	}{
		{"Users", testUsers},
		{"UserErrors", testUserErrors},
		{"ExpiredLocks", testExpiredLocks},
		{"BcryptCosts", testBcryptCosts},
		{"KeyedRows", testKeyedRows},
		{"RecordKeyChecks", testRecordKeyChecks},
		{"Argon2Costs", testArgon2Costs},
		{"SessionsAndTokens", testSessionsAndTokens},
		{"TokenErrors", testTokenErrors},
		{"VerificationTokens", testVerificationTokens},
		{"EmailChangeTokens", testEmailChangeTokens},
		{"SecurityLogs", testSecurityLogs},
		{"SecurityLogsOfErasedUsers", testSecurityLogsOfErasedUsers},
		{"SecurityLogsOfPendingErasures", testSecurityLogsOfPendingErasures},
		{"PurgeErasedAccounts", testPurgeErasedAccounts},
		{"PurgeDryRunOfAnErasedAccount", testPurgeDryRunOfAnErasedAccount},
		{"IdleSessionsEnd", testIdleSessionsEnd},
		{"PurgeSessionsInBatches", testPurgeSessionsInBatches},
		{"PurgeAskingNoBatchSize", testPurgeAskingNoBatchSize},
		{"UserData", testUserData},
		{"EveryEnumLabelStored", testEnumLabels},
		{"Outbox", testOutbox},
		{"OutboxConcurrentClaims", testOutboxConcurrentClaims},
		{"OutboxExtendClaim", testOutboxExtendClaim},
		{"OutboxWithdraw", testOutboxWithdraw},
		{"OutboxWithdrawTo", testOutboxWithdrawTo},
		{"SessionRevocation", testSessionRevocation},
		{"SessionsSignedInWithRevoked", testSessionsSignedInWithRevoked},
		{"SignInState", testSignInState},
		{"RevocationEvents", testRevocationEvents},
		{"RevocationEventsNeverSkipped", testRevocationEventsNeverSkipped},
		{"LastRevocationEventID", testLastRevocationEventID},
		{"Factors", testFactors},
		{"RecoveryCodes", testRecoveryCodes},
		{"MFAChallenges", testMFAChallenges},
		{"EraseDeletesFactors", testEraseDeletesFactors},
		{"Passkeys", testPasskeys},
		{"WebAuthnChallenges", testWebAuthnChallenges},
		{"EraseDeletesPasskeys", testEraseDeletesPasskeys},
		{"Clients", testClients},
		{"Consents", testConsents},
		{"AuthRequests", testAuthRequests},
		{"AuthCodes", testAuthCodes},
		{"ClientAndBrowserSessions", testClientAndBrowserSessions},
		{"TxRollsBack", testTxRollsBack},
		{"TxCancelledIsUnavailable", testTxCancelled},
		{"TxReadsItsWritesAndFailsWhole", testTxWrites},
		{"TxSerialisesReadModifyWrite", testTxSerialises},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

func mustCreateUser(t *testing.T, s authd.Queries, email string) *authd.User {
	t.Helper()
	u := NewUser(email)
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return u
}

func wantCode(t *testing.T, what string, err error, want authd.Code) {
	t.Helper()
	if got := authd.ErrorCode(err); got != want {
		t.Errorf("%s: error code %q (%v), want %q", what, got, err, want)
	}
}

// testBcryptCosts: each cost of the well-formed bcrypt hashes once;
// argon2id and malformed hashes are not bcrypt.
func testBcryptCosts(t *testing.T, s authd.Store) {
	ctx := context.Background()
	const tail = "$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
	for i, hash := range []string{"$2b$12" + tail, "$2a$10" + tail, "$2y$12" + tail, "$2b$x1" + tail, ""} {
		u := NewUser(fmt.Sprintf("bcrypt%d@example.org", i))
		if hash != "" {
			u.PasswordHash = hash
		}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	costs, err := s.BcryptCosts(ctx)
	slices.Sort(costs)
	if err != nil || !slices.Equal(costs, []int{10, 12}) {
		t.Errorf("BcryptCosts = %v, %v; want [10 12]", costs, err)
	}
}

// testKeyedRows: confidential clients counted, public ones not; a TOTP
// factor or a recovery code alone is MFA.
func testKeyedRows(t *testing.T, s authd.Store) {
	ctx := context.Background()
	want := func(what string, clients int, mfa bool) {
		t.Helper()
		if k, err := s.KeyedRows(ctx); err != nil || k.ConfidentialClients != clients || k.MFA != mfa {
			t.Errorf("KeyedRows %s = %+v, %v; want %d confidential clients, MFA %v", what, k, err, clients, mfa)
		}
	}
	want("of an empty store", 0, false)
	mustCreateClient(t, s, newClient("pub", authd.ClientPublic))
	mustCreateClient(t, s, newClient("conf", authd.ClientConfidential))
	want("with a public and a confidential client", 1, false)
	u := mustCreateUser(t, s, "keyed@example.org")
	if err := s.ReplaceRecoveryCodes(ctx, u.ID, []*authd.RecoveryCode{{ID: authd.NewID(), UserID: u.ID, Digest: "d", CreatedAt: Epoch}}); err != nil {
		t.Fatal(err)
	}
	want("with a recovery code", 1, true)
	if err := s.ReplaceRecoveryCodes(ctx, u.ID, nil); err != nil {
		t.Fatal(err)
	}
	want("once the codes are gone", 1, false)
	if err := s.CreateFactor(ctx, newFactor(u)); err != nil {
		t.Fatal(err)
	}
	want("with a TOTP factor", 1, true)
}

// testRecordKeyChecks: a name's first check is kept against another;
// ReplaceKeyCheck replaces only the value it names; KeyedRows and KeyChecks
// list what is recorded; of starts racing to record two names, one
// records both and every one reads its pair.
func testRecordKeyChecks(t *testing.T, s authd.Store) {
	ctx := context.Background()
	if k, err := s.KeyedRows(ctx); err != nil || len(k.Checks) != 0 {
		t.Errorf("KeyedRows of an empty store: checks %v, %v; want none", k.Checks, err)
	}
	check := func(name, value string) authd.KeyCheck {
		return authd.KeyCheck{Name: name, Value: value, RecordedAt: Epoch}
	}
	record := func(what string, want map[string]string, checks ...authd.KeyCheck) {
		t.Helper()
		got, err := s.RecordKeyChecks(ctx, checks)
		if err != nil || len(got) != len(want) {
			t.Fatalf("RecordKeyChecks %s = %+v, %v; want %v", what, got, err, want)
		}
		for name, v := range want {
			if got[name].Value != v || got[name].Name != name || !got[name].RecordedAt.Equal(Epoch) {
				t.Errorf("RecordKeyChecks %s = %+v; want %s: %s at %s", what, got, name, v, Epoch)
			}
		}
	}
	record("of new names", map[string]string{"refresh": "a", "mfa": "b"}, check("refresh", "a"), check("mfa", "b"))
	record("of a name recorded", map[string]string{"refresh": "a"}, check("refresh", "c"))
	replace := func(what string, c authd.KeyCheck, old, want string) {
		t.Helper()
		if got, err := s.ReplaceKeyCheck(ctx, c, old); err != nil || got.Value != want || got.Name != c.Name {
			t.Errorf("ReplaceKeyCheck %s = %+v, %v; want %s", what, got, err, want)
		}
	}
	replace("of another value than recorded", check("refresh", "c"), "x", "a")
	replace("of the value recorded", check("refresh", "c"), "a", "c")
	replace("of a name unrecorded", check("new", "d"), "", "d")
	replace("of a name recorded, as if unrecorded", check("new", "e"), "", "d")
	k, err := s.KeyedRows(ctx)
	if err != nil || len(k.Checks) != 3 || k.Checks["refresh"].Value != "c" || k.Checks["mfa"].Value != "b" {
		t.Errorf("KeyedRows checks = %+v, %v; want refresh c, mfa b, new d", k.Checks, err)
	}
	if checks, err := s.KeyChecks(ctx); err != nil || len(checks) != 3 || checks["new"].Value != "d" {
		t.Errorf("KeyChecks = %+v, %v; want KeyedRows' checks", checks, err)
	}

	const racers = 8
	got := make([]map[string]authd.KeyCheck, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			var err error
			if got[i], err = s.RecordKeyChecks(ctx, []authd.KeyCheck{check("race1", fmt.Sprint(i)), check("race2", fmt.Sprint(i))}); err != nil {
				t.Errorf("racing RecordKeyChecks: %v", err)
			}
		})
	}
	wg.Wait()
	for i := range got {
		if got[i]["race1"].Value != got[0]["race1"].Value || got[i]["race2"].Value != got[0]["race1"].Value || got[i]["race1"].Value == "" {
			t.Fatalf("racing RecordKeyChecks: racer %d read %+v, racer 0 %+v; want one racer's pair for all", i, got[i], got[0])
		}
	}
}

// testArgon2Costs: the parameters of each argon2id hash's cost once;
// bcrypt, other versions and malformed hashes are not among them.
func testArgon2Costs(t *testing.T, s authd.Store) {
	ctx := context.Background()
	const tail = "$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	for i, hash := range []string{"", "$argon2id$v=19$m=65536,t=3,p=4" + tail, "$argon2id$v=19$m=65536,t=3,p=4" + tail,
		"$argon2id$v=16$m=1024,t=1,p=1" + tail, "$argon2i$v=19$m=1024,t=1,p=1" + tail, "$argon2id$v=19$broken",
		"$2b$12$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"} {
		u := NewUser(fmt.Sprintf("argon%d@example.org", i))
		if hash != "" {
			u.PasswordHash = hash
		}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	costs, err := s.Argon2Costs(ctx)
	slices.Sort(costs)
	if want := []string{"m=19456,t=2,p=1", "m=65536,t=3,p=4"}; err != nil || !slices.Equal(costs, want) {
		t.Errorf("Argon2Costs = %q, %v; want %q", costs, err, want)
	}
}

// testExpiredLocks: only accounts still marked locked whose timed lock has
// run out, never an administrator's lock (no end) or a running one.
func testExpiredLocks(t *testing.T, s authd.Store) {
	ctx := context.Background()
	users := map[string]func(u *authd.User){
		"ran-out@example.org": func(u *authd.User) { u.AccountStatus, u.AccountLockedUntil = authd.StatusLocked, Epoch },
		"running@example.org": func(u *authd.User) {
			u.AccountStatus, u.AccountLockedUntil = authd.StatusLocked, Epoch.Add(time.Second)
		},
		"admin@example.org":  func(u *authd.User) { u.AccountStatus = authd.StatusLocked },
		"active@example.org": func(u *authd.User) { u.AccountLockedUntil = Epoch.Add(-time.Hour) },
	}
	var want uuid.UUID
	for email, set := range users {
		u := NewUser(email)
		set(u)
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if email == "ran-out@example.org" {
			want = u.ID
		}
	}
	ids, err := s.ExpiredLocks(ctx, Epoch, 10)
	if err != nil || len(ids) != 1 || ids[0] != want {
		t.Errorf("ExpiredLocks = %v, %v; want only the lock that ran out (%s)", ids, err, want)
	}
	if ids, err := s.ExpiredLocks(ctx, Epoch.Add(-time.Second), 10); err != nil || len(ids) != 0 {
		t.Errorf("ExpiredLocks a second earlier = %v, %v; want none", ids, err)
	}
}

func testUsers(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "alice@example.org")

	got, err := s.User(ctx, u.ID)
	if err != nil {
		t.Fatalf("User: %v", err)
	}
	if diff := cmp.Diff(u, got); diff != "" {
		t.Errorf("User round trip (-want +got):\n%s", diff)
	}
	got, err = s.UserByEmail(ctx, "alice@example.org")
	if err != nil {
		t.Fatalf("UserByEmail: %v", err)
	}
	if got.ID != u.ID {
		t.Errorf("UserByEmail returned %s, want %s", got.ID, u.ID)
	}

	// Every field is written back, NULLs included.
	u.AccountStatus = authd.StatusLocked
	u.LockReason = authd.LockBruteForce
	u.LastFailedLogin = Epoch.Add(30 * time.Second)
	u.FailedLoginAttempts = 5
	u.FailedCodeAttempts = 2
	u.CodesLockedUntil = Epoch.Add(time.Hour)
	u.AccountLockedUntil = Epoch.Add(15 * time.Minute)
	u.LastLoginTimestamp = Epoch.Add(time.Minute)
	u.EmailVerified = false
	u.ConsentStatus = false
	u.PasswordHash = ""
	u.UpdatedAt = Epoch.Add(2 * time.Minute)
	if err := s.UpdateUser(ctx, u); err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	got, err = s.User(ctx, u.ID)
	if err != nil {
		t.Fatalf("User after update: %v", err)
	}
	if diff := cmp.Diff(u, got); diff != "" {
		t.Errorf("User after update (-want +got):\n%s", diff)
	}

	u.AccountLockedUntil = time.Time{}
	u.LastLoginTimestamp = time.Time{}
	u.LockReason = ""
	u.LastFailedLogin = time.Time{}
	u.CodesLockedUntil = time.Time{}
	if err := s.UpdateUser(ctx, u); err != nil {
		t.Fatalf("UpdateUser clearing times: %v", err)
	}
	got, _ = s.User(ctx, u.ID)
	if !got.AccountLockedUntil.IsZero() || !got.LastLoginTimestamp.IsZero() || got.LockReason != "" ||
		!got.CodesLockedUntil.IsZero() {
		t.Errorf("cleared fields read back as %v, %v, %q, %v; want zero (NULL)", got.AccountLockedUntil,
			got.LastLoginTimestamp, got.LockReason, got.CodesLockedUntil)
	}
	u.LockReason = "nonsense"
	wantCode(t, "a lock reason the schema refuses", s.UpdateUser(ctx, u), authd.EInvalid)
}

func testUserErrors(t *testing.T, s authd.Store) {
	ctx := context.Background()
	mustCreateUser(t, s, "bob@example.org")

	wantCode(t, "duplicate email", s.CreateUser(ctx, NewUser("bob@example.org")), authd.EConflict)
	dup := NewUser("other@example.org")
	if err := s.CreateUser(ctx, dup); err != nil {
		t.Fatal(err)
	}
	dup.ID = authd.NewID()
	dup.Email = "another@example.org"
	wantCode(t, "update of a missing user", s.UpdateUser(ctx, dup), authd.ENotFound)

	_, err := s.User(ctx, authd.NewID())
	wantCode(t, "unknown id", err, authd.ENotFound)
	_, err = s.UserByEmail(ctx, "nobody@example.org")
	wantCode(t, "unknown email", err, authd.ENotFound)

	// The schema keeps emails lower-cased, so uniqueness is case-insensitive.
	wantCode(t, "upper-case email", s.CreateUser(ctx, NewUser("Bob@Example.org")), authd.EInvalid)
	bad := NewUser("carol@example.org")
	bad.AccountStatus = "suspended"
	wantCode(t, "unknown account status", s.CreateUser(ctx, bad), authd.EInvalid)
	bad = NewUser("dave@example.org")
	bad.FailedLoginAttempts = -1
	wantCode(t, "negative failed attempts", s.CreateUser(ctx, bad), authd.EInvalid)
}

func newSession(u *authd.User) *authd.Session {
	return &authd.Session{
		ID: authd.NewID(), UserID: u.ID, DeviceInfo: "Firefox on Linux",
		CreatedAt: Epoch, LastUsedAt: Epoch, ExpiresAt: Epoch.Add(720 * time.Hour),
		AMR: []string{authd.AMRPassword, authd.AMROTP, authd.AMRMFA}, SignedInWith: authd.SignInFactor{Method: authd.MethodTOTP},
	}
}

func newToken(u *authd.User, s *authd.Session, typ authd.TokenType, digest string) *authd.Token {
	return &authd.Token{
		ID: authd.NewID(), JTI: uuid.NewString(), UserID: u.ID, SessionID: s.ID,
		TokenType: typ, TokenValue: digest, IssuedAt: Epoch, ExpiresAt: Epoch.Add(15 * time.Minute),
		DeviceInfo: s.DeviceInfo, CreatedAt: Epoch,
	}
}

func testSessionsAndTokens(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "erin@example.org")
	sess := newSession(u)
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	gotSess, err := s.Session(ctx, sess.ID)
	if err != nil {
		t.Fatalf("Session: %v", err)
	}
	if diff := cmp.Diff(sess, gotSess); diff != "" {
		t.Errorf("Session round trip (-want +got):\n%s", diff)
	}

	access := newToken(u, sess, authd.TokenAccess, "")
	refresh := newToken(u, sess, authd.TokenRefresh, "digest-1")
	if err := s.CreateToken(ctx, access, refresh); err != nil {
		t.Fatalf("CreateToken(access, refresh): %v", err)
	}
	child := newToken(u, sess, authd.TokenRefresh, "digest-2")
	child.ParentID = refresh.ID
	child.Revoked, child.RevokedAt, child.RotatedAt = true, Epoch.Add(time.Second), Epoch.Add(time.Second)
	if err := s.CreateToken(ctx, child); err != nil {
		t.Fatalf("CreateToken(child): %v", err)
	}

	got, err := s.TokenByJTI(ctx, access.JTI)
	if err != nil {
		t.Fatalf("TokenByJTI: %v", err)
	}
	if diff := cmp.Diff(access, got); diff != "" {
		t.Errorf("access token round trip (-want +got):\n%s", diff)
	}
	got, err = s.RefreshToken(ctx, "digest-2")
	if err != nil {
		t.Fatalf("RefreshToken: %v", err)
	}
	if diff := cmp.Diff(child, got); diff != "" {
		t.Errorf("refresh token round trip (-want +got):\n%s", diff)
	}
	_, err = s.RefreshToken(ctx, "digest-unknown")
	wantCode(t, "unknown refresh digest", err, authd.ENotFound)

	// RefreshSession and SaveRotation, the refresh flow's two round trips.
	err = s.InTx(ctx, func(tx authd.Queries) error {
		gotTok, gotSess, gotUser, err := tx.RefreshSession(ctx, "digest-1")
		if err != nil {
			return err
		}
		if gotTok.ID != refresh.ID || gotSess.ID != sess.ID || gotUser.ID != u.ID || gotUser.Email != u.Email {
			t.Errorf("RefreshSession = %s, %s, %s; want the token, its session and its user", gotTok.ID, gotSess.ID, gotUser.ID)
		}
		gotTok.Revoked, gotTok.RevokedAt, gotTok.RotatedAt = true, Epoch.Add(time.Minute), Epoch.Add(time.Minute)
		gotSess.LastUsedAt = Epoch.Add(time.Minute)
		return tx.SaveRotation(ctx, gotTok, gotSess)
	})
	if err != nil {
		t.Fatalf("refresh transaction: %v", err)
	}
	rotated, _ := s.RefreshToken(ctx, "digest-1")
	used, _ := s.Session(ctx, sess.ID)
	if !rotated.Revoked || !rotated.RotatedAt.Equal(Epoch.Add(time.Minute)) || !used.LastUsedAt.Equal(Epoch.Add(time.Minute)) {
		t.Errorf("after SaveRotation: token %+v, session %+v", rotated, used)
	}
	_, _, _, err = s.RefreshSession(ctx, "digest-unknown")
	wantCode(t, "RefreshSession of an unknown digest", err, authd.ENotFound)
	_, _, _, err = s.RefreshSession(ctx, "")
	wantCode(t, "RefreshSession of an access token (no digest)", err, authd.ENotFound)
	_, err = s.TokenByJTI(ctx, "unknown")
	wantCode(t, "unknown jti", err, authd.ENotFound)
	_, err = s.Session(ctx, authd.NewID())
	wantCode(t, "unknown session", err, authd.ENotFound)
}

func testTokenErrors(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "frank@example.org")
	ghost := NewUser("ghost@example.org") // never inserted
	wantCode(t, "session of a missing user", s.CreateSession(ctx, newSession(ghost)), authd.ENotFound)

	sess := newSession(u)
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	tok := newToken(u, sess, authd.TokenRefresh, "digest-a")
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	dupJTI := newToken(u, sess, authd.TokenRefresh, "digest-b")
	dupJTI.JTI = tok.JTI
	wantCode(t, "duplicate jti", s.CreateToken(ctx, dupJTI), authd.EConflict)
	wantCode(t, "duplicate digest", s.CreateToken(ctx, newToken(u, sess, authd.TokenRefresh, "digest-a")), authd.EConflict)
	wantCode(t, "access token with a digest", s.CreateToken(ctx, newToken(u, sess, authd.TokenAccess, "digest-c")), authd.EInvalid)
	wantCode(t, "refresh token without a digest", s.CreateToken(ctx, newToken(u, sess, authd.TokenRefresh, "")), authd.EInvalid)
	orphan := newToken(u, &authd.Session{ID: authd.NewID()}, authd.TokenAccess, "")
	wantCode(t, "token of a missing session", s.CreateToken(ctx, orphan), authd.ENotFound)
	// A batch is all or nothing.
	good := newToken(u, sess, authd.TokenAccess, "")
	wantCode(t, "a batch with a duplicate", s.CreateToken(ctx, good, dupJTI), authd.EConflict)
	if _, err := s.TokenByJTI(ctx, good.JTI); authd.ErrorCode(err) != authd.ENotFound {
		t.Errorf("half a failed batch was stored: %v", err)
	}
}

func testVerificationTokens(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "grace@example.org")
	v := &authd.VerificationToken{
		ID: authd.NewID(), Token: "verify-digest", UserID: u.ID, TokenType: authd.VerifyEmail,
		CreatedAt: Epoch, ExpiresAt: Epoch.Add(authd.EmailVerificationTTL),
	}
	if err := s.CreateVerificationToken(ctx, v); err != nil {
		t.Fatalf("CreateVerificationToken: %v", err)
	}
	got, err := s.VerificationToken(ctx, "verify-digest")
	if err != nil {
		t.Fatalf("VerificationToken: %v", err)
	}
	if diff := cmp.Diff(v, got); diff != "" {
		t.Errorf("verification token round trip (-want +got):\n%s", diff)
	}
	if !got.Usable(Epoch) || got.Usable(Epoch.Add(authd.EmailVerificationTTL)) {
		t.Errorf("Usable: want usable before expiry and not at it")
	}
	dup := *v
	dup.ID = authd.NewID()
	wantCode(t, "duplicate digest", s.CreateVerificationToken(ctx, &dup), authd.EConflict)
	orphan := *v
	orphan.ID, orphan.Token, orphan.UserID = authd.NewID(), "other", authd.NewID()
	wantCode(t, "token of a missing user", s.CreateVerificationToken(ctx, &orphan), authd.ENotFound)
	_, err = s.VerificationToken(ctx, "nope")
	wantCode(t, "unknown digest", err, authd.ENotFound)
}

// testEmailChangeTokens: an email_verification token may name the address
// it moves its account to (NewEmail); DeleteVerificationTokens spares such
// tokens, DeleteEmailChanges deletes only them, and neither deletes a used
// one. A password_reset token names no address.
func testEmailChangeTokens(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "heidi@example.org")
	token := func(digest string, typ authd.VerificationType, newEmail string, used bool) *authd.VerificationToken {
		t.Helper()
		v := &authd.VerificationToken{ID: authd.NewID(), Token: digest, UserID: u.ID, TokenType: typ, NewEmail: newEmail,
			CreatedAt: Epoch, ExpiresAt: Epoch.Add(time.Hour), Used: used}
		if used {
			v.UsedAt = Epoch
		}
		if err := s.CreateVerificationToken(ctx, v); err != nil {
			t.Fatalf("CreateVerificationToken(%s): %v", digest, err)
		}
		return v
	}
	change := token("change", authd.VerifyEmail, "heidi@example.net", false)
	got, err := s.VerificationToken(ctx, "change")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(change, got); diff != "" {
		t.Errorf("change token round trip (-want +got):\n%s", diff)
	}
	// The password checks made with the link are counted on it, the
	// last one's time kept.
	change.Attempts, change.AttemptedAt = 2, Epoch.Add(time.Minute)
	if err := s.SetVerificationAttempts(ctx, change); err != nil {
		t.Fatalf("SetVerificationAttempts: %v", err)
	}
	if got, err := s.VerificationToken(ctx, "change"); err != nil || got.Attempts != 2 ||
		!got.AttemptedAt.Equal(Epoch.Add(time.Minute)) {
		t.Errorf("after SetVerificationAttempts: %+v, %v; want 2 attempts, the last at %s", got, err, Epoch.Add(time.Minute))
	}
	wantCode(t, "SetVerificationAttempts of no token", s.SetVerificationAttempts(ctx,
		&authd.VerificationToken{ID: authd.NewID(), Attempts: 1}), authd.ENotFound)
	bad := &authd.VerificationToken{ID: authd.NewID(), Token: "reset-to", UserID: u.ID, TokenType: authd.PasswordReset,
		NewEmail: "heidi@example.net", CreatedAt: Epoch, ExpiresAt: Epoch.Add(time.Hour)}
	wantCode(t, "a reset token naming an address", s.CreateVerificationToken(ctx, bad), authd.EInvalid)
	token("plain", authd.VerifyEmail, "", false)
	token("used-change", authd.VerifyEmail, "heidi@example.com", true)
	token("reset", authd.PasswordReset, "", false)
	left := func(what string, want ...string) {
		t.Helper()
		for _, digest := range []string{"change", "plain", "used-change", "reset"} {
			_, err := s.VerificationToken(ctx, digest)
			if kept := err == nil; kept != slices.Contains(want, digest) {
				t.Errorf("after %s, token %s: %v (want kept: %v)", what, digest, err, !kept)
			}
		}
	}
	if err := s.DeleteVerificationTokens(ctx, u.ID, authd.VerifyEmail); err != nil {
		t.Fatal(err)
	}
	left("DeleteVerificationTokens(email_verification)", "change", "used-change", "reset")
	pending := func(what string, want bool) {
		t.Helper()
		if got, err := s.EmailChangePending(ctx, u.ID, Epoch); err != nil || got != want {
			t.Errorf("EmailChangePending %s = %v, %v; want %v", what, got, err, want)
		}
	}
	pending("with a change token", true)
	if got, err := s.EmailChangePending(ctx, u.ID, change.ExpiresAt); err != nil || got {
		t.Errorf("EmailChangePending once its token expired = %v, %v; want false", got, err)
	}
	if err := s.DeleteEmailChanges(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	left("DeleteEmailChanges", "used-change", "reset")
	pending("with only a used change token", false)
	for _, kind := range []authd.MailKind{authd.MailEmailChangeNotice, authd.MailEmailChange} {
		m := &authd.OutboxMail{ID: authd.NewID(), Kind: kind, UserID: u.ID, To: "heidi@example.net", CreatedAt: Epoch,
			NextAttemptAt: Epoch}
		if err := s.EnqueueMail(ctx, m); err != nil {
			t.Fatal(err)
		}
		pending("with a queued "+string(kind)+" mail", kind == authd.MailEmailChange)
	}
	if err := s.WithdrawMails(ctx, u.ID, authd.MailEmailChange); err != nil {
		t.Fatal(err)
	}
	pending("after the change mail is withdrawn", false)

	for _, q := range []struct {
		name string
		run  func(func(authd.Queries) error) error
	}{
		{"store", func(fn func(authd.Queries) error) error { return fn(s) }},
		{"transaction", func(fn func(authd.Queries) error) error { return s.InTx(ctx, fn) }},
	} {
		err := q.run(func(q authd.Queries) error {
			for email, want := range map[string]bool{"heidi@example.org": true, "heidi@example.net": false} {
				if taken, err := q.EmailTaken(ctx, email); err != nil || taken != want {
					t.Errorf("EmailTaken(%s) = %v, %v; want %v", email, taken, err, want)
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", q.name, err)
		}
	}
}

// testSecurityLogsOfErasedUsers: a row about an erased (deleted) user
// keeps no client — IP address, user agent, the context's device_info —
// whatever it was given: a flow that read the user before the erasure
// committed must not add one after the erasure cleared the others.
func testSecurityLogsOfErasedUsers(t *testing.T, s authd.Store) {
	ctx := context.Background()
	live := mustCreateUser(t, s, "ivan@example.org")
	gone := mustCreateUser(t, s, "judy@example.org")
	gone.AccountStatus = authd.StatusDeleted
	if err := s.UpdateUser(ctx, gone); err != nil {
		t.Fatal(err)
	}
	context := map[string]any{"device_info": "Judy's phone", "session_id": "s1"}
	for _, u := range []*authd.User{live, gone} {
		if err := s.CreateSecurityLog(ctx, authd.NewSecurityLog(Epoch, authd.EventTokenRefreshed, authd.ResultFailure,
			u.ID, "192.0.2.7", "curl/8", "session ended", context)); err != nil {
			t.Fatalf("CreateSecurityLog(%s): %v", u.Email, err)
		}
	}
	for _, u := range []*authd.User{live, gone} {
		logs, err := s.SecurityLogs(ctx, authd.SecurityLogFilter{UserID: u.ID})
		if err != nil || len(logs) != 1 {
			t.Fatalf("SecurityLogs(%s) = %v, %v", u.Email, logs, err)
		}
		l, erased := logs[0], u == gone
		if kept := l.IPAddress != "" || l.UserAgent != "" || l.AdditionalContext["device_info"] != nil; kept == erased {
			t.Errorf("row about %s (erased %v): ip %q, user agent %q, context %v", u.Email, erased, l.IPAddress, l.UserAgent,
				l.AdditionalContext)
		}
		if l.AdditionalContext["session_id"] != "s1" || l.FailureReason != "session ended" {
			t.Errorf("row about %s lost more than the client: %+v", u.Email, l)
		}
	}
}

// Erase runs the store's part of u's erasure transaction: the tombstone
// and ErasePersonalData, which leaves the erasure pending for
// FinishErasure.
func Erase(t testing.TB, s authd.Store, u *authd.User) {
	t.Helper()
	ctx := context.Background()
	if err := s.InTx(ctx, func(q authd.Queries) error {
		u.AccountStatus, u.Email = authd.StatusDeleted, authd.Tombstone(u.ID)
		if err := q.UpdateUser(ctx, u); err != nil {
			return err
		}
		return q.ErasePersonalData(ctx, u.ID)
	}); err != nil {
		t.Fatal(err)
	}
}

// testSecurityLogsOfPendingErasures: the listing shows no client (IP
// address, user agent, device) in the rows of an account erased whose rows
// FinishErasure has yet to clear (a large account, a crash), nor after;
// another account's rows keep theirs, and the rows the rest of their
// context. It showed them until the next retention run.
func testSecurityLogsOfPendingErasures(t *testing.T, s authd.Store) {
	ctx := context.Background()
	live := mustCreateUser(t, s, "kim@example.org")
	gone := mustCreateUser(t, s, "lee@example.org")
	for i, u := range []*authd.User{live, gone, live, gone} {
		if err := s.CreateSecurityLog(ctx, authd.NewSecurityLog(Epoch.Add(time.Duration(i)*time.Second),
			authd.EventTokenRefreshed, authd.ResultSuccess, u.ID, "192.0.2.7", "curl/8", "",
			map[string]any{"device_info": "phone", "session_id": "s1"})); err != nil {
			t.Fatal(err)
		}
	}
	Erase(t, s, gone)
	check := func(when string) {
		t.Helper()
		logs, err := s.SecurityLogs(ctx, authd.SecurityLogFilter{})
		if err != nil || len(logs) != 4 {
			t.Fatalf("SecurityLogs %s = %v, %v; want 4 rows", when, logs, err)
		}
		for i, l := range logs {
			if want := Epoch.Add(time.Duration(3-i) * time.Second); !l.Timestamp.Equal(want) {
				t.Errorf("%s: row %d at %v; want %v (newest first)", when, i, l.Timestamp, want)
			}
			erased := l.UserID == gone.ID
			if kept := l.IPAddress != "" || l.UserAgent != "" || l.AdditionalContext["device_info"] != nil; kept == erased {
				t.Errorf("%s: row about %s (erased %v): ip %q, user agent %q, context %v", when, l.UserID, erased,
					l.IPAddress, l.UserAgent, l.AdditionalContext)
			}
			if l.AdditionalContext["session_id"] != "s1" {
				t.Errorf("%s: row about %s lost more than the client: %+v", when, l.UserID, l)
			}
		}
	}
	check("while the erasure is pending")
	if err := s.FinishErasure(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	check("after the erasure finished")
}

// testPurgeErasedAccounts: retention deletes an erased account's row once
// it is older than the logs' retention and no security-log row or session
// names it; a live account, a recent erasure, or one still named by a log
// row or a session stays.
func testPurgeErasedAccounts(t *testing.T, s authd.Store) {
	ctx := context.Background()
	old := Epoch.Add(-48 * time.Hour)
	erased := func(email string, at time.Time) *authd.User {
		u := mustCreateUser(t, s, email)
		u.AccountStatus, u.Email, u.PasswordHash, u.UpdatedAt = authd.StatusDeleted, authd.Tombstone(u.ID), "", at
		if err := s.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	gone := erased("gone@example.org", old)
	recent := erased("recent@example.org", Epoch)
	logged := erased("logged@example.org", old)
	if err := s.CreateSecurityLog(ctx, authd.NewSecurityLog(Epoch, authd.EventAccountDeleted, authd.ResultSuccess,
		logged.ID, "", "", "", nil)); err != nil {
		t.Fatal(err)
	}
	// Its only row is older than the logs' retention: it goes with the
	// account, and a dry run (which deletes no row) counts the account too.
	oldLogged := erased("old-logged@example.org", old)
	if err := s.CreateSecurityLog(ctx, authd.NewSecurityLog(old, authd.EventAccountDeleted, authd.ResultSuccess,
		oldLogged.ID, "", "", "", nil)); err != nil {
		t.Fatal(err)
	}
	withSession := erased("session@example.org", old)
	sess := &authd.Session{ID: authd.NewID(), UserID: withSession.ID, CreatedAt: old, LastUsedAt: old,
		ExpiresAt: Epoch.Add(time.Hour)}
	refresh := newToken(withSession, sess, authd.TokenRefresh, "digest-session")
	refresh.ExpiresAt = Epoch.Add(time.Hour)
	if err := errors.Join(s.CreateSession(ctx, sess), s.CreateToken(ctx, refresh)); err != nil {
		t.Fatal(err)
	}
	live := mustCreateUser(t, s, "live@example.org")
	live.UpdatedAt = old
	if err := s.UpdateUser(ctx, live); err != nil {
		t.Fatal(err)
	}

	req := authd.PurgeRequest{LogsBefore: Epoch.Add(-time.Hour), ExpiredBefore: old, Now: Epoch, Batch: 10}
	dry := req
	dry.DryRun = true
	if res, err := s.Purge(ctx, dry); err != nil || res.ErasedAccounts != 2 {
		t.Errorf("Purge (dry run) = %+v, %v; want 2 erased accounts", res, err)
	}
	if res, err := s.Purge(ctx, req); err != nil || res.ErasedAccounts != 2 || res.SecurityLogs != 1 {
		t.Errorf("Purge = %+v, %v; want 2 erased accounts and 1 security log deleted", res, err)
	}
	for _, u := range []*authd.User{gone, oldLogged} {
		_, err := s.User(ctx, u.ID)
		wantCode(t, "the erased account past retention "+u.Email, err, authd.ENotFound)
	}
	for _, u := range []*authd.User{recent, logged, withSession, live} {
		if _, err := s.User(ctx, u.ID); err != nil {
			t.Errorf("%s (%s) after the purge: %v; want it kept", u.Email, u.AccountStatus, err)
		}
	}
}

// testPurgeDryRunOfAnErasedAccount: a dry run counts the tombstone the
// purge deletes once its session goes in the same run (ended after the
// logs' cut-off but before the expired rows', its token expired), as the
// purge itself does, and neither counts one whose ended session keeps a
// token that has not expired.
func testPurgeDryRunOfAnErasedAccount(t *testing.T, s authd.Store) {
	ctx := context.Background()
	erased := func(email string, tokenExpires time.Time) *authd.User {
		u := mustCreateUser(t, s, email)
		ended := Epoch.Add(-48 * time.Hour)
		sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, CreatedAt: Epoch.Add(-100 * time.Hour),
			LastUsedAt: ended, ExpiresAt: Epoch.Add(-47 * time.Hour), RevokedAt: ended}
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		tok := newToken(u, sess, authd.TokenRefresh, "digest-"+email)
		tok.IssuedAt, tok.CreatedAt, tok.ExpiresAt = sess.CreatedAt, sess.CreatedAt, tokenExpires
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		u.AccountStatus, u.Email, u.PasswordHash, u.UpdatedAt = authd.StatusDeleted, authd.Tombstone(u.ID), "", Epoch.Add(-96*time.Hour)
		if err := s.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateSecurityLog(ctx, authd.NewSecurityLog(Epoch.Add(-96*time.Hour), authd.EventAccountDeleted,
			authd.ResultSuccess, u.ID, "", "", "", nil)); err != nil {
			t.Fatal(err)
		}
		return u
	}
	gone := erased("erased@example.org", Epoch.Add(-30*time.Hour))
	kept := erased("kept@example.org", Epoch.Add(-12*time.Hour)) // its token outlives the expired rows' cut-off
	req := authd.PurgeRequest{LogsBefore: Epoch.Add(-72 * time.Hour), ExpiredBefore: Epoch.Add(-24 * time.Hour), Now: Epoch,
		Batch: 10}
	dry := req
	dry.DryRun = true
	want := authd.PurgeResult{SecurityLogs: 2, Tokens: 1, Sessions: 1, ErasedAccounts: 1}
	if res, err := s.Purge(ctx, dry); err != nil || !cmp.Equal(res, want) {
		t.Errorf("Purge (dry run) = %+v, %v; want %+v", res, err, want)
	}
	if res, err := s.Purge(ctx, req); err != nil || !cmp.Equal(res, want) {
		t.Errorf("Purge = %+v, %v; want %+v", res, err, want)
	}
	_, err := s.User(ctx, gone.ID)
	wantCode(t, "the erased account after the purge", err, authd.ENotFound)
	if _, err := s.User(ctx, kept.ID); err != nil {
		t.Errorf("the erased account whose session keeps a live token: %v; want it kept", err)
	}
}

// testIdleSessionsEnd: the purge deletes a session whose refresh tokens
// have all expired unused (idle for the refresh token's lifetime) with its
// last token, as a session ended long ago, though its absolute end is far.
// A browser sign-in's session lives on its cookie, not on the refresh
// token it never hands out: kept until its own end.
func testIdleSessionsEnd(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "idle@example.org")
	session := func(name string, tokenExpires time.Time, browser bool) *authd.Session {
		t.Helper()
		sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, DeviceInfo: name, CreatedAt: Epoch.Add(-200 * time.Hour),
			LastUsedAt: Epoch.Add(-200 * time.Hour), ExpiresAt: Epoch.Add(500 * time.Hour)}
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		tok := newToken(u, sess, authd.TokenRefresh, "digest-"+name)
		tok.IssuedAt, tok.CreatedAt, tok.ExpiresAt = sess.CreatedAt, sess.CreatedAt, tokenExpires
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if browser {
			if err := s.SetBrowserDigest(ctx, sess.ID, "browser-"+name); err != nil {
				t.Fatal(err)
			}
		}
		return sess
	}
	idleLong := session("idle long", Epoch.Add(-30*time.Hour), false)   // its token goes in the purge below
	idleNewly := session("idle newly", Epoch.Add(-12*time.Hour), false) // its token outlives the cut-off
	browser := session("browser", Epoch.Add(-30*time.Hour), true)
	live := session("live", Epoch.Add(10*time.Hour), false)
	req := authd.PurgeRequest{LogsBefore: Epoch.Add(-72 * time.Hour), ExpiredBefore: Epoch.Add(-24 * time.Hour), Now: Epoch,
		Batch: 10}
	dry := req
	dry.DryRun = true
	want := authd.PurgeResult{Tokens: 2, Sessions: 1}
	if res, err := s.Purge(ctx, dry); err != nil || !cmp.Equal(res, want) {
		t.Errorf("Purge (dry run) = %+v, %v; want %+v", res, err, want)
	}
	if res, err := s.Purge(ctx, req); err != nil || !cmp.Equal(res, want) {
		t.Errorf("Purge = %+v, %v; want %+v", res, err, want)
	}
	_, err := s.Session(ctx, idleLong.ID)
	wantCode(t, "the session idle past the cut-off", err, authd.ENotFound)
	for _, kept := range []*authd.Session{idleNewly, browser, live} {
		if _, err := s.Session(ctx, kept.ID); err != nil {
			t.Errorf("session %q after the purge: %v; want it kept", kept.DeviceInfo, err)
		}
	}
}

// testPurgeSessionsInBatches: the purge's sessions step deletes every
// ended session however many batches it takes, and no session it must
// keep among them (PostgreSQL goes on after the last id a batch deleted,
// not from the first session again).
func testPurgeSessionsInBatches(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "many@example.org")
	var ended, kept []*authd.Session
	for i := range 15 {
		sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, DeviceInfo: fmt.Sprint("session ", i),
			CreatedAt: Epoch.Add(-200 * time.Hour), LastUsedAt: Epoch.Add(-200 * time.Hour), ExpiresAt: Epoch.Add(500 * time.Hour)}
		if i%3 == 0 { // ended: revoked before the cut-off
			sess.RevokedAt = Epoch.Add(-100 * time.Hour)
			ended = append(ended, sess)
		} else { // live: a token of it outlives the cut-off
			kept = append(kept, sess)
		}
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		if i%3 != 0 {
			tok := newToken(u, sess, authd.TokenRefresh, fmt.Sprint("digest-many-", i))
			tok.IssuedAt, tok.CreatedAt, tok.ExpiresAt = sess.CreatedAt, sess.CreatedAt, Epoch.Add(10*time.Hour)
			if err := s.CreateToken(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
	}
	res, err := s.Purge(ctx, authd.PurgeRequest{LogsBefore: Epoch.Add(-72 * time.Hour), ExpiredBefore: Epoch.Add(-24 * time.Hour),
		Now: Epoch, Batch: 2})
	if err != nil || res.Sessions != len(ended) || len(res.Deferred) != 0 {
		t.Errorf("Purge in batches of 2 = %+v, %v; want %d sessions, none deferred", res, err, len(ended))
	}
	for _, sess := range ended {
		_, err := s.Session(ctx, sess.ID)
		wantCode(t, "an ended session after the purge", err, authd.ENotFound)
	}
	for _, sess := range kept {
		if _, err := s.Session(ctx, sess.ID); err != nil {
			t.Errorf("live session %q after the purge: %v; want it kept", sess.DeviceInfo, err)
		}
	}
}

// testPurgeAskingNoBatchSize: a purge whose request asks no batch size
// deletes every row due and ends (a batch of 0 rows found none and went on
// for ever; the store's own tests check its batch size).
func testPurgeAskingNoBatchSize(t *testing.T, s authd.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a guard: looping is the failure
	defer cancel()
	u := mustCreateUser(t, s, "no-batch@example.org")
	for i := range 3 {
		if err := s.CreateSecurityLog(ctx, authd.NewSecurityLog(Epoch.Add(-time.Duration(i+100)*time.Hour), authd.EventLoginSuccess,
			authd.ResultSuccess, u.ID, "", "", "", nil)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Purge(ctx, authd.PurgeRequest{LogsBefore: Epoch.Add(-72 * time.Hour), ExpiredBefore: Epoch.Add(-24 * time.Hour), Now: Epoch})
	if err != nil || res.SecurityLogs != 3 {
		t.Errorf("Purge asking no batch size = %+v, %v; want the 3 security logs due", res, err)
	}
}

func testSecurityLogs(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "heidi@example.org")
	logs := []*authd.SecurityLog{
		authd.NewSecurityLog(Epoch, authd.EventRegistration, authd.ResultSuccess, u.ID, "192.0.2.1", "curl/8", "", nil),
		authd.NewSecurityLog(Epoch.Add(time.Second), authd.EventLoginFailure, authd.ResultFailure, uuid.Nil,
			"2001:db8::1", "", "unknown email", map[string]any{"attempt": float64(1)}),
		authd.NewSecurityLog(Epoch.Add(2*time.Second), authd.EventLoginSuccess, authd.ResultSuccess, u.ID,
			"", "", "", map[string]any{"device": "phone", "nested": map[string]any{"ok": true}}),
	}
	for _, l := range logs {
		if err := s.CreateSecurityLog(ctx, l); err != nil {
			t.Fatalf("CreateSecurityLog(%s): %v", l.EventType, err)
		}
	}
	all, err := s.SecurityLogs(ctx, authd.SecurityLogFilter{})
	if err != nil {
		t.Fatalf("SecurityLogs: %v", err)
	}
	want := []*authd.SecurityLog{logs[2], logs[1], logs[0]} // newest first
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("SecurityLogs (-want +got):\n%s", diff)
	}
	mine, err := s.SecurityLogs(ctx, authd.SecurityLogFilter{UserID: u.ID, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(mine) != 1 || mine[0].ID != logs[2].ID {
		t.Errorf("SecurityLogs(user, limit 1) = %d rows, want the newest of the user's", len(mine))
	}
	failures, err := s.SecurityLogs(ctx, authd.SecurityLogFilter{EventType: authd.EventLoginFailure})
	if err != nil {
		t.Fatal(err)
	}
	if len(failures) != 1 || failures[0].UserID != uuid.Nil {
		t.Errorf("SecurityLogs(login_failure) = %+v, want the one row without a user", failures)
	}
	wantCode(t, "log of a missing user", s.CreateSecurityLog(ctx, authd.NewSecurityLog(Epoch,
		authd.EventLogout, authd.ResultSuccess, authd.NewID(), "", "", "", nil)), authd.ENotFound)
	bad := authd.NewSecurityLog(Epoch, "hacked", authd.ResultSuccess, uuid.Nil, "", "", "", nil)
	wantCode(t, "unknown event type", s.CreateSecurityLog(ctx, bad), authd.EInvalid)
}

func testTxRollsBack(t *testing.T, s authd.Store) {
	ctx := context.Background()
	boom := errors.New("boom")
	err := s.InTx(ctx, func(tx authd.Queries) error {
		mustCreateUser(t, tx, "ivan@example.org")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx returned %v, want fn's error", err)
	}
	_, err = s.UserByEmail(ctx, "ivan@example.org")
	wantCode(t, "user of a rolled-back transaction", err, authd.ENotFound)

	if err := s.InTx(ctx, func(tx authd.Queries) error {
		mustCreateUser(t, tx, "judy@example.org")
		return nil
	}); err != nil {
		t.Fatalf("InTx: %v", err)
	}
	if _, err := s.UserByEmail(ctx, "judy@example.org"); err != nil {
		t.Errorf("user of a committed transaction: %v", err)
	}
}

// testTxCancelled: a transaction whose context ends, inside its function
// or before its commit, commits nothing and fails as unavailable (a 503),
// not as an internal error; so does a read whose context has ended.
func testTxCancelled(t *testing.T, s authd.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	err := s.InTx(ctx, func(tx authd.Queries) error {
		mustCreateUser(t, tx, "kim@example.org")
		cancel()
		_, err := tx.UserByEmail(ctx, "kim@example.org")
		return err
	})
	wantCode(t, "a transaction cancelled inside", err, authd.EUnavailable)

	ctx, cancel = context.WithCancel(context.Background())
	err = s.InTx(ctx, func(tx authd.Queries) error {
		mustCreateUser(t, tx, "lee@example.org")
		cancel()
		return nil
	})
	wantCode(t, "a transaction cancelled before its commit", err, authd.EUnavailable)
	_, err = s.UserByEmail(ctx, "kim@example.org")
	wantCode(t, "a read whose request has ended", err, authd.EUnavailable)
	for _, email := range []string{"kim@example.org", "lee@example.org"} {
		_, err := s.UserByEmail(context.Background(), email)
		wantCode(t, "the user of a cancelled transaction", err, authd.ENotFound)
	}
}

// testTxSerialises checks the promise flows rely on: a row read in a
// transaction stays locked, so concurrent read-modify-writes never lose an
// update.
func testTxSerialises(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "mallory@example.org")
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			errs <- s.InTx(ctx, func(tx authd.Queries) error {
				got, err := tx.User(ctx, u.ID)
				if err != nil {
					return err
				}
				got.FailedLoginAttempts++
				return tx.UpdateUser(ctx, got)
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("InTx: %v", err)
		}
	}
	got, err := s.User(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.FailedLoginAttempts != n {
		t.Errorf("after %d concurrent increments failed_login_attempts = %d", n, got.FailedLoginAttempts)
	}
}

// testEnumLabels stores every label of every enumeration, so that a label
// missing from a dialect's enum type or CHECK shows up here.
func testEnumLabels(t *testing.T, s authd.Store) {
	ctx := context.Background()
	var u *authd.User
	for _, status := range authd.AccountStatuses() {
		u = NewUser(string(status) + "@example.org")
		u.AccountStatus = status
		if err := s.CreateUser(ctx, u); err != nil {
			t.Errorf("user with status %s: %v", status, err)
		}
	}
	for _, event := range authd.EventTypes() {
		for _, result := range authd.Results() {
			l := authd.NewSecurityLog(Epoch, event, result, u.ID, "", "", "", nil)
			if err := s.CreateSecurityLog(ctx, l); err != nil {
				t.Errorf("security log %s/%s: %v", event, result, err)
			}
		}
	}
	for _, typ := range authd.VerificationTypes() {
		v := &authd.VerificationToken{ID: authd.NewID(), Token: string(typ), UserID: u.ID, TokenType: typ,
			CreatedAt: Epoch, ExpiresAt: Epoch.Add(time.Hour)}
		if err := s.CreateVerificationToken(ctx, v); err != nil {
			t.Errorf("verification token %s: %v", typ, err)
		}
	}
	// Both token types are stored by testSessionsAndTokens.

	// Every mail kind, the MFA reset's with its template data, which comes
	// back as stored.
	removed := authd.MFARemoval{TOTP: true, Passkeys: 2, RecoveryCodes: 7}
	for _, kind := range authd.MailKinds() {
		m := &authd.OutboxMail{ID: authd.NewID(), Kind: kind, UserID: u.ID, To: u.Email, CreatedAt: Epoch, NextAttemptAt: Epoch}
		switch kind {
		case authd.MailMFAReset:
			m.Removed = removed
		case authd.MailFactorChanged:
			m.Change = authd.ChangePasskeyAdded
		case authd.MailAccountLocked:
			m.AfterCodes = true
		}
		if err := s.EnqueueMail(ctx, m); err != nil {
			t.Errorf("mail %s: %v", kind, err)
		}
	}
	mails, err := s.Mails(ctx, authd.MailFilter{Limit: authd.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mails {
		want := authd.MFARemoval{}
		if m.Kind == authd.MailMFAReset {
			want = removed
		}
		if m.Removed != want {
			t.Errorf("mail %s came back removing %+v, want %+v", m.Kind, m.Removed, want)
		}
		if (m.Change == authd.ChangePasskeyAdded) != (m.Kind == authd.MailFactorChanged) ||
			m.AfterCodes != (m.Kind == authd.MailAccountLocked) {
			t.Errorf("mail %s came back with change %q, after codes %v", m.Kind, m.Change, m.AfterCodes)
		}
	}
	if len(mails) != len(authd.MailKinds()) {
		t.Errorf("%d mails stored, want one of each of %d kinds", len(mails), len(authd.MailKinds()))
	}
}

// testOutbox checks claiming: due mails only, oldest first, one claimant
// per lease, a lapsed lease claimable again, and an outcome recorded only
// by the claim that holds the mail.
func testOutbox(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "outbox@example.org")
	mails := make([]*authd.OutboxMail, 3)
	for i := range mails {
		mails[i] = &authd.OutboxMail{ID: authd.NewID(), Kind: authd.MailAccountLocked, UserID: u.ID, To: u.Email,
			Until: Epoch.Add(15 * time.Minute), CreatedAt: Epoch, NextAttemptAt: Epoch.Add(time.Duration(i) * time.Minute)}
		if err := s.EnqueueMail(ctx, mails[i]); err != nil {
			t.Fatalf("EnqueueMail: %v", err)
		}
	}
	bad := *mails[0]
	bad.ID, bad.Kind = authd.NewID(), "spam"
	wantCode(t, "unknown mail kind", s.EnqueueMail(ctx, &bad), authd.EInvalid)

	claim := func(at time.Duration) (*authd.OutboxMail, uuid.UUID) {
		t.Helper()
		id := authd.NewID()
		m, err := s.ClaimMail(ctx, id, Epoch.Add(at), time.Minute)
		if err != nil {
			t.Fatalf("ClaimMail at %s: %v", at, err)
		}
		return m, id
	}
	a, claimA := claim(time.Minute)
	if a == nil || a.ID != mails[0].ID || a.Claim != claimA || a.Attempts != 1 || !a.Until.Equal(mails[0].Until) ||
		a.To != u.Email || a.UserID != u.ID {
		t.Fatalf("first claim = %+v; want the oldest due mail with its claim and one attempt", a)
	}
	b, claimB := claim(time.Minute)
	if b == nil || b.ID != mails[1].ID {
		t.Fatalf("second claim = %+v; want the second due mail", b)
	}
	if m, _ := claim(90 * time.Second); m != nil {
		t.Errorf("claimed %s although every due mail is held", m.ID)
	}
	if err := s.RetryMail(ctx, a.ID, claimA, Epoch.Add(10*time.Minute), "421 try later"); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteMail(ctx, b.ID, claimB); err != nil {
		t.Fatal(err)
	}
	// The third mail is due at 2m; the retried one not before 10m.
	c, claimC := claim(5 * time.Minute)
	if c == nil || c.ID != mails[2].ID {
		t.Fatalf("claim at 5m = %+v; want the third mail", c)
	}
	// Its sender stalls: after the lease another claims it, and the first
	// can no longer complete, release or kill it.
	d, claimD := claim(6 * time.Minute)
	if d == nil || d.ID != mails[2].ID || d.Attempts != 2 {
		t.Fatalf("claim after a lapsed lease = %+v", d)
	}
	wantCode(t, "complete under a lapsed claim", s.CompleteMail(ctx, c.ID, claimC), authd.ENotFound)
	wantCode(t, "retry under a lapsed claim", s.RetryMail(ctx, c.ID, claimC, Epoch, "x"), authd.ENotFound)
	wantCode(t, "kill under a lapsed claim", s.KillMail(ctx, c.ID, claimC, Epoch, "x"), authd.ENotFound)
	if m, _ := claim(6*time.Minute + 30*time.Second); m != nil {
		t.Errorf("claimed %s, which the lapsed claim released although another held it", m.ID)
	}
	if err := s.KillMail(ctx, d.ID, claimD, Epoch.Add(6*time.Minute), "550 no such user"); err != nil {
		t.Fatal(err)
	}
	retried, claimR := claim(11 * time.Minute)
	if retried == nil || retried.ID != mails[0].ID || retried.LastError != "421 try later" || retried.Attempts != 2 {
		t.Errorf("claim at 11m = %+v; want the retried mail with its last error", retried)
	}
	st, err := s.OutboxStats(ctx)
	if err != nil || st.Pending != 1 || st.Dead != 1 {
		t.Errorf("OutboxStats = %+v, %v; want 1 pending, 1 dead", st, err)
	}
	wantCode(t, "complete of a missing mail", s.CompleteMail(ctx, authd.NewID(), claimR), authd.ENotFound)
	wantCode(t, "retry of a missing mail", s.RetryMail(ctx, authd.NewID(), claimR, Epoch, ""), authd.ENotFound)
	// Held under another claim, or dead, a mail is still queued; completed,
	// it is not.
	for _, id := range []uuid.UUID{retried.ID, d.ID} {
		if queued, err := s.MailQueued(ctx, id); err != nil || !queued {
			t.Errorf("MailQueued(%s) = %v, %v; want true", id, queued, err)
		}
	}
	if err := s.CompleteMail(ctx, retried.ID, claimR); err != nil {
		t.Fatal(err)
	}
	if queued, err := s.MailQueued(ctx, retried.ID); err != nil || queued {
		t.Errorf("MailQueued of a completed mail = %v, %v; want false", queued, err)
	}

	// A dead mail revived is due at once with a fresh count of attempts.
	if err := s.ReviveMail(ctx, d.ID, Epoch.Add(12*time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "revive of a mail that is not dead", s.ReviveMail(ctx, d.ID, Epoch), authd.ENotFound)
	if revived, _ := claim(12 * time.Minute); revived == nil || revived.ID != d.ID || revived.Attempts != 1 {
		t.Errorf("claim after a revive = %+v; want the revived mail with one attempt", revived)
	}
}

// testOutboxWithdraw: WithdrawMails deletes the user's mails of the kind,
// pending (claimed or not) and dead, inside a transaction, and keeps their
// other mails and another user's.
func testOutboxWithdraw(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "pending@example.org")
	other := mustCreateUser(t, s, "other-pending@example.org")
	enqueue := func(kind authd.MailKind, user *authd.User) *authd.OutboxMail {
		t.Helper()
		m := &authd.OutboxMail{ID: authd.NewID(), Kind: kind, UserID: user.ID, To: user.Email,
			CreatedAt: Epoch, NextAttemptAt: Epoch}
		if err := s.EnqueueMail(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	dead := enqueue(authd.MailPasswordReset, u)
	claim := authd.NewID()
	if m, err := s.ClaimMail(ctx, claim, Epoch, time.Minute); err != nil || m == nil || m.ID != dead.ID {
		t.Fatalf("claim: %+v, %v", m, err)
	}
	if err := s.KillMail(ctx, dead.ID, claim, Epoch, "550"); err != nil {
		t.Fatal(err)
	}
	claimed := enqueue(authd.MailPasswordReset, u)
	if m, err := s.ClaimMail(ctx, claim, Epoch, time.Minute); err != nil || m == nil || m.ID != claimed.ID {
		t.Fatalf("claim: %+v, %v", m, err)
	}
	enqueue(authd.MailPasswordReset, u)
	kept := []*authd.OutboxMail{enqueue(authd.MailPasswordChanged, u), enqueue(authd.MailPasswordReset, other)}
	if err := s.InTx(ctx, func(q authd.Queries) error {
		return q.WithdrawMails(ctx, u.ID, authd.MailPasswordReset)
	}); err != nil {
		t.Fatal(err)
	}
	wantMailsLeft(t, s, "the user's resets withdrawn", kept)
	wantCode(t, "extending the claim of a deleted mail", s.ExtendMailClaim(ctx, claimed.ID, claim, Epoch.Add(time.Hour)),
		authd.ENotFound)
	wantCode(t, "reviving the withdrawn dead mail", s.ReviveMail(ctx, dead.ID, Epoch), authd.ENotFound)
}

// testOutboxWithdrawTo: WithdrawMailsTo deletes the user's mails to one
// address, of every kind, pending and dead, inside a transaction, and
// keeps their mails to another address and another user's to it.
func testOutboxWithdrawTo(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "leaving@example.org")
	other := mustCreateUser(t, s, "other-leaving@example.org")
	enqueue := func(kind authd.MailKind, user *authd.User, to string) *authd.OutboxMail {
		t.Helper()
		m := &authd.OutboxMail{ID: authd.NewID(), Kind: kind, UserID: user.ID, To: to, CreatedAt: Epoch,
			NextAttemptAt: Epoch}
		if err := s.EnqueueMail(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	dead := enqueue(authd.MailPasswordReset, u, u.Email)
	claim := authd.NewID()
	if m, err := s.ClaimMail(ctx, claim, Epoch, time.Minute); err != nil || m == nil || m.ID != dead.ID {
		t.Fatalf("claim: %+v, %v", m, err)
	}
	if err := s.KillMail(ctx, dead.ID, claim, Epoch, "550"); err != nil {
		t.Fatal(err)
	}
	enqueue(authd.MailEmailChangeNotice, u, u.Email)
	enqueue(authd.MailVerifyEmail, u, u.Email)
	kept := []*authd.OutboxMail{
		enqueue(authd.MailEmailChangeNotice, u, "earlier@example.org"),
		enqueue(authd.MailEmailChange, u, "next@example.org"),
		enqueue(authd.MailPasswordReset, other, u.Email), // not u's, whatever its address
	}
	if err := s.InTx(ctx, func(q authd.Queries) error {
		return q.WithdrawMailsTo(ctx, u.ID, u.Email)
	}); err != nil {
		t.Fatal(err)
	}
	wantMailsLeft(t, s, "the user's mails to "+u.Email+" withdrawn", kept)
}

// wantMailsLeft checks that s holds kept, pending, and no other mail,
// pending or dead: what is left after what.
func wantMailsLeft(t *testing.T, s authd.Store, what string, kept []*authd.OutboxMail) {
	t.Helper()
	ctx := context.Background()
	pending, err := s.Mails(ctx, authd.MailFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	for _, m := range pending {
		ids = append(ids, m.ID)
	}
	for _, m := range kept {
		if !slices.Contains(ids, m.ID) {
			t.Errorf("%s: the %s mail to %s is gone", what, m.Kind, m.To)
		}
	}
	if len(ids) != len(kept) {
		t.Errorf("%s: %d pending mails, want %d", what, len(ids), len(kept))
	}
	if d, err := s.Mails(ctx, authd.MailFilter{Dead: true}); err != nil || len(d) != 0 {
		t.Errorf("%s: dead mails %v, %v; want none", what, d, err)
	}
}

// testOutboxExtendClaim: the claim that holds a mail can move its lease,
// inside a transaction or not, which keeps other claimants off past the
// first lease; once another sender has claimed the mail, or it is gone,
// the first claim cannot.
func testOutboxExtendClaim(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "extend@example.org")
	m := &authd.OutboxMail{ID: authd.NewID(), Kind: authd.MailPasswordChanged, UserID: u.ID, To: u.Email,
		CreatedAt: Epoch, NextAttemptAt: Epoch}
	if err := s.EnqueueMail(ctx, m); err != nil {
		t.Fatal(err)
	}
	claimA := authd.NewID()
	if a, err := s.ClaimMail(ctx, claimA, Epoch, time.Minute); err != nil || a == nil || a.ID != m.ID {
		t.Fatalf("ClaimMail = %v, %v; want the mail", a, err)
	}
	err := s.InTx(ctx, func(tx authd.Queries) error {
		return tx.ExtendMailClaim(ctx, m.ID, claimA, Epoch.Add(5*time.Minute))
	})
	if err != nil {
		t.Fatalf("ExtendMailClaim in a transaction: %v", err)
	}
	if other, err := s.ClaimMail(ctx, authd.NewID(), Epoch.Add(2*time.Minute), time.Minute); err != nil || other != nil {
		t.Errorf("ClaimMail within the extended lease = %v, %v; want none", other, err)
	}
	// Lapsed, but no one has claimed it since: the claim still holds it.
	if err := s.ExtendMailClaim(ctx, m.ID, claimA, Epoch.Add(7*time.Minute)); err != nil {
		t.Errorf("ExtendMailClaim of a lapsed lease no one took over: %v", err)
	}
	claimB := authd.NewID()
	if b, err := s.ClaimMail(ctx, claimB, Epoch.Add(8*time.Minute), time.Minute); err != nil || b == nil || b.ID != m.ID {
		t.Fatalf("ClaimMail after the extended lease = %v, %v; want the mail", b, err)
	}
	wantCode(t, "extend by a claim another has replaced", s.ExtendMailClaim(ctx, m.ID, claimA, Epoch.Add(20*time.Minute)),
		authd.ENotFound)
	wantCode(t, "extend by a replaced claim in a transaction", s.InTx(ctx, func(tx authd.Queries) error {
		return tx.ExtendMailClaim(ctx, m.ID, claimA, Epoch.Add(20*time.Minute))
	}), authd.ENotFound)
	if again, err := s.ClaimMail(ctx, authd.NewID(), Epoch.Add(8*time.Minute+30*time.Second), time.Minute); err != nil || again != nil {
		t.Errorf("ClaimMail within the second claim's lease = %v, %v; want none (the replaced claim moved nothing)", again, err)
	}
	if err := s.CompleteMail(ctx, m.ID, claimB); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "extend of a sent mail", s.ExtendMailClaim(ctx, m.ID, claimB, Epoch.Add(20*time.Minute)), authd.ENotFound)
}

// testOutboxConcurrentClaims runs claimers in parallel: each mail is
// claimed exactly once.
func testOutboxConcurrentClaims(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "many@example.org")
	const n = 60
	for range n {
		m := &authd.OutboxMail{ID: authd.NewID(), Kind: authd.MailPasswordChanged, UserID: u.ID, To: u.Email,
			CreatedAt: Epoch, NextAttemptAt: Epoch}
		if err := s.EnqueueMail(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				m, err := s.ClaimMail(ctx, authd.NewID(), Epoch, time.Hour)
				if err != nil {
					t.Errorf("ClaimMail: %v", err)
					return
				}
				if m == nil {
					return
				}
				mu.Lock()
				seen[m.ID.String()]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d distinct mails claimed, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("mail %s claimed %d times", id, c)
		}
	}
}

// testTxWrites: inside a transaction a read sees the writes before it (a
// store may queue writes, as the PostgreSQL one does), and a write that
// fails fails the whole transaction, reported by InTx at the latest.
func testTxWrites(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "tx@example.org")
	sess := newSession(u)
	err := s.InTx(ctx, func(tx authd.Queries) error {
		if err := tx.CreateSession(ctx, sess); err != nil {
			return err
		}
		u.FailedLoginAttempts = 3
		if err := tx.UpdateUser(ctx, u); err != nil {
			return err
		}
		got, err := tx.Session(ctx, sess.ID)
		if err != nil || got.ID != sess.ID {
			t.Errorf("a session written in the transaction reads back as %v, %v", got, err)
		}
		again, err := tx.User(ctx, u.ID)
		if err != nil || again.FailedLoginAttempts != 3 {
			t.Errorf("an update in the transaction reads back as %+v, %v", again, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("InTx: %v", err)
	}

	first := newToken(u, sess, authd.TokenRefresh, "tx-digest-1")
	if err := s.CreateToken(ctx, first); err != nil {
		t.Fatal(err)
	}
	other := newSession(u)
	err = s.InTx(ctx, func(tx authd.Queries) error {
		if err := tx.CreateSession(ctx, other); err != nil {
			return err
		}
		dup := newToken(u, sess, authd.TokenRefresh, "tx-digest-2")
		dup.JTI = first.JTI
		return tx.CreateToken(ctx, dup) // fails now or at commit
	})
	if authd.ErrorCode(err) != authd.EConflict {
		t.Errorf("a transaction with a duplicate jti: %v, want conflict", err)
	}
	if _, err := s.Session(ctx, other.ID); authd.ErrorCode(err) != authd.ENotFound {
		t.Errorf("the failed transaction's session was stored: %v", err)
	}
	// Unknown rows to update fail the transaction too, and nothing of it
	// stays — even when the failing write is the last before the commit.
	ghost := NewUser("ghost-tx@example.org")
	kept := newSession(u)
	err = s.InTx(ctx, func(tx authd.Queries) error {
		if err := tx.CreateSession(ctx, kept); err != nil {
			return err
		}
		return tx.UpdateUser(ctx, ghost)
	})
	if err == nil {
		t.Error("updating a missing user in a transaction succeeded")
	}
	if _, err := s.Session(ctx, kept.ID); authd.ErrorCode(err) != authd.ENotFound {
		t.Errorf("the session written before a failed update was stored: %v", err)
	}
}

// testSessionRevocation covers the ways sessions end: the least recently
// used beyond a limit, and the list the revocation set loads.
func testSessionRevocation(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "many@example.org")
	other := mustCreateUser(t, s, "other@example.org")
	var sessions []*authd.Session
	for i := range 5 {
		sess := newSession(u)
		sess.LastUsedAt = Epoch.Add(time.Duration(i) * time.Minute) // sessions[4] is the most recently used
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		refresh := newToken(u, sess, authd.TokenRefresh, "d-"+sess.ID.String())
		refresh.ExpiresAt = Epoch.Add(168 * time.Hour) // the session lives while its refresh token does
		if err := s.CreateToken(ctx, refresh); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, sess)
	}
	otherSess := newSession(other)
	if err := s.CreateSession(ctx, otherSess); err != nil {
		t.Fatal(err)
	}
	at := Epoch.Add(time.Hour)
	// The user's sessions a new one ends, keeping keep (SignInState).
	excess := func(q authd.Queries, keep int, now time.Time) ([]uuid.UUID, error) {
		st, err := q.SignInState(ctx, u.ID, keep, now)
		if err != nil {
			return nil, err
		}
		return st.Excess, nil
	}
	var evicted []uuid.UUID
	err := s.InTx(ctx, func(tx authd.Queries) error {
		var err error
		if evicted, err = excess(tx, 3, at); err != nil {
			return err
		}
		return tx.RevokeSessions(ctx, evicted, at)
	})
	if err != nil {
		t.Fatalf("ExcessSessions and RevokeSessions: %v", err)
	}
	slices.SortFunc(evicted, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	wantIDs := []uuid.UUID{sessions[0].ID, sessions[1].ID}
	slices.SortFunc(wantIDs, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(evicted, wantIDs) {
		t.Errorf("ExcessSessions = %v, want the two least recently used %v", evicted, wantIDs)
	}
	tok, _ := s.RefreshToken(ctx, "d-"+sessions[0].ID.String())
	if !tok.Revoked {
		t.Error("an evicted session's refresh token is not revoked")
	}
	if tok, _ := s.RefreshToken(ctx, "d-"+sessions[2].ID.String()); tok.Revoked {
		t.Error("a kept session's refresh token is revoked")
	}
	if active, _ := s.Sessions(ctx, u.ID, at); len(active) != 3 {
		t.Errorf("%d active sessions after eviction, want 3", len(active))
	}
	if again, err := excess(s, 3, at); err != nil || len(again) != 0 {
		t.Errorf("ExcessSessions at the limit = %v (%v), want none", again, err)
	}
	if all, err := excess(s, 0, at); err != nil || len(all) != 3 || all[0] != sessions[4].ID {
		t.Errorf("ExcessSessions keeping none = %v (%v), want the three active, most recently used first", all, err)
	}
	if none, err := excess(s, 0, sessions[2].ExpiresAt); err != nil || len(none) != 0 {
		t.Errorf("ExcessSessions once they have expired = %v (%v), want none", none, err)
	}
	// Ending a session already ended fails the transaction: nothing of it stays.
	err = s.InTx(ctx, func(tx authd.Queries) error {
		return tx.RevokeSessions(ctx, []uuid.UUID{sessions[2].ID, sessions[0].ID}, at.Add(time.Minute))
	})
	if err == nil {
		t.Error("RevokeSessions of an ended session succeeded")
	}
	if sess, _ := s.Session(ctx, sessions[2].ID); !sess.RevokedAt.IsZero() {
		t.Errorf("a failed RevokeSessions ended a session at %v", sess.RevokedAt)
	}

	revs, err := s.RevokedSessions(ctx, at)
	if err != nil {
		t.Fatalf("RevokedSessions: %v", err)
	}
	var got []uuid.UUID
	for _, r := range revs {
		if !r.At.Equal(at) {
			t.Errorf("revocation at %v, want %v", r.At, at)
		}
		got = append(got, r.SessionIDs...)
	}
	slices.SortFunc(got, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(got, wantIDs) {
		t.Errorf("RevokedSessions = %v, want %v", got, wantIDs)
	}
	if revs, _ := s.RevokedSessions(ctx, at.Add(time.Second)); len(revs) != 0 {
		t.Errorf("RevokedSessions after the revocations = %v, want none", revs)
	}
}

// testSessionsSignedInWithRevoked: RevokeSessionsSignedInWith ends the user's live
// sessions whose proof is the one given (for a passkey, that passkey),
// and their tokens, but the one excepted; no other user's, no password
// session, no other proof's.
func testSessionsSignedInWithRevoked(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "proved@example.org")
	other := mustCreateUser(t, s, "another@example.org")
	keyA, keyB := authd.NewID(), authd.NewID()
	session := func(owner *authd.User, proof authd.SignInFactor) *authd.Session {
		t.Helper()
		sess := newSession(owner)
		sess.SignedInWith = proof
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateToken(ctx, newToken(owner, sess, authd.TokenRefresh, "d-"+sess.ID.String())); err != nil {
			t.Fatal(err)
		}
		got, err := s.Session(ctx, sess.ID)
		if err != nil || got.SignedInWith != proof {
			t.Fatalf("Session's proof %+v, %v; want %+v", got.SignedInWith, err, proof)
		}
		return sess
	}
	byA := authd.SignInFactor{Method: authd.MethodPasskey, PasskeyID: keyA}
	withA, withAToo, current := session(u, byA), session(u, byA), session(u, byA)
	withB := session(u, authd.SignInFactor{Method: authd.MethodPasskey, PasskeyID: keyB})
	withTOTP := session(u, authd.SignInFactor{Method: authd.MethodTOTP})
	withCode := session(u, authd.SignInFactor{Method: authd.MethodRecoveryCode})
	password := session(u, authd.SignInFactor{})
	othersA := session(other, byA)
	at := Epoch.Add(time.Hour)
	ended := func(sess *authd.Session) bool {
		t.Helper()
		got, err := s.Session(ctx, sess.ID)
		tok, terr := s.RefreshToken(ctx, "d-"+sess.ID.String())
		if err != nil || terr != nil {
			t.Fatal(err, terr)
		}
		if !got.RevokedAt.IsZero() != tok.Revoked {
			t.Errorf("session %s revoked %v, its token %v", sess.ID, got.RevokedAt, tok.Revoked)
		}
		return !got.RevokedAt.IsZero()
	}
	var ids []uuid.UUID
	err := s.InTx(ctx, func(tx authd.Queries) error {
		var err error
		ids, err = tx.RevokeSessionsSignedInWith(ctx, u.ID, byA, current.ID, at)
		return err
	})
	want := []uuid.UUID{withA.ID, withAToo.ID}
	sortIDs := func(ids []uuid.UUID) {
		slices.SortFunc(ids, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	}
	sortIDs(ids)
	sortIDs(want)
	if err != nil || !slices.Equal(ids, want) {
		t.Errorf("RevokeSessionsSignedInWith(passkey A) = %v, %v; want the two it signed in but the current %v", ids, err, want)
	}
	for _, sess := range []*authd.Session{current, withB, withTOTP, withCode, password, othersA} {
		if ended(sess) {
			t.Errorf("session %+v ended with passkey A's", sess.SignedInWith)
		}
	}
	for _, sess := range []*authd.Session{withA, withAToo} {
		if !ended(sess) {
			t.Errorf("a session passkey A signed in lives on")
		}
	}
	for _, f := range []authd.SignInFactor{{Method: authd.MethodTOTP}, {Method: authd.MethodRecoveryCode}, {}} {
		wantN := 1
		if f == (authd.SignInFactor{}) {
			wantN = 0 // the password alone matches none
		}
		if ids, err := s.RevokeSessionsSignedInWith(ctx, u.ID, f, uuid.Nil, at); err != nil || len(ids) != wantN {
			t.Errorf("RevokeSessionsSignedInWith(%+v) = %v, %v; want %d", f, ids, err, wantN)
		}
	}
	for sess, wantEnded := range map[*authd.Session]bool{withTOTP: true, withCode: true, password: false, withB: false} {
		if got := ended(sess); got != wantEnded {
			t.Errorf("after the TOTP's and the codes' revocations, the session signed in with %+v ended %v, want %v",
				sess.SignedInWith, got, wantEnded)
		}
	}
}
