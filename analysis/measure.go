package analysis

import (
	"context"
	"time"

	"github.com/vigil-dev/vigil/outcome"
)

// Measurement is one query and what came of it.
type Measurement struct {
	Outcome Outcome
	// Cause names the kind of an Unknown (or no-data Inconclusive) outcome.
	Cause string
	// Reason explains every outcome but Successful, for people.
	Reason string
	// Value is the answer as text.
	Value string
	// Query is the query as sent.
	Query             string
	Started, Finished time.Time
	// Shared is set when the answer was that of an identical query made in
	// the same window.
	Shared bool
}

// Measure runs one measurement: the query through the coalescer (when c is
// not nil), then the conditions over the answer. Every error is an Unknown
// outcome with its cause; nothing here fails a measurement that has no
// evidence.
func Measure(ctx context.Context, c *Coalescer, p *Prometheus, q Query, cond Conditions, window time.Duration, now func() time.Time) Measurement {
	m := Measurement{Query: q.Text, Started: now()}
	var (
		v   Value
		err error
	)
	if c != nil {
		v, m.Shared, err = c.Query(ctx, p, q, window, m.Started)
	} else {
		v, err = p.Query(ctx, q, m.Started)
	}
	m.Finished = now()
	if err != nil {
		m.Outcome, m.Cause = Unknown, CauseOf(err)
		m.Reason = outcome.Shorten(m.Cause+": "+err.Error(), 1000)
		return m
	}
	if len(v.Samples) > 0 {
		m.Value = v.String()
	}
	m.Outcome, m.Cause, m.Reason = cond.Evaluate(v)
	m.Reason = outcome.Shorten(m.Reason, 1000)
	return m
}

// Invalid is the measurement of a metric that cannot be queried at all (a
// template that does not render, a condition that does not compile, an
// auth Secret that is missing): Unknown, with the cause and the error.
func Invalid(cause string, err error, query string, now time.Time) Measurement {
	return Measurement{Outcome: Unknown, Cause: cause, Reason: outcome.Shorten(err.Error(), 1000), Query: outcome.Shorten(query, 16000), Started: now, Finished: now}
}
