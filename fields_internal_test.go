package authd

import (
	"errors"
	"fmt"
	"testing"
)

// TestRenameFieldLeavesItsErrorAlone: renameField answers a renamed copy
// and leaves the error it was given as it was, so that a shared error
// (a package's sentinel) is never renamed for every later request, nor
// written by two requests at once.
func TestRenameFieldLeavesItsErrorAlone(t *testing.T) {
	shared := &Error{Code: EInvalid, Message: InvalidFields,
		Fields: []FieldError{{Field: "credential", Message: "is malformed"}, {Field: "name", Message: "is too long"}}}
	got := renameField(shared, "credential", "passkey")
	e, ok := errors.AsType[*Error](got)
	if !ok || e.Fields[0].Field != "passkey" || e.Fields[1].Field != "name" {
		t.Fatalf("renamed: %+v; want credential named passkey, name kept", got)
	}
	if shared.Fields[0].Field != "credential" {
		t.Errorf("the error given was renamed too: %+v", shared.Fields)
	}
	if other := fmt.Errorf("no fields"); renameField(other, "credential", "passkey") != other {
		t.Error("an error without field errors was not returned as it was")
	}
	if renameField(shared, "email", "new_email") != shared {
		t.Error("an error without the field was not returned as it was")
	}
}
