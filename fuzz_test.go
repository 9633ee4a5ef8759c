package authd_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/authd/authd"
)

func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"alice@example.org", "Al <al@x.org>", "a@b", "@", "a@@b", "\"q\"@x.org", "a@x.org\r\n"} {
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
		if len(got) > authd.MaxEmailLength || got != strings.ToLower(got) || !utf8.ValidString(got) ||
			strings.ContainsAny(got, " \r\n<>") || strings.Count(got, "@") < 1 {
			t.Fatalf("NormalizeEmail(%q) = %q: not a stored form", s, got)
		}
		if again, err := authd.NormalizeEmail(got); err != nil || again != got {
			t.Fatalf("NormalizeEmail is not idempotent on %q: %q, %v", got, again, err)
		}
	})
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
