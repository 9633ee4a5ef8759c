package httpapi

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// Lists take limit and cursor and answer {"items": [...], "next_cursor": …}.

type list[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

func encodeCursor(c *authd.Cursor) *string {
	if c == nil {
		return nil
	}
	s := c.String()
	return &s
}

// listParams reads a listing's limit and cursor, and refuses any of its
// parameters given empty: a script's `?status=$S` with S unset would
// otherwise list every user, as a filter dropped would (checkQuery).
func listParams(q url.Values) (limit int, after *authd.Cursor, err error) {
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if q.Get(name) == "" {
			return 0, nil, invalidParam(name, "must not be empty: leave the parameter out instead")
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > authd.MaxListLimit {
			return 0, nil, invalidParam("limit", "must be a whole number from 1 to 200")
		}
	}
	if v := q.Get("cursor"); v != "" {
		if after, err = authd.ParseCursor(v); err != nil {
			return 0, nil, err
		}
	}
	return limit, after, nil
}

// securityLogOut is a security-log row as the API shows it.
type securityLogOut struct {
	ID                uuid.UUID      `json:"id"`
	EventType         string         `json:"event_type"`
	UserID            *uuid.UUID     `json:"user_id"`
	Timestamp         time.Time      `json:"timestamp"`
	IPAddress         string         `json:"ip_address"`
	UserAgent         string         `json:"user_agent"`
	Result            string         `json:"result"`
	FailureReason     string         `json:"failure_reason"`
	AdditionalContext map[string]any `json:"additional_context"`
}

// SecurityLogView is a security-log row as the API (and `authd admin logs
// --json`) shows it.
func SecurityLogView(l *authd.SecurityLog) any { return toSecurityLog(l) }

func toSecurityLog(l *authd.SecurityLog) securityLogOut {
	out := securityLogOut{ID: l.ID, EventType: string(l.EventType), Timestamp: l.Timestamp, IPAddress: l.IPAddress,
		UserAgent: l.UserAgent, Result: string(l.Result), FailureReason: l.FailureReason, AdditionalContext: l.AdditionalContext}
	if l.UserID != uuid.Nil {
		id := l.UserID
		out.UserID = &id
	}
	return out
}

func writeLogs(w http.ResponseWriter, p authd.Page[*authd.SecurityLog]) {
	items := make([]securityLogOut, 0, len(p.Items))
	for _, l := range p.Items {
		items = append(items, toSecurityLog(l))
	}
	writeJSON(w, http.StatusOK, list[securityLogOut]{Items: items, NextCursor: encodeCursor(p.Next)})
}

func (s *Server) mySecurityLog(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	limit, after, err := listParams(r.URL.Query())
	if err != nil {
		return err
	}
	p, err := s.svc.MySecurityLog(r.Context(), a, after, limit)
	if err != nil {
		return err
	}
	writeLogs(w, p)
	return nil
}
