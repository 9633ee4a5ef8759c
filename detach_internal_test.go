package authd

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDetachEndsWithEndFlows: a flow detach freed from its client ends
// when EndFlows is called (a stop's deadline), and one detached after it
// is ended at once.
func TestDetachEndsWithEndFlows(t *testing.T) {
	s := NewService(Config{}, Deps{})
	ctx, cancel := s.detach(context.Background())
	defer cancel()
	if ctx.Err() != nil {
		t.Fatal("a detached flow ended before EndFlows")
	}
	s.EndFlows()
	late, cancelLate := s.detach(context.Background())
	defer cancelLate()
	for name, c := range map[string]context.Context{"a flow detached before": ctx, "a flow detached after": late} {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("%s EndFlows did not end", name)
		}
	}
}

// TestEveryDetachIsCancelled: each detach's cancel is deferred in the
// function that calls it. go vet's lostcancel knows context.WithTimeout,
// not this helper, and a flow whose cancel is lost would hold its
// registration on the service's halt context until EndFlows.
func TestEveryDetachIsCancelled(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	calls := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			deferred := map[string]bool{}
			var cancels []*ast.Ident
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.DeferStmt:
					if id, ok := n.Call.Fun.(*ast.Ident); ok {
						deferred[id.Name] = true
					}
				case *ast.AssignStmt:
					if len(n.Rhs) != 1 || len(n.Lhs) != 2 {
						return true
					}
					call, ok := n.Rhs[0].(*ast.CallExpr)
					if !ok {
						return true
					}
					if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "detach" {
						if id, ok := n.Lhs[1].(*ast.Ident); ok {
							cancels = append(cancels, id)
						}
					}
				}
				return true
			})
			for _, id := range cancels {
				calls++
				if id.Name == "_" || !deferred[id.Name] {
					t.Errorf("%s: %s's detach: its cancel (%s) is not deferred", fset.Position(id.Pos()), fn.Name.Name, id.Name)
				}
			}
		}
	}
	if calls < 20 {
		t.Errorf("%d detach calls found; the flows call it about twenty times: is the check still reading them?", calls)
	}
}
