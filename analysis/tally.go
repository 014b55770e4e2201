package analysis

import (
	"fmt"
	"time"

	"github.com/vigil-dev/vigil/outcome"
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
func (t Tally) Verdict(l Limits) (Outcome, string) {
	switch {
	case t.Failed > l.Failure:
		return Failed, fmt.Sprintf("%d Failed measurements; failureLimit is %d", t.Failed, l.Failure)
	case t.Inconclusive > l.Inconclusive:
		return Inconclusive, fmt.Sprintf("%d Inconclusive measurements; inconclusiveLimit is %d", t.Inconclusive, l.Inconclusive)
	case outcome.Backoff{Budget: int(l.Unknown)}.Spent(int(t.ConsecutiveUnknown)):
		return Unknown, fmt.Sprintf("%d Unknown measurements in a row; unknownLimit is %d", t.ConsecutiveUnknown, l.Unknown)
	case t.ConsecutiveUnknown > 0:
		return Running, ""
	case l.ConsecutiveSuccess > 0 && t.ConsecutiveSuccessful >= l.ConsecutiveSuccess:
		return Successful, fmt.Sprintf("%d Successful measurements in a row", t.ConsecutiveSuccessful)
	case l.Count > 0 && t.Successful+t.Failed+t.Inconclusive >= l.Count:
		return Successful, fmt.Sprintf("%d of %d measurements Successful", t.Successful, t.Successful+t.Failed+t.Inconclusive)
	}
	return Running, ""
}

// Final is the verdict of a metric whose analysis was stopped: what was
// measured, where a metric with no evidence yet, or whose last measurement
// was Unknown, is Inconclusive.
func (t Tally) Final(l Limits) (Outcome, string) {
	v, msg := t.Verdict(l)
	if v != Running {
		return v, msg
	}
	if t.Successful == 0 || t.ConsecutiveUnknown > 0 {
		return Inconclusive, "stopped before the metric produced evidence"
	}
	return Successful, fmt.Sprintf("stopped after %d Successful measurements within the budgets", t.Successful)
}

// Combine is the verdict of an analysis from its metrics' verdicts, dry-run
// ones left out: any Failed fails it, then Inconclusive, then Unknown; it
// is Successful once every metric is.
func Combine(verdicts []Outcome) Outcome {
	worst := Successful
	for _, v := range verdicts {
		if verdictRank[v] > verdictRank[worst] {
			worst = v
		}
	}
	return worst
}

// verdictRank orders verdicts from best to worst.
var verdictRank = map[Outcome]int{Successful: 0, Running: 1, Unknown: 2, Inconclusive: 3, Failed: 4}

// RetryDelay is how long to wait before measuring again after n Unknown
// measurements in a row: the Unknown backoff from one second (or the
// interval, if shorter), doubling up to the interval. The budget is the
// metric's unknownLimit, which Tally.Verdict spends.
func RetryDelay(n int32, interval time.Duration) time.Duration {
	return outcome.Backoff{Initial: min(time.Second, interval), Max: interval, Budget: -1}.Delay(int(n))
}
