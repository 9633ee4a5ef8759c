package sqlite

import (
	"context"
	"os"
	"time"
)

// The WAL's checkpoints: copying what was committed to the WAL into the
// database file, so that the WAL can start over.
//
// Left to SQLite (wal_autocheckpoint), the connection whose commit took the
// WAL past 1,000 pages copied them and synced the file inside its commit,
// so in the lane, every other writer waiting; and behind a long reader (an
// export), whose snapshot the WAL must keep, the backlog of the read's
// whole time at once. The store turns that off (Open) and runs the
// checkpoints from a goroutine of its own, beside the writers.
// BenchmarkWritesBehindALongRead, eight writers at full speed, three
// rounds alternating on a busy machine, SQLite's way and then this one:
// behind a 2 s read, the longest write 665-834 ms → 164-183 ms; with no
// read, 1,470-1,640 → 2,010-2,400 writes a second, p99 32-37 → 21-27 ms,
// the longest 53-207 → 49-64 ms. The WAL file grows to more (tens of MB
// where it stayed at 4; walSizeLimit bounds it).
//
// Since the checkpointer syncs the WAL at each tick it finds new frames,
// a crash of the machine loses at most about that tick's commits
// (synchronous=NORMAL syncs nothing at commit), where SQLite's way left
// up to 1,000 pages to the kernel's writeback (some 30 s).

// checkpointEvery is how often the checkpointer runs (a variable for its
// test). At a few thousand commits a second, a tick's WAL is some
// thousands of pages.
var checkpointEvery = 100 * time.Millisecond

// walSizeLimit is the size SQLite cuts the WAL file back to when it starts
// it over: a long reader lets it grow (300 MB in 2 s of full-speed writes
// in the benchmark), and it would keep that size on disk.
const walSizeLimit = 64 << 20

// walRestartFrames is the WAL's size, in frames (pages), past which the
// checkpointer has it start over (SQLite's wal_autocheckpoint default).
const walRestartFrames = 1000

// checkpointPasses bounds the checkpoints outside the lane of one tick.
const checkpointPasses = 4

// checkpoints runs checkpoint every interval until stop closes, then
// closes done.
func (s *Store) checkpoints(interval time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.checkpoint()
	}
}

// checkpoint runs PASSIVE checkpoints, which take no lock a writer or a
// reader waits for, outside the lane, each copying what was committed
// during the one before, until one had little left (walRestartFrames at
// most) and copied the whole WAL; then one in the lane, for the frames
// committed during the last. The WAL starts over only once all of it is
// in the database file, which checkpoints beside writers that never pause
// do not reach (without the last one, the WAL grew to 1.2 GB in the
// benchmark's 4 s); that one holds the writers for at most a thousand
// frames' copy and a sync, as wal_autocheckpoint held them each time. One
// with nothing to copy reads the WAL's header and returns.
//
// While a reader keeps the WAL from being copied, its file is synced
// instead: a checkpoint first syncs the WAL, and the writers' appends wait
// for that sync (ext4's journal), which behind a 2 s read had 300 MB to
// write (writes of 320-360 ms; synced as they come, 170-200 ms).
//
// An error (another process checkpointing, the disk) waits for the next
// tick: the writes that need the file say so themselves.
//
// A file moved or replaced under the store is not checkpointed
// (dbFile.check): the WAL at its path is the old file's, and a connection
// opened for the checkpoint would replay it into the new file.
func (s *Store) checkpoint() {
	if s.file.check() != nil {
		return
	}
	for pass, last := 0, -1; ; pass++ {
		var busy, frames, copied int
		if err := s.db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil || busy != 0 {
			return
		}
		if copied < frames { // a reader needs the rest
			s.syncWAL()
			return
		}
		if frames <= walRestartFrames { // small enough for a later tick
			return
		}
		if last >= 0 && frames-last <= walRestartFrames {
			break
		}
		if pass == checkpointPasses-1 { // the writers outpace the passes: a later tick
			return
		}
		last = frames
	}
	if err := s.lane.enter(context.Background()); err != nil {
		return
	}
	defer s.lane.leave()
	s.db.Exec(`PRAGMA wal_checkpoint(PASSIVE)`) //nolint:errcheck // as above
}

// syncWAL syncs the WAL file: what SQLite would sync at the next
// checkpoint, earlier and in smaller parts.
func (s *Store) syncWAL() {
	f, err := os.Open(s.file.path + "-wal")
	if err != nil {
		return // none yet
	}
	defer f.Close()
	f.Sync() //nolint:errcheck // the checkpoint's own sync reports the disk's errors
}
