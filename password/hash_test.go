package password

import (
	"fmt"
	"strings"
	"testing"
	"time"

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

// TestBcryptTooCostly: a stored bcrypt hash above MaxBcryptCost never
// matches and is never computed (cost 31 would take days): it answers as a
// wrong password, not as an error.
func TestBcryptTooCostly(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("imported password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	costly := "$2a$31$" + string(b[len("$2a$04$"):])
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
			t.Errorf("a cost-31 bcrypt hash: %v, %v; want no match and no error", r.ok, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cost-31 bcrypt hash was being computed")
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

func TestMalformed(t *testing.T) {
	for _, h := range []string{
		"", "plain", "$argon2id$", "$argon2id$v=19$m=64,t=1,p=1$salt",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
		"$2b$04$short",
	} {
		if ok, _, err := Verify("x", h, cheap); ok || err == nil {
			t.Errorf("Verify(%q) = %v, %v; want false and an error", h, ok, err)
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
// more lanes than 4) never matches and is not computed: decode alone let a
// stored row ask for 1 GiB, 100 passes and 255 goroutines per check. One at
// four times the cost is still checked.
func TestArgon2TooCostly(t *testing.T) {
	salt, key := "c2FsdHNhbHRzYWx0", "aGFzaGhhc2hoYXNoaGFzaA"
	for _, h := range []string{
		"$argon2id$v=19$m=1048576,t=100,p=255$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=9,p=1$" + salt + "$" + key, // 4.5 × the default's passes
		"$argon2id$v=19$m=64,t=1,p=5$" + salt + "$" + key,    // cheap, but five goroutines
	} {
		done := make(chan error, 1)
		go func() {
			ok, rehash, err := Verify("x", h, cheap)
			if ok || rehash {
				err = fmt.Errorf("matched")
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Verify(%q) = %v; want no match and no error", h, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Verify(%q) was computing a hash authd does not check", h)
		}
	}
	within, err := Hash("the password", Params{MemoryKiB: 19456, Iterations: 8, Parallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	if ok, rehash, err := Verify("the password", within, cheap); !ok || !rehash || err != nil {
		t.Errorf("a hash at four times the default cost = %v, %v, %v; want a match to rehash", ok, rehash, err)
	}
}
