package authd

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Code is a stable, public error code. Clients match on it; never rename one.
type Code string

// The error codes of the service. The HTTP adapter maps each to one status.
const (
	EInternal           Code = "internal"               // a bug or an unexpected failure
	EInvalid            Code = "validation_failed"      // malformed or invalid input
	ENotFound           Code = "not_found"              // the thing does not exist
	EConflict           Code = "conflict"               // a unique value is taken
	EUnavailable        Code = "unavailable"            // a dependency (the database) is down
	EInvalidCredentials Code = "invalid_credentials"    // wrong email or password
	EInvalidToken       Code = "invalid_token"          // missing, bad, expired or revoked token
	EEmailNotVerified   Code = "email_not_verified"     // login before verifying the address
	EAccountLocked      Code = "account_locked"         // too many failed logins
	ERateLimited        Code = "rate_limited"           // too many requests
	EWeakPassword       Code = "weak_password"          // outside the password policy
	EForbidden          Code = "forbidden"              // authenticated but not allowed
	ETooLarge           Code = "payload_too_large"      // a body over the limit
	EUnsupportedMedia   Code = "unsupported_media_type" // a body of the wrong content type
	EMethodNotAllowed   Code = "method_not_allowed"     // a route without this method
	EMFARequired        Code = "mfa_required"           // a right password; a second factor must follow
)

// FieldError says what is wrong with one input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the one error type of the domain. Message is safe to show to the
// client; Err is the internal cause, for logs only.
type Error struct {
	Code       Code
	Message    string
	Fields     []FieldError  // with EInvalid: which fields and why
	RetryAfter time.Duration // with EAccountLocked, ERateLimited, EUnavailable
	Hint       string        // for operators: what to do about it (CLI, logs)
	Err        error
}

func (e *Error) Error() string {
	switch {
	case e.Err != nil && e.Message != "":
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	case e.Err != nil:
		return fmt.Sprintf("%s: %v", e.Code, e.Err)
	default:
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// ErrBusy sheds a request the server has no capacity for now (the
// password hashing queue is full; an error whose Err is ErrBusy, such as
// SQLite's lane timing out, is shed too): an answer by design under load,
// which callers log as such (sampled), not as a failure per request.
var ErrBusy = &Error{Code: EUnavailable, Message: "The server is busy; try again shortly.", RetryAfter: time.Second}

// Errorf returns an *Error with the code and a client-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// InvalidFields is the message of an EInvalid *Error whose Fields say
// what is wrong, each field and what it must be (invalidField's): the
// problem's detail, which the fields complete.
const InvalidFields = "The request is invalid."

// invalidField returns an EInvalid *Error of one field's error: the field
// (as the request names it) and what it must be.
func invalidField(field, message string) *Error {
	return &Error{Code: EInvalid, Message: InvalidFields, Fields: []FieldError{{Field: field, Message: message}}}
}

// WrapError returns an *Error with the code and message whose internal cause is err.
func WrapError(code Code, err error, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, "" for nil,
// and EInternal for any other error.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// RetryAfterSeconds is the RetryAfter of the first *Error in err's chain in
// whole seconds, rounded up, as HTTP's Retry-After gives it; 0 for none.
// It never overflows: a lock until the year 9999 is about 292 years, the
// longest time.Duration, and the answer is at most 2^31-1 seconds (68
// years), so that it fits an int anywhere.
func RetryAfterSeconds(err error) int {
	var e *Error
	if !errors.As(err, &e) || e.RetryAfter <= 0 {
		return 0
	}
	s := e.RetryAfter / time.Second
	if e.RetryAfter%time.Second != 0 {
		s++
	}
	return int(min(s, math.MaxInt32))
}

// ErrorHint returns what an operator can do about err (the Hint of the
// first *Error in its chain), for logs and the CLI; "" for none. Never a
// client's to see.
func ErrorHint(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Hint
	}
	return ""
}

// ErrorMessage returns the client-safe message of err: the message of the
// first *Error in its chain, or a generic one for anything else.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return "An internal error has occurred."
}
