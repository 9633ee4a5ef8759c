package token

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

var now = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func claimsAt(t time.Time) authd.AccessClaims {
	return authd.AccessClaims{JTI: uuid.NewString(), UserID: uuid.New(), SessionID: uuid.New(),
		IssuedAt: t, ExpiresAt: t.Add(15 * time.Minute)}
}

func TestIssueVerifyEveryAlgorithm(t *testing.T) {
	for _, alg := range Algorithms {
		t.Run(alg, func(t *testing.T) {
			kr, err := OpenKeyring(t.TempDir(), alg, now)
			if err != nil {
				t.Fatal(err)
			}
			iss := NewIssuer(kr, "https://auth.example.org", "authd")
			c := claimsAt(now)
			tok, err := iss.Issue(c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := iss.Verify(tok, now.Add(time.Minute))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.JTI != c.JTI || got.UserID != c.UserID || got.SessionID != c.SessionID || !got.ExpiresAt.Equal(c.ExpiresAt) {
				t.Errorf("claims %+v, want %+v", got, c)
			}
			parsed, _, _ := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
			if parsed.Header["alg"] != alg || parsed.Header["typ"] != "at+jwt" || parsed.Header["kid"] != kr.Signing(now).ID {
				t.Errorf("header %v", parsed.Header)
			}
			for _, claim := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid"} {
				if _, ok := parsed.Claims.(jwt.MapClaims)[claim]; !ok {
					t.Errorf("claim %s missing", claim)
				}
			}
			var set struct{ Keys []JWK }
			body, err := kr.JWKS(now, 15*time.Minute)
			if err != nil || json.Unmarshal(body, &set) != nil || len(set.Keys) != 1 || set.Keys[0].Kid != kr.Signing(now).ID || set.Keys[0].Alg != alg {
				t.Errorf("JWKS %s, %v", body, err)
			}
		})
	}
}

// TestVerifyRejects covers RFC 8725's attacks and every claim check.
func TestVerifyRejects(t *testing.T) {
	dir := t.TempDir()
	kr, err := OpenKeyring(dir, "EdDSA", now)
	if err != nil {
		t.Fatal(err)
	}
	iss := NewIssuer(kr, "https://auth.example.org", "authd")
	key := kr.Signing(now)
	pub := key.Public().(ed25519.PublicKey)
	pubDER, _ := x509.MarshalPKIXPublicKey(pub)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	sign := func(method jwt.SigningMethod, signKey any, header map[string]any, mutate func(jwt.MapClaims)) string {
		c := jwt.MapClaims{"iss": "https://auth.example.org", "sub": uuid.NewString(), "aud": []string{"authd"},
			"exp": now.Add(15 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(), "jti": "j", "sid": uuid.NewString()}
		if mutate != nil {
			mutate(c)
		}
		tok := jwt.NewWithClaims(method, c)
		tok.Header["kid"], tok.Header["typ"] = key.ID, "at+jwt"
		for k, v := range header {
			tok.Header[k] = v
		}
		s, err := tok.SignedString(signKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	other, _ := OpenKeyring(t.TempDir(), "EdDSA", now)
	es, _ := OpenKeyring(t.TempDir(), "ES256", now)

	tests := map[string]string{
		"alg none":                  sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, nil),
		"HS256 with the public key": sign(jwt.SigningMethodHS256, pubPEM, nil, nil),
		"HS256 with raw public key": sign(jwt.SigningMethodHS256, []byte(pub), nil, nil),
		"unknown kid":               sign(jwt.SigningMethodEdDSA, key.Private, map[string]any{"kid": "nope"}, nil),
		"another key, same kid":     sign(jwt.SigningMethodEdDSA, other.Signing(now).Private, nil, nil),
		"ES256 key":                 sign(jwt.SigningMethodES256, es.Signing(now).Private, nil, nil),
		"expired":                   sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() }),
		"expiring now":              sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { c["exp"] = now.Unix() }),
		"no exp":                    sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { delete(c, "exp") }),
		"not yet valid":             sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }),
		"issued in the future":      sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() }),
		"wrong audience":            sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { c["aud"] = "other" }),
		"wrong issuer":              sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }),
		"not an access token":       sign(jwt.SigningMethodEdDSA, key.Private, map[string]any{"typ": "JWT"}, nil),
		"bad subject":               sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { c["sub"] = "admin" }),
		"no session":                sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { delete(c, "sid") }),
		"no jti":                    sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { delete(c, "jti") }),
		"empty jti":                 sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { c["jti"] = "" }),
		"no nbf":                    sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { delete(c, "nbf") }),
		"no iat":                    sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) { delete(c, "iat") }),
		"signature respelled":       respell(sign(jwt.SigningMethodEdDSA, key.Private, nil, nil)),
		"line break in it":          breakLine(sign(jwt.SigningMethodEdDSA, key.Private, nil, nil)),
		"garbage":                   "not.a.jwt",
		"empty":                     "",
		"huge":                      strings.Repeat("a", 10000),
	}
	for name, tok := range tests {
		if _, err := iss.Verify(tok, now); authd.ErrorCode(err) != authd.EInvalidToken {
			t.Errorf("%s: Verify = %v, want invalid_token", name, err)
		}
	}
	// The controls: a good token passes, and so does one from an instance
	// whose clock is ahead of this one's by less than Leeway.
	if _, err := iss.Verify(sign(jwt.SigningMethodEdDSA, key.Private, nil, nil), now); err != nil {
		t.Errorf("a well-formed token fails: %v", err)
	}
	ahead := sign(jwt.SigningMethodEdDSA, key.Private, nil, func(c jwt.MapClaims) {
		c["iat"], c["nbf"] = now.Add(Leeway).Unix(), now.Add(Leeway).Unix()
	})
	if _, err := iss.Verify(ahead, now); err != nil {
		t.Errorf("a token issued Leeway ahead fails: %v", err)
	}
}

// respell changes a token's last character in the bits its base64 leaves
// unused: the same signature bytes to a lenient decoder, another string.
func respell(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[last^1])
}

// breakLine puts a line break into a token's signature, which a lenient
// base64 decoder skips.
func breakLine(tok string) string { return tok[:len(tok)-5] + "\r\n" + tok[len(tok)-5:] }

// signedWith signs a well-formed access token's claims for iss with key
// under method, whatever the key's own algorithm, with extra claims and
// header fields added.
func signedWith(t *testing.T, method jwt.SigningMethod, key *Key, header, extra map[string]any) string {
	t.Helper()
	c := jwt.MapClaims{"iss": "https://auth.example.org", "sub": uuid.NewString(), "aud": []string{"authd"},
		"exp": now.Add(15 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(), "jti": "j", "sid": uuid.NewString()}
	for k, v := range extra {
		c[k] = v
	}
	tok := jwt.NewWithClaims(method, c)
	tok.Header["kid"], tok.Header["typ"] = key.ID, "at+jwt"
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key.Private)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestVerifyRefusesAnotherAlgorithmOfTheKey: a token signed with the
// keyring's own RSA key, under its kid, but under another algorithm that
// key can sign with (RSA-PSS, or RS256's longer hashes) is refused: only
// the configured algorithm verifies, not whatever the token's header names.
func TestVerifyRefusesAnotherAlgorithmOfTheKey(t *testing.T) {
	kr, err := OpenKeyring(t.TempDir(), "RS256", now)
	if err != nil {
		t.Fatal(err)
	}
	iss := NewIssuer(kr, "https://auth.example.org", "authd")
	key := kr.Signing(now)
	for _, method := range []jwt.SigningMethod{jwt.SigningMethodPS256, jwt.SigningMethodRS384, jwt.SigningMethodRS512} {
		if _, err := iss.Verify(signedWith(t, method, key, nil, nil), now); authd.ErrorCode(err) != authd.EInvalidToken {
			t.Errorf("%s with the RS256 key: Verify = %v, want invalid_token", method.Alg(), err)
		}
	}
	// The control: the same token under RS256 verifies.
	if _, err := iss.Verify(signedWith(t, jwt.SigningMethodRS256, key, nil, nil), now); err != nil {
		t.Errorf("an RS256 token of the key fails: %v", err)
	}
}

// TestVerifySizeBound: a token longer than 8192 bytes is refused before it
// is parsed, with the size check's own error (a parse failure's wraps its
// cause), though it is well formed and signed with the signing key; one of
// exactly 8192 bytes verifies.
func TestVerifySizeBound(t *testing.T) {
	kr, err := OpenKeyring(t.TempDir(), "EdDSA", now)
	if err != nil {
		t.Fatal(err)
	}
	iss := NewIssuer(kr, "https://auth.example.org", "authd")
	key := kr.Signing(now)
	// sized is a token of exactly n bytes: a padding claim sets its length
	// to within a byte or two of it, and a padding header field of 0 to 3
	// bytes reaches every length base64 allows.
	sized := func(n int) string {
		base := len(signedWith(t, jwt.SigningMethodEdDSA, key, nil, map[string]any{"pad": ""}))
		from := max(0, (n-base)*3/4-24)
		for pad := from; pad < from+32; pad++ {
			for h := range 4 {
				tok := signedWith(t, jwt.SigningMethodEdDSA, key, map[string]any{"pad": strings.Repeat("h", h)},
					map[string]any{"pad": strings.Repeat("p", pad)})
				if len(tok) == n {
					return tok
				}
			}
		}
		t.Fatalf("no token of %d bytes", n)
		return ""
	}
	if _, err := iss.Verify(sized(8192), now); err != nil {
		t.Errorf("a token of 8192 bytes fails: %v", err)
	}
	if _, err := iss.Verify(sized(8193), now); err != errInvalid {
		t.Errorf("a token of 8193 bytes: Verify = %v, want the size check's %v", err, errInvalid)
	}
}

// TestReloadIfChanged: a keyring rereads its directory when the
// directory's modification time moved since the last reread (a key file
// added, replaced or removed), and only then: a key file slipped in with
// the time set back stays unseen, so an unchanged directory costs a stat.
func TestReloadIfChanged(t *testing.T) {
	dir := t.TempDir()
	kr, err := OpenKeyring(dir, "EdDSA", now)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := Rotate(dir, "EdDSA", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(dir, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := kr.ReloadIfChanged(); err != nil {
		t.Fatal(err)
	}
	if _, ok := kr.known(second.ID); ok {
		t.Error("the keyring reread a directory whose modification time had not moved")
	}
	moved := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(dir, moved, moved); err != nil {
		t.Fatal(err)
	}
	if err := kr.ReloadIfChanged(); err != nil {
		t.Fatal(err)
	}
	if _, ok := kr.known(second.ID); !ok {
		t.Error("the keyring did not reread a directory that changed")
	}

	// A directory that cannot be read (a stray, broken key file) keeps the
	// keys read before, and is read again once it changes, not at every
	// call (JWKS requests would each read and parse every file).
	if err := os.WriteFile(filepath.Join(dir, "broken.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := kr.ReloadIfChanged(); err == nil {
		t.Error("a broken key file read without an error")
	}
	if err := kr.ReloadIfChanged(); err != nil {
		t.Errorf("the unchanged directory with its broken file read again: %v", err)
	}
	if kr.Signing(now) == nil {
		t.Error("the keys read before the broken file are gone")
	}
}

// TestRotateRefusesUnreadableKeys: a rotation into a directory holding a
// key it cannot read fails before it adds a key, so that retries do not
// pile up new keys.
func TestRotateRefusesUnreadableKeys(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if _, err := Generate(dir, "EdDSA", now); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Rotate(dir, "EdDSA", now.Add(time.Hour)); err == nil {
		t.Fatal("Rotate with an unreadable key: no error")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("the failed rotation left %d files; want the two it found", len(entries))
	}
}

// TestRotate: a rotated-in key is published at once, signs after
// SigningDelay, and the old key stays in JWKS until its tokens expired; a
// rotation deletes it only once tokens of the longest lifetime allowed have.
func TestRotate(t *testing.T) {
	dir := t.TempDir()
	ttl := 15 * time.Minute
	kr, err := OpenKeyring(dir, "EdDSA", now)
	if err != nil {
		t.Fatal(err)
	}
	first := kr.Signing(now)
	iss := NewIssuer(kr, "i", "a")

	rotated := now.Add(time.Hour)
	second, deleted, err := Rotate(dir, "EdDSA", rotated)
	if err != nil || len(deleted) != 0 {
		t.Fatalf("Rotate: %v, deleted %v", err, deleted)
	}
	if err := kr.Reload(); err != nil {
		t.Fatal(err)
	}
	starts := rotated.Add(SigningDelay)
	for _, c := range []struct {
		at   time.Time
		want *Key
	}{{rotated, first}, {starts.Add(-time.Nanosecond), first}, {starts, second}, {starts.Add(time.Hour), second}} {
		if got := kr.Signing(c.at); got.ID != c.want.ID {
			t.Errorf("signing key %v after rotation is %s, want %s", c.at.Sub(rotated), got.ID, c.want.ID)
		}
	}
	lastOld, _ := iss.Issue(claimsAt(starts.Add(-time.Second)))
	if kid := header(t, lastOld)["kid"]; kid != first.ID {
		t.Errorf("token issued just before the new key signs has kid %v, want the old %s", kid, first.ID)
	}
	if _, err := iss.Verify(lastOld, starts.Add(ttl-2*time.Second)); err != nil {
		t.Errorf("a token of the retiring key no longer verifies: %v", err)
	}
	for at, want := range map[time.Duration][]string{
		0:                            {second.ID, first.ID},
		SigningDelay + ttl:           {second.ID, first.ID},
		SigningDelay + ttl + Leeway:  {second.ID},
		SigningDelay + 2*ttl + 99999: {second.ID},
	} {
		if got := publishedIDs(kr, rotated.Add(at), ttl); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("JWKS %v after rotation has %v, want %v", at, got, want)
		}
	}
	// Out of this server's JWKS, the old key still stays on disk: whoever
	// rotates may run with a shorter AUTHD_ACCESS_TOKEN_TTL than the
	// servers, so only a key whose tokens expired under the longest
	// lifetime allowed is deleted.
	for _, at := range []time.Time{starts.Add(ttl), starts.Add(ttl + Leeway), starts.Add(MaxAccessTokenTTL + Leeway - time.Nanosecond)} {
		if _, deleted, err = Rotate(dir, "EdDSA", at); err != nil || len(deleted) != 0 {
			t.Errorf("a rotation %v after the new key signed, while tokens of the longest lifetime may be valid, deleted %v (%v)", at.Sub(starts), deleted, err)
		}
	}
	_, deleted, err = Rotate(dir, "EdDSA", starts.Add(MaxAccessTokenTTL+Leeway))
	if err != nil || len(deleted) != 1 || deleted[0] != first.ID {
		t.Errorf("rotation once the old key's tokens expired under any lifetime deleted %v (%v), want the first key", deleted, err)
	}
	if _, err := os.Stat(filepath.Join(dir, first.ID+".pem")); !os.IsNotExist(err) {
		t.Error("the retired key file is still there")
	}
}

// TestRotationNeverOutrunsCachedJWKS: a resource server that fetched JWKS
// from any instance at any moment around a rotation, and caches it for
// JWKSMaxAge, knows the kid of every token any instance issues meanwhile,
// though instances reread the directory up to 30 s after the new key was
// written, and their clocks (and that of the machine that rotated) differ
// by up to 30 s.
func TestRotationNeverOutrunsCachedJWKS(t *testing.T) {
	// Not ReloadInterval or Leeway: the test is to fail if SigningDelay
	// leaves out either margin, or if either shrinks.
	const reloadLag, skew = 30 * time.Second, 30 * time.Second
	ttl := 15 * time.Minute
	written := now.Add(time.Hour) // true time the rotation writes the new key

	type instance struct{ clock, lag time.Duration }
	var instances []instance
	for _, clock := range []time.Duration{0, skew} {
		for _, lag := range []time.Duration{0, reloadLag / 2, reloadLag} {
			instances = append(instances, instance{clock, lag})
		}
	}
	start, step := written.Add(-time.Minute), time.Second
	steps := int((SigningDelay + 3*time.Minute) / step)
	// A copy fetched at step j serves steps j to j+cacheSteps-1: up to an
	// age of max-age itself, as a cache rounding ages down would.
	cacheSteps := int(JWKSMaxAge/step) + 1

	for _, writerClock := range []time.Duration{0, skew} {
		dir := t.TempDir()
		before, err := OpenKeyring(dir, "EdDSA", now)
		if err != nil {
			t.Fatal(err)
		}
		newKey, _, err := Rotate(dir, "EdDSA", written.Add(writerClock))
		if err != nil {
			t.Fatal(err)
		}
		after, err := OpenKeyring(dir, "EdDSA", now)
		if err != nil {
			t.Fatal(err)
		}
		// view is what an instance knows at true time at: the keys as of its
		// last reread, and its clock's reading.
		view := func(in instance, at time.Time) (*Keyring, time.Time) {
			if at.Before(written.Add(in.lag)) {
				return before, at.Add(in.clock)
			}
			return after, at.Add(in.clock)
		}
		for _, publisher := range instances {
			served := make([][]string, steps) // the kids in its JWKS at each step
			for i := range steps {
				kr, clock := view(publisher, start.Add(time.Duration(i)*step))
				served[i] = publishedIDs(kr, clock, ttl)
			}
			for _, signer := range instances {
				signedNew := false
				for i := range steps {
					at := start.Add(time.Duration(i) * step)
					kr, clock := view(signer, at)
					kid := kr.Signing(clock).ID
					signedNew = signedNew || kid == newKey.ID
					for j := max(0, i-cacheSteps+1); j <= i; j++ {
						if !slices.Contains(served[j], kid) {
							t.Fatalf("rotation by a clock %v ahead: a signer %v ahead, rereading %v late, signs with %s %v after the key was written, "+
								"but JWKS fetched %v before from an instance %v ahead, rereading %v late, lacks it",
								writerClock, signer.clock, signer.lag, kid, at.Sub(written), time.Duration(i-j)*step, publisher.clock, publisher.lag)
						}
					}
				}
				if !signedNew {
					t.Fatalf("the new key never signed on %+v", signer)
				}
			}
		}
	}
}

// TestKeyStates: the state of each key and when it changes, as `authd keys
// list` shows them. The first key of an empty directory signs at once.
func TestKeyStates(t *testing.T) {
	dir := t.TempDir()
	ttl := 15 * time.Minute
	Generate(dir, "EdDSA", now)
	keys, _ := LoadAlg(dir, "EdDSA")
	if s := States(keys, now, ttl); len(s) != 1 || s[0].State != Signing || !s[0].Until.IsZero() {
		t.Errorf("first key: %+v, want signing at once, with no end", s)
	}
	b, _ := Generate(dir, "EdDSA", now.Add(time.Hour))
	c, _ := Generate(dir, "EdDSA", now.Add(time.Hour+time.Minute))
	keys, _ = LoadAlg(dir, "EdDSA")
	bSigns, cSigns := b.Created.Add(SigningDelay), c.Created.Add(SigningDelay)
	type want struct {
		state State
		until time.Time
	}
	for at, wants := range map[time.Time][]want{ // newest first: c, b, a
		now.Add(time.Hour + 2*time.Minute): {{Published, cSigns}, {Published, bSigns}, {Signing, bSigns}},
		bSigns:                             {{Published, cSigns}, {Signing, cSigns}, {Retiring, bSigns.Add(Leeway + ttl)}},
		cSigns:                             {{Signing, time.Time{}}, {Retiring, cSigns.Add(Leeway + ttl)}, {Retiring, bSigns.Add(Leeway + ttl)}},
		bSigns.Add(Leeway + ttl):           {{Signing, time.Time{}}, {Retiring, cSigns.Add(Leeway + ttl)}, {Retired, time.Time{}}},
	} {
		got := States(keys, at, ttl)
		for i, w := range wants {
			if got[i].Key.ID != keys[i].ID || got[i].State != w.state || !got[i].Until.Equal(w.until) {
				t.Errorf("at %v key %d: %s until %v, want %s until %v", at, i, got[i].State, got[i].Until, w.state, w.until)
			}
		}
	}
}

func header(t *testing.T, tok string) map[string]any {
	t.Helper()
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Header
}

func publishedIDs(kr *Keyring, at time.Time, ttl time.Duration) []string {
	var ids []string
	for _, k := range kr.Published(at, ttl) {
		ids = append(ids, k.ID)
	}
	return ids
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	k, err := Generate(dir, "RS256", now)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, k.ID+".pem"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v (%v), want 0600", info.Mode(), err)
	}
	if _, err := exec.LookPath("openssl"); err == nil {
		if out, err := exec.Command("openssl", "pkey", "-noout", "-in", filepath.Join(dir, k.ID+".pem")).CombinedOutput(); err != nil {
			t.Errorf("openssl cannot read the key file: %v\n%s", err, out)
		}
	}
	os.WriteFile(filepath.Join(dir, "broken.pem"), []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), 0o600)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "broken.pem") {
		t.Errorf("Load with a broken key: %v, want an error naming the file", err)
	}
	if _, err := OpenKeyring(t.TempDir(), "HS256", now); err == nil {
		t.Error("OpenKeyring accepted HS256")
	}
}

func BenchmarkSign(b *testing.B) {
	for _, alg := range Algorithms {
		b.Run(alg, func(b *testing.B) {
			kr, _ := OpenKeyring(b.TempDir(), alg, now)
			iss := NewIssuer(kr, "i", "a")
			c := claimsAt(now)
			for b.Loop() {
				if _, err := iss.Issue(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range Algorithms {
		b.Run(alg, func(b *testing.B) {
			kr, _ := OpenKeyring(b.TempDir(), alg, now)
			iss := NewIssuer(kr, "i", "a")
			tok, _ := iss.Issue(claimsAt(now))
			for b.Loop() {
				if _, err := iss.Verify(tok, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	kr, _ := OpenKeyring(dir, "EdDSA", now)
	iss := NewIssuer(kr, "i", "a")
	good, _ := iss.Issue(claimsAt(now))
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := iss.Verify(tok, now)
		if err == nil && tok != good {
			t.Fatalf("a mutated token verified: %q -> %+v", tok, c)
		}
		if err != nil && authd.ErrorCode(err) != authd.EInvalidToken {
			t.Fatalf("Verify error %v, want invalid_token", err)
		}
	})
}

// TestVerifiedCacheKeepsTimeChecks: a token verified once is remembered,
// but expiry and not-before still apply on every call.
func TestVerifiedCacheKeepsTimeChecks(t *testing.T) {
	kr, _ := OpenKeyring(t.TempDir(), "EdDSA", now)
	iss := NewIssuer(kr, "i", "a")
	c := claimsAt(now)
	tok, _ := iss.Issue(c)
	if _, err := iss.Verify(tok, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if len(iss.verified) != 1 {
		t.Fatalf("cache holds %d tokens, want 1", len(iss.verified))
	}
	for name, at := range map[string]time.Time{
		"at expiry": c.ExpiresAt, "after expiry": c.ExpiresAt.Add(time.Hour), "issued over Leeway ahead": now.Add(-Leeway - time.Second),
	} {
		if _, err := iss.Verify(tok, at); authd.ErrorCode(err) != authd.EInvalidToken {
			t.Errorf("cached token %s: %v, want invalid_token", name, err)
		}
	}
	got, err := iss.Verify(tok, now.Add(2*time.Minute))
	if err != nil || got.JTI != c.JTI {
		t.Fatalf("cached verify: %+v, %v", got, err)
	}
	got.JTI = "mutated" // callers get a copy
	if again, _ := iss.Verify(tok, now.Add(2*time.Minute)); again.JTI != c.JTI {
		t.Error("a caller changed the cached claims")
	}
	for range maxVerified + 10 {
		tok, _ := iss.Issue(claimsAt(now))
		iss.Verify(tok, now)
	}
	if n := len(iss.verified); n > maxVerified {
		t.Errorf("cache grew to %d, past its bound %d", n, maxVerified)
	}
}

// TestKeyOfAnotherInstance: a token signed with a key another instance has
// just added to the shared directory verifies at once.
func TestKeyOfAnotherInstance(t *testing.T) {
	dir := t.TempDir()
	a, _ := OpenKeyring(dir, "EdDSA", now)
	b, _ := OpenKeyring(dir, "EdDSA", now)
	newKey, _, err := Rotate(dir, "EdDSA", now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(); err != nil { // instance B picked up the new key
		t.Fatal(err)
	}
	at := newKey.Created.Add(SigningDelay)
	tok, err := NewIssuer(b, "i", "a").Issue(claimsAt(at))
	if err != nil {
		t.Fatal(err)
	}
	if kid := header(t, tok)["kid"]; kid != newKey.ID {
		t.Fatalf("B signed with %v, want the new key %s", kid, newKey.ID)
	}
	if _, err := NewIssuer(a, "i", "a").Verify(tok, at); err != nil {
		t.Errorf("instance A rejects B's new key: %v", err)
	}
	if _, ok := a.Key("not-a-kid"); ok {
		t.Error("a malformed kid was found")
	}
}

// TestUnknownKidRereadsOncePerSecond: tokens naming kids the keyring does
// not know, shaped as real ones (forged, or of a key another instance has
// just made), reread the directory at most once a second, so that forged
// kids cannot turn requests into disk reads; once a second has passed, the
// next one rereads it and finds the new key.
func TestUnknownKidRereadsOncePerSecond(t *testing.T) {
	dir := t.TempDir()
	kr, err := OpenKeyring(dir, "EdDSA", now)
	if err != nil {
		t.Fatal(err)
	}
	forged := func(i int) string { return fmt.Sprintf("20261127T090000.%09dZ-%08x", i, i) }
	const second = "20261127T090002.000000000Z-0000beef" // a key another instance makes just after the reread
	another := keyPEM(t)
	start := time.Now()
	if _, ok := kr.Key(forged(0)); ok {
		t.Fatal("a forged kid was found")
	}
	if err := os.WriteFile(filepath.Join(dir, second+".pem"), another, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 100; i++ {
		if _, ok := kr.Key(forged(i)); ok {
			t.Fatalf("forged kid %d was found", i)
		}
	}
	_, found := kr.Key(second)
	// The keyring reads the real clock: lookups that took a second (a
	// stalled machine) were due a reread, and prove nothing.
	if time.Since(start) >= time.Second {
		t.Skip("the lookups took over a second")
	}
	if found {
		t.Error("unknown kids within a second of a reread reread the directory again")
	}

	kr.mu.Lock()
	kr.lastMiss = time.Now().Add(-time.Second) // the last reread a second ago
	kr.mu.Unlock()
	if _, ok := kr.Key(second); !ok {
		t.Error("an unknown kid a second after the last reread did not reread the directory")
	}
}

// TestKeyOrderWithinOneSecond: of two keys made within one second, the one
// made later is the newer, every time; so is one made at the same instant
// or after the clock stepped back.
func TestKeyOrderWithinOneSecond(t *testing.T) {
	for i := range 20 {
		dir := t.TempDir()
		if _, err := Generate(dir, "EdDSA", now.Add(100*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		later, err := Generate(dir, "EdDSA", now.Add(900*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		keys, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if keys[0].ID != later.ID {
			t.Fatalf("try %d: newest key is %s, want the one made later, %s", i, keys[0].ID, later.ID)
		}
	}
	dir := t.TempDir()
	var made []string
	for _, at := range []time.Time{now, now, now.Add(-time.Hour)} {
		k, err := Generate(dir, "EdDSA", at)
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, k.ID)
	}
	keys, _ := Load(dir)
	if len(keys) != 3 || keys[0].ID != made[2] || keys[1].ID != made[1] || keys[2].ID != made[0] {
		t.Errorf("keys newest first: %v, want the reverse of the order made, %v", keyIDs(keys), made)
	}
}

// TestLegacyKeyFiles: keys whose kid has only seconds (made by earlier
// versions) still load and verify, ordered by that second.
func TestLegacyKeyFiles(t *testing.T) {
	pemBytes := keyPEM(t)
	dir := t.TempDir()
	current, err := Generate(dir, "EdDSA", now.Add(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"20261127T085959Z-0011aabb.pem", "20261127T090001Z-0011aacc.pem"} {
		if err := os.WriteFile(filepath.Join(dir, name), pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"20261127T090001Z-0011aacc", current.ID, "20261127T085959Z-0011aabb"}
	if got := keyIDs(keys); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("keys newest first: %v, want %v", got, want)
	}
	if !keys[0].Created.Equal(now.Add(time.Second)) {
		t.Errorf("created %v, want the kid's second", keys[0].Created)
	}
	kr, err := OpenKeyring(dir, "EdDSA", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := kr.Key("20261127T085959Z-0011aabb"); !ok {
		t.Error("a key with a legacy kid is unknown to the keyring")
	}
}

// keyPEM is a new Ed25519 key as a PKCS#8 PEM file's content.
func keyPEM(t *testing.T) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestHandNamedKeys: a key added by hand under a name that is not a kid
// never signs while a kid-named key exists, whatever its file time (copied
// with `cp -p`, or as each pod's copy of a mounted secret has it); keys
// added by hand alone sign in an order every instance agrees on.
func TestHandNamedKeys(t *testing.T) {
	ttl := 15 * time.Minute
	kidKeySigns := now.Add(SigningDelay)
	for name, mtime := range map[string]time.Time{
		"file time before the kid-named key": now.Add(-time.Hour),
		"file time as it signs":              kidKeySigns.Add(time.Second), // what cp -p of an older file gives
		"file time now":                      kidKeySigns.Add(time.Hour),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			k, err := Generate(dir, "EdDSA", now)
			if err != nil {
				t.Fatal(err)
			}
			hand := filepath.Join(dir, "by-hand.pem")
			os.WriteFile(hand, keyPEM(t), 0o600)
			os.Chtimes(hand, mtime, mtime)
			kr, err := OpenKeyring(dir, "EdDSA", now)
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range []time.Time{now, kidKeySigns.Add(-time.Second), kidKeySigns.Add(2 * time.Second), kidKeySigns.Add(2 * time.Hour)} {
				if got := kr.Signing(at); got.ID != k.ID {
					t.Errorf("signing key %v after the kid-named key was made: %s, want it, not the hand-named key", at.Sub(now), got.ID)
				}
			}
			if _, ok := kr.Key("by-hand"); !ok {
				t.Error("the hand-named key does not verify")
			}
		})
	}

	// Two instances whose copies of the same files differ in file times
	// agree on the signing key and on JWKS.
	pems := [][]byte{keyPEM(t), keyPEM(t), keyPEM(t)}
	names := []string{"alpha.pem", "prod-2026.pem", "beta.pem"}
	var instances []*Keyring
	for i := range 2 {
		dir := t.TempDir()
		for j, name := range names {
			path := filepath.Join(dir, name)
			os.WriteFile(path, pems[j], 0o600)
			mtime := now.Add(time.Duration((j+i)%len(names)) * time.Hour)
			os.Chtimes(path, mtime, mtime)
		}
		kr, err := OpenKeyring(dir, "EdDSA", now)
		if err != nil {
			t.Fatal(err)
		}
		instances = append(instances, kr)
	}
	for i, kr := range instances {
		if got := kr.Signing(now).ID; got != "prod-2026" {
			t.Errorf("instance %d signs with %s, want prod-2026, the name that sorts last", i, got)
		}
		if got := publishedIDs(kr, now.Add(100*time.Hour), ttl); strings.Join(got, " ") != "prod-2026 beta alpha" {
			t.Errorf("instance %d publishes %v, want every key added by hand", i, got)
		}
	}

	// A kid-named key added to them signs (the first kid-named key signs at
	// once); they retire as the key it succeeded would.
	dir := t.TempDir()
	for j, name := range names {
		os.WriteFile(filepath.Join(dir, name), pems[j], 0o600)
	}
	k, err := Generate(dir, "EdDSA", now)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := LoadAlg(dir, "EdDSA")
	retire := now.Add(SigningDelay + Leeway + ttl)
	for at, want := range map[time.Time]string{
		now:                      "signing retiring retiring retiring",
		retire.Add(-time.Second): "signing retiring retiring retiring",
		retire:                   "signing retired retired retired",
	} {
		var got []string
		for i, s := range States(keys, at, ttl) {
			if i == 0 && s.Key.ID != k.ID {
				t.Errorf("at %v the newest key is %s, want the kid-named %s", at.Sub(now), s.Key.ID, k.ID)
			}
			got = append(got, string(s.State))
		}
		if strings.Join(got, " ") != want {
			t.Errorf("at %v states %v, want %s", at.Sub(now), got, want)
		}
	}
}

func keyIDs(keys []*Key) []string {
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	return ids
}

// TestClockSkew: a token issued on an instance whose clock is ahead (iat in
// whole seconds, from a time late in its second) verifies on one up to
// Leeway behind, fresh or from the cache; exp has no leeway.
func TestClockSkew(t *testing.T) {
	dir := t.TempDir()
	kr, _ := OpenKeyring(dir, "EdDSA", now)
	issued := now.Add(900 * time.Millisecond)
	c := claimsAt(issued)
	tok, err := NewIssuer(kr, "i", "a").Issue(c)
	if err != nil {
		t.Fatal(err)
	}
	exp := c.ExpiresAt.Truncate(time.Second)
	cached := NewIssuer(kr, "i", "a")
	if _, err := cached.Verify(tok, issued); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		at   time.Time
		ok   bool
	}{
		{"a second behind", issued.Add(-time.Second), true},
		{"Leeway behind", now.Add(-Leeway), true},
		{"more than Leeway behind", now.Add(-Leeway - time.Nanosecond), false},
		{"just before exp", exp.Add(-time.Nanosecond), true},
		{"at exp", exp, false},
		{"a second after exp", exp.Add(time.Second), false},
	} {
		for name, iss := range map[string]*Issuer{"fresh": NewIssuer(kr, "i", "a"), "cached": cached} {
			_, err := iss.Verify(tok, tc.at)
			if tc.ok && err != nil || !tc.ok && authd.ErrorCode(err) != authd.EInvalidToken {
				t.Errorf("%s, %s: Verify = %v, want ok %v", tc.name, name, err, tc.ok)
			}
		}
	}
}

// TestVerifiedCacheDropsRemovedKey: once a key is removed from the
// directory (or its file replaced), a token it signed is invalid after the
// next reload, though it was verified and cached before.
func TestVerifiedCacheDropsRemovedKey(t *testing.T) {
	for _, how := range []string{"removed", "replaced"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			kr, _ := OpenKeyring(dir, "EdDSA", now)
			old := kr.Signing(now)
			iss := NewIssuer(kr, "i", "a")
			tok, _ := iss.Issue(claimsAt(now))
			if _, err := iss.Verify(tok, now); err != nil {
				t.Fatal(err)
			}
			if _, err := Generate(dir, "EdDSA", now.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if err := kr.Reload(); err != nil {
				t.Fatal(err)
			}
			if _, err := iss.Verify(tok, now.Add(time.Minute)); err != nil {
				t.Fatalf("a reload that keeps the key invalidated its token: %v", err)
			}
			path := filepath.Join(dir, old.ID+".pem")
			if how == "removed" {
				os.Remove(path)
			} else {
				_, priv, _ := ed25519.GenerateKey(nil)
				der, _ := x509.MarshalPKCS8PrivateKey(priv)
				os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
			}
			if err := kr.Reload(); err != nil {
				t.Fatal(err)
			}
			if _, err := iss.Verify(tok, now.Add(time.Minute)); authd.ErrorCode(err) != authd.EInvalidToken {
				t.Errorf("a cached token of a key %s: Verify = %v, want invalid_token", how, err)
			}
		})
	}
}

// TestEmptiedKeysDirectory: removing every key of the algorithm (how an
// operator gets rid of a compromised one) stops it signing and verifying at
// the next reload, cached tokens included, as removing one of several does;
// every reload says so, and a key put back is used at once.
func TestEmptiedKeysDirectory(t *testing.T) {
	for _, how := range []string{"emptied", "other algorithm only", "removed"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			kr, _ := OpenKeyring(dir, "EdDSA", now)
			iss := NewIssuer(kr, "i", "a")
			tok, _ := iss.Issue(claimsAt(now))
			if _, err := iss.Verify(tok, now); err != nil {
				t.Fatal(err)
			}
			keys, _ := Load(dir)
			for _, k := range keys {
				os.Remove(filepath.Join(dir, k.ID+".pem"))
			}
			switch how {
			case "other algorithm only":
				Generate(dir, "ES256", now)
			case "removed":
				os.Remove(dir)
			}
			for range 2 {
				if err := kr.Reload(); !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), dir) {
					t.Errorf("Reload of a directory with no EdDSA key: %v, want ErrNoKey naming %s", err, dir)
				}
			}
			if _, err := iss.Verify(tok, now.Add(time.Minute)); authd.ErrorCode(err) != authd.EInvalidToken {
				t.Errorf("a cached token of the removed key: Verify = %v, want invalid_token", err)
			}
			if _, err := iss.Issue(claimsAt(now)); !errors.Is(err, ErrNoKey) {
				t.Errorf("Issue with no key: %v, want ErrNoKey", err)
			}
			if body, err := kr.JWKS(now, time.Hour); err != nil || string(body) != `{"keys":[]}` {
				t.Errorf("JWKS with no key = %s, %v; want no key", body, err)
			}

			back, err := Generate(dir, "EdDSA", now.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if err := kr.Reload(); err != nil {
				t.Fatalf("Reload with a key back: %v", err)
			}
			fresh, err := iss.Issue(claimsAt(now.Add(time.Minute)))
			if err != nil || header(t, fresh)["kid"] != back.ID {
				t.Fatalf("Issue with a key back: %v, want signed with %s", err, back.ID)
			}
			if _, err := iss.Verify(fresh, now.Add(time.Minute)); err != nil {
				t.Errorf("a token of the key put back: %v", err)
			}
			if _, err := iss.Verify(tok, now.Add(time.Minute)); authd.ErrorCode(err) != authd.EInvalidToken {
				t.Errorf("a token of the removed key once another is back: Verify = %v, want invalid_token", err)
			}
		})
	}
}

func TestRefreshKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys") // made on first use
	key, err := RefreshKey(dir)
	if err != nil || len(key) != 32 {
		t.Fatalf("RefreshKey = %d bytes, %v; want 32", len(key), err)
	}
	again, err := RefreshKey(dir)
	if err != nil || !bytes.Equal(again, key) {
		t.Errorf("second RefreshKey differs (%v)", err)
	}
	path := filepath.Join(dir, RefreshKeyFile)
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("refresh key file mode %v (%v), want 0600", info.Mode(), err)
	}
	if other, _ := RefreshKey(t.TempDir()); bytes.Equal(other, key) {
		t.Error("two directories share a refresh key")
	}

	// Signing keys ignore it: loading, the keyring and its JWKS.
	kr, err := OpenKeyring(dir, "EdDSA", now)
	if err != nil {
		t.Fatalf("OpenKeyring beside a refresh key: %v", err)
	}
	if keys, err := Load(dir); err != nil || len(keys) != 1 {
		t.Errorf("Load beside a refresh key: %d keys, %v; want the one signing key", len(keys), err)
	}
	if ids := publishedIDs(kr, now, time.Hour); len(ids) != 1 || ids[0] != kr.Signing(now).ID {
		t.Errorf("JWKS beside a refresh key: %v", ids)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("keys directory holds %d files, want the signing key and the refresh key (no temporary file left)", len(entries))
	}
}

// TestRefreshKeyConcurrentCreation: instances starting at once on an empty
// shared directory all end up with one secret, and exactly one of them is
// told it made it (Open).
func TestRefreshKeyConcurrentCreation(t *testing.T) {
	for range 5 {
		dir := t.TempDir()
		const n = 16
		keys := make([][]byte, n)
		made := make([]bool, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { keys[i], made[i], errs[i] = RefreshSecret.Open(dir) })
		}
		wg.Wait()
		makers := 0
		for i := range n {
			if errs[i] != nil || !bytes.Equal(keys[i], keys[0]) {
				t.Fatalf("instance %d got a different key (%v)", i, errs[i])
			}
			if made[i] {
				makers++
			}
		}
		if makers != 1 {
			t.Fatalf("%d instances were told they made the key, want 1", makers)
		}
		if _, made, err := RefreshSecret.Open(dir); made || err != nil {
			t.Fatalf("Open of the key there: made %v, %v; want read", made, err)
		}
		if stored, _ := RefreshKey(dir); !bytes.Equal(stored, keys[0]) {
			t.Fatal("the stored key is not the one the instances use")
		}
	}
}

func TestRefreshKeyMalformed(t *testing.T) {
	secret := bytes.Repeat([]byte{0xab}, 32)
	block := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	for name, content := range map[string][]byte{
		"empty":       nil,
		"not PEM":     []byte("hunter2hunter2hunter2hunter2hunter2"),
		"wrong type":  block("PRIVATE KEY", secret),
		"short":       block("AUTHD REFRESH TOKEN KEY", secret[:16]),
		"long":        block("AUTHD REFRESH TOKEN KEY", append(secret, 0)),
		"two blocks":  append(block("AUTHD REFRESH TOKEN KEY", secret), block("AUTHD REFRESH TOKEN KEY", secret)...),
		"with header": pem.EncodeToMemory(&pem.Block{Type: "AUTHD REFRESH TOKEN KEY", Headers: map[string]string{"A": "b"}, Bytes: secret}),
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, RefreshKeyFile)
		os.WriteFile(path, content, 0o600)
		_, err := RefreshKey(dir)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: RefreshKey = %v, want an error naming %s", name, err, path)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "q6urq6") || strings.Contains(strings.ToLower(err.Error()), "abab") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, content) {
			t.Errorf("%s: the malformed file was overwritten", name)
		}
	}
}

// TestMFAKey: the MFA key is a secret of its own beside the refresh key,
// made once and kept, never taken for a signing key nor for the refresh key.
func TestMFAKey(t *testing.T) {
	dir := t.TempDir()
	refresh, err := RefreshKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := MFAKey(dir)
	if err != nil || len(key) != 32 {
		t.Fatalf("MFAKey = %d bytes, %v; want 32", len(key), err)
	}
	if bytes.Equal(key, refresh) {
		t.Error("the MFA key is the refresh key")
	}
	if again, err := MFAKey(dir); err != nil || !bytes.Equal(again, key) {
		t.Errorf("second MFAKey differs (%v)", err)
	}
	if info, err := os.Stat(filepath.Join(dir, MFAKeyFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("MFA key file mode %v (%v), want 0600", info.Mode(), err)
	}
	if keys, err := Load(dir); err != nil || len(keys) != 0 {
		t.Errorf("Load beside the MFA key: %d keys, %v; want none", len(keys), err)
	}
	// A refresh key copied over the MFA key is refused, not used.
	os.WriteFile(filepath.Join(dir, MFAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "AUTHD REFRESH TOKEN KEY", Bytes: refresh}), 0o600)
	if _, err := MFAKey(dir); err == nil || !strings.Contains(err.Error(), MFAKeyFile) {
		t.Errorf("MFAKey of a refresh key = %v, want an error naming %s", err, MFAKeyFile)
	}
}

// TestSecretCheck: a check value is a fixed function of the key and the
// secret (databases keep it: a known answer, computed apart), and differs
// between two keys and between the two secrets of one key.
func TestSecretCheck(t *testing.T) {
	a, b := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	for sec, want := range map[Secret]string{
		RefreshSecret: "1a469393a13d88b0c9db3f1cc999f9de28d04bdfe0c3452e7fad390f6081f508",
		MFASecret:     "136406f8c8e92443cf616343d7a67e35b58d98f753d121a725a737fbf172777b",
	} {
		if got := sec.Check(a); got != want {
			t.Errorf("%s Check = %s, want %s (HMAC-SHA-256 of \"authd key check v1\\x00%s\")", sec.File, got, want, sec.PEMType)
		}
		if sec.Check(b) == sec.Check(a) {
			t.Errorf("two keys have one %s check value", sec.File)
		}
	}
}
