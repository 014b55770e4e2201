package outcome

import (
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Backoff is the one retry policy for Unknown outcomes: the first retry
// waits Initial, each further one twice as long, never more than Max; after
// Budget Unknown outcomes in a row the caller's declared policy applies
// (pause and ask a human, by default). The waits are exact, without
// jitter, so a test and a status message can say when the next try is.
type Backoff struct {
	Initial, Max time.Duration
	// Budget is how many Unknown outcomes in a row are retried; a negative
	// Budget retries for ever (each wait capped at Max).
	Budget int
}

// Delay is how long to wait after the n-th Unknown outcome in a row
// (n ≥ 1) before asking again.
func (b Backoff) Delay(n int) time.Duration {
	initial := min(b.Initial, b.Max)
	if initial <= 0 {
		return max(b.Max, 0)
	}
	e := &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: 0,
		Multiplier:          2,
		MaxInterval:         b.Max,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	e.Reset()
	d := e.NextBackOff()
	for i := 1; i < n && d < b.Max; i++ {
		d = e.NextBackOff()
	}
	return d
}

// Spent tells whether n Unknown outcomes in a row are past the budget.
func (b Backoff) Spent(n int) bool {
	return b.Budget >= 0 && n > b.Budget
}
