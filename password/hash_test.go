package password

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// cheap keeps the tests fast; the cost does not change the logic.
var cheap = Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hash %q is not an argon2id PHC string of the cost", h)
	}
	h2, _ := Hash("correct horse battery", cheap)
	if h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	tests := []struct {
		name, pw string
		want     bool
	}{
		{"same", "correct horse battery", true},
		{"other", "correct horse battery!", false},
		{"trailing space", "correct horse battery ", false},
		{"case", "Correct horse battery", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		ok, rehash, err := Verify(tt.pw, h, cheap)
		if err != nil || ok != tt.want || rehash {
			t.Errorf("%s: Verify = %v, %v, %v; want %v, false, nil", tt.name, ok, rehash, err, tt.want)
		}
	}
}

func TestNoTruncation(t *testing.T) {
	// bcrypt stops at 72 bytes; argon2id must not.
	base := strings.Repeat("a", 72)
	h, _ := Hash(base+"X", cheap)
	if ok, _, _ := Verify(base+"Y", h, cheap); ok {
		t.Error("passwords differing in their 73rd byte verify as equal")
	}
}

func TestNFKC(t *testing.T) {
	// U+FB01 (the "fi" ligature) and "fi" are one password after NFKC.
	h, _ := Hash("pro\ufb01le-password", cheap)
	if ok, _, _ := Verify("profile-password", h, cheap); !ok {
		t.Error("NFKC-equivalent passwords do not match")
	}
}

func TestRehash(t *testing.T) {
	h, _ := Hash("some long password", cheap)
	stronger := Params{MemoryKiB: 128, Iterations: 1, Parallelism: 1}
	if ok, rehash, _ := Verify("some long password", h, stronger); !ok || !rehash {
		t.Errorf("Verify with a higher configured cost = %v, %v; want true, true", ok, rehash)
	}
	if _, rehash, _ := Verify("wrong password", h, stronger); rehash {
		t.Error("a wrong password asks for a rehash")
	}
}

func TestBcrypt(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("imported password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if ok, rehash, err := Verify("imported password", string(b), cheap); !ok || !rehash || err != nil {
		t.Errorf("bcrypt Verify = %v, %v, %v; want true, true, nil", ok, rehash, err)
	}
	if ok, _, err := Verify("other password", string(b), cheap); ok || err != nil {
		t.Errorf("bcrypt Verify of a wrong password = %v, %v", ok, err)
	}
}

// bcryptCost16 is a real bcrypt hash of "imported password" at cost 16,
// MaxBcryptCost+1, made once (it takes seconds): were its cost not refused,
// it would match.
const bcryptCost16 = "$2a$16$d1IFmns.pwqPPA43P/lK7u5/nQnlHtjG32lS4AQ5MlSCoePzu2Chy"

// TestBcryptTooCostly: a stored bcrypt hash above MaxBcryptCost never
// matches, not even the right password's, and is never computed (cost 31
// would take days): it answers as a wrong password, not as an error.
func TestBcryptTooCostly(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("imported password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost([]byte(bcryptCost16)); err != nil || cost != MaxBcryptCost+1 {
		t.Fatalf("the stored hash's cost is %d (%v), want MaxBcryptCost+1: make it anew", cost, err)
	}
	for name, costly := range map[string]string{
		"cost 31":                   "$2a$31$" + string(b[len("$2a$04$"):]),
		"cost MaxBcryptCost+1 (16)": bcryptCost16,
	} {
		type result struct {
			ok  bool
			err error
		}
		done := make(chan result, 1)
		go func() {
			ok, _, err := Verify("imported password", costly, cheap)
			done <- result{ok, err}
		}()
		select {
		case r := <-done:
			if r.ok || r.err != nil {
				t.Errorf("a %s bcrypt hash of the right password: %v, %v; want no match and no error", name, r.ok, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("a %s bcrypt hash was being computed", name)
		}
	}
}

// TestBcryptLongPassword: bcrypt reads 72 bytes, so a password that differs
// only after them must not match an imported hash (SPEC §4).
func TestBcryptLongPassword(t *testing.T) {
	pw := strings.Repeat("p", 72)
	b, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := Verify(pw, string(b), cheap); !ok || err != nil {
		t.Errorf("a 72-byte password against its bcrypt hash = %v, %v; want a match", ok, err)
	}
	for _, longer := range []string{pw + "x", pw + " ", pw + strings.Repeat("y", 60)} {
		if ok, rehash, err := Verify(longer, string(b), cheap); ok || rehash || err != nil {
			t.Errorf("a %d-byte password against the hash of its first 72 bytes = %v, %v, %v; want no match, no error",
				len(longer), ok, rehash, err)
		}
	}
}

// TestMalformed: a stored hash outside the bounds decode allows is
// ErrMalformedHash, never computed: no lanes (which argon2 panics on), over
// 100 passes, a salt under 8 bytes, a key under 16 or over 64 bytes, a part
// too many. One just within them all is checked.
func TestMalformed(t *testing.T) {
	// phc is an argon2id PHC string of "pw" at params, salt and key length.
	phc := func(params string, salt []byte, keyLen uint32) string {
		var p Params
		if _, err := fmt.Sscanf(params, "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Iterations, &p.Parallelism); err != nil {
			t.Fatal(err)
		}
		key := []byte(strings.Repeat("k", int(keyLen)))
		if p.Iterations > 0 && p.Parallelism > 0 {
			key = argon2.IDKey([]byte("pw"), salt, p.Iterations, p.MemoryKiB, p.Parallelism, keyLen)
		}
		return "$argon2id$v=19$" + params + "$" + b64.EncodeToString(salt) + "$" + b64.EncodeToString(key)
	}
	salt8, salt7 := []byte("saltsalt"), []byte("saltsal")
	for name, h := range map[string]string{
		"empty":            "",
		"plain":            "plain",
		"no parts":         "$argon2id$",
		"five parts":       "$argon2id$v=19$m=64,t=1,p=1$salt",
		"seven parts":      phc("m=64,t=1,p=1", salt8, 16) + "$" + b64.EncodeToString([]byte("more")),
		"version 18":       "$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"over 1 GiB":       "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"under 8 KiB":      phc("m=7,t=1,p=1", salt8, 16),
		"no lanes":         phc("m=64,t=1,p=0", salt8, 16),
		"no passes":        phc("m=64,t=0,p=1", salt8, 16),
		"101 passes":       phc("m=64,t=101,p=1", salt8, 16),
		"salt of 7 bytes":  phc("m=64,t=1,p=1", salt7, 16),
		"key of 15 bytes":  phc("m=64,t=1,p=1", salt8, 15),
		"key of 65 bytes":  phc("m=64,t=1,p=1", salt8, 65),
		"salt not base64":  "$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
		"bcrypt too short": "$2b$04$short",
	} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: Verify(%q) panicked: %v", name, h, r)
				}
			}()
			if ok, _, err := Verify("pw", h, cheap); ok || !errors.Is(err, ErrMalformedHash) {
				t.Errorf("%s: Verify(%q) = %v, %v; want false and ErrMalformedHash", name, h, ok, err)
			}
		}()
	}
	// The control: at every bound, just within it.
	for _, h := range []string{
		phc("m=8,t=1,p=1", salt8, 16),
		phc("m=8,t=100,p=1", salt8, 64),
	} {
		if ok, _, err := Verify("pw", h, cheap); !ok || err != nil {
			t.Errorf("Verify(%q) = %v, %v; want a match", h, ok, err)
		}
	}
}

func BenchmarkHashDefault(b *testing.B) {
	for b.Loop() {
		if _, err := Hash("benchmark password", DefaultParams); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	h, _ := Hash("seed password", cheap)
	f.Add("seed password", h)
	f.Add("x", "$2b$04$abcdefghijklmnopqrstuu")
	f.Fuzz(func(t *testing.T, pw, hash string) {
		Verify(pw, hash, cheap) // must not panic or allocate without bound
	})
}

// TestArgon2TooCostly: an argon2id hash costlier than authd checks (more
// than four times the memory × passes of its Params or the default's, or
// more lanes than 4) never matches, not even the right password's, and is
// not computed: decode alone let a stored row ask for 1 GiB, 100 passes and
// 255 goroutines per check. One at four times the cost, or in 4 lanes, is
// still checked.
func TestArgon2TooCostly(t *testing.T) {
	hash := func(p Params) string {
		h, err := Hash("the password", p)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	salt, key := "c2FsdHNhbHRzYWx0", "aGFzaGhhc2hoYXNoaGFzaA"
	for name, h := range map[string]string{
		// Too costly to make here: not the password's hash, but refused
		// before it is computed all the same.
		"1 GiB, 100 passes, 255 lanes": "$argon2id$v=19$m=1048576,t=100,p=255$" + salt + "$" + key,
		"4.5 × the default's passes":   hash(Params{MemoryKiB: 19456, Iterations: 9, Parallelism: 1}),
		"cheap, but five lanes":        hash(Params{MemoryKiB: 64, Iterations: 1, Parallelism: 5}),
	} {
		done := make(chan error, 1)
		go func() {
			ok, rehash, err := Verify("the password", h, cheap)
			if ok || rehash {
				err = fmt.Errorf("matched")
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Verify(%q) = %v; want no match and no error", name, h, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Verify(%q) was computing a hash authd does not check", name, h)
		}
	}
	for name, h := range map[string]string{
		"four times the default cost": hash(Params{MemoryKiB: 19456, Iterations: 8, Parallelism: 4}),
		"cheap, in four lanes":        hash(Params{MemoryKiB: 64, Iterations: 1, Parallelism: 4}),
	} {
		if ok, rehash, err := Verify("the password", h, cheap); !ok || !rehash || err != nil {
			t.Errorf("a hash at %s = %v, %v, %v; want a match to rehash", name, ok, rehash, err)
		}
	}
}
