package authd_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/authd/authd"
	"github.com/google/uuid"
	"golang.org/x/text/unicode/norm"
)

// TestNormalizeEmail: one address, one stored form — whatever its case and
// however its letters are composed (NFC or NFD) — and too long is said so.
func TestNormalizeEmail(t *testing.T) {
	for in, want := range map[string]string{
		"Alice@Example.ORG":            "alice@example.org",
		"\u00fcser@ex\u00e4mple.org":   "\u00fcser@ex\u00e4mple.org", // ü, ä precomposed (NFC)
		"u\u0308ser@exa\u0308mple.org": "\u00fcser@ex\u00e4mple.org", // u, a + combining diaeresis (NFD)
		"U\u0308SER@EXA\u0308MPLE.ORG": "\u00fcser@ex\u00e4mple.org",
		"\u212a@example.org":           "k@example.org", // the Kelvin sign
	} {
		if got, err := authd.NormalizeEmail(in); err != nil || got != want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, long := range []string{strings.Repeat("a", authd.MaxEmailLength) + "@example.org",
		strings.Repeat("u\u0308", 20000) + "@example.org"} {
		var e *authd.Error
		if _, err := authd.NormalizeEmail(long); !errors.As(err, &e) || len(e.Fields) != 1 || !strings.Contains(e.Fields[0].Message, "at most 254") {
			t.Errorf("NormalizeEmail(a %d-byte address) = %v, want a field error saying at most 254", len(long), err)
		}
	}
	// The reserved .invalid domain, where erasure's tombstones live, is refused.
	for _, reserved := range []string{authd.Tombstone(uuid.New()), "a@mail.INVALID", "a@invalid"} {
		if _, err := authd.NormalizeEmail(reserved); authd.ErrorCode(err) != authd.EInvalid {
			t.Errorf("NormalizeEmail(%q) = %v, want EInvalid", reserved, err)
		}
	}
	if _, err := authd.NormalizeEmail("a@invalid.example.org"); err != nil {
		t.Errorf("NormalizeEmail(a@invalid.example.org): %v", err)
	}
	// A decomposed address within the bound once composed is taken.
	if got, err := authd.NormalizeEmail(strings.Repeat("u\u0308", 80) + "@example.org"); err != nil || len(got) != 2*80+12 {
		t.Errorf("NormalizeEmail(80 decomposed ü) = %q, %v; want their 172-byte composed form", got, err)
	}
}

func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"alice@example.org", "Al <al@x.org>", "a@b", "@", "a@@b", "\"q\"@x.org", "a@x.org\r\n",
		"u\u0308ser@exa\u0308mple.org", "\u212a@example.org", "\u0130@example.org"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := authd.NormalizeEmail(s)
		if err != nil {
			if authd.ErrorCode(err) != authd.EInvalid {
				t.Fatalf("NormalizeEmail(%q): %v, want validation_failed", s, err)
			}
			return
		}
		if len(got) > authd.MaxEmailLength || !norm.NFC.IsNormalString(got) || !utf8.ValidString(got) ||
			strings.ContainsAny(got, " \r\n<>") || strings.Count(got, "@") < 1 {
			t.Fatalf("NormalizeEmail(%q) = %q: not a stored form", s, got)
		}
		if again, err := authd.NormalizeEmail(got); err != nil || again != got {
			t.Fatalf("NormalizeEmail is not idempotent on %q: %q, %v", got, again, err)
		}
	})
}

// TestCursorYears: a forged cursor whose time falls outside the years 1 to
// 9999 in UTC (which the stores would compare differently) is refused.
func TestCursorYears(t *testing.T) {
	id := `"id":"0197c0de-0000-7000-8000-000000000000"`
	for _, tm := range []string{"9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"} {
		s := base64.RawURLEncoding.EncodeToString([]byte(`{"t":"` + tm + `",` + id + `}`))
		if _, err := authd.ParseCursor(s); authd.ErrorCode(err) != authd.EInvalid {
			t.Errorf("ParseCursor(a cursor at %s) = %v, want EInvalid", tm, err)
		}
	}
	if _, err := authd.ParseCursor(base64.RawURLEncoding.EncodeToString([]byte(`{"t":"9999-12-31T23:59:59Z",` + id + `}`))); err != nil {
		t.Errorf("ParseCursor(the last second of 9999): %v", err)
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add("eyJ0IjoiMjAyNi0xMS0yN1QwOTowMDowMFoiLCJpZCI6IjAxOTdjMGRlLTAwMDAtNzAwMC04MDAwLTAwMDAwMDAwMDAwMCJ9")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := authd.ParseCursor(s)
		if err != nil {
			return
		}
		if back, err := authd.ParseCursor(c.String()); err != nil || !back.Time.Equal(c.Time) || back.ID != c.ID {
			t.Fatalf("cursor %q does not round-trip", s)
		}
	})
}
