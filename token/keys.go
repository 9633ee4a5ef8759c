// Package token holds authd's signing keys and issues and checks its access
// tokens: JWTs (RFC 9068 profile) signed with EdDSA, ES256 or RS256, and the
// JWKS document that publishes the public keys.
package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/authd/authd/internal/owner"
)

// Algorithms are the signing algorithms authd supports.
var Algorithms = []string{"EdDSA", "ES256", "RS256"}

// JWKSMaxAge is how long resource servers may cache the JWKS document (its
// Cache-Control max-age). A new key must be in every cached copy before it
// signs, so this also sets SigningDelay.
const JWKSMaxAge = 5 * time.Minute

// Leeway is the clock skew tolerated between instances: on a token's nbf and
// iat, and around the moments a key changes state.
const Leeway = 30 * time.Second

// MaxAccessTokenTTL is the longest access-token lifetime the configuration
// allows (AUTHD_ACCESS_TOKEN_TTL). Rotate deletes a key only once tokens of
// this lifetime would have expired, since whoever runs it may not have the
// server's lifetime in their environment.
const MaxAccessTokenTTL = 24 * time.Hour

// ReloadInterval is the longest a running instance may go without rereading
// the keys directory (Keyring.Reload): SigningDelay counts on it.
const ReloadInterval = 30 * time.Second

// SigningDelay is how long a new key is published before it signs: the JWKS
// cache lifetime, plus the time running instances may take to reread the
// directory and the clock skew between them, so that no resource server
// holding a cached JWKS meets a kid it does not know.
const SigningDelay = JWKSMaxAge + ReloadInterval + Leeway

// Key is one signing key. Its ID (the JWT kid, and its file name without
// .pem) begins with its creation time to the nanosecond, so that every
// instance sharing the keys directory agrees on the order of the keys and
// on the state of each, without talking to one another.
type Key struct {
	ID  string
	Alg string
	// Created is zero for a key added by hand under a name that is not a
	// kid: its file time cannot stand in, since copies of a mounted secret
	// differ in it and `cp -p` keeps an old one.
	Created time.Time
	Private crypto.Signer
}

// Public returns the public half of the key.
func (k *Key) Public() crypto.PublicKey { return k.Private.Public() }

// kidTime is the creation time in a kid; fixed width, so that kids sort as
// their times do. Keys made before nanoseconds were recorded have
// legacyKIDTime, and are ordered by that second.
const (
	kidTime       = "20060102T150405.000000000Z"
	legacyKIDTime = "20060102T150405Z"
)

// Generate creates a key for alg at now and writes it to dir as a PKCS#8
// PEM file readable only by its owner. The key is stamped after every key
// already in dir, so that the key made last is the newest even when the
// clock has stepped back.
func Generate(dir, alg string, now time.Time) (*Key, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, fmt.Errorf("unknown signing algorithm %q (use %s)", alg, strings.Join(Algorithms, ", "))
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	created := now.UTC()
	if last, err := newestKIDTime(dir); err != nil {
		return nil, err
	} else if !created.After(last) {
		created = last.Add(time.Nanosecond)
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	k := &Key{ID: created.Format(kidTime) + "-" + hex.EncodeToString(suffix), Alg: alg, Created: created, Private: priv}
	// Write to a temporary name and rename, so that another instance reading
	// the directory never sees half a key. Through one handle on the
	// directory: a root that writes into another user's directory must not
	// follow a path that user can point elsewhere between two steps.
	d, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	tmp := "." + k.ID + ".tmp"
	if err := writeKeyFile(d, tmp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		d.Remove(tmp) // half written (a full disk): nothing of it stays
		return nil, err
	}
	if err := d.Rename(tmp, k.ID+".pem"); err != nil {
		d.Remove(tmp)
		return nil, err
	}
	return k, nil
}

// writeKeyFile writes data to a new file name in d, mode 0600 and owned by
// d's owner (owner.Match: a key root makes in a serve's directory is that
// serve's user's).
func writeKeyFile(d *os.Root, name string, data []byte) error {
	info, err := d.Stat(".")
	if err != nil {
		return err
	}
	f, err := d.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = owner.Match(f, info)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// newestKIDTime is the latest creation time among the kids of dir's key
// files, read from their names alone.
func newestKIDTime(dir string) (time.Time, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return time.Time{}, err
	}
	var last time.Time
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".pem")
		if !ok {
			continue
		}
		if t, ok := kidCreated(id); ok && t.After(last) {
			last = t
		}
	}
	return last, nil
}

// kidCreated is the creation time a kid made by Generate carries.
func kidCreated(id string) (time.Time, bool) {
	ts, suffix, ok := strings.Cut(id, "-")
	if !ok || len(suffix) != 8 {
		return time.Time{}, false
	}
	if _, err := hex.DecodeString(suffix); err != nil {
		return time.Time{}, false
	}
	for _, layout := range []string{kidTime, legacyKIDTime} {
		if len(ts) != len(layout) {
			continue
		}
		if t, err := time.Parse(layout, ts); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// validKID reports whether id has the shape of the kids Generate makes.
func validKID(id string) bool {
	_, ok := kidCreated(id)
	return ok
}

// Load reads every key in dir, newest first. A file that is not a PKCS#8 PEM
// private key of a supported type is an error naming it. Only *.pem files
// are keys: the refresh-token key and temporary files are not.
func Load(dir string) ([]*Key, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []*Key
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".pem") {
			continue
		}
		k, err := parseKey(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, newestFirst)
	return keys, nil
}

// newestFirst orders keys by creation time, then by name: keys added by hand,
// with no time, come last, in an order every instance agrees on.
func newestFirst(a, b *Key) int {
	if c := b.Created.Compare(a.Created); c != 0 {
		return c
	}
	return strings.Compare(b.ID, a.ID)
}

// maxKeyFile bounds a key file's read: an RSA 3072 key is 2.5 KB of PEM.
const maxKeyFile = 64 << 10

// readKeyFile reads the key file at path: a regular file of at most
// maxKeyFile bytes, opened within its directory. A link its directory's
// owner planted may name a device, whose mere opening acts (a watchdog, a
// tape's rewind), or one whose read never ends, to a root that runs the
// keys commands; a FIFO made there, a read that never begins.
func readKeyFile(path string) ([]byte, error) {
	d, err := os.OpenRoot(filepath.Dir(path)) // links leaving the directory refused
	if err != nil {
		return nil, err
	}
	defer d.Close()
	// O_NONBLOCK: a FIFO opens at once (then is refused), rather than wait
	// for a writer; what is open is what is checked.
	f, err := d.OpenFile(filepath.Base(path), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if info, lerr := d.Lstat(filepath.Base(path)); lerr == nil && info.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s: not a regular file (a link out of its directory): %w", path, err)
		}
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err == nil && len(data) > maxKeyFile {
		err = fmt.Errorf("%s: larger than any key (%d KiB)", path, maxKeyFile>>10)
	}
	return data, err
}

func parseKey(path string) (*Key, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	id := strings.TrimSuffix(filepath.Base(path), ".pem")
	created, _ := kidCreated(id)
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PKCS#8 PEM private key (BEGIN PRIVATE KEY)", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	k := &Key{ID: id, Created: created}
	switch p := parsed.(type) {
	case ed25519.PrivateKey:
		k.Alg, k.Private = "EdDSA", p
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%s: ECDSA keys must be on P-256 (ES256)", path)
		}
		k.Alg, k.Private = "ES256", p
	case *rsa.PrivateKey:
		if p.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%s: RSA keys must have at least 2048 bits", path)
		}
		k.Alg, k.Private = "RS256", p
	default:
		return nil, fmt.Errorf("%s: unsupported key type %T", path, parsed)
	}
	return k, nil
}

// State is where a key is in its life. It follows from the keys in the
// directory and the clock alone, so that every instance agrees on it.
type State string

// The states of a key, in order.
const (
	// Published: in JWKS, not signing until SigningDelay after it was made.
	Published State = "published"
	// Signing: the newest key past its delay signs. While no key is past
	// it, the oldest signs: the first key ever made signs at once. Keys
	// added by hand sign only while no kid-named key exists (see States).
	Signing State = "signing"
	// Retiring: a newer key signs; still in JWKS while tokens this key
	// signed may be valid.
	Retiring State = "retiring"
	// Retired: out of JWKS. A rotation deletes the file once the key is
	// retired for tokens living MaxAccessTokenTTL too.
	Retired State = "retired"
)

// Status is a key's state at a moment, and when it moves on.
type Status struct {
	Key   *Key
	State State
	// Until is when the key enters the next state: zero for a retired key,
	// for the signing key while no newer key exists, and for a key added by
	// hand that retires once a kid-named key exists.
	Until time.Time
}

// States returns the status of each of keys (of one algorithm, newest
// first) at now, for tokens living ttl.
//
// A key added by hand, with no creation time, never signs while a kid-named
// key exists, since nothing says whether it is newer, or whether resource
// servers have seen it in JWKS yet. While keys added by hand are all there
// is, the one whose name sorts last signs and the others stay published, as
// nothing says when they stopped signing.
func States(keys []*Key, now time.Time, ttl time.Duration) []Status {
	out := make([]Status, len(keys))
	dated := 0 // keys with a creation time, which come first
	for dated < len(keys) && !keys[dated].Created.IsZero() {
		dated++
	}
	if dated == 0 {
		for i, k := range keys {
			out[i] = Status{Key: k, State: Retiring}
		}
		if len(out) > 0 {
			out[0].State = Signing
		}
		return out
	}
	signer := dated - 1
	for i, k := range keys[:dated] {
		if !now.Before(k.Created.Add(SigningDelay)) {
			signer = i
			break
		}
	}
	for i, k := range keys {
		s := Status{Key: k}
		switch {
		case i < signer:
			s.State, s.Until = Published, k.Created.Add(SigningDelay)
		case i == signer:
			s.State = Signing
			if i > 0 {
				s.Until = keys[i-1].Created.Add(SigningDelay)
			}
		default:
			// The last token this key signed was issued when its successor
			// took over; an instance whose clock is behind may still have
			// signed with it for Leeway. Keys added by hand stopped signing
			// when the oldest kid-named key appeared.
			successor := keys[min(i, dated)-1]
			s.State, s.Until = Retiring, successor.Created.Add(SigningDelay+Leeway+ttl)
			if !now.Before(s.Until) {
				s.State, s.Until = Retired, time.Time{}
			}
		}
		out[i] = s
	}
	return out
}

// Keyring is the keys of one algorithm from a directory. One signs (see
// State); all verify. Safe for concurrent use; Reload picks up keys that
// other instances or `authd keys rotate` wrote.
type Keyring struct {
	dir, alg string

	reload sync.Mutex // one reread at a time, so that none installs an older read

	mu       sync.RWMutex
	keys     []*Key // of alg, newest first; empty while the directory has none
	byID     map[string]*Key
	dirTime  time.Time // the directory's modification time when last reread
	lastMiss time.Time // last reread for an unknown kid
}

// ErrNoKey is why a keyring neither signs nor verifies: its directory holds
// no key of its algorithm.
var ErrNoKey = errors.New("no signing key")

// OpenKeyring loads the keys of alg from dir, generating the first one when
// there is none.
func OpenKeyring(dir, alg string, now time.Time) (*Keyring, error) {
	if !slices.Contains(Algorithms, alg) {
		return nil, fmt.Errorf("unknown signing algorithm %q (use %s)", alg, strings.Join(Algorithms, ", "))
	}
	kr := &Keyring{dir: dir, alg: alg}
	err := kr.Reload()
	if errors.Is(err, ErrNoKey) {
		if _, err := Generate(dir, alg, now); err != nil {
			return nil, fmt.Errorf("generate the first signing key in %s: %w", dir, err)
		}
		err = kr.Reload()
	}
	if err != nil {
		return nil, err
	}
	return kr, nil
}

// Reload rereads the directory. A key whose file is unchanged keeps its
// identity, so that what was verified with it stays valid; a key removed or
// replaced loses it.
//
// That holds for the last key too. Emptying the directory is how an
// operator removes a compromised key, so a directory with no key of the
// algorithm leaves the keyring with none: nothing signs or verifies until a
// key is back, and every Reload until then returns ErrNoKey for the caller
// to log. A key generated here instead would be one no other instance
// knows, if this instance merely lost sight of a shared directory.
func (kr *Keyring) Reload() error {
	kr.reload.Lock()
	defer kr.reload.Unlock()
	return kr.reread()
}

// reread is Reload, under kr.reload.
func (kr *Keyring) reread() error {
	// The time first: a change while the files are read moves it past
	// what is recorded, and the next ReloadIfChanged rereads. A directory
	// that cannot be read keeps the keys read before, and its time too:
	// ReloadIfChanged tries again once it changes, not at every request.
	var dirTime time.Time
	if fi, err := os.Stat(kr.dir); err == nil {
		dirTime = fi.ModTime()
	}
	all, err := Load(kr.dir)
	if err != nil {
		kr.mu.Lock()
		kr.dirTime = dirTime
		kr.mu.Unlock()
		return err
	}
	kr.mu.RLock()
	old := kr.byID
	kr.mu.RUnlock()
	var keys []*Key
	byID := map[string]*Key{}
	for _, k := range all {
		if k.Alg != kr.alg {
			continue
		}
		if o, ok := old[k.ID]; ok && o.Created.Equal(k.Created) && samePublic(o, k) {
			k = o
		}
		keys = append(keys, k)
		byID[k.ID] = k
	}
	kr.mu.Lock()
	kr.keys, kr.byID, kr.dirTime = keys, byID, dirTime
	kr.mu.Unlock()
	if len(keys) == 0 {
		return kr.errNoKey()
	}
	return nil
}

// ReloadIfChanged rereads the directory if it changed since the last
// Reload: a file added, removed or renamed in it (as `authd keys` writes
// them) moves its modification time; a file overwritten in place does not,
// and waits for the periodic Reload (ReloadInterval), as does a change
// within the same tick of the file system's clock. It costs one stat, so
// that JWKS can show a key `authd keys rotate` has just written at once
// (SPEC 6.3) without a disk read per request; requests that find the same
// change reread it once.
func (kr *Keyring) ReloadIfChanged() error {
	fi, err := os.Stat(kr.dir)
	if err != nil {
		return err
	}
	if kr.seen(fi.ModTime()) {
		return nil
	}
	kr.reload.Lock()
	defer kr.reload.Unlock()
	if kr.seen(fi.ModTime()) {
		return nil // reread while this one waited
	}
	return kr.reread()
}

// seen reports whether the last reread saw the directory at time t.
func (kr *Keyring) seen(t time.Time) bool {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return t.Equal(kr.dirTime)
}

func (kr *Keyring) errNoKey() error {
	return fmt.Errorf("%w: %s holds no %s key, so no access token is signed or verified until one is added (authd keys generate)", ErrNoKey, kr.dir, kr.alg)
}

func samePublic(a, b *Key) bool {
	pub, ok := a.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(b.Public())
}

// Alg is the keyring's algorithm.
func (kr *Keyring) Alg() string { return kr.alg }

// Signing returns the key that signs tokens issued at now, or nil while the
// keyring has no key.
func (kr *Keyring) Signing(now time.Time) *Key {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	for _, s := range States(kr.keys, now, 0) {
		if s.State == Signing {
			return s.Key
		}
	}
	return nil
}

// Key returns the key with the id, if it is of the keyring's algorithm.
//
// An unknown id may be a key that another instance sharing the directory
// has just generated: the directory is then reread, at most once a second,
// so that a forged kid cannot turn requests into disk reads.
func (kr *Keyring) Key(id string) (*Key, bool) {
	k, ok := kr.known(id)
	if ok || !validKID(id) {
		return k, ok
	}
	kr.mu.Lock()
	due := time.Since(kr.lastMiss) >= time.Second
	if due {
		kr.lastMiss = time.Now()
	}
	kr.mu.Unlock()
	if !due || kr.Reload() != nil {
		return nil, false
	}
	return kr.known(id)
}

// known returns the key with the id as of the last reload.
func (kr *Keyring) known(id string) (*Key, bool) {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	k, ok := kr.byID[id]
	return k, ok
}

// Published returns the keys in JWKS at now, for tokens living ttl: every
// key but the retired.
func (kr *Keyring) Published(now time.Time, ttl time.Duration) []*Key {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return published(kr.keys, now, ttl)
}

func published(keys []*Key, now time.Time, ttl time.Duration) []*Key {
	var out []*Key
	for _, s := range States(keys, now, ttl) {
		if s.State != Retired {
			out = append(out, s.Key)
		}
	}
	return out
}

// Rotate adds a new key for alg to dir, which signs once SigningDelay has
// passed, and deletes the keys of alg retired at now even for tokens living
// MaxAccessTokenTTL. The lifetime the caller has configured is no guide: a
// rotation run without the servers' environment would otherwise delete a
// key whose tokens they still accept. It returns the new key and the ids
// deleted.
func Rotate(dir, alg string, now time.Time) (*Key, []string, error) {
	// A key that cannot be read (its mode, its content) refuses the
	// rotation before a key is added: failed after, each retry would add
	// one more.
	if _, err := Load(dir); err != nil {
		return nil, nil, err
	}
	k, err := Generate(dir, alg, now)
	if err != nil {
		return nil, nil, err
	}
	same, err := LoadAlg(dir, alg)
	if err != nil {
		return k, nil, err
	}
	keep := published(same, now, MaxAccessTokenTTL)
	var deleted []string
	for _, key := range same {
		if !slices.Contains(keep, key) {
			if err := os.Remove(filepath.Join(dir, key.ID+".pem")); err != nil {
				return k, deleted, err
			}
			deleted = append(deleted, key.ID)
		}
	}
	return k, deleted, nil
}

// LoadAlg reads the keys of alg in dir, newest first.
func LoadAlg(dir, alg string) ([]*Key, error) {
	all, err := Load(dir)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(k *Key) bool { return k.Alg != alg }), nil
}
