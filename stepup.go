package authd

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// StepUp is the second factor a sensitive change (password change,
// erasure, removing a factor) needs on top of the password when the user
// has one: the password alone, phished or guessed, must not be enough to
// take an account protected by a second factor. Code is a current TOTP or
// an unused recovery code; Passkey, instead, an assertion (JSON) answering
// a step-up ceremony that BeginStepUp began.
type StepUp struct {
	Code    string
	Passkey []byte
}

func (p StepUp) empty() bool { return p.Code == "" && len(p.Passkey) == 0 }

// shape checks, before anything is looked up, that proof can be one: a code
// of a possible shape or a parsable assertion (EInvalid otherwise).
func (s *Service) shape(proof StepUp) error {
	if len(proof.Passkey) == 0 {
		_, _, err := anyCode(proof.Code)
		return err
	}
	if _, err := s.relyingParty(); err != nil {
		return invalidField("passkey", "cannot be used: passkeys are not enabled on this server (prove the second factor with a code)")
	}
	_, err := parseAssertion(proof.Passkey)
	return renameField(err, "credential", "passkey")
}

// secondFactors reads the user's factors and passkeys (locked inside a
// transaction).
func secondFactors(ctx context.Context, q Queries, user uuid.UUID) ([]*Factor, []*Passkey, error) {
	factors, err := q.Factors(ctx, user)
	if err != nil {
		return nil, nil, err
	}
	keys, err := q.Passkeys(ctx, user)
	return factors, keys, err
}

// hasSecondFactor reports whether the user has a second factor: TOTP
// enabled or a passkey.
func hasSecondFactor(factors []*Factor, keys []*Passkey) bool {
	return hasEnabledFactor(factors) || len(keys) > 0
}

// needStepUp answers, before any password is hashed, a sensitive change
// whose user has a second factor and sent none (MFARequired without a
// token), or that sent a proof of no possible shape (EInvalid, whether or
// not the user has a factor: bad input is told, not ignored).
func (s *Service) needStepUp(ctx context.Context, user uuid.UUID, proof StepUp) error {
	if !proof.empty() {
		if err := s.shape(proof); err != nil {
			return err
		}
	}
	factors, keys, err := secondFactors(ctx, s.store, user)
	if err != nil {
		return err
	}
	if hasSecondFactor(factors, keys) && proof.empty() {
		return &MFARequired{Methods: s.usable(methodsOf(factors, keys))}
	}
	return nil
}

// reauthenticateStepUp begins a sensitive change: a missing step-up is
// answered before any hashing (needStepUp), then the password is checked
// (reauthenticate). The change then calls recheck in its transaction.
func (s *Service) reauthenticateStepUp(ctx context.Context, c Client, a *AccessClaims, password, field string,
	proof StepUp, event EventType) (*User, error) {
	if err := s.needStepUp(ctx, a.UserID, proof); err != nil {
		return nil, err
	}
	return s.reauthenticate(ctx, c, a, password, field, event)
}

// recheck reloads and locks, in a sensitive change's transaction, the user
// whose password was checked (checked) and refuses the change when the
// account has locked or its password changed since (stillChecked, which
// logs the refusal), the token's session has ended since the token was
// checked (sessionLive), or proof does not pass the second factor
// (checkStepUp: a dead session's code counts toward nothing). It returns
// the user as the transaction sees it, and the time once it was held (a
// wait for the lock is not the change's past).
func (s *Service) recheck(ctx context.Context, tx *txn, c Client, a *AccessClaims, checked *User, proof StepUp,
	event EventType) (*User, time.Time, error) {
	u, err := tx.User(ctx, checked.ID)
	if err != nil {
		return nil, time.Time{}, err
	}
	now := s.now()
	if err := s.stillChecked(ctx, tx, c, u, checked.PasswordHash, event, now); err != nil {
		return nil, now, err
	}
	if err := sessionLive(ctx, tx, a); err != nil {
		return nil, now, err
	}
	return u, now, s.checkStepUp(ctx, tx, c, u, proof, event, now)
}

// sessionLive refuses (EInvalidToken), in a sensitive change's transaction
// and after its user's lock, a change whose token's session ended after the
// token was checked: while the password was hashed, say, the owner signed
// that session out or ended them all. Every change of the password, the
// address or a factor asks it. The session is locked (users before
// their rows), so an ending that comes later waits for the change and
// finds it done.
func sessionLive(ctx context.Context, tx *txn, a *AccessClaims) error {
	sess, err := tx.Session(ctx, a.SessionID)
	if ErrorCode(err) == ENotFound || (err == nil && (sess.UserID != a.UserID || !sess.RevokedAt.IsZero())) {
		return errInvalidToken
	}
	return err
}

// checkStepUp checks proof in the change's transaction, after the lock and
// password checks: the factor may have been enabled since needStepUp. A
// wrong code counts toward the lock and is logged as a failure of event.
func (s *Service) checkStepUp(ctx context.Context, tx *txn, c Client, u *User, proof StepUp, event EventType,
	now time.Time) error {
	factors, keys, err := secondFactors(ctx, tx, u.ID)
	if err != nil {
		return err
	}
	return s.checkProof(ctx, tx, c, u, factors, keys, proof, event, now)
}

// checkProof checks proof against the user's factors and passkeys (read in
// tx). A wrong code counts toward the lock; a refused passkey assertion is
// logged and counts toward nothing (anyone can make one up), and a
// ceremony that is not this user's step-up is EInvalidToken.
func (s *Service) checkProof(ctx context.Context, tx *txn, c Client, u *User, factors []*Factor, keys []*Passkey,
	proof StepUp, event EventType, now time.Time) error {
	if !hasSecondFactor(factors, keys) {
		return nil
	}
	if proof.empty() {
		return &MFARequired{Methods: s.usable(methodsOf(factors, keys))}
	}
	if len(proof.Passkey) > 0 {
		return s.checkPasskeyProof(ctx, tx, c, u, proof.Passkey, event, now)
	}
	method, code, err := anyCode(proof.Code)
	if err != nil {
		return err
	}
	if err := s.refuseCodes(ctx, tx, c, u, event, now); err != nil {
		return err
	}
	ok, err := s.checkCode(ctx, tx, c, u, factorOf(factors, FactorTOTP), method, code, event, now)
	if err != nil {
		return err
	}
	if !ok {
		return s.failedCheck(ctx, tx, c, u, now, event, reasonWrongCode, lockByCodes, errWrongCode)
	}
	return s.codeRight(ctx, tx, u, now)
}

// methodsOf lists the methods by which a user with factors and passkeys
// can pass the second factor: totp when TOTP is enabled, passkey when they
// have one, recovery_code when either is.
func methodsOf(factors []*Factor, keys []*Passkey) []string {
	var methods []string
	if confirmedTOTP(factors) != nil {
		methods = append(methods, MethodTOTP)
	}
	if len(keys) > 0 {
		methods = append(methods, MethodPasskey)
	}
	if hasSecondFactor(factors, keys) {
		methods = append(methods, MethodRecoveryCode)
	}
	return methods
}
