package oidc_test

import (
	"testing"

	"github.com/authd/authd/internal/teststores"
)

// TestMain drops the PostgreSQL template the tests' databases are copied
// from (teststores).
func TestMain(m *testing.M) { teststores.Main(m) }
