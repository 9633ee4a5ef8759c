package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/pace"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Hasher implements authd.Passwords: the policy, and hashing on a bounded
// pool. At most Workers hashes run at once, so that memory stays bounded
// (each argon2id hash holds MemoryKiB); at most MaxQueue requests wait for a
// worker, each for at most MaxWait, and the rest are refused with
// authd.EUnavailable so that the client retries after a second.
type Hasher struct {
	Params   Params
	Policy   Policy
	Workers  int
	MaxQueue int
	MaxWait  time.Duration

	// Observe, when set, is told each hash's duration and the queue depth
	// (for metrics).
	Observe func(hashing time.Duration, queued int)
	// Malformed, when set, is told of each stored hash that cannot be
	// checked (ErrMalformedHash): Verify answers it as a wrong password.
	Malformed func(err error)

	slots   chan struct{}
	waiting atomic.Int64
	dummy   string
	current string       // the head of a hash made at Params ("$argon2id$v=19$m=…,t=…,p=…$")
	pace    pace.Pace    // how long a check at Params takes
	floor   atomic.Int64 // a check of the costliest stored hash, in ns (CoverBcrypt, CoverArgon2)
	floorAt atomic.Int64 // pace's typical check when floor was timed, in ns
	// sleep pads a failed check (see Verify) by d, whatever ctx (the
	// check's, freed from the client's cancellation) says; tests record
	// both instead.
	sleep func(ctx context.Context, d time.Duration)
}

var _ authd.Passwords = (*Hasher)(nil)

// NewHasher returns a Hasher with one worker per CPU, a queue of 1,024 and a
// wait of at most 5 seconds.
func NewHasher(p Params, policy Policy) *Hasher {
	h := &Hasher{Params: p, Policy: policy, Workers: runtime.GOMAXPROCS(0), MaxQueue: 1024, MaxWait: 5 * time.Second}
	return h.init()
}

// init makes the pool and the dummy hash that unknown emails are checked
// against, of the same cost as real ones.
func (h *Hasher) init() *Hasher {
	h.slots = make(chan struct{}, max(1, h.Workers))
	b := make([]byte, 16)
	rand.Read(b)
	start := time.Now()
	dummy, err := Hash(base64.RawStdEncoding.EncodeToString(b), h.Params)
	if err != nil {
		panic(err) // only crypto/rand can fail, and it does not
	}
	h.pace.Learn(time.Since(start)) // the first timing; checks at Params move it
	h.dummy = dummy
	h.current = head(h.Params)
	if h.sleep == nil {
		h.sleep = func(_ context.Context, d time.Duration) { time.Sleep(d) }
	}
	return h
}

// run runs f on a worker once one is free.
func (h *Hasher) run(ctx context.Context, f func()) error {
	if h.waiting.Add(1) > int64(h.MaxQueue) {
		h.waiting.Add(-1)
		return authd.ErrBusy
	}
	timer := time.NewTimer(h.MaxWait)
	defer timer.Stop()
	select {
	case h.slots <- struct{}{}:
		h.waiting.Add(-1)
	case <-timer.C:
		h.waiting.Add(-1)
		return authd.ErrBusy
	case <-ctx.Done():
		h.waiting.Add(-1)
		return ctx.Err()
	}
	defer func() { <-h.slots }()
	start := time.Now()
	f()
	if h.Observe != nil {
		h.Observe(time.Since(start), int(h.waiting.Load()))
	}
	return nil
}

// Same implements authd.Passwords: NFKC, as Hash (constant time, though
// both come from one request).
func (h *Hasher) Same(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(Normalize(a)), []byte(Normalize(b))) == 1
}

// Check implements authd.Passwords.
func (h *Hasher) Check(pw, email string) error { return h.Policy.Check(pw, email) }

// Hash implements authd.Passwords.
func (h *Hasher) Hash(ctx context.Context, pw string) (hash string, err error) {
	if err := h.run(ctx, func() { hash, err = Hash(pw, h.Params) }); err != nil {
		return "", err
	}
	return hash, err
}

// Verify implements authd.Passwords. A malformed stored hash fails the
// login (and is logged by the caller) rather than crashing it.
//
// A failed check answers no sooner than its deadline (see deadline), so
// that one against a hash cheaper than Params, made before the cost was
// raised, or against the dummy of an unknown email, answers as one against
// an account's hash does (SPEC 6.6): the time left is slept, after the
// worker is freed.
func (h *Hasher) Verify(ctx context.Context, pw, hash string) (ok, rehash bool, err error) {
	var took time.Duration
	if err := h.run(ctx, func() {
		start := time.Now()
		ok, rehash, err = Verify(pw, hash, h.Params)
		took = time.Since(start)
	}); err != nil {
		return false, false, err
	}
	if errors.Is(err, ErrMalformedHash) {
		// A hash imported in a form authd does not check (argon2i, an
		// older argon2 version): answered as a wrong password, at the
		// same moment, so that the account is not told apart from an
		// unknown email; its owner resets the password.
		if h.Malformed != nil {
			h.Malformed(err)
		}
		ok, rehash, err = false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	deadline := h.deadline()
	if strings.HasPrefix(hash, h.current) {
		h.pace.Learn(took)
	}
	if !ok && took < deadline {
		// Whatever the client does: a half-closed connection cancels
		// ctx while the answer can still be read.
		h.sleep(context.WithoutCancel(ctx), deadline-took)
	}
	return ok, rehash, nil
}

// deadline is how long after its start a failed check answers: past
// nearly every check at Params (the average and four mean deviations, as
// TCP estimates a round trip's timeout), so that failures of every hash,
// the dummy's and a cheaper one's alike, end at the same moment rather
// than some at the average and others spread around it; and past a check
// of the costliest stored bcrypt hash, scaled by how much slower than
// when it was timed checks at Params now run (both slow down with load).
func (h *Hasher) deadline() time.Duration {
	d := h.pace.Deadline()
	if floor, at := time.Duration(h.floor.Load()), time.Duration(h.floorAt.Load()); floor > 0 && at > 0 {
		d = max(d, time.Duration(float64(floor)*float64(h.pace.Typical())/float64(at)))
	}
	return d
}

// CoverBcrypt makes every failed check, an unknown email's included,
// answer no sooner than a check of a bcrypt hash of cost takes: accounts
// imported with such hashes (SPEC §4), costlier than argon2id at Params,
// would otherwise be told apart by one wrong guess until their owners next
// log in (and the hash is upgraded). It times one bcrypt hash of that cost
// (at most MaxBcryptCost: costlier hashes never match) and returns how
// long it took.
func (h *Hasher) CoverBcrypt(cost int) (time.Duration, error) {
	if cost < bcrypt.MinCost || cost > MaxBcryptCost {
		return 0, fmt.Errorf("password: bcrypt cost %d is outside %d-%d", cost, bcrypt.MinCost, MaxBcryptCost)
	}
	start := time.Now()
	if _, err := bcrypt.GenerateFromPassword([]byte("authd timing probe"), cost); err != nil {
		return 0, err
	}
	took := time.Since(start)
	h.raiseFloor(took)
	return took, nil
}

// CoverArgon2 does for argon2id hashes costlier than Params (stored before
// the cost was lowered, or imported) what CoverBcrypt does for bcrypt:
// given the stored hashes' parameters ("m=M,t=T,p=P", Store.Argon2Costs),
// it times one check at the costliest memory × passes that is costlier
// than Params and still checked (tooCostly), in one lane (the slowest way
// to compute it, whatever lanes the stored hashes use), makes every failed
// check answer no sooner, and returns that cost and how long it took; the
// zero Params when none is.
func (h *Hasher) CoverArgon2(costs []string) (Params, time.Duration) {
	var costliest Params
	for _, c := range costs {
		p, err := parseParams(c)
		if err != nil || tooCostly(p, h.Params) {
			continue
		}
		if p.cost() > h.Params.cost() && p.cost() > costliest.cost() {
			costliest = p
		}
	}
	if costliest == (Params{}) {
		return costliest, 0
	}
	costliest.Parallelism = 1
	start := time.Now()
	argon2.IDKey([]byte("authd timing probe"), make([]byte, saltLen), costliest.Iterations, costliest.MemoryKiB,
		costliest.Parallelism, keyLen)
	took := time.Since(start)
	h.raiseFloor(took)
	return costliest, took
}

// raiseFloor makes failed checks answer no sooner than took, a check of a
// costlier stored hash timed now, if that is later than the floor so far.
func (h *Hasher) raiseFloor(took time.Duration) {
	if int64(took) > h.floor.Load() {
		h.floor.Store(int64(took))
		h.floorAt.Store(int64(h.pace.Typical()))
	}
}

// VerifyDummy implements authd.Passwords.
func (h *Hasher) VerifyDummy(ctx context.Context, pw string) error {
	_, _, err := h.Verify(ctx, pw, h.dummy)
	return err
}
