package httpapi

import (
	"context"
	"sync"

	"github.com/authd/authd"
)

// feedPages lets the revocation streams that one change wakes share the
// read it calls for. Every stream waits on the same channel
// (authd.RevocationSet.Changed), most at the same position, and each would
// otherwise read the same page: a query per stream per revocation.
//
// A stream takes the next channel before it reads, and a revocation is
// applied to the set (closing its channel) after its commit, so a read
// started once channel ch was taken holds every event whose application
// closed the channels before ch. The page read for (ch, pos) therefore
// serves every stream at pos that took ch, even one that takes ch after
// the read: what the page lacks was applied later and closes ch, which
// wakes those streams again. Only reads on a change are shared; a
// heartbeat's read is a stream's own, the backstop for an event that
// closed no channel (its sessions already known here), as before.
//
// The map holds at most a page per stream (one per position, each stream
// at one) until the next change.
type feedPages struct {
	mu    sync.Mutex
	ch    <-chan struct{}          // the open channel the pages were read under
	pages map[feedCursor]*feedPage // by the position read after
	read  func(context.Context, feedCursor) (feedCursor, []authd.RevocationEvent, error)
}

// feedPage is one read's outcome, set before done closes.
type feedPage struct {
	done chan struct{}
	pos  feedCursor
	evs  []authd.RevocationEvent // shared: never modified
	err  error
}

// next returns the page after pos for a stream that took ch before it
// woke: read once for all the streams at pos that took ch. The read is no
// stream's (one client leaving must not fail the others); ctx ending only
// stops this stream's wait. A stream that waited for a read that failed
// reads on its own: one stuck connection must not end every stream.
func (f *feedPages) next(ctx context.Context, ch <-chan struct{}, pos feedCursor) (feedCursor, []authd.RevocationEvent, error) {
	f.mu.Lock()
	select {
	case <-ch:
		// Changed again since: the stream wakes for that anyway, and
		// pages kept for the current channel must not be dropped for it.
		f.mu.Unlock()
		return f.read(ctx, pos)
	default:
	}
	if ch != f.ch {
		// A new change: the earlier pages are older than some stream's
		// channel, so never shared again.
		f.ch, f.pages = ch, map[feedCursor]*feedPage{}
	}
	p, shared := f.pages[pos]
	if !shared {
		p = &feedPage{done: make(chan struct{})}
		f.pages[pos] = p
		// Bounded by the read's own timeout (RevocationReadTimeout), and
		// so is how long it may outlive its streams.
		go func() {
			p.pos, p.evs, p.err = f.read(context.Background(), pos)
			if p.err != nil {
				// A failure is told to the streams waiting now; a stream
				// that comes later reads again.
				f.mu.Lock()
				if f.pages[pos] == p {
					delete(f.pages, pos)
				}
				f.mu.Unlock()
			}
			close(p.done)
		}()
	}
	f.mu.Unlock()
	select {
	case <-p.done:
	case <-ctx.Done():
		return pos, nil, ctx.Err()
	}
	if p.err != nil && shared {
		return f.read(ctx, pos)
	}
	return p.pos, p.evs, p.err
}
