package authd

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// StepUp is the second factor a sensitive change (password change,
// erasure) needs on top of the password when the user has one enabled: the
// password alone, phished or guessed, must not be enough to take an account
// protected by a second factor. Code is a current TOTP or an unused
// recovery code.
type StepUp struct {
	Code string
}

// needStepUp answers, before any password is hashed, a sensitive change
// whose user has a second factor and sent none (MFARequired without a
// token), or sent a code of no possible shape (EInvalid).
func (s *Service) needStepUp(ctx context.Context, user uuid.UUID, proof StepUp) error {
	factors, err := s.store.Factors(ctx, user)
	if err != nil {
		return err
	}
	if !hasEnabledFactor(factors) {
		return nil
	}
	if proof.Code == "" {
		return &MFARequired{Methods: methodsOf(factors)}
	}
	_, _, err = anyCode(proof.Code)
	return err
}

// checkStepUp checks proof in the change's transaction, after the lock and
// password checks: the factor may have been enabled since needStepUp. A
// wrong code counts toward the lock and is logged as a failure of event.
func (s *Service) checkStepUp(ctx context.Context, tx *txn, c Client, u *User, proof StepUp, event EventType,
	now time.Time) error {
	factors, err := tx.Factors(ctx, u.ID)
	if err != nil {
		return err
	}
	return s.checkProof(ctx, tx, c, u, factors, proof, event, now)
}

// checkProof checks proof against the user's factors (read in tx).
func (s *Service) checkProof(ctx context.Context, tx *txn, c Client, u *User, factors []*Factor, proof StepUp,
	event EventType, now time.Time) error {
	if !hasEnabledFactor(factors) {
		return nil
	}
	if proof.Code == "" {
		return &MFARequired{Methods: methodsOf(factors)}
	}
	method, code, err := anyCode(proof.Code)
	if err != nil {
		return err
	}
	ok, err := s.checkCode(ctx, tx, c, u, factorOf(factors, FactorTOTP), method, code, now)
	if err != nil {
		return err
	}
	if !ok {
		return s.failedCheck(ctx, tx, c, u, now, event, "invalid code", "too many failed second-factor checks", errWrongCode)
	}
	return nil
}

// methodsOf lists the methods by which a user with factors can pass the
// second factor.
func methodsOf(factors []*Factor) []string {
	var methods []string
	if f := factorOf(factors, FactorTOTP); f != nil && f.Confirmed {
		methods = append(methods, MethodTOTP)
	}
	if hasEnabledFactor(factors) {
		methods = append(methods, MethodRecoveryCode)
	}
	return methods
}
