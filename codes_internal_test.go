package authd

import "testing"

// TestCodeShapes: a code is taken as people type or paste it — groups
// split by spaces, either case, the recovery code's hyphen or none, blanks
// around it — and anything else is refused before any check, a stray
// hyphen included.
func TestCodeShapes(t *testing.T) {
	for _, tt := range []struct {
		in, method, want string
	}{
		{"123456", MethodTOTP, "123456"},
		{"123 456", MethodTOTP, "123456"},
		{" 123456\n", MethodTOTP, "123456"},
		{"abcde-fghij", MethodRecoveryCode, "abcdefghij"},
		{"ABCDEFGHIJ", MethodRecoveryCode, "abcdefghij"},
		{"abcde fghij", MethodRecoveryCode, "abcdefghij"},
		{"\tabcde-fghij\r\n", MethodRecoveryCode, "abcdefghij"},
		{"ab cde-fg hij", MethodRecoveryCode, "abcdefghij"},
	} {
		method, got, err := anyCode(tt.in)
		if err != nil || method != tt.method || got != tt.want {
			t.Errorf("anyCode(%q) = %s %q, %v; want %s %q", tt.in, method, got, err, tt.method, tt.want)
		}
	}
	for _, in := range []string{"", "12345", "1234567", "12-3456", "abcde-fghij-", "-abcdefghij", "abcdefghij-",
		"abc-defghij", "abcde--fghij", "abcde-fghi1", "abcde\tfghij", "abcdefghijk"} {
		if method, got, err := anyCode(in); ErrorCode(err) != EInvalid {
			t.Errorf("anyCode(%q) = %s %q, %v; want refused as malformed", in, method, got, err)
		}
	}
}
