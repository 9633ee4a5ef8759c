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
// A stream takes the next channel before it reads, so a read started once
// channel ch was taken holds every event whose commit closed the channels
// before ch. The page read for (ch, pos) therefore serves every stream at
// pos that took ch: what it lacks was committed later and closes ch, which
// wakes those streams again. Only reads on a change are shared; a
// heartbeat's read is a stream's own, the backstop for an event that
// closed no channel (its sessions already known here).
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
// woke: read once for all the streams at pos that took ch. The read is
// detached from ctx (one client leaving must not fail the others); ctx
// ending only stops this stream's wait.
func (f *feedPages) next(ctx context.Context, ch <-chan struct{}, pos feedCursor) (feedCursor, []authd.RevocationEvent, error) {
	select {
	case <-ch:
		// Changed again since: a page read under ch may lack that change,
		// and the stream wakes for it anyway. Its own read is current.
		return f.read(ctx, pos)
	default:
	}
	f.mu.Lock()
	if ch != f.ch {
		// A new change: the earlier pages are older than some stream's
		// channel, so never shared again.
		f.ch, f.pages = ch, map[feedCursor]*feedPage{}
	}
	p, shared := f.pages[pos]
	if !shared {
		p = &feedPage{done: make(chan struct{})}
		f.pages[pos] = p
		go func() {
			p.pos, p.evs, p.err = f.read(context.WithoutCancel(ctx), pos)
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
		return p.pos, p.evs, p.err
	case <-ctx.Done():
		return pos, nil, ctx.Err()
	}
}
