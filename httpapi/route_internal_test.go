package httpapi

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestForgottenQueryCheckIsLogged: a handleAuthed route whose guard never
// calls checkedQuery took its query unread; that is logged at error, so
// that the mistake shows before a misspelt filter widens something.
func TestForgottenQueryCheckIsLogged(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := newServer(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s.handleAuthed("GET /v1/forgetful", func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	s.handleAuthed("GET /v1/careful", func(w http.ResponseWriter, r *http.Request) error {
		if err := checkedQuery(r); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	for _, path := range []string{"/v1/careful?a=1", "/v1/forgetful", "/v1/forgetful?a=1"} {
		s.mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	if n := strings.Count(logs.String(), "did not check its query"); n != 1 || !strings.Contains(logs.String(), "/v1/forgetful") {
		t.Errorf("%d error lines, want one for the forgetful route's query:\n%s", n, logs.String())
	}
}
