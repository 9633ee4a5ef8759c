package authd_test

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/authd/authd"
)

func TestRetryAfterSeconds(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("plain"), 0},
		{&authd.Error{Code: authd.ERateLimited}, 0},
		{&authd.Error{Code: authd.ERateLimited, RetryAfter: time.Nanosecond}, 1},
		{&authd.Error{Code: authd.ERateLimited, RetryAfter: time.Second}, 1},
		{&authd.Error{Code: authd.ERateLimited, RetryAfter: 1500 * time.Millisecond}, 2},
		{fmt.Errorf("wrapped: %w", &authd.Error{Code: authd.EAccountLocked, RetryAfter: 15 * time.Minute}), 900},
		// A lock until the year 9999: time.Time.Sub saturates here.
		{&authd.Error{Code: authd.EAccountLocked, RetryAfter: math.MaxInt64}, math.MaxInt32},
		{&authd.Error{Code: authd.EAccountLocked, RetryAfter: math.MaxInt32 * time.Second}, math.MaxInt32},
	} {
		if got := authd.RetryAfterSeconds(c.err); got != c.want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}
