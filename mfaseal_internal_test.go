package authd

import (
	"testing"

	"github.com/google/uuid"
)

// TestSealedSecretsBound: a TOTP secret sealed for one factor opens for
// that factor alone: not for its row given to another user, nor copied to
// another factor of the same user. And a secret sealed by an earlier
// release (the known answer below, from the format's first version)
// still opens, so that the format cannot change under stored rows.
func TestSealedSecretsBound(t *testing.T) {
	s := &Service{mfaKey: []byte("0123456789abcdef0123456789abcdef")}
	id := uuid.MustParse("0193f3c1-0000-7000-8000-000000000001")
	user := uuid.MustParse("0193f3c1-0000-7000-8000-0000000000aa")
	const secret = "JBSWY3DPEHPK3PXP"

	known := &Factor{ID: id, UserID: user, Secret: "CdIrwk3jHRlhBtNARK6D0Vpo+hA80t4xU/hP6Ny6wqUWh9ky+InzC5o4Vf0="}
	if got, err := s.openSecret(known); err != nil || got != secret {
		t.Errorf("the known sealed secret opens as %q, %v; want %q", got, err, secret)
	}

	sealed, err := s.sealSecret(&Factor{ID: id, UserID: user}, secret)
	if err != nil {
		t.Fatal(err)
	}
	if sealed == known.Secret {
		t.Error("two seals of one secret are alike: the nonce is not fresh")
	}
	for _, tt := range []struct {
		name  string
		f     Factor
		opens bool
	}{
		{"its own factor", Factor{ID: id, UserID: user}, true},
		{"its row given to another user", Factor{ID: id, UserID: uuid.MustParse("0193f3c1-0000-7000-8000-0000000000bb")}, false},
		{"copied to another factor of its user", Factor{ID: uuid.MustParse("0193f3c1-0000-7000-8000-000000000002"), UserID: user}, false},
	} {
		tt.f.Secret = sealed
		got, err := s.openSecret(&tt.f)
		if tt.opens && (err != nil || got != secret) {
			t.Errorf("%s: opens as %q, %v; want %q", tt.name, got, err, secret)
		}
		if !tt.opens && err == nil {
			t.Errorf("%s: opens as %q; want refused", tt.name, got)
		}
	}

	other := &Service{mfaKey: []byte("fedcba9876543210fedcba9876543210")}
	if got, err := other.openSecret(known); err == nil {
		t.Errorf("opens under another MFA key as %q", got)
	}
}
