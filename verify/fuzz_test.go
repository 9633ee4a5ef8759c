package verify_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/authd/authd/verify"
)

// FuzzVerify: no input makes Verify panic or accept a token it was not
// given by the key's owner.
func FuzzVerify(f *testing.F) {
	a := newFakeAuthd(f)
	v := a.verifier(f)
	good := a.sign(f, "k1", a.claims(), nil)
	for _, s := range []string{good, "", ".", "..", "a.b.c", good + ".", "eyJhbGciOiJub25lIn0.e30.",
		"eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0.bnVsbA.AAAA",
		// An ES256 signature segment of the length, short once the
		// decoder skips its line break: 63 bytes, s with its top bit set.
		"eyJhbGciOiJFUzI1NiJ9.e30." + strings.Repeat("_", 84) + "\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(context.Background(), tok)
		if err == nil && tok != good {
			t.Fatalf("accepted %q: %+v", tok, c)
		}
		if err != nil && errors.Is(err, verify.ErrClosed) {
			t.Fatal("closed")
		}
	})
}
