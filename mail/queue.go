package mail

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/authd/authd"
)

// Queue hands mail to a mailer in the background, so that a request never
// waits for (or reveals the timing of) delivery. It retries a failed send a
// few times. It holds mail in memory only: the durable outbox replaces it.
type Queue struct {
	next     authd.Mailer
	logger   *slog.Logger
	mails    chan authd.Mail
	attempts int
	backoff  time.Duration
	done     chan struct{}
}

var _ authd.Mailer = (*Queue)(nil)

// NewQueue returns a queue of up to size mails in front of next. Run delivers.
func NewQueue(next authd.Mailer, logger *slog.Logger, size int) *Queue {
	return &Queue{next: next, logger: logger, mails: make(chan authd.Mail, size), attempts: 3,
		backoff: time.Second, done: make(chan struct{})}
}

// ErrQueueFull is returned by Send when the queue cannot take more mail.
var ErrQueueFull = errors.New("mail queue full")

// Send implements authd.Mailer: it queues m without waiting.
func (q *Queue) Send(_ context.Context, m authd.Mail) error {
	select {
	case q.mails <- m:
		return nil
	default:
		return ErrQueueFull
	}
}

// Run delivers queued mail until ctx ends, then delivers what is left,
// retries included, for at most drainTimeout, and returns.
func (q *Queue) Run(ctx context.Context) {
	defer close(q.done)
	deliverCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(drainTimeout, cancel) })
	defer stop()
	for {
		select {
		case m := <-q.mails:
			q.deliver(deliverCtx, m)
		case <-ctx.Done():
			for {
				select {
				case m := <-q.mails:
					q.deliver(deliverCtx, m)
				default:
					return
				}
			}
		}
	}
}

// drainTimeout bounds how long shutdown waits for queued mail.
const drainTimeout = 10 * time.Second

// Done is closed when Run has returned.
func (q *Queue) Done() <-chan struct{} { return q.done }

func (q *Queue) deliver(ctx context.Context, m authd.Mail) {
	wait := q.backoff
	for attempt := 1; ; attempt++ {
		sendCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := q.next.Send(sendCtx, m)
		cancel()
		if err == nil {
			return
		}
		if attempt >= q.attempts || ctx.Err() != nil {
			q.logger.Error("mail delivery failed", "kind", m.Kind, "attempts", attempt, "err", err)
			return
		}
		q.logger.Warn("mail delivery failed; retrying", "kind", m.Kind, "attempt", attempt, "in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		wait *= 4
	}
}
