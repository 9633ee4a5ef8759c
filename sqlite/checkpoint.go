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
// the longest 53-207 → 49-64 ms. The WAL grows larger between restarts
// (tens of MB where it stayed near 4; behind a long reader, as before,
// without bound until it ends; walHoldFrames bounds it under writers that
// outpace the passes, and walSizeLimit cuts the file back at a restart).
//
// Since the checkpointer syncs the WAL at each tick it finds new frames,
// a crash of the machine usually loses about that tick's commits
// (synchronous=NORMAL syncs nothing at commit), where SQLite's way left
// up to 1,000 pages to the kernel's writeback (some 30 s); more while the
// checkpointer waits for the lane or another process checkpoints.

// checkpointEvery is how often the checkpointer runs (a variable for its
// test). At a few thousand commits a second, a tick's WAL is some
// thousands of pages.
var checkpointEvery = 100 * time.Millisecond

// walSizeLimit is the size SQLite cuts the WAL file back to when it starts
// it over (not a bound on its growth): a long reader lets it grow (300 MB
// in 2 s of full-speed writes in the benchmark), and it would keep that
// size on disk.
const walSizeLimit = 64 << 20

// walRestartFrames is the WAL's size, in frames (pages), past which the
// checkpointer has it start over (SQLite's wal_autocheckpoint default).
const walRestartFrames = 1000

// walHoldFrames is the WAL's size, in frames, past which the checkpointer
// takes the lane even though its passes did not catch up with the writers
// (a slow disk under writes at full speed): else the WAL would grow for
// as long as the load lasted. 16,384 frames of 4 KiB: 64 MiB. A variable
// for its test.
var walHoldFrames = 16384

// checkpointPasses bounds the checkpoints outside the lane of one tick.
const checkpointPasses = 4

// checkpoints runs checkpoint every interval until ctx ends, then closes
// done.
func (s *Store) checkpoints(ctx context.Context, interval time.Duration, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.checkpoint(ctx)
	}
}

// checkpoint is one tick of the checkpointer.
func (s *Store) checkpoint(ctx context.Context) {
	if s.checkpointPasses(ctx) {
		s.checkpointInLane(ctx)
	}
}

// checkpointPasses runs PASSIVE checkpoints, which take no lock a writer
// or a reader waits for, outside the lane, each copying what was
// committed during the one before, until one had little left
// (walRestartFrames at most) and copied the whole WAL, and reports whether
// one in the lane should follow, for the frames committed during the
// last: the WAL starts over only once all of it is in the database file,
// which checkpoints beside writers that never pause do not reach (without
// it, the WAL grew to 1.2 GB in the benchmark's 4 s). Writers that outpace
// the passes are held too, after the last, once the WAL passes
// walHoldFrames. One with
// nothing to copy reads the WAL's header and returns.
//
// While a reader keeps the WAL from being copied, its file is synced
// instead: a checkpoint first syncs the WAL, and the writers' appends wait
// for that sync (ext4's journal), which behind a 2 s read had 300 MB to
// write (writes of 320-360 ms; synced as they come, 170-200 ms).
//
// An error (another process checkpointing, the disk, ctx's end) waits for
// the next tick: the writes that need the file say so themselves.
//
// A file moved or replaced under the store is never checkpointed
// (dbFile.check, before each pass): the WAL at its path is the old
// file's, and a connection opened for the checkpoint would replay it into
// the new file.
func (s *Store) checkpointPasses(ctx context.Context) (inLane bool) {
	for pass, last := 0, -1; ; pass++ {
		if s.file.check() != nil {
			return false
		}
		var busy, frames, copied int
		if err := s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil ||
			busy != 0 {
			return false
		}
		switch {
		case copied < frames: // a reader needs the rest
			s.syncWAL()
			return false
		case frames <= walRestartFrames: // small enough for a later tick
			return false
		case last >= 0 && frames-last <= walRestartFrames:
			return true
		case pass == checkpointPasses-1: // the writers outpace the passes: a later tick, unless the WAL is large
			return frames > walHoldFrames
		}
		last = frames
	}
}

// checkpointInLane runs a PASSIVE checkpoint in the lane, no writer
// writing: it copies the rest of the WAL, which can then start over. It
// holds the writers for the frames committed since the last pass and a
// sync, as wal_autocheckpoint held them for a thousand and a sync each
// time. The file is checked again once in the lane: it may have been
// replaced while the checkpointer waited.
func (s *Store) checkpointInLane(ctx context.Context) {
	if err := s.lane.enter(ctx); err != nil {
		return
	}
	defer s.lane.leave()
	if s.file.check() != nil {
		return
	}
	s.db.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`) //nolint:errcheck // as checkpointPasses
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
