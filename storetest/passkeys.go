package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

func newPasskey(u *authd.User, credID string) *authd.Passkey {
	return &authd.Passkey{ID: authd.NewID(), UserID: u.ID, Name: "Laptop", CredentialID: []byte(credID),
		PublicKey: []byte{0xa5, 0x01, 0x02, 0x03, 0x26}, AttestationType: "none",
		AAGUID: uuid.MustParse("ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"), SignCount: 4_294_967_295,
		BackupEligible: true, BackupState: true, Transports: []string{"internal", "hybrid"}, CreatedAt: Epoch}
}

func testPasskeys(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "pia@example.org")
	if got, err := s.Passkeys(ctx, u.ID); err != nil || len(got) != 0 {
		t.Fatalf("Passkeys of a user without any = %v, %v; want none", got, err)
	}
	p := newPasskey(u, "credential-1")
	if err := s.CreatePasskey(ctx, p); err != nil {
		t.Fatalf("CreatePasskey: %v", err)
	}
	wantCode(t, "CreatePasskey with a taken credential id", s.CreatePasskey(ctx, newPasskey(u, "credential-1")), authd.EConflict)
	ghost := newPasskey(u, "credential-ghost")
	ghost.UserID = authd.NewID()
	wantCode(t, "CreatePasskey for a missing user", s.CreatePasskey(ctx, ghost), authd.ENotFound)
	bare := newPasskey(u, "credential-2")
	bare.Transports, bare.BackupEligible, bare.BackupState, bare.SignCount = nil, false, false, 0
	bare.CreatedAt = Epoch.Add(time.Second)
	if err := s.CreatePasskey(ctx, bare); err != nil {
		t.Fatalf("CreatePasskey: %v", err)
	}

	p.Name, p.SignCount, p.BackupState, p.LastUsedAt = "Phone", 7, false, Epoch.Add(time.Minute)
	err := s.InTx(ctx, func(tx authd.Queries) error {
		if _, err := tx.PasskeyByCredentialID(ctx, p.CredentialID); err != nil { // locks it
			return err
		}
		return tx.UpdatePasskey(ctx, p)
	})
	if err != nil {
		t.Fatalf("UpdatePasskey: %v", err)
	}
	got, err := s.Passkeys(ctx, u.ID)
	if err != nil || len(got) != 2 {
		t.Fatalf("Passkeys = %v, %v; want two", got, err)
	}
	if diff := cmp.Diff([]*authd.Passkey{p, bare}, got); diff != "" {
		t.Errorf("passkeys round trip, oldest first (-want +got):\n%s", diff)
	}
	one, err := s.PasskeyByCredentialID(ctx, []byte("credential-2"))
	if err != nil || one.ID != bare.ID {
		t.Errorf("PasskeyByCredentialID = %v, %v; want the second passkey", one, err)
	}
	_, err = s.PasskeyByCredentialID(ctx, []byte("no-such-credential"))
	wantCode(t, "PasskeyByCredentialID of an unknown id", err, authd.ENotFound)

	if err := s.DeletePasskey(ctx, p.ID); err != nil {
		t.Fatalf("DeletePasskey: %v", err)
	}
	wantCode(t, "DeletePasskey again", s.DeletePasskey(ctx, p.ID), authd.ENotFound)
	wantCode(t, "UpdatePasskey of a deleted passkey", s.UpdatePasskey(ctx, p), authd.ENotFound)
	if n, err := s.DeleteUserPasskeys(ctx, u.ID); err != nil || n != 1 {
		t.Errorf("DeleteUserPasskeys = %d, %v; want 1", n, err)
	}
	if got, _ := s.Passkeys(ctx, u.ID); len(got) != 0 {
		t.Errorf("Passkeys after DeleteUserPasskeys = %d, want 0", len(got))
	}
}

func testWebAuthnChallenges(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "quin@example.org")
	login := &authd.MFAChallenge{ID: authd.NewID(), Token: "login-digest", UserID: u.ID, CreatedAt: Epoch,
		ExpiresAt: Epoch.Add(authd.MFAChallengeTTL)}
	if err := s.CreateMFAChallenge(ctx, login); err != nil {
		t.Fatal(err)
	}
	bound := &authd.WebAuthnChallenge{ID: authd.NewID(), Challenge: "digest-mfa", UserID: u.ID,
		Purpose: authd.PurposeMFA, MFAChallengeID: login.ID, SessionData: `{"challenge":"abc"}`, CreatedAt: Epoch,
		ExpiresAt: Epoch.Add(authd.WebAuthnChallengeTTL)}
	anonymous := &authd.WebAuthnChallenge{ID: authd.NewID(), Challenge: "digest-login", Purpose: authd.PurposeLogin,
		SessionData: `{"challenge":"def"}`, CreatedAt: Epoch, ExpiresAt: Epoch.Add(time.Minute)}
	for _, c := range []*authd.WebAuthnChallenge{bound, anonymous} {
		if err := s.CreateWebAuthnChallenge(ctx, c); err != nil {
			t.Fatalf("CreateWebAuthnChallenge(%s): %v", c.Purpose, err)
		}
	}
	dup := *anonymous
	dup.ID = authd.NewID()
	wantCode(t, "CreateWebAuthnChallenge with a taken digest", s.CreateWebAuthnChallenge(ctx, &dup), authd.EConflict)

	anonymous.UsedAt = Epoch.Add(time.Second)
	err := s.InTx(ctx, func(tx authd.Queries) error {
		if _, err := tx.WebAuthnChallenge(ctx, anonymous.Challenge); err != nil {
			return err
		}
		return tx.UseWebAuthnChallenge(ctx, anonymous)
	})
	if err != nil {
		t.Fatalf("UseWebAuthnChallenge: %v", err)
	}
	for _, want := range []*authd.WebAuthnChallenge{bound, anonymous} {
		got, err := s.WebAuthnChallenge(ctx, want.Challenge)
		if err != nil {
			t.Fatalf("WebAuthnChallenge: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("challenge round trip (-want +got):\n%s", diff)
		}
	}
	_, err = s.WebAuthnChallenge(ctx, "no-such-digest")
	wantCode(t, "WebAuthnChallenge of an unknown digest", err, authd.ENotFound)
	missing := *bound
	missing.ID = authd.NewID()
	wantCode(t, "UseWebAuthnChallenge of a missing challenge", s.UseWebAuthnChallenge(ctx, &missing), authd.ENotFound)

	// VoidWebAuthnChallenges spends the user's open ceremonies of one
	// purpose, and nothing else.
	other := mustCreateUser(t, s, "quin.other@example.org")
	register := func(digest string, user uuid.UUID, purpose authd.ChallengePurpose, used time.Time) *authd.WebAuthnChallenge {
		c := &authd.WebAuthnChallenge{ID: authd.NewID(), Challenge: digest, UserID: user, Purpose: purpose,
			SessionData: `{}`, CreatedAt: Epoch, ExpiresAt: Epoch.Add(authd.WebAuthnChallengeTTL), UsedAt: used}
		if err := s.CreateWebAuthnChallenge(ctx, c); err != nil {
			t.Fatalf("CreateWebAuthnChallenge(%s): %v", digest, err)
		}
		return c
	}
	open := register("digest-register-open", u.ID, authd.PurposeRegister, time.Time{})
	spent := register("digest-register-used", u.ID, authd.PurposeRegister, Epoch.Add(time.Second))
	stepUp := register("digest-step-up", u.ID, authd.PurposeStepUp, time.Time{})
	others := register("digest-register-other", other.ID, authd.PurposeRegister, time.Time{})
	voidAt := Epoch.Add(2 * time.Second)
	if err := s.InTx(ctx, func(tx authd.Queries) error {
		if _, err := tx.User(ctx, u.ID); err != nil {
			return err
		}
		return tx.VoidWebAuthnChallenges(ctx, u.ID, authd.PurposeRegister, voidAt)
	}); err != nil {
		t.Fatalf("VoidWebAuthnChallenges: %v", err)
	}
	open.UsedAt = voidAt
	for _, want := range []*authd.WebAuthnChallenge{open, spent, stepUp, others} {
		got, err := s.WebAuthnChallenge(ctx, want.Challenge)
		if err != nil {
			t.Fatalf("WebAuthnChallenge(%s): %v", want.Challenge, err)
		}
		if !got.UsedAt.Equal(want.UsedAt) {
			t.Errorf("%s after VoidWebAuthnChallenges: used at %v; want %v", want.Challenge, got.UsedAt, want.UsedAt)
		}
	}

	// Retention deletes the expired ones.
	res, err := s.Purge(ctx, authd.PurgeRequest{LogsBefore: Epoch, ExpiredBefore: Epoch.Add(2 * time.Minute), Batch: 10})
	if err != nil || res.WebAuthnChallenges != 1 {
		t.Errorf("Purge = %+v, %v; want the one expired challenge", res, err)
	}
	if _, err := s.WebAuthnChallenge(ctx, bound.Challenge); err != nil {
		t.Errorf("the unexpired challenge after Purge: %v", err)
	}
}

// testEraseDeletesPasskeys: an erased account keeps no passkey and no
// ceremony in flight.
func testEraseDeletesPasskeys(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "rey@example.org")
	if err := s.CreatePasskey(ctx, newPasskey(u, "erased-credential")); err != nil {
		t.Fatal(err)
	}
	c := &authd.WebAuthnChallenge{ID: authd.NewID(), Challenge: "erase-digest", UserID: u.ID,
		Purpose: authd.PurposeRegister, SessionData: "{}", CreatedAt: Epoch, ExpiresAt: Epoch.Add(time.Minute)}
	if err := s.CreateWebAuthnChallenge(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.InTx(ctx, func(tx authd.Queries) error { return tx.ErasePersonalData(ctx, u.ID) }); err != nil {
		t.Fatalf("ErasePersonalData: %v", err)
	}
	if got, _ := s.Passkeys(ctx, u.ID); len(got) != 0 {
		t.Errorf("passkeys after erasure: %d, want 0", len(got))
	}
	_, err := s.WebAuthnChallenge(ctx, c.Challenge)
	wantCode(t, "WebAuthnChallenge after erasure", err, authd.ENotFound)
}
