package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

func newFactor(u *authd.User) *authd.Factor {
	return &authd.Factor{ID: authd.NewID(), UserID: u.ID, Kind: authd.FactorTOTP, Secret: "c2VjcmV0", CreatedAt: Epoch}
}

func testFactors(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "fay@example.org")
	if got, err := s.Factors(ctx, u.ID); err != nil || len(got) != 0 {
		t.Fatalf("Factors of a user without any = %v, %v; want none", got, err)
	}
	f := newFactor(u)
	if err := s.CreateFactor(ctx, f); err != nil {
		t.Fatalf("CreateFactor: %v", err)
	}
	wantCode(t, "CreateFactor of a second TOTP factor", s.CreateFactor(ctx, newFactor(u)), authd.EConflict)
	ghost := newFactor(u)
	ghost.UserID = authd.NewID()
	wantCode(t, "CreateFactor for a missing user", s.CreateFactor(ctx, ghost), authd.ENotFound)

	f.Confirmed, f.ConfirmedAt, f.LastUsedAt, f.LastStep = true, Epoch.Add(time.Minute), Epoch.Add(2*time.Minute), 59_000_123
	err := s.InTx(ctx, func(tx authd.Queries) error {
		if _, err := tx.Factors(ctx, u.ID); err != nil { // locks them
			return err
		}
		return tx.UpdateFactor(ctx, f)
	})
	if err != nil {
		t.Fatalf("UpdateFactor: %v", err)
	}
	got, err := s.Factors(ctx, u.ID)
	if err != nil || len(got) != 1 {
		t.Fatalf("Factors = %v, %v; want one", got, err)
	}
	if diff := cmp.Diff(f, got[0]); diff != "" {
		t.Errorf("factor round trip (-want +got):\n%s", diff)
	}
	if err := s.DeleteFactor(ctx, f.ID); err != nil {
		t.Fatalf("DeleteFactor: %v", err)
	}
	wantCode(t, "DeleteFactor again", s.DeleteFactor(ctx, f.ID), authd.ENotFound)
	wantCode(t, "UpdateFactor of a deleted factor", s.UpdateFactor(ctx, f), authd.ENotFound)
	if got, _ := s.Factors(ctx, u.ID); len(got) != 0 {
		t.Errorf("Factors after DeleteFactor = %d, want 0", len(got))
	}
}

func testRecoveryCodes(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "gus@example.org")
	set := func(digests ...string) []*authd.RecoveryCode {
		var out []*authd.RecoveryCode
		for _, d := range digests {
			out = append(out, &authd.RecoveryCode{ID: authd.NewID(), UserID: u.ID, Digest: d, CreatedAt: Epoch})
		}
		return out
	}
	left := func(want int) {
		t.Helper()
		if n, err := s.RecoveryCodesLeft(ctx, u.ID); err != nil || n != want {
			t.Errorf("RecoveryCodesLeft = %d, %v; want %d", n, err, want)
		}
	}
	if err := s.ReplaceRecoveryCodes(ctx, u.ID, set("a", "b", "c")); err != nil {
		t.Fatalf("ReplaceRecoveryCodes: %v", err)
	}
	left(3)
	if err := s.UseRecoveryCode(ctx, u.ID, "b", Epoch); err != nil {
		t.Fatalf("UseRecoveryCode: %v", err)
	}
	left(2)
	wantCode(t, "UseRecoveryCode of a used code", s.UseRecoveryCode(ctx, u.ID, "b", Epoch), authd.ENotFound)
	wantCode(t, "UseRecoveryCode of an unknown code", s.UseRecoveryCode(ctx, u.ID, "z", Epoch), authd.ENotFound)
	other := mustCreateUser(t, s, "hal@example.org")
	wantCode(t, "UseRecoveryCode of another user's code", s.UseRecoveryCode(ctx, other.ID, "a", Epoch), authd.ENotFound)
	if err := s.ReplaceRecoveryCodes(ctx, u.ID, set("b", "d")); err != nil {
		t.Fatalf("ReplaceRecoveryCodes again: %v", err)
	}
	left(2)
	wantCode(t, "UseRecoveryCode of a replaced code", s.UseRecoveryCode(ctx, u.ID, "a", Epoch), authd.ENotFound)
	if err := s.UseRecoveryCode(ctx, u.ID, "b", Epoch); err != nil {
		t.Errorf("UseRecoveryCode of a code of the new set: %v", err)
	}
}

func testMFAChallenges(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "ida@example.org")
	c := &authd.MFAChallenge{ID: authd.NewID(), Token: "challenge-digest", UserID: u.ID, DeviceInfo: "curl",
		CreatedAt: Epoch, ExpiresAt: Epoch.Add(authd.MFAChallengeTTL)}
	if err := s.CreateMFAChallenge(ctx, c); err != nil {
		t.Fatalf("CreateMFAChallenge: %v", err)
	}
	dup := *c
	dup.ID = authd.NewID()
	wantCode(t, "CreateMFAChallenge with a taken digest", s.CreateMFAChallenge(ctx, &dup), authd.EConflict)
	c.Failures, c.UsedAt = 2, Epoch.Add(time.Minute)
	err := s.InTx(ctx, func(tx authd.Queries) error {
		if _, err := tx.MFAChallenge(ctx, c.Token); err != nil {
			return err
		}
		return tx.UpdateMFAChallenge(ctx, c)
	})
	if err != nil {
		t.Fatalf("UpdateMFAChallenge: %v", err)
	}
	got, err := s.MFAChallenge(ctx, c.Token)
	if err != nil {
		t.Fatalf("MFAChallenge: %v", err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("challenge round trip (-want +got):\n%s", diff)
	}
	_, err = s.MFAChallenge(ctx, "no-such-digest")
	wantCode(t, "MFAChallenge of an unknown digest", err, authd.ENotFound)
	missing := *c
	missing.ID = uuid.New()
	wantCode(t, "UpdateMFAChallenge of a missing challenge", s.UpdateMFAChallenge(ctx, &missing), authd.ENotFound)

	// c was passed; one left open a minute later is found from its start
	// on, inside a transaction too, and neither after it, nor once it has
	// expired, nor for another user.
	open := &authd.MFAChallenge{ID: authd.NewID(), Token: "open-digest", UserID: u.ID,
		CreatedAt: Epoch.Add(time.Minute), ExpiresAt: Epoch.Add(time.Minute + authd.MFAChallengeTTL)}
	if err := s.CreateMFAChallenge(ctx, open); err != nil {
		t.Fatal(err)
	}
	other := mustCreateUser(t, s, "ida.other@example.org")
	for _, tt := range []struct {
		user       uuid.UUID
		since, now time.Time
		want       bool
	}{
		{u.ID, Epoch, open.CreatedAt, true}, {u.ID, open.CreatedAt, open.CreatedAt, true},
		{u.ID, open.CreatedAt.Add(time.Microsecond), open.CreatedAt, false}, {u.ID, Epoch, open.ExpiresAt, false},
		{other.ID, Epoch, open.CreatedAt, false},
	} {
		var got bool
		err := s.InTx(ctx, func(tx authd.Queries) error {
			var err error
			got, err = tx.OpenChallengeSince(ctx, tt.user, tt.since, tt.now)
			return err
		})
		if err != nil || got != tt.want {
			t.Errorf("OpenChallengeSince(%v, %v) = %v, %v; want %v", tt.since, tt.now, got, err, tt.want)
		}
	}
	open.UsedAt = Epoch.Add(2 * time.Minute)
	if err := s.UpdateMFAChallenge(ctx, open); err != nil {
		t.Fatal(err)
	}
	if got, err := s.OpenChallengeSince(ctx, u.ID, Epoch, open.CreatedAt); err != nil || got {
		t.Errorf("OpenChallengeSince once every challenge was passed = %v, %v; want false", got, err)
	}

	// VoidOpenMFAChallenges marks the user's challenges not passed, expired
	// or not, and leaves the passed ones and other users'; one a new
	// password voided is not open, one a new factor voided still is (it
	// proved the password).
	mine := &authd.MFAChallenge{ID: authd.NewID(), Token: "mine-open", UserID: u.ID, CreatedAt: Epoch,
		ExpiresAt: Epoch.Add(authd.MFAChallengeTTL)}
	stale := &authd.MFAChallenge{ID: authd.NewID(), Token: "mine-expired", UserID: u.ID, CreatedAt: Epoch, ExpiresAt: Epoch}
	theirs := &authd.MFAChallenge{ID: authd.NewID(), Token: "theirs-open", UserID: other.ID, CreatedAt: Epoch,
		ExpiresAt: Epoch.Add(authd.MFAChallengeTTL)}
	for _, ch := range []*authd.MFAChallenge{mine, stale, theirs} {
		if err := s.CreateMFAChallenge(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.OpenChallengeSince(ctx, u.ID, Epoch, Epoch); err != nil || !got {
		t.Fatalf("OpenChallengeSince before voiding = %v, %v; want true", got, err)
	}
	// voidOpen runs VoidOpenMFAChallenges with the user held, as the flows hold it.
	voidOpen := func(user uuid.UUID, mark int, when string) {
		t.Helper()
		if err := s.InTx(ctx, func(tx authd.Queries) error {
			if _, err := tx.User(ctx, user); err != nil {
				return err
			}
			return tx.VoidOpenMFAChallenges(ctx, user, mark)
		}); err != nil {
			t.Fatalf("VoidOpenMFAChallenges%s: %v", when, err)
		}
	}
	voidOpen(u.ID, authd.MFAChallengeVoided, "")
	for _, tt := range []struct {
		ch       *authd.MFAChallenge
		failures int
	}{{mine, authd.MFAChallengeVoided}, {stale, authd.MFAChallengeVoided}, {theirs, 0}, {c, 2}, {open, 0}} {
		if got, err := s.MFAChallenge(ctx, tt.ch.Token); err != nil || got.Failures != tt.failures {
			t.Errorf("challenge %s after VoidOpenMFAChallenges: %+v, %v; want failures %d", tt.ch.Token, got, err, tt.failures)
		}
	}
	if got, err := s.OpenChallengeSince(ctx, u.ID, Epoch, Epoch); err != nil || got {
		t.Errorf("OpenChallengeSince after voiding = %v, %v; want false", got, err)
	}
	// A new factor's mark leaves a new password's as it is.
	voidOpen(u.ID, authd.MFAChallengeOutdated, " for a new factor after a new password")
	if got, err := s.MFAChallenge(ctx, mine.Token); err != nil || got.Failures != authd.MFAChallengeVoided {
		t.Errorf("challenge %s voided by a new password, then a new factor: %+v, %v; want failures %d",
			mine.Token, got, err, authd.MFAChallengeVoided)
	}
	if got, err := s.OpenChallengeSince(ctx, u.ID, Epoch, Epoch); err != nil || got {
		t.Errorf("OpenChallengeSince after a new password, then a new factor = %v, %v; want false", got, err)
	}
	voidOpen(other.ID, authd.MFAChallengeOutdated, " for a new factor")
	if got, err := s.MFAChallenge(ctx, theirs.Token); err != nil || got.Failures != authd.MFAChallengeOutdated {
		t.Errorf("challenge %s voided for a new factor: %+v, %v; want failures %d", theirs.Token, got, err, authd.MFAChallengeOutdated)
	}
	if got, err := s.OpenChallengeSince(ctx, other.ID, Epoch, Epoch); err != nil || !got {
		t.Errorf("OpenChallengeSince after a new factor voided the challenge = %v, %v; want true (it proved the password)", got, err)
	}
}

// testEraseDeletesFactors: an erased account keeps no second factor, code
// or challenge (its row stays, as a tombstone, so nothing cascades).
func testEraseDeletesFactors(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "jo@example.org")
	if err := s.CreateFactor(ctx, newFactor(u)); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceRecoveryCodes(ctx, u.ID, []*authd.RecoveryCode{{ID: authd.NewID(), UserID: u.ID,
		Digest: "d", CreatedAt: Epoch}}); err != nil {
		t.Fatal(err)
	}
	c := &authd.MFAChallenge{ID: authd.NewID(), Token: "erase-digest", UserID: u.ID, CreatedAt: Epoch,
		ExpiresAt: Epoch.Add(time.Minute)}
	if err := s.CreateMFAChallenge(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.InTx(ctx, func(tx authd.Queries) error { return tx.ErasePersonalData(ctx, u.ID) }); err != nil {
		t.Fatalf("ErasePersonalData: %v", err)
	}
	if got, _ := s.Factors(ctx, u.ID); len(got) != 0 {
		t.Errorf("factors after erasure: %d, want 0", len(got))
	}
	if n, _ := s.RecoveryCodesLeft(ctx, u.ID); n != 0 {
		t.Errorf("recovery codes after erasure: %d, want 0", n)
	}
	_, err := s.MFAChallenge(ctx, c.Token)
	wantCode(t, "MFAChallenge after erasure", err, authd.ENotFound)
}
