package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/migrate"
	"github.com/google/uuid"
)

// TokenLineage checks migration 10 on a store at its head version: a
// refresh token's parent_id is lineage without a foreign key (it may name
// a token that is gone, as after the retention purge), the rows survive the
// migration down and up again (SQLite rebuilds the table both ways), and
// going down keeps every parent_id that names a token and clears the rest,
// so that the restored key holds.
func TokenLineage(t *testing.T, s authd.Store, m *migrate.Migrator) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	u := NewUser("lineage@example.org")
	sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(time.Hour)}
	token := func(name string, parent uuid.UUID) *authd.Token {
		return &authd.Token{ID: authd.NewID(), JTI: name, UserID: u.ID, SessionID: sess.ID, ParentID: parent,
			TokenType: authd.TokenRefresh, TokenValue: "digest-" + name, IssuedAt: now, ExpiresAt: now.Add(time.Hour),
			CreatedAt: now}
	}
	parent := token("parent", uuid.Nil)
	child := token("child", parent.ID)
	orphan := token("orphan", authd.NewID()) // its parent was purged
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, parent, child); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, orphan); err != nil {
		t.Fatalf("a parent_id naming no token must be stored (no foreign key): %v", err)
	}

	parentOf := func(jti string) uuid.UUID {
		t.Helper()
		tok, err := s.TokenByJTI(ctx, jti)
		if err != nil {
			t.Fatalf("token %s: %v", jti, err)
		}
		return tok.ParentID
	}
	if _, err := m.Down(ctx, 1); err != nil {
		t.Fatalf("down to 9: %v", err)
	}
	if got := parentOf("child"); got != parent.ID {
		t.Errorf("down: child's parent_id = %v, want %v (lineage kept)", got, parent.ID)
	}
	if got := parentOf("orphan"); got != uuid.Nil {
		t.Errorf("down: orphan's parent_id = %v, want NULL (the key is back)", got)
	}
	if parentOf("parent") != uuid.Nil {
		t.Error("down: a login's token gained a parent")
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if got := parentOf("child"); got != parent.ID {
		t.Errorf("up: child's parent_id = %v, want %v", got, parent.ID)
	}
	if err := s.CreateToken(ctx, token("orphan-2", authd.NewID())); err != nil {
		t.Errorf("up: the foreign key is back: %v", err)
	}
}
