// Package password hashes and verifies passwords: argon2id in PHC string
// format for new hashes, bcrypt accepted for imported ones, both upgraded to
// the configured cost on the next successful login.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/text/unicode/norm"
)

// Params is the argon2id cost. The defaults are OWASP's minimum for argon2id
// (19 MiB, 2 iterations, 1 lane).
type Params struct {
	MemoryKiB   uint32
	Iterations  uint32
	Parallelism uint8
}

// DefaultParams is the cost used when none is configured (SPEC §2).
var DefaultParams = Params{MemoryKiB: 19456, Iterations: 2, Parallelism: 1}

// MaxMemoryKiB bounds the argon2id memory a configuration or a stored hash
// may ask for (1 GiB).
const MaxMemoryKiB = 1 << 20

const (
	saltLen = 16
	keyLen  = 32
)

var b64 = base64.RawStdEncoding

// ErrMalformedHash is returned for a stored hash that is neither a valid
// argon2id PHC string nor a bcrypt hash.
var ErrMalformedHash = errors.New("password: malformed hash")

// Normalize returns the form of a password that is hashed: NFKC, so that the
// same password typed on different keyboards matches. It never trims or
// truncates.
func Normalize(pw string) string { return norm.NFKC.String(pw) }

// Hash returns the argon2id PHC string of the NFKC form of pw.
func Hash(pw string, p Params) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(Normalize(pw)), salt, p.Iterations, p.MemoryKiB, p.Parallelism, keyLen)
	return head(p) + b64.EncodeToString(salt) + "$" + b64.EncodeToString(key), nil
}

// head is the start of every hash Hash makes at p, up to the salt.
func head(p Params) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$", argon2.Version, p.MemoryKiB, p.Iterations, p.Parallelism)
}

// Verify reports whether pw matches hash, and whether hash should be
// replaced by a new Hash at cost p: because it is bcrypt, or an argon2id hash
// of another cost. The comparison takes constant time.
func Verify(pw, hash string, p Params) (ok, rehash bool, err error) {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		hp, salt, key, err := decode(hash)
		if err != nil {
			return false, false, err
		}
		if tooCostly(hp, p) {
			return false, false, nil // see tooCostly
		}
		got := argon2.IDKey([]byte(Normalize(pw)), salt, hp.Iterations, hp.MemoryKiB, hp.Parallelism, uint32(len(key)))
		ok := subtle.ConstantTimeCompare(got, key) == 1
		return ok, ok && hp != p, nil
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		if cost, err := bcrypt.Cost([]byte(hash)); err == nil && cost > MaxBcryptCost {
			return false, false, nil // see MaxBcryptCost
		}
		// Imported bcrypt hashes were made from the password as typed.
		// bcrypt reads only the first 72 bytes, so a longer password would
		// match a hash of its prefix: it never matches (SPEC §4). It is
		// still compared, so that the answer takes as long.
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw))
		switch {
		case len(pw) > bcryptMaxBytes && (err == nil || errors.Is(err, bcrypt.ErrMismatchedHashAndPassword)):
			return false, false, nil
		case err == nil:
			return true, true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, false, nil
		default:
			return false, false, fmt.Errorf("%w: %v", ErrMalformedHash, err)
		}
	}
	return false, false, ErrMalformedHash
}

// MaxBcryptCost is the costliest bcrypt hash checked. A cost-15 check takes
// about a second and a half and each step doubles it, so that one stored
// row could hold the hashing workers for minutes (cost 20) or days (31): a
// costlier hash never matches, answering as a wrong password does, and its
// owner resets the password (serve logs how many there are).
const MaxBcryptCost = 15

// tooCostly reports whether an argon2id hash at h costs more than authd
// checks at p: more than four times the memory × passes of p (or of
// DefaultParams, when p is cheaper), or more lanes than p's or 4, each a
// goroutine. As a bcrypt hash above MaxBcryptCost, such a hash (imported,
// or a tampered row: decode allows 1 GiB and 100 passes) never matches,
// answering as a wrong password does, so that one row cannot hold the
// hashing workers for minutes; its owner resets the password.
func tooCostly(h, p Params) bool {
	return h.cost() > 4*max(p.cost(), DefaultParams.cost()) || h.Parallelism > max(p.Parallelism, 4)
}

// cost is the work of a check at p: its memory times its passes.
func (p Params) cost() uint64 { return uint64(p.MemoryKiB) * uint64(p.Iterations) }

// parseParams parses a PHC hash's parameters, "m=M,t=T,p=P", within the
// bounds a stored hash may ask for: a tampered row must not turn one login
// into a 4 GiB allocation.
func parseParams(s string) (p Params, err error) {
	if _, err := fmt.Sscanf(s, "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Iterations, &p.Parallelism); err != nil {
		return p, ErrMalformedHash
	}
	if p.MemoryKiB < 8 || p.MemoryKiB > MaxMemoryKiB || p.Iterations < 1 || p.Iterations > 100 || p.Parallelism < 1 {
		return p, ErrMalformedHash
	}
	return p, nil
}

// bcryptMaxBytes is the longest password bcrypt reads in full.
const bcryptMaxBytes = 72

// decode parses $argon2id$v=19$m=M,t=T,p=P$SALT$KEY.
func decode(hash string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return p, nil, nil, ErrMalformedHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return p, nil, nil, ErrMalformedHash
	}
	if p, err = parseParams(parts[3]); err != nil {
		return p, nil, nil, err
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, ErrMalformedHash
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, ErrMalformedHash
	}
	return p, salt, key, nil
}
