package analysis

import (
	"math"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestEvaluateDecidesTheOutcome(t *testing.T) {
	one := func(f float64) Value { return Value{Samples: []float64{f}, Series: []string{"{}"}} }
	both := Conditions{Success: "result < 0.01", Failure: "result >= 0.05"}
	cases := []struct {
		name  string
		cond  Conditions
		value Value
		want  Outcome
		cause string
	}{
		{"success holds", both, one(0.001), Successful, ""},
		{"failure holds", both, one(0.05), Failed, ""},
		{"neither holds", both, one(0.02), Inconclusive, ""},
		{"only success, not holding, is Failed", Conditions{Success: "result < 0.01"}, one(0.02), Failed, ""},
		{"only failure, not holding, is Successful", Conditions{Failure: "result > 0.05"}, one(0.02), Successful, ""},
		{"empty answer is Unknown by default", both, Value{}, Unknown, CauseNoData},
		{"empty answer can be Inconclusive", Conditions{Success: "result < 0.01", NoData: Inconclusive}, Value{}, Inconclusive, CauseNoData},
		{"NaN is Unknown", both, one(math.NaN()), Unknown, CauseNaN},
		{"an int literal compares with a double", Conditions{Success: "result < 1"}, one(0.5), Successful, ""},
		{"scalar", both, Value{Scalar: true, Samples: []float64{0}}, Successful, ""},
		{"a vector is a list", Conditions{Success: "result.all(x, x < 0.01)"}, Value{Samples: []float64{0.001, 0.002}, Series: []string{"a", "b"}}, Successful, ""},
		{"results is always a list", Conditions{Failure: "results.exists(x, x > 0.5)"}, one(0.9), Failed, ""},
		{"a scalar condition over a vector is Unknown", both, Value{Samples: []float64{0.001, 0.002}, Series: []string{"a", "b"}}, Unknown, CauseEvaluationError},
		{"a condition that does not compile is Unknown", Conditions{Success: "result <"}, one(0), Unknown, CauseEvaluationError},
		{"a condition that is not a bool is Unknown", Conditions{Success: "result + 1.0"}, one(0), Unknown, CauseEvaluationError},
		{"+Inf is a number the conditions judge", both, one(math.Inf(1)), Failed, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, cause, reason := tc.cond.Evaluate(tc.value)
			g.Expect(got).To(Equal(tc.want), "reason: %s", reason)
			g.Expect(cause).To(Equal(tc.cause))
			if got != Successful {
				g.Expect(reason).NotTo(BeEmpty())
			}
		})
	}
}

func TestValidateReportsBadConditions(t *testing.T) {
	g := NewWithT(t)
	g.Expect(Conditions{Success: "result < 0.01"}.Validate()).To(Succeed())
	g.Expect(Conditions{}.Validate()).To(MatchError(ContainSubstring("needs a successCondition")))
	g.Expect(Conditions{Failure: "resutl > 1.0"}.Validate()).To(MatchError(ContainSubstring("undeclared reference to 'resutl'")))
	g.Expect(Conditions{Success: "'a'"}.Validate()).To(MatchError(ContainSubstring("not a bool")))
}

func TestTallyVerdicts(t *testing.T) {
	limits := Limits{Failure: 1, Inconclusive: 0, Unknown: 2, Count: 3}
	run := func(outcomes ...Outcome) Tally {
		var t Tally
		for _, o := range outcomes {
			t.Add(o)
		}
		return t
	}
	S, F, I, U := Successful, Failed, Inconclusive, Unknown
	cases := []struct {
		name      string
		tally     Tally
		limits    Limits
		want      Outcome
		wantFinal Outcome
	}{
		{"nothing yet", run(), limits, Running, Inconclusive},
		{"count of successes", run(S, S, S), limits, Successful, Successful},
		{"unknowns do not count toward count", run(S, U, S, U), limits, Running, Inconclusive},
		{"failures within the limit", run(S, F, S), limits, Successful, Successful},
		{"failures past the limit", run(F, S, F), limits, Failed, Failed},
		{"one inconclusive past a zero limit", run(S, I), limits, Inconclusive, Inconclusive},
		{"unknowns within the limit keep running", run(U, U), limits, Running, Inconclusive},
		{"unknowns past the limit", run(S, U, U, U), limits, Unknown, Unknown},
		{"evidence resets the unknown run", run(U, U, S, U, U), limits, Running, Inconclusive},
		{"consecutive successes end it", run(F, S, S), Limits{Failure: 1, Unknown: 2, ConsecutiveSuccess: 2}, Successful, Successful},
		{"an unknown never passes", run(S, S, U), Limits{Unknown: 5, Count: 2}, Running, Inconclusive},
		{"a zero unknown limit", run(U), Limits{}, Unknown, Unknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, msg := tc.tally.Verdict(tc.limits)
			g.Expect(got).To(Equal(tc.want))
			if got != Running {
				g.Expect(msg).NotTo(BeEmpty())
			}
			final, _ := tc.tally.Final(tc.limits)
			g.Expect(final).To(Equal(tc.wantFinal))
		})
	}
}

func TestCombineTakesTheWorstVerdict(t *testing.T) {
	g := NewWithT(t)
	g.Expect(Combine(nil)).To(Equal(Successful))
	g.Expect(Combine([]Outcome{Successful, Running})).To(Equal(Running))
	g.Expect(Combine([]Outcome{Running, Unknown})).To(Equal(Unknown))
	g.Expect(Combine([]Outcome{Unknown, Inconclusive})).To(Equal(Inconclusive))
	g.Expect(Combine([]Outcome{Inconclusive, Failed, Successful})).To(Equal(Failed))
}

func TestRetryDelayBacksOffUpToTheInterval(t *testing.T) {
	g := NewWithT(t)
	var got []time.Duration
	for n := int32(1); n <= 7; n++ {
		got = append(got, RetryDelay(n, 20*time.Second))
	}
	g.Expect(got).To(Equal([]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 20 * time.Second, 20 * time.Second}))
	g.Expect(RetryDelay(1, 300*time.Millisecond)).To(Equal(300 * time.Millisecond))
}
