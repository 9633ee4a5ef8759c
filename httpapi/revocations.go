package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/authd/authd"
)

// The revocation feed (GET /v1/auth/revocations) tells resource servers of
// every revocation, so that they refuse revoked tokens without asking
// introspection. Streams are bounded in number and lifetime, and every write
// has a deadline, so that stuck or idle clients cannot pin the server.
const (
	// DefaultRevocationHeartbeat is how often an idle stream sends a
	// comment, so that proxies keep it open and clients can tell a dead
	// one. Each heartbeat also rereads the table, a backstop to the
	// wake-ups. Clients take three silent intervals for a dead
	// connection, during which they still accept revoked tokens: 5 s
	// bounds that at 15 s.
	DefaultRevocationHeartbeat = 5 * time.Second
	// revocationWriteTimeout bounds one write to a stream's client.
	revocationWriteTimeout = 10 * time.Second
	// DefaultRevocationStreamMaxAge ends a stream, so that none pins an
	// instance for ever; the client resumes with Last-Event-ID and loses
	// nothing.
	DefaultRevocationStreamMaxAge = time.Hour
	// DefaultRevocationReadTimeout is the default of
	// Options.RevocationReadTimeout.
	DefaultRevocationReadTimeout = 5 * time.Second
	// DefaultRevocationStreams is the default of Options.MaxRevocationStreams.
	DefaultRevocationStreams = 100
	// revocationRetry is the reconnection delay suggested to EventSource
	// clients (SSE "retry:", milliseconds).
	revocationRetry = 1000
)

// feedEvent is one revocation as resource servers see it: a session ("sid")
// whose every token is revoked, or a user ("sub") whose tokens issued
// before "before" (Unix seconds, exclusive) are; "exp" is when every token
// it can affect has expired, after which it may be forgotten.
type feedEvent struct {
	ID     int64  `json:"id"`
	SID    string `json:"sid,omitempty"`
	Sub    string `json:"sub,omitempty"`
	Before int64  `json:"before,omitempty"`
	Exp    int64  `json:"exp"`
}

func toFeedEvent(e authd.RevocationEvent) feedEvent {
	f := feedEvent{ID: e.ID, Exp: e.ExpiresAt.Unix()}
	if e.Kind == authd.RevokedUser {
		f.Sub, f.Before = e.Subject.String(), e.CreatedAt.Unix()
	} else {
		f.SID = e.Subject.String()
	}
	return f
}

// revocations serves the feed to holders of a service token: Server-Sent
// Events to clients that ask for them (Accept: text/event-stream, as
// EventSource sends, or format=sse), JSON otherwise (pollers, curl). HEAD
// answers the headers alone, without reading the database or holding a
// stream.
func (s *Server) revocations(w http.ResponseWriter, r *http.Request) error {
	token := s.serviceTokenIndex(r)
	if token < 0 {
		return &authd.Error{Code: authd.EInvalidToken, Message: "A service token is required (AUTHD_SERVICE_TOKENS)."}
	}
	if err := checkedQuery(r); err != nil {
		return err
	}
	pos, err := feedPosition(r)
	if err != nil {
		return err
	}
	var sse bool
	switch format := r.URL.Query().Get("format"); {
	case format == "sse", format == "" && acceptsEventStream(r.Header.Values("Accept")):
		sse = true
	case format != "" && format != "json":
		return invalidParam("format", "must be json or sse")
	}
	if r.Method == http.MethodHead {
		ct := "application/json"
		if sse {
			ct = "text/event-stream"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if sse {
		return s.revocationStream(w, r, pos, token)
	}
	return s.revocationsJSON(w, r, pos)
}

// acceptsEventStream reports whether Accept lists text/event-stream with a
// quality above zero (RFC 9110 §12.5.1: q=0 means "not acceptable").
func acceptsEventStream(accept []string) bool {
	for _, field := range accept {
		for _, item := range strings.Split(field, ",") {
			typ, params, err := mime.ParseMediaType(strings.TrimSpace(item))
			if err != nil || typ != "text/event-stream" {
				continue
			}
			q, ok := params["q"]
			if !ok {
				return true
			}
			if v, err := strconv.ParseFloat(q, 64); err == nil && v > 0 {
				return true
			}
		}
	}
	return false
}

// feedCursor is a client's position in the feed: the last event it has
// seen, with that event's mark (authd.RevocationEvent.Mark), so that a
// position in a table since restored or recreated is recognised and served
// from the start. Written "<id>.<mark>" as the events' SSE id (which
// EventSource sends back as Last-Event-ID) and the JSON "cursor"; a plain
// "<id>" (clients older than marks, and last_id) is accepted too.
type feedCursor struct {
	after int64
	mark  string // "" when the client gave only the id
}

func cursorOf(e authd.RevocationEvent) feedCursor { return feedCursor{e.ID, e.Mark()} }

func (c feedCursor) String() string {
	if c.mark == "" {
		return strconv.FormatInt(c.after, 10)
	}
	return strconv.FormatInt(c.after, 10) + "." + c.mark
}

// firstRevocationRead runs the feed's reads that come before the answer
// starts — where to start, and the first page — with
// Options.RevocationReadTimeout: a database that does not answer is a 503,
// not a request that hangs (and, for a stream, holds a slot).
func (s *Server) firstRevocationRead(ctx context.Context, pos feedCursor) (feedCursor, []authd.RevocationEvent, error) {
	readCtx, cancel := context.WithTimeout(ctx, s.opts.RevocationReadTimeout)
	defer cancel()
	pos, evs, err := s.resumeRevocations(readCtx, pos)
	if err != nil && readCtx.Err() != nil && ctx.Err() == nil {
		return pos, nil, &authd.Error{Code: authd.EUnavailable, RetryAfter: 5 * time.Second, Err: err,
			Message: "The revocation feed could not read the database in time; retry."}
	}
	return pos, evs, err
}

// nextRevocationRead reads the events after pos for a stream already
// answering, bounded like the first read: a database that stops answering
// ends the stream (the client resumes elsewhere or later) rather than
// holding it, its slot and the server's shutdown.
func (s *Server) nextRevocationRead(ctx context.Context, pos feedCursor) (feedCursor, []authd.RevocationEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RevocationReadTimeout)
	defer cancel()
	return s.resumeRevocations(ctx, pos)
}

// resumeRevocations reads the page after pos, or from the start when pos
// is not in this database's table (authd.Service.ResumeRevocationEvents).
func (s *Server) resumeRevocations(ctx context.Context, pos feedCursor) (feedCursor, []authd.RevocationEvent, error) {
	after, evs, err := s.svc.ResumeRevocationEvents(ctx, pos.after, pos.mark)
	if err == nil && after != pos.after {
		pos = feedCursor{}
	}
	return pos, evs, err
}

// feedPosition is the position after which to serve: Last-Event-ID (an
// EventSource resuming) wins over since; neither means from the start.
func feedPosition(r *http.Request) (feedCursor, error) {
	field, v := "Last-Event-ID", r.Header.Get("Last-Event-ID")
	if v == "" {
		field, v = "since", r.URL.Query().Get("since")
	}
	if v == "" {
		return feedCursor{}, nil
	}
	id, mark, marked := strings.Cut(v, ".")
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n < 0 || marked && !validMark(mark) {
		return feedCursor{}, invalidParam(field, "must be an event id (a non-negative integer, or an event's SSE id)")
	}
	return feedCursor{n, mark}, nil
}

// validMark accepts what Mark writes: authd.MarkDigits lowercase hex
// digits, nothing else (a position authd never gave is junk, not another
// incarnation of the table).
func validMark(m string) bool {
	if len(m) != authd.MarkDigits {
		return false
	}
	for _, c := range m {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// revocationsJSON answers one page of events after pos:
// {"events": [...], "last_id": n, "cursor": "n.mark", "more": bool}; a
// poller asks again with since=cursor (at once while more is true).
// since=last_id works as well, but cannot tell a restored database once
// its new events have passed last_id.
func (s *Server) revocationsJSON(w http.ResponseWriter, r *http.Request, pos feedCursor) error {
	pos, evs, err := s.firstRevocationRead(r.Context(), pos)
	if err != nil {
		return err
	}
	out := struct {
		Events []feedEvent `json:"events"`
		LastID int64       `json:"last_id"`
		Cursor string      `json:"cursor"`
		More   bool        `json:"more"`
	}{Events: []feedEvent{}, More: len(evs) == authd.RevocationEventsPage}
	for _, e := range evs {
		out.Events = append(out.Events, toFeedEvent(e))
		pos = cursorOf(e)
	}
	out.LastID, out.Cursor = pos.after, pos.String()
	writeJSON(w, http.StatusOK, out)
	return nil
}

// errTooManyStreams answers a stream beyond Options.MaxRevocationStreams.
var errTooManyStreams = &authd.Error{Code: authd.EUnavailable, RetryAfter: 5 * time.Second,
	Message: "Too many revocation streams are open on this instance; retry, or poll with ?since= instead."}

// revocationStream sends the events after pos, then a "synced" event
// (the client is now current; EventSource's onmessage ignores it), then
// each new one as it commits (woken by the revocation set: this instance's commits, other
// instances' notifications, reloads), with a heartbeat when idle, until the
// client leaves, a write fails or the stream's lifetime ends. Every read
// checks that the position is still in the table: a stream open while the
// database is restored from a backup (or recreated) starts over, rather
// than wait, heartbeat after heartbeat, for ids the new table has already
// given to other events.
//
// Streams are bounded per instance, and with more than one service token a
// token holds at most half of them: a resource server that leaks verifiers
// (one made per request and never closed) holds a stream each, and must
// not leave the other services none.
func (s *Server) revocationStream(w http.ResponseWriter, r *http.Request, pos feedCursor, token int) error {
	share := cap(s.streams)
	if len(s.streamsOf) > 1 {
		share = max(1, share/2)
	}
	if n := s.streamsOf[token].Add(1); n > int64(share) {
		s.streamsOf[token].Add(-1)
		s.logger.WarnContext(r.Context(), "revocation streams: one service token holds its share; is a resource server "+
			"leaking verifiers?", "request_id", RequestID(r.Context()), "token_index", token, "streams", share)
		return errTooManyStreams
	}
	defer s.streamsOf[token].Add(-1)
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		return errTooManyStreams
	}
	ctx := r.Context()
	// The first read happens before the answer starts, so that a database
	// outage is still a 503 and not an empty stream.
	changed := s.svc.Revocations().Changed()
	pos, evs, err := s.firstRevocationRead(ctx, pos)
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	// The server's read timeout would cancel a long stream: there is
	// nothing more to read. Writes get their own deadline below.
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	send := func(text string) bool {
		if err := rc.SetWriteDeadline(time.Now().Add(revocationWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := w.Write([]byte(text)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(fmt.Sprintf("retry: %d\n: authd revocations\n\n", revocationRetry)) {
		return nil
	}
	maxAge := time.NewTimer(s.opts.RevocationStreamMaxAge)
	defer maxAge.Stop()
	beat := time.NewTicker(s.opts.RevocationHeartbeat)
	defer beat.Stop()
	synced := false
	woken := false // by a change (not by a heartbeat, nor in a backlog)
	for {
		var b strings.Builder
		for _, e := range evs {
			data, _ := json.Marshal(toFeedEvent(e))
			pos = cursorOf(e)
			fmt.Fprintf(&b, "id: %s\ndata: %s\n\n", pos, data)
		}
		caughtUp := len(evs) < authd.RevocationEventsPage
		if caughtUp && !synced {
			// The backlog is sent: from here on the client is current. The
			// heartbeat interval tells the client how long a silence means
			// a dead connection.
			fmt.Fprintf(&b, "event: synced\ndata: {\"last_id\":%d,\"heartbeat_ms\":%d}\n\n", pos.after,
				s.opts.RevocationHeartbeat.Milliseconds())
			synced = true
		}
		if b.Len() > 0 && !send(b.String()) {
			return nil
		}
		if caughtUp {
			select {
			case <-ctx.Done():
				return nil
			case <-maxAge.C:
				return nil
			case <-s.ending:
				return nil
			case <-changed:
				woken = true
			case <-beat.C:
				if !send(": heartbeat\n\n") {
					return nil
				}
			}
			changed = s.svc.Revocations().Changed()
		} else {
			select { // a long backlog still ends with the server
			case <-s.ending:
				return nil
			default:
			}
		}
		was := pos
		if woken {
			pos, evs, err = s.feed.next(ctx, changed, pos)
		} else {
			pos, evs, err = s.nextRevocationRead(ctx, pos)
		}
		woken = false
		if err != nil {
			// The answer has started: end the stream; the client resumes.
			if ctx.Err() == nil {
				s.logger.WarnContext(ctx, "revocation stream ended: reading events failed",
					"request_id", RequestID(ctx), "err", err)
			}
			return nil
		}
		if pos.after != was.after {
			s.logger.WarnContext(ctx, "revocation stream starts over: its position is not in the events table "+
				"(restored or recreated?)", "request_id", RequestID(ctx), "position", was.String())
		}
	}
}
