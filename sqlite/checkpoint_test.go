package sqlite

import (
	"context"
	"encoding/binary"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/storetest"
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
	s.checkpoint(context.Background()) // the migrations' pages
	before := fileSize(t, s)
	for range 3 {
		logRows(t, s, u.ID, 5000) // about 1,000 pages each
	}
	if after := fileSize(t, s); after != before {
		t.Fatalf("the database file grew from %d to %d bytes as writes committed: they checkpointed", before, after)
	}
	s.checkpoint(context.Background())
	if after := fileSize(t, s); after <= before {
		t.Fatalf("the database file is %d bytes after the checkpointer ran, %d before: it copied nothing", after, before)
	}
	logRows(t, s, u.ID, 1)
	if n := walFrames(t, s); n > 20 {
		t.Errorf("the WAL holds %d frames after one small write: it did not start over", n)
	}
}

// TestCheckpointerRuns: the store's own checkpointer copies the WAL into
// the database file without being asked.
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
}

// walRestarts reads how many times the WAL has started over (its header's
// checkpoint sequence number).
func walRestarts(t *testing.T, s *Store) uint32 {
	t.Helper()
	f, err := os.Open(s.file.path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var h [16]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint32(h[12:])
}

// TestWALStartsOverUnderWriters: writers that never pause leave no moment
// at which the checkpointer's passes beside them have copied the whole
// WAL, and the WAL only starts over once all of it is in the database
// file: the checkpointer copies the rest in the lane, and the WAL starts
// over while the writes go on.
func TestWALStartsOverUnderWriters(t *testing.T) {
	old := checkpointEvery
	checkpointEvery = 5 * time.Millisecond
	t.Cleanup(func() { checkpointEvery = old })
	ctx := context.Background()
	s, u := migratedWithUser(t, "busy@example.org")
	logRows(t, s, u.ID, 1)
	first := walRestarts(t, s)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := s.CreateSecurityLog(ctx, authd.NewSecurityLog(storetest.Epoch, authd.EventTokenRefreshed,
					authd.ResultSuccess, u.ID, "192.0.2.1", "writer", "", map[string]any{"pad": strings.Repeat("x", 2000)})); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	defer wg.Wait()
	defer close(stop)
	for deadline := time.Now().Add(20 * time.Second); walRestarts(t, s) == first; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the WAL did not start over in 20 s of writes")
		}
	}
}
