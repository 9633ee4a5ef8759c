package sqlite

import (
	"os"
	"testing"
	"time"
)

// noCheckpoints keeps the checkpointer of the stores the test opens from
// running on its own.
func noCheckpoints(t *testing.T) {
	old := checkpointEvery
	checkpointEvery = time.Hour
	t.Cleanup(func() { checkpointEvery = old })
}

// fileSize is the size of the database file (not its WAL).
func fileSize(t *testing.T, s *Store) int64 {
	t.Helper()
	fi, err := os.Stat(s.file.path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// walFrames runs a PASSIVE checkpoint and returns the frames the WAL holds.
func walFrames(t *testing.T, s *Store) int {
	t.Helper()
	var busy, frames, copied int
	if err := s.db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
		t.Fatal(err)
	}
	return frames
}

// TestCommitsDoNotCheckpoint: a commit that takes the WAL far past SQLite's
// 1,000 pages copies nothing into the database file (that copy and its
// sync held every writer in the lane): the checkpointer does, and the WAL
// starts over at the next write.
func TestCommitsDoNotCheckpoint(t *testing.T) {
	noCheckpoints(t)
	s, u := migratedWithUser(t, "wal@example.org")
	s.checkpoint() // the migrations' pages
	before := fileSize(t, s)
	for range 3 {
		logRows(t, s, u.ID, 5000) // about 1,000 pages each
	}
	if after := fileSize(t, s); after != before {
		t.Fatalf("the database file grew from %d to %d bytes as writes committed: they checkpointed", before, after)
	}
	s.checkpoint()
	if after := fileSize(t, s); after <= before {
		t.Fatalf("the database file is %d bytes after the checkpointer ran, %d before: it copied nothing", after, before)
	}
	logRows(t, s, u.ID, 1)
	if n := walFrames(t, s); n > 20 {
		t.Errorf("the WAL holds %d frames after one small write: it did not start over", n)
	}
}

// TestCheckpointerRuns: the store's own checkpointer copies the WAL into
// the database file without being asked, and stops with the store.
func TestCheckpointerRuns(t *testing.T) {
	old := checkpointEvery
	checkpointEvery = 10 * time.Millisecond
	t.Cleanup(func() { checkpointEvery = old })
	s, u := migratedWithUser(t, "checkpointed@example.org")
	before := fileSize(t, s)
	logRows(t, s, u.ID, 5000)
	for deadline := time.Now().Add(10 * time.Second); fileSize(t, s) == before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the database file did not grow in 10 s: no checkpoint ran")
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.checkpointsDone:
	default:
		t.Error("the checkpointer runs on after Close")
	}
}
