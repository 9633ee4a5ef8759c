package httpapi

import (
	"crypto/subtle"
	"net/http"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// NewAdmin returns the admin listener (SPEC §5): /metrics and /healthz for
// the internal network, without a token, and the admin API, whose every
// request needs "Authorization: Bearer token", only when token is set.
func NewAdmin(opts Options, token string) *Server {
	s := newServer(opts)
	s.handle("GET /healthz", s.healthz)
	s.handle("GET /metrics", s.metrics)
	if token == "" {
		off := func(w http.ResponseWriter, r *http.Request) {
			s.writeError(w, r, authd.Errorf(authd.ENotFound, "The admin API is off: set AUTHD_ADMIN_TOKEN to enable it."))
		}
		s.mux.HandleFunc("/v1/admin", off) // not redirected to /v1/admin/
		s.mux.HandleFunc("/v1/admin/", off)
		s.handler = s.middleware(http.HandlerFunc(s.route))
		return s
	}
	// admin routes pattern to h behind the admin token, taking params.
	admin := func(pattern string, h handlerFunc, params ...string) {
		s.handleAuthed(pattern, func(w http.ResponseWriter, r *http.Request) error {
			got, ok := bearer(r)
			if !ok || token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				// A warning of its own, for alerts: whoever tries the admin
				// API without its token has reached the internal listener.
				s.logger.WarnContext(r.Context(), "admin token refused", "request_id", RequestID(r.Context()),
					"route", r.Pattern, "ip", client(r).IP, "token_offered", ok)
				refused := &authd.Error{Code: authd.EInvalidToken, Message: "The admin token (AUTHD_ADMIN_TOKEN) is required."}
				if !ok {
					refused.Err = errMissingToken // the challenge alone (RFC 6750 §3.1)
				}
				return refused
			}
			if err := checkedQuery(r); err != nil {
				return err
			}
			return h(w, r)
		}, params...)
	}
	admin("GET /v1/admin/users", s.adminUsers, "email", "status", "limit", "cursor")
	admin("GET /v1/admin/users/{id}", s.adminUser)
	admin("POST /v1/admin/users/{id}/lock", s.adminLock)
	admin("POST /v1/admin/users/{id}/unlock", fieldless(s.adminUnlock))
	admin("POST /v1/admin/users/{id}/revoke-sessions", fieldless(s.adminRevokeSessions))
	admin("POST /v1/admin/users/{id}/email", s.adminSetEmail)
	admin("DELETE /v1/admin/users/{id}", fieldless(s.adminDelete))
	admin("GET /v1/admin/users/{id}/mfa", s.adminMFA)
	admin("POST /v1/admin/users/{id}/reset-mfa", fieldless(s.adminResetMFA))
	admin("GET /v1/admin/security-logs", s.adminSecurityLogs,
		"user_id", "event_type", "result", "since", "until", "limit", "cursor")
	admin("GET /v1/admin/mail", s.adminMail, "state", "limit", "cursor")
	admin("POST /v1/admin/mail/{id}/retry", fieldless(s.adminRetryMail))
	admin("GET /v1/admin/clients", s.adminClients)
	admin("POST /v1/admin/clients", s.adminCreateClient)
	admin("GET /v1/admin/clients/{id}", s.adminClient)
	admin("PATCH /v1/admin/clients/{id}", s.adminUpdateClient)
	admin("DELETE /v1/admin/clients/{id}", fieldless(s.adminDeleteClient))
	admin("POST /v1/admin/clients/{id}/rotate-secret", fieldless(s.adminRotateClientSecret))
	s.handler = s.middleware(http.HandlerFunc(s.route))
	return s
}

// adminUserOut is a user as the admin API shows it: lockout state too,
// never the hash.
type adminUserOut struct {
	userOut
	FailedLoginAttempts int        `json:"failed_login_attempts"`
	FailedCodeAttempts  int        `json:"failed_code_attempts"`
	AccountLockedUntil  *time.Time `json:"account_locked_until"`
	CodesLockedUntil    *time.Time `json:"codes_locked_until"`
	// LockReason is who locked the account, admin or brute_force; null
	// unless the status is locked (a lock that ran out shows until lifted).
	LockReason *string `json:"lock_reason"`
}

// AdminUserView is a user as the admin API (and `authd admin --json`)
// shows it.
func AdminUserView(u *authd.User) any { return toAdminUser(u) }

func toAdminUser(u *authd.User) adminUserOut {
	return adminUserOut{userOut: toUser(u), FailedLoginAttempts: u.FailedLoginAttempts,
		FailedCodeAttempts: u.FailedCodeAttempts, AccountLockedUntil: optTime(u.AccountLockedUntil),
		CodesLockedUntil: optTime(u.CodesLockedUntil), LockReason: optString(string(u.LockReason))}
}

func (s *Server) adminUsers(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, after, err := listParams(q)
	if err != nil {
		return err
	}
	f := authd.UserFilter{Email: q.Get("email"), After: after, Limit: limit}
	if v := q.Get("status"); v != "" {
		if f.Status, err = authd.ParseAccountStatus(v); err != nil {
			return invalidParam("status", "must be active, inactive, locked or deleted")
		}
	}
	p, err := s.svc.Users(r.Context(), client(r), f)
	if err != nil {
		return err
	}
	items := make([]adminUserOut, 0, len(p.Items))
	for _, u := range p.Items {
		items = append(items, toAdminUser(u))
	}
	writeJSON(w, http.StatusOK, list[adminUserOut]{Items: items, NextCursor: encodeCursor(p.Next)})
	return nil
}

// userID reads the {id} of the path; a malformed one is simply not found.
func userID(r *http.Request) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return uuid.Nil, authd.Errorf(authd.ENotFound, "No such user.")
	}
	return id, nil
}

func (s *Server) adminUser(w http.ResponseWriter, r *http.Request) error {
	id, err := userID(r)
	if err != nil {
		return err
	}
	u, err := s.svc.User(r.Context(), client(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toAdminUser(u))
	return nil
}

func (s *Server) adminLock(w http.ResponseWriter, r *http.Request) error {
	id, err := userID(r)
	if err != nil {
		return err
	}
	var in struct {
		Until *time.Time `json:"until"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &in); err != nil {
			return err
		}
	}
	var until time.Time // absent: until an administrator unlocks
	if in.Until != nil {
		if in.Until.IsZero() { // the zero time would mean "no end", not a time in the past
			return invalid("until", "must be in the future")
		}
		until = *in.Until
	}
	return noContent(w, s.svc.LockUser(r.Context(), client(r), id, until))
}

// adminSetEmail moves an account to a new address: verified when the
// administrator says so, else a verification link goes there.
func (s *Server) adminSetEmail(w http.ResponseWriter, r *http.Request) error {
	id, err := userID(r)
	if err != nil {
		return err
	}
	var in struct {
		Email    string `json:"email"`
		Verified bool   `json:"verified"`
	}
	// Optional here so that without a body the service tells an unknown
	// id first, as every admin route does; it then asks for the email.
	if err := decodeOptional(w, r, &in); err != nil {
		return err
	}
	return noContent(w, s.svc.SetUserEmail(r.Context(), client(r), id, in.Email, in.Verified))
}

func (s *Server) adminMFA(w http.ResponseWriter, r *http.Request) error {
	id, err := userID(r)
	if err != nil {
		return err
	}
	st, err := s.svc.UserMFA(r.Context(), client(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, MFAView(st))
	return nil
}

func (s *Server) adminResetMFA(w http.ResponseWriter, r *http.Request) error {
	id, err := userID(r)
	if err != nil {
		return err
	}
	_, err = s.svc.ResetMFA(r.Context(), client(r), id)
	return noContent(w, err)
}

func (s *Server) adminUnlock(w http.ResponseWriter, r *http.Request) error {
	id, err := userID(r)
	if err != nil {
		return err
	}
	return noContent(w, s.svc.UnlockUser(r.Context(), client(r), id))
}

func (s *Server) adminRevokeSessions(w http.ResponseWriter, r *http.Request) error {
	id, err := userID(r)
	if err != nil {
		return err
	}
	return noContent(w, s.svc.RevokeUserSessions(r.Context(), client(r), id))
}

func (s *Server) adminDelete(w http.ResponseWriter, r *http.Request) error {
	id, err := userID(r)
	if err != nil {
		return err
	}
	return noContent(w, s.svc.DeleteUser(r.Context(), client(r), id))
}

func noContent(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) adminSecurityLogs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, after, err := listParams(q)
	if err != nil {
		return err
	}
	f := authd.SecurityLogFilter{After: after, Limit: limit}
	if v := q.Get("user_id"); v != "" {
		// The nil UUID is no user's id, and as a filter it would mean none:
		// every user's rows.
		if f.UserID, err = uuid.Parse(v); err != nil || f.UserID == uuid.Nil {
			return invalidParam("user_id", "must be a user's UUID")
		}
	}
	if v := q.Get("event_type"); v != "" {
		if f.EventType, err = authd.ParseEventType(v); err != nil {
			return invalidParam("event_type", "is not a known event type")
		}
	}
	if v := q.Get("result"); v != "" {
		if f.Result, err = authd.ParseResult(v); err != nil {
			return invalidParam("result", "must be success or failure")
		}
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			if *dst, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return invalidParam(name, rfc3339)
			}
			if dst.IsZero() { // what no bound is: the filter would be dropped, the listing widened
				return invalidParam(name, "must be after 0001-01-01T00:00:00Z, which reads as no bound")
			}
		}
	}
	p, err := s.svc.SecurityLogs(r.Context(), client(r), f)
	if err != nil {
		return err
	}
	writeLogs(w, p)
	return nil
}

// mailOut is an outbox mail as operators see it.
type mailOut struct {
	ID            uuid.UUID  `json:"id"`
	Kind          string     `json:"kind"`
	UserID        *uuid.UUID `json:"user_id"`
	Recipient     string     `json:"recipient"`
	CreatedAt     time.Time  `json:"created_at"`
	NextAttemptAt time.Time  `json:"next_attempt_at"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error"`
	DeadAt        *time.Time `json:"dead_at"`
}

// MailView is an outbox mail as the admin API (and `authd admin mail
// --json`) shows it.
func MailView(m *authd.OutboxMail) any {
	return mailOut{ID: m.ID, Kind: string(m.Kind), UserID: optID(m.UserID), Recipient: m.To, CreatedAt: m.CreatedAt,
		NextAttemptAt: m.NextAttemptAt, Attempts: m.Attempts, LastError: m.LastError, DeadAt: optTime(m.DeadAt)}
}

func (s *Server) adminMail(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, after, err := listParams(q)
	if err != nil {
		return err
	}
	f := authd.MailFilter{After: after, Limit: limit}
	switch q.Get("state") {
	case "", "pending":
	case "dead":
		f.Dead = true
	default:
		return invalidParam("state", "must be pending or dead")
	}
	p, err := s.svc.Mails(r.Context(), client(r), f)
	if err != nil {
		return err
	}
	items := make([]any, 0, len(p.Items))
	for _, m := range p.Items {
		items = append(items, MailView(m))
	}
	writeJSON(w, http.StatusOK, list[any]{Items: items, NextCursor: encodeCursor(p.Next)})
	return nil
}

func (s *Server) adminRetryMail(w http.ResponseWriter, r *http.Request) error {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return authd.Errorf(authd.ENotFound, "No such dead mail.")
	}
	return noContent(w, s.svc.RetryMail(r.Context(), client(r), id))
}
