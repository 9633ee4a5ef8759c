// Package metrics exposes authd's Prometheus metrics: requests by route and
// status with latency, security events (login outcomes, lockouts, …),
// password hashing time and queue, mail deliveries and the outbox, the
// revocation set, the database pool and the rate limits' Redis fallback.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/authd/authd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the collectors; its methods are the hooks the other
// packages call.
type Metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	events    *prometheus.CounterVec
	hashTime  prometheus.Histogram
	hashQueue prometheus.Gauge
	mails     *prometheus.CounterVec
}

// New registers authd's collectors, and Go's and the process's, in a new
// registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_http_requests_total", Help: "HTTP requests by route pattern and status.",
		}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "authd_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_security_events_total",
			Help: "Security events committed, by event type and result (login outcomes, lockouts, …).",
		}, []string{"event", "result"}),
		hashTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "authd_password_hash_seconds", Help: "Time of one argon2id hash or verification.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 10),
		}),
		hashQueue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authd_password_hash_queue", Help: "Requests waiting for a hashing worker.",
		}),
		mails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_mail_deliveries_total", Help: "Mail delivery attempts by kind and outcome (sent, retried, dead, dropped).",
		}, []string{"kind", "outcome"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.events, m.hashTime, m.hashQueue, m.mails,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Request counts one HTTP request.
func (m *Metrics) Request(route string, status int, elapsed time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(elapsed.Seconds())
}

// Event counts one committed security event.
func (m *Metrics) Event(ev authd.EventType, res authd.Result) {
	m.events.WithLabelValues(string(ev), string(res)).Inc()
}

// Hash records one hash's duration and the queue behind it.
func (m *Metrics) Hash(d time.Duration, queued int) {
	m.hashTime.Observe(d.Seconds())
	m.hashQueue.Set(float64(queued))
}

// Mail counts one delivery attempt.
func (m *Metrics) Mail(kind authd.MailKind, ev authd.MailEvent) {
	m.mails.WithLabelValues(string(kind), string(ev)).Inc()
}

// Outbox publishes the outbox depth, read from the store once a scrape
// (both gauges from one read: one count of the outbox, one snapshot).
func (m *Metrics) Outbox(stats func(context.Context) (authd.OutboxStats, error)) {
	m.reg.MustRegister(&outboxCollector{stats: stats,
		pending: prometheus.NewDesc("authd_mail_outbox_pending", "Mails waiting in the outbox (-1: unknown).", nil, nil),
		dead:    prometheus.NewDesc("authd_mail_outbox_dead", "Mails given up on (-1: unknown).", nil, nil)})
}

// outboxCollector is the outbox's two gauges, from one read a scrape.
type outboxCollector struct {
	stats         func(context.Context) (authd.OutboxStats, error)
	pending, dead *prometheus.Desc
}

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.pending; ch <- c.dead }

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pending, dead := -1.0, -1.0
	if st, err := c.stats(ctx); err == nil {
		pending, dead = float64(st.Pending), float64(st.Dead)
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, pending)
	ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, dead)
}

// Revocations publishes the size of the revocation set.
func (m *Metrics) Revocations(set *authd.RevocationSet) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_revoked_sessions", Help: "Revoked sessions held in memory."},
			func() float64 { return float64(set.Len()) }),
	)
}

// RateLimitFallback publishes whether the rate limits, meant to be shared
// through Redis, are counted in this instance's memory because Redis cannot
// be used (1) or not (0), read at each scrape.
func (m *Metrics) RateLimitFallback(fallback func() bool) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_rate_limit_fallback",
		Help: "1 while Redis (AUTHD_REDIS_URL) cannot be used and rate limits count in this instance's memory, else 0."},
		func() float64 {
			if fallback() {
				return 1
			}
			return 0
		}))
}

// PoolStats is a snapshot of a database connection pool.
type PoolStats struct {
	InUse, Idle, Max int
	WaitCount        int64
}

// Pool publishes the database pool, read at each scrape.
func (m *Metrics) Pool(stats func() PoolStats) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_db_connections_in_use", Help: "Database connections in use."},
			func() float64 { return float64(stats().InUse) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_db_connections_idle", Help: "Idle database connections."},
			func() float64 { return float64(stats().Idle) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_db_connections_max", Help: "Most database connections the pool opens."},
			func() float64 { return float64(stats().Max) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authd_db_connection_waits_total", Help: "Times a request waited for a connection."},
			func() float64 { return float64(stats().WaitCount) }),
	)
}

// ConnStats is a snapshot of the public listener's connections.
type ConnStats struct {
	Open                                int
	RefusedFull, RefusedClient, Evicted int64
}

// Connections publishes the public listener's connections and what its
// bounds (AUTHD_MAX_CONNECTIONS, AUTHD_MAX_CONNECTIONS_PER_IP) did, read
// at each scrape.
func (m *Metrics) Connections(stats func() ConnStats) {
	refused := func(reason string, n func(ConnStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authd_connections_refused_total",
			Help:        "Connections answered and closed at once: the listener full (full) or the client at its share (client).",
			ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(n(stats())) })
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_connections_open", Help: "Connections the public listener holds open."},
			func() float64 { return float64(stats().Open) }),
		refused("full", func(s ConnStats) int64 { return s.RefusedFull }),
		refused("client", func(s ConnStats) int64 { return s.RefusedClient }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authd_connections_evicted_total",
			Help: "Idle keep-alive connections closed to make room on the full listener."},
			func() float64 { return float64(stats().Evicted) }),
	)
}
