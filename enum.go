package authd

import (
	"fmt"
	"slices"
	"strings"
)

// parseEnum returns s as a T when it is one of values, else an EInvalid error
// naming the kind and the allowed labels.
func parseEnum[T ~string](kind, s string, values []T) (T, error) {
	if slices.Contains(values, T(s)) {
		return T(s), nil
	}
	names := make([]string, len(values))
	for i, v := range values {
		names[i] = string(v)
	}
	return "", &Error{Code: EInvalid, Message: fmt.Sprintf("unknown %s %q (one of: %s)", kind, s, strings.Join(names, ", "))}
}

// AccountStatus is users.account_status.
type AccountStatus string

// Account statuses. A new account is inactive until its email is verified.
const (
	StatusActive   AccountStatus = "active"
	StatusInactive AccountStatus = "inactive"
	StatusLocked   AccountStatus = "locked"
	StatusDeleted  AccountStatus = "deleted"
)

// AccountStatuses lists every account status, in schema order.
func AccountStatuses() []AccountStatus {
	return []AccountStatus{StatusActive, StatusInactive, StatusLocked, StatusDeleted}
}

// ParseAccountStatus rejects anything but the labels of AccountStatuses.
func ParseAccountStatus(s string) (AccountStatus, error) {
	return parseEnum("account status", s, AccountStatuses())
}

// TokenType is jwt_tokens.token_type.
type TokenType string

// Token types.
const (
	TokenAccess  TokenType = "access"
	TokenRefresh TokenType = "refresh"
)

// TokenTypes lists every token type, in schema order.
func TokenTypes() []TokenType { return []TokenType{TokenAccess, TokenRefresh} }

// ParseTokenType rejects anything but the labels of TokenTypes.
func ParseTokenType(s string) (TokenType, error) {
	return parseEnum("token type", s, TokenTypes())
}

// VerificationType is verification_tokens.token_type.
type VerificationType string

// Verification token types.
const (
	VerifyEmail   VerificationType = "email_verification"
	PasswordReset VerificationType = "password_reset"
)

// VerificationTypes lists every verification token type, in schema order.
func VerificationTypes() []VerificationType {
	return []VerificationType{VerifyEmail, PasswordReset}
}

// ParseVerificationType rejects anything but the labels of VerificationTypes.
func ParseVerificationType(s string) (VerificationType, error) {
	return parseEnum("verification token type", s, VerificationTypes())
}

// Result is security_logs.result.
type Result string

// Event results.
const (
	ResultSuccess Result = "success"
	ResultFailure Result = "failure"
)

// Results lists every result, in schema order.
func Results() []Result { return []Result{ResultSuccess, ResultFailure} }

// ParseResult rejects anything but the labels of Results.
func ParseResult(s string) (Result, error) { return parseEnum("result", s, Results()) }

// EventType is security_logs.event_type. Labels may be added for new
// features, never removed or renamed.
type EventType string

// Security events.
const (
	EventRegistration           EventType = "registration"
	EventEmailVerificationSent  EventType = "email_verification_sent"
	EventEmailVerified          EventType = "email_verified"
	EventLoginSuccess           EventType = "login_success"
	EventLoginFailure           EventType = "login_failure"
	EventAccountLocked          EventType = "account_locked"
	EventAccountUnlocked        EventType = "account_unlocked"
	EventTokenRefreshed         EventType = "token_refreshed"
	EventRefreshTokenReuse      EventType = "refresh_token_reuse"
	EventLogout                 EventType = "logout"
	EventLogoutAll              EventType = "logout_all"
	EventSessionRevoked         EventType = "session_revoked"
	EventPasswordResetRequested EventType = "password_reset_requested"
	EventPasswordResetCompleted EventType = "password_reset_completed"
	EventPasswordChanged        EventType = "password_changed"
	EventConsentUpdated         EventType = "consent_updated"
	EventDataExported           EventType = "data_exported"
	EventAccountDeleted         EventType = "account_deleted"
	EventAdminAction            EventType = "admin_action"
	EventMFAEnrolled            EventType = "mfa_enrolled"               // a TOTP enrolment started
	EventMFAEnabled             EventType = "mfa_enabled"                // confirmed with a first code
	EventMFADisabled            EventType = "mfa_disabled"               // removed by its user
	EventMFAChallengeIssued     EventType = "mfa_challenge_issued"       // a right password; a code is asked for
	EventMFAChallengePassed     EventType = "mfa_challenge_passed"       // a right second factor at login
	EventMFAChallengeFailed     EventType = "mfa_challenge_failed"       // a wrong code or a dead mfa_token
	EventRecoveryCodeUsed       EventType = "recovery_code_used"         // one code spent
	EventRecoveryCodesReplaced  EventType = "recovery_codes_replaced"    // a new set of ten
	EventPasskeyAdded           EventType = "passkey_added"              // a passkey registered (or refused)
	EventPasskeyRemoved         EventType = "passkey_removed"            // deleted by its user or an administrator
	EventPasskeyUsed            EventType = "passkey_used"               // an assertion verified
	EventPasskeyCounterRegress  EventType = "passkey_counter_regression" // a sign counter went back: a clone?
	EventPasskeyLoginFailed     EventType = "passkey_login_failed"       // an assertion refused
	EventOIDCAuthorized         EventType = "oidc_authorized"            // a code issued to a client
	EventOIDCCodeRedeemed       EventType = "oidc_code_redeemed"         // a code exchanged for tokens
	EventOIDCCodeReuse          EventType = "oidc_code_reuse"            // a code presented again: its tokens revoked
	EventOIDCConsentGranted     EventType = "oidc_consent_granted"       // a user let a client in
	EventOIDCConsentRevoked     EventType = "oidc_consent_revoked"       // a user withdrew that
	EventOIDCClientAuthFailed   EventType = "oidc_client_auth_failed"    // a client's credentials refused at the token endpoint
	EventPasskeyRenamed         EventType = "passkey_renamed"            // a passkey given a new name by its user
	EventEmailChangeRequested   EventType = "email_change_requested"     // a link mailed to a new address
	EventEmailChanged           EventType = "email_changed"              // that link followed: the address changed
)

// EventTypes lists every event type, in schema order.
func EventTypes() []EventType {
	return []EventType{
		EventRegistration, EventEmailVerificationSent, EventEmailVerified,
		EventLoginSuccess, EventLoginFailure, EventAccountLocked, EventAccountUnlocked,
		EventTokenRefreshed, EventRefreshTokenReuse, EventLogout, EventLogoutAll,
		EventSessionRevoked, EventPasswordResetRequested, EventPasswordResetCompleted,
		EventPasswordChanged, EventConsentUpdated, EventDataExported, EventAccountDeleted,
		EventAdminAction, EventMFAEnrolled, EventMFAEnabled, EventMFADisabled,
		EventMFAChallengeIssued, EventMFAChallengePassed, EventMFAChallengeFailed,
		EventRecoveryCodeUsed, EventRecoveryCodesReplaced, EventPasskeyAdded, EventPasskeyRemoved,
		EventPasskeyUsed, EventPasskeyCounterRegress, EventPasskeyLoginFailed,
		EventOIDCAuthorized, EventOIDCCodeRedeemed, EventOIDCCodeReuse, EventOIDCConsentGranted,
		EventOIDCConsentRevoked, EventOIDCClientAuthFailed, EventPasskeyRenamed,
		EventEmailChangeRequested, EventEmailChanged,
	}
}

// ParseEventType rejects anything but the labels of EventTypes.
func ParseEventType(s string) (EventType, error) {
	return parseEnum("event type", s, EventTypes())
}
