package analysis

import (
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Verdict of a metric or of a whole analysis.
type Verdict string

const (
	Running Verdict = "Running"
	// Passed is the Successful verdict.
	Passed Verdict = "Successful"
	// NotPassed is the Failed verdict.
	NotPassed Verdict = "Failed"
	// Undecided is the Inconclusive verdict.
	Undecided Verdict = "Inconclusive"
	// NoEvidence is the verdict once the Unknown budget is spent.
	NoEvidence Verdict = "Unknown"
)

// Limits are a metric's budgets. Failure and Inconclusive count all
// measurements of their outcome; Unknown counts consecutive ones.
type Limits struct {
	Failure, Inconclusive, Unknown int32
	// ConsecutiveSuccess ends the metric as Successful after this many
	// Successful measurements in a row; 0 means unset.
	ConsecutiveSuccess int32
	// Count ends the metric after this many measurements that produced
	// evidence (Unknown ones are retried, not counted); 0 means never.
	Count int32
}

// Tally counts a metric's measurements by outcome.
type Tally struct {
	Successful, Failed, Inconclusive, Unknown int32
	ConsecutiveUnknown, ConsecutiveSuccessful int32
}

// Add counts one measurement.
func (t *Tally) Add(o Outcome) {
	switch o {
	case Successful:
		t.Successful++
		t.ConsecutiveSuccessful++
		t.ConsecutiveUnknown = 0
	case Failed:
		t.Failed++
		t.ConsecutiveSuccessful, t.ConsecutiveUnknown = 0, 0
	case Inconclusive:
		t.Inconclusive++
		t.ConsecutiveSuccessful, t.ConsecutiveUnknown = 0, 0
	default:
		t.Unknown++
		t.ConsecutiveUnknown++
		// An Unknown neither breaks nor extends a run of successes: it is
		// no evidence either way.
	}
}

// Verdict says what the measurements so far amount to. Past a budget the
// metric ends with that budget's verdict; it passes only on evidence, never
// while its last measurement is Unknown.
func (t Tally) Verdict(l Limits) (Verdict, string) {
	switch {
	case t.Failed > l.Failure:
		return NotPassed, fmt.Sprintf("%d Failed measurements; failureLimit is %d", t.Failed, l.Failure)
	case t.Inconclusive > l.Inconclusive:
		return Undecided, fmt.Sprintf("%d Inconclusive measurements; inconclusiveLimit is %d", t.Inconclusive, l.Inconclusive)
	case t.ConsecutiveUnknown > l.Unknown:
		return NoEvidence, fmt.Sprintf("%d Unknown measurements in a row; unknownLimit is %d", t.ConsecutiveUnknown, l.Unknown)
	case t.ConsecutiveUnknown > 0:
		return Running, ""
	case l.ConsecutiveSuccess > 0 && t.ConsecutiveSuccessful >= l.ConsecutiveSuccess:
		return Passed, fmt.Sprintf("%d Successful measurements in a row", t.ConsecutiveSuccessful)
	case l.Count > 0 && t.Successful+t.Failed+t.Inconclusive >= l.Count:
		return Passed, fmt.Sprintf("%d of %d measurements Successful", t.Successful, t.Successful+t.Failed+t.Inconclusive)
	}
	return Running, ""
}

// Final is the verdict of a metric whose analysis was stopped: what was
// measured, where a metric with no evidence yet, or whose last measurement
// was Unknown, is Inconclusive.
func (t Tally) Final(l Limits) (Verdict, string) {
	v, msg := t.Verdict(l)
	if v != Running {
		return v, msg
	}
	if t.Successful == 0 || t.ConsecutiveUnknown > 0 {
		return Undecided, "stopped before the metric produced evidence"
	}
	return Passed, fmt.Sprintf("stopped after %d Successful measurements within the budgets", t.Successful)
}

// Combine is the verdict of an analysis from its metrics' verdicts, dry-run
// ones left out: any Failed fails it, then Inconclusive, then Unknown; it
// is Successful once every metric is.
func Combine(verdicts []Verdict) Verdict {
	worst := Passed
	for _, v := range verdicts {
		if verdictRank[v] > verdictRank[worst] {
			worst = v
		}
	}
	return worst
}

// verdictRank orders verdicts from best to worst.
var verdictRank = map[Verdict]int{Passed: 0, Running: 1, NoEvidence: 2, Undecided: 3, NotPassed: 4}

// RetryDelay is how long to wait before measuring again after n Unknown
// measurements in a row: an exponential backoff from one second (or the
// interval, if shorter), doubling up to the interval.
func RetryDelay(n int32, interval time.Duration) time.Duration {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     min(time.Second, interval),
		RandomizationFactor: 0,
		Multiplier:          2,
		MaxInterval:         interval,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	d := b.NextBackOff()
	for i := int32(1); i < n && d < interval; i++ {
		d = b.NextBackOff()
	}
	return d
}
