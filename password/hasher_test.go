package password

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
)

func TestHasherBoundsWork(t *testing.T) {
	h := (&Hasher{Params: cheap, Workers: 1, MaxQueue: 1, MaxWait: time.Second}).init()
	block := make(chan struct{})
	started := make(chan struct{})
	go h.run(context.Background(), func() { close(started); <-block }) // occupies the only worker
	<-started

	var wg sync.WaitGroup
	var queuedErr error
	wg.Go(func() { _, queuedErr = h.Hash(context.Background(), "queued password") }) // waits in the queue
	time.Sleep(50 * time.Millisecond)
	_, err := h.Hash(context.Background(), "one too many")
	var e *authd.Error
	if authd.ErrorCode(err) != authd.EUnavailable || !asError(err, &e) || e.RetryAfter <= 0 {
		t.Errorf("hash beyond the queue: %v, want unavailable with Retry-After", err)
	}
	close(block)
	wg.Wait()
	if queuedErr != nil {
		t.Errorf("queued hash: %v", queuedErr)
	}
}

func TestHasherWaitDeadline(t *testing.T) {
	h := (&Hasher{Params: cheap, Workers: 1, MaxQueue: 10, MaxWait: 20 * time.Millisecond}).init()
	block := make(chan struct{})
	started := make(chan struct{})
	go h.run(context.Background(), func() { close(started); <-block })
	<-started
	defer close(block)
	if _, _, err := h.Verify(context.Background(), "pw", h.dummy); authd.ErrorCode(err) != authd.EUnavailable {
		t.Errorf("verify past the wait deadline: %v, want unavailable", err)
	}
}

func TestHasherDummy(t *testing.T) {
	h := NewHasher(cheap, Policy{MinLength: 12})
	if err := h.VerifyDummy(context.Background(), "anything at all"); err != nil {
		t.Errorf("VerifyDummy: %v", err)
	}
	if !strings.HasPrefix(h.dummy, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("the dummy hash %q does not have the configured cost", h.dummy)
	}
}

// TestCheaperHashPadded: a wrong password against a hash cheaper than the
// configured cost (made before it was raised) is padded up to what a check
// at the configured cost takes on average, as every failure is, the
// dummy's included; a right one is not, and the configured cost's checks
// keep the average current.
func TestCheaperHashPadded(t *testing.T) {
	current := Params{MemoryKiB: 64, Iterations: 2, Parallelism: 1}
	h := (&Hasher{Params: current, Workers: 1, MaxQueue: 10, MaxWait: time.Second})
	var slept []time.Duration
	var sleptCtx context.Context
	h.sleep = func(ctx context.Context, d time.Duration) { slept, sleptCtx = append(slept, d), ctx }
	h.init()
	if h.current != "$argon2id$v=19$m=64,t=2,p=1$" {
		t.Fatalf("the configured cost's head %q", h.current)
	}
	older, _ := Hash("the right password", Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1})
	now, _ := Hash("the right password", current)
	ctx := context.Background()
	h.pace.Set(time.Hour, 0) // a check at the configured cost: far longer than any here
	if ok, _, _ := h.Verify(ctx, "a wrong guess", older); ok || len(slept) != 1 || slept[0] < 59*time.Minute {
		t.Fatalf("a wrong guess against an older, cheaper hash: ok %v, padded %v; want about an hour", ok, slept)
	}
	// A client that hangs up (its request's context cancelled, as a
	// half-closed connection does) still waits the padding out.
	gone, hangUp := context.WithCancel(ctx)
	h.sleep = func(ctx context.Context, d time.Duration) { hangUp(); slept, sleptCtx = append(slept, d), ctx }
	h.Verify(gone, "a wrong guess", older)
	if len(slept) != 2 || sleptCtx.Err() != nil {
		t.Errorf("padding for a client that hung up: %v, its wait cut by %v; want it whole", slept, sleptCtx.Err())
	}
	h.sleep = func(ctx context.Context, d time.Duration) { slept, sleptCtx = append(slept, d), ctx }
	slept = nil
	if ok, _, _ := h.Verify(ctx, "the right password", older); !ok || len(slept) != 0 {
		t.Errorf("the right password against the older hash: ok %v, padded %v; want no padding", ok, slept)
	}
	h.Verify(ctx, "a wrong guess", now)
	h.VerifyDummy(ctx, "a wrong guess")
	if len(slept) != 2 || slept[0] < 50*time.Minute || slept[1] < 50*time.Minute {
		t.Errorf("failed checks at the configured cost padded %v; want both to the average, like any failure", slept)
	}
	if got := h.pace.Typical(); got >= time.Hour*7/8*7/8+time.Second || got <= 0 {
		t.Errorf("the average after two checks at the configured cost: %s, want it moved toward them (< %s)", got, time.Hour*7/8*7/8)
	}
}

// TestMalformedIsAWrongPassword: a stored hash authd cannot check (argon2i,
// an older argon2 version, a broken string) answers as a wrong password,
// padded to the same moment, and is reported through Malformed; it
// answered at once with an error (a 500 that told the account apart from an
// unknown email).
func TestMalformedIsAWrongPassword(t *testing.T) {
	h := (&Hasher{Params: Params{MemoryKiB: 64, Iterations: 2, Parallelism: 1}, Workers: 1, MaxQueue: 10, MaxWait: time.Second})
	var slept []time.Duration
	h.sleep = func(_ context.Context, d time.Duration) { slept = append(slept, d) }
	var told []error
	h.Malformed = func(err error) { told = append(told, err) }
	h.init()
	h.pace.Set(time.Hour, 0)
	for _, hash := range []string{"$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "plain"} {
		slept, told = nil, nil
		ok, rehash, err := h.Verify(context.Background(), "a guess", hash)
		if ok || rehash || err != nil || len(slept) != 1 || slept[0] < 59*time.Minute || len(told) != 1 ||
			!errors.Is(told[0], ErrMalformedHash) {
			t.Errorf("Verify(%q) = %v, %v, %v, padded %v, told %v; want a wrong password, padded, told", hash, ok, rehash,
				err, slept, told)
		}
	}
}

// TestBcryptFloor: once CoverBcrypt has timed the costliest imported bcrypt
// cost, every failed check, an unknown email's dummy included, answers no
// sooner; a right password is never padded.
func TestBcryptFloor(t *testing.T) {
	h := (&Hasher{Params: cheap, Workers: 1, MaxQueue: 10, MaxWait: time.Second})
	var slept []time.Duration
	h.sleep = func(_ context.Context, d time.Duration) { slept = append(slept, d) }
	h.init()
	for _, cost := range []int{3, MaxBcryptCost + 1} {
		if _, err := h.CoverBcrypt(cost); err == nil {
			t.Errorf("CoverBcrypt(%d) accepted", cost)
		}
	}
	if took, err := h.CoverBcrypt(4); err != nil || took <= 0 || h.floor.Load() != int64(took) {
		t.Fatalf("CoverBcrypt(4) = %s, %v; floor %d", took, err, h.floor.Load())
	}
	h.floor.Store(int64(time.Hour)) // a bcrypt check far longer than any here
	ctx := context.Background()
	h.VerifyDummy(ctx, "a wrong guess")
	right, _ := Hash("the right password", cheap)
	h.Verify(ctx, "the right password", right)
	if len(slept) != 1 || slept[0] < 59*time.Minute {
		t.Errorf("padded %v; want the dummy's failure padded to about an hour, the right password not at all", slept)
	}
}

// TestArgon2Floor: CoverArgon2 times a check at the costliest stored
// argon2id cost above Params that is still checked, and raises the floor
// failed checks answer no sooner than; cheaper, equal, malformed and
// too costly ones are not timed.
func TestArgon2Floor(t *testing.T) {
	current := Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}
	h := (&Hasher{Params: current, Workers: 1, MaxQueue: 10, MaxWait: time.Second})
	h.init()
	if p, took := h.CoverArgon2([]string{"m=64,t=1,p=1", "m=32,t=1,p=1", "x", "m=1048576,t=100,p=1"}); took != 0 ||
		p != (Params{}) || h.floor.Load() != 0 {
		t.Fatalf("CoverArgon2 of none costlier and checked = %+v, %s; floor %d", p, took, h.floor.Load())
	}
	p, took := h.CoverArgon2([]string{"m=64,t=1,p=1", "m=8192,t=2,p=4", "m=4096,t=2,p=1"})
	if want := (Params{MemoryKiB: 8192, Iterations: 2, Parallelism: 1}); p != want || took <= 0 || h.floor.Load() != int64(took) {
		t.Errorf("CoverArgon2 = %+v, %s, floor %d; want %+v timed and the floor raised to it", p, took, h.floor.Load(), want)
	}
}

// TestFloorNeverLowered: a later timing of a cheaper stored hash, bcrypt's
// or argon2id's, leaves the floor failed checks answer no sooner than where
// a costlier one raised it, and when it was timed: the costliest stored
// hash must stay covered.
func TestFloorNeverLowered(t *testing.T) {
	for name, cover := range map[string]func(h *Hasher) error{
		"CoverBcrypt": func(h *Hasher) error { _, err := h.CoverBcrypt(4); return err },
		"CoverArgon2": func(h *Hasher) error {
			if p, took := h.CoverArgon2([]string{"m=128,t=1,p=1"}); took <= 0 {
				return fmt.Errorf("CoverArgon2 timed nothing (%+v)", p)
			}
			return nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := (&Hasher{Params: cheap, Workers: 1, MaxQueue: 10, MaxWait: time.Second}).init()
			h.floor.Store(int64(time.Hour)) // a costlier hash's check, timed before
			h.floorAt.Store(int64(time.Second))
			if err := cover(h); err != nil {
				t.Fatal(err)
			}
			if floor, at := time.Duration(h.floor.Load()), time.Duration(h.floorAt.Load()); floor != time.Hour || at != time.Second {
				t.Errorf("after timing a cheaper hash the floor is %s, timed at %s; want the hour, timed at 1s, kept", floor, at)
			}
		})
	}
}

// TestPaddingDeadline: failures are padded to a deadline past nearly every
// check at the configured cost (the average and four mean deviations), not
// to the average, which half the checks overrun; and the bcrypt floor
// grows as checks at the configured cost slow down (load slows both).
func TestPaddingDeadline(t *testing.T) {
	h := (&Hasher{Params: cheap, Workers: 1, MaxQueue: 10, MaxWait: time.Second})
	var slept []time.Duration
	h.sleep = func(_ context.Context, d time.Duration) { slept = append(slept, d) }
	h.init()
	ctx := context.Background()
	h.pace.Set(time.Hour, 10*time.Minute)
	h.VerifyDummy(ctx, "a wrong guess")
	if len(slept) != 1 || slept[0] < 99*time.Minute {
		t.Fatalf("a failure with checks averaging an hour ± 10 minutes padded %v; want to about 1 h 40", slept)
	}
	h.pace.Set(time.Second, 0)
	h.floor.Store(int64(time.Hour))
	h.floorAt.Store(int64(time.Second / 2)) // timed when checks took half as long as now
	slept = nil
	h.VerifyDummy(ctx, "a wrong guess")
	if len(slept) != 1 || slept[0] < 119*time.Minute {
		t.Errorf("a failure with checks twice as slow as when the bcrypt floor of an hour was timed padded %v; want about two hours", slept)
	}
}

func TestPolicy(t *testing.T) {
	p := Policy{MinLength: 12}
	tests := []struct {
		pw, email string
		ok        bool
	}{
		{"a fine passphrase", "x@example.org", true},
		{"ünïcödé-pässwörd", "x@example.org", true},
		{"ab cdefghijkl", "x@example.org", true},
		{"elevenchars", "x@example.org", false},
		{"1qaz2wsx3edc", "x@example.org", false},
		{"1QAZ2WSX3EDC", "x@example.org", false},
		{"john.smith rocks 1", "John.Smith@example.org", false},
		{"ab cdefghijkl", "ab@example.org", true}, // a two-letter name is not checked
		{strings.Repeat("é", 128), "x@example.org", true},
		{strings.Repeat("é", 129), "x@example.org", false},
		// As long as the shorter of the typed and the hashed (NFKC) form:
		// each ﷺ is 18 code points after it, each Ⅻ 3, each e with a
		// combining acute one.
		{strings.Repeat("\ufdfa", 12), "x@example.org", true},
		{strings.Repeat("\ufdfa", 128), "x@example.org", true},
		{strings.Repeat("\u216b", 6), "x@example.org", false},
		{strings.Repeat("\u216b", 12), "x@example.org", true},
		{strings.Repeat("e\u0301", 6), "x@example.org", false},
		{strings.Repeat("e\u0301", 128), "x@example.org", true},
		{"bad\xffutf8 password", "x@example.org", false},
		{"a fine passphrase\x00", "x@example.org", false},
	}
	for _, tt := range tests {
		err := p.Check(tt.pw, tt.email)
		if (err == nil) != tt.ok || (err != nil && authd.ErrorCode(err) != authd.EWeakPassword) {
			t.Errorf("Check(%q, %q) = %v, want ok=%v", tt.pw, tt.email, err, tt.ok)
		}
	}
	if n := len(common()); n < 10000 {
		t.Errorf("the common list has %d passwords, want at least 10,000", n)
	}
}

func asError(err error, target **authd.Error) bool {
	e, ok := err.(*authd.Error)
	if ok {
		*target = e
	}
	return ok
}

// TestSame: two passwords are one when they hash alike: after NFKC (a
// ligature and its letters, a full-width digit and its ASCII one), not
// otherwise.
func TestSame(t *testing.T) {
	h := &Hasher{}
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"oﬃce hours 12", "office hours 12", true},
		{"passphrase １", "passphrase 1", true},
		{"passphrase 1", "passphrase 2", false},
		{"Passphrase 1", "passphrase 1", false},
	} {
		if got := h.Same(tt.a, tt.b); got != tt.same {
			t.Errorf("Same(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
}
