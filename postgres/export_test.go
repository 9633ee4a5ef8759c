package postgres

import "time"

// SetListenCheck sets how long s's revocation listener waits in silence
// before it pings its connection, for tests of a stalled connection.
func SetListenCheck(s *Store, d time.Duration) { s.listenCheck = d }

// KeepIdleSession is keepIdleSession, for its test.
var KeepIdleSession = keepIdleSession
