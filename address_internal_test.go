package authd

import (
	"strings"
	"testing"
)

// FuzzNewAddress: an address a new account may take is refused only as
// bad input, and one it takes is taken again as itself: an account's
// address never maps to another that newAddress would also accept.
func FuzzNewAddress(f *testing.F) {
	for _, s := range []string{"alice@example.org", "jürgen@bücher.example", "a@\u4f8b\ufe00.example", "a@\u1fb3.example",
		"a@i\u2764\ufe0f.ws", "a@\uab73\uab83.example", "a@XN--bcher-kva.example", "a@" + strings.Repeat("\u4f8b", 60) + ".org",
		"a@faß.de", "a@\u05d0\u05d1.\u0661", "dev@localhost"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := newAddress(s)
		if err != nil {
			if ErrorCode(err) != EInvalid {
				t.Fatalf("newAddress(%q): %v, want validation_failed", s, err)
			}
			return
		}
		if again, err := newAddress(got); err != nil || again != got {
			t.Fatalf("newAddress(%q) = %q, which it takes as %q, %v", s, got, again, err)
		}
		_, domain, _ := strings.Cut(got, "@")
		if wire, err := idnaLookup.ToASCII(domain); err != nil || len(wire) > 253 {
			t.Fatalf("newAddress(%q) = %q, whose domain has no DNS form: %q, %v", s, got, wire, err)
		}
	})
}

// TestMailbox: a sub-address reaches its mailbox; nothing else is joined
// (Gmail's dots neither: see mailbox).
func TestMailbox(t *testing.T) {
	for in, want := range map[string]string{
		"name@example.org":           "name@example.org",
		"name+news@example.org":      "name@example.org",
		"name+a+b@example.org":       "name@example.org",
		"+tag@example.org":           "+tag@example.org", // no local part left without it
		"first.last@example.org":     "first.last@example.org",
		"first.last+x@gmail.com":     "first.last@gmail.com",
		"f.irst.last@googlemail.com": "f.irst.last@googlemail.com",
	} {
		if got := mailbox(in); got != want {
			t.Errorf("mailbox(%q) = %q, want %q", in, got, want)
		}
	}
}
