package analysis

import (
	"context"
	"sync"
	"time"

	"github.com/vigil-dev/vigil/outcome"
)

// Coalescer shares one query's answer among identical queries issued
// within the same interval window: the queries of many AnalysisRuns that
// ask the same server the same thing cost one request per window. Only
// answers are shared across a window; an error is shared only with the
// callers that were waiting for it, so an Unknown is always retried for
// real.
type Coalescer struct {
	mu      sync.Mutex
	entries map[coalesceKey]*coalesced
}

type coalesceKey struct {
	endpoint, query string
	rng             Range
	window          time.Duration
	bucket          int64
}

type coalesced struct {
	done  chan struct{}
	value Value
	err   error
}

// maxCoalesced bounds the entries kept; past it, entries of windows that
// have ended are dropped.
const maxCoalesced = 4096

// NewCoalescer makes an empty Coalescer.
func NewCoalescer() *Coalescer {
	return &Coalescer{entries: map[coalesceKey]*coalesced{}}
}

// Query asks p for q as of now, or shares the answer of an identical query
// made in the same window (the interval of the metric; windows are aligned
// to multiples of it). shared reports whether no request was sent.
func (c *Coalescer) Query(ctx context.Context, p *Prometheus, q Query, window time.Duration, now time.Time) (v Value, shared bool, err error) {
	if window <= 0 {
		v, err = p.Query(ctx, q, now)
		return v, false, err
	}
	k := coalesceKey{endpoint: p.key, query: q.Text, window: window, bucket: now.UnixNano() / int64(window)}
	if q.Range != nil {
		k.rng = *q.Range
	}
	c.mu.Lock()
	if e, ok := c.entries[k]; ok {
		c.mu.Unlock()
		select {
		case <-e.done:
			return e.value, true, e.err
		case <-ctx.Done():
			return Value{}, true, &outcome.Error{Result: outcome.Unknown, Reason: CauseTimeout, Err: ctx.Err()}
		}
	}
	e := &coalesced{done: make(chan struct{})}
	c.entries[k] = e
	c.sweep(k.bucket, window)
	c.mu.Unlock()

	e.value, e.err = p.Query(ctx, q, now)
	if e.err != nil {
		c.mu.Lock()
		delete(c.entries, k)
		c.mu.Unlock()
	}
	close(e.done)
	return e.value, false, e.err
}

// sweep drops finished entries of ended windows once there are too many.
// The caller holds the lock.
func (c *Coalescer) sweep(bucket int64, window time.Duration) {
	if len(c.entries) <= maxCoalesced {
		return
	}
	now := bucket * int64(window)
	for k, e := range c.entries {
		select {
		case <-e.done:
			if (k.bucket+1)*int64(k.window) <= now {
				delete(c.entries, k)
			}
		default:
		}
	}
}

// Len is the number of answers held, for tests and metrics.
func (c *Coalescer) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
