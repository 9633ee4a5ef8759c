package oidc_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/authd/authd"
)

// goneClientStore answers that the client gone does not exist once told
// to, as when it is deleted between two reads.
type goneClientStore struct {
	authd.Store
	gone string
	on   atomic.Bool
}

func (s *goneClientStore) OAuthClient(ctx context.Context, id string) (*authd.OAuthClient, error) {
	if s.on.Load() && id == s.gone {
		return nil, authd.Errorf(authd.ENotFound, "no such client")
	}
	return s.Store.OAuthClient(ctx, id)
}

// TestConsentsOfADeletedClient: a client deleted while its consents are
// listed is left out of the list, which still answers.
func TestConsentsOfADeletedClient(t *testing.T) {
	t.Parallel()
	store := &goneClientStore{Store: openSQLite(t), gone: "gone"}
	e := newEnv(t, store)
	u := e.user("dora@example.org")
	for _, id := range []string{"gone", "kept"} {
		e.client(id, authd.ClientConfidential, false)
		if err := e.store.SaveConsent(context.Background(), &authd.Consent{ID: authd.NewID(), UserID: u.ID, ClientID: id,
			Scopes: []string{authd.ScopeOpenID}, GrantedAt: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := e.svc.Login(context.Background(), authd.Client{}, "dora@example.org", goodPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	store.on.Store(true)
	status, body := e.call("GET", "/v1/users/me/consents", pair.AccessToken)
	if status != http.StatusOK || strings.Contains(body, `"client_id":"gone"`) || !strings.Contains(body, `"client_id":"kept"`) {
		t.Errorf("consents with a client deleted meanwhile: %d %s; want only kept's", status, body)
	}
}
