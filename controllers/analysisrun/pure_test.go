package analysisrun

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

func TestNextDue(t *testing.T) {
	start := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	d := func(s string) *vigilv1.Duration { return ptr.To(vigilv1.Duration(s)) }
	measured := func(outcome vigilv1.MeasurementOutcome, at, took time.Duration) vigilv1.Measurement {
		return vigilv1.Measurement{Outcome: outcome, StartedAt: metav1.NewTime(start.Add(at)), FinishedAt: ptr.To(metav1.NewTime(start.Add(at + took)))}
	}
	for _, tc := range []struct {
		name   string
		metric vigilv1.Metric
		result vigilv1.MetricResult
		want   time.Duration // after start
	}{
		{"the first measurement is due at once", vigilv1.Metric{Interval: d("30s")}, vigilv1.MetricResult{}, 0},
		{"after the initial delay", vigilv1.Metric{Interval: d("30s"), InitialDelay: d("1m")}, vigilv1.MetricResult{}, time.Minute},
		{"an interval after the last one began", vigilv1.Metric{Interval: d("30s")},
			vigilv1.MetricResult{Measurements: []vigilv1.Measurement{measured(vigilv1.MeasurementSuccessful, 0, 2*time.Second)}}, 30 * time.Second},
		{"the interval defaults to a minute", vigilv1.Metric{},
			vigilv1.MetricResult{Measurements: []vigilv1.Measurement{measured(vigilv1.MeasurementFailed, 0, time.Second)}}, time.Minute},
		{"after one Unknown, a second after it ended", vigilv1.Metric{Interval: d("30s")},
			vigilv1.MetricResult{ConsecutiveUnknown: 1, Measurements: []vigilv1.Measurement{measured(vigilv1.MeasurementUnknown, 0, 10*time.Second)}}, 11 * time.Second},
		{"after three Unknowns, four seconds after the last ended", vigilv1.Metric{Interval: d("30s")},
			vigilv1.MetricResult{ConsecutiveUnknown: 3, Measurements: []vigilv1.Measurement{measured(vigilv1.MeasurementUnknown, 20*time.Second, 10*time.Second)}}, 34 * time.Second},
		{"the Unknown backoff never waits longer than the interval", vigilv1.Metric{Interval: d("10s")},
			vigilv1.MetricResult{ConsecutiveUnknown: 9, Measurements: []vigilv1.Measurement{measured(vigilv1.MeasurementUnknown, 0, time.Second)}}, 11 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(nextDue(&tc.metric, &tc.result, start).Sub(start)).To(Equal(tc.want))
		})
	}
}

func TestVerdict(t *testing.T) {
	metric := func(name string, dryRun bool) vigilv1.Metric {
		return vigilv1.Metric{Name: name, DryRun: dryRun, FailureLimit: 0, UnknownLimit: 2, Count: ptr.To(int32(3))}
	}
	res := func(name string, v vigilv1.AnalysisVerdict, successful int32) vigilv1.MetricResult {
		return vigilv1.MetricResult{Name: name, Verdict: v, Successful: successful, Message: "metric says " + string(v)}
	}
	for _, tc := range []struct {
		name      string
		metrics   []vigilv1.Metric
		results   []vigilv1.MetricResult
		terminate bool
		want      vigilv1.AnalysisVerdict
		message   string
		ready     metav1.ConditionStatus
	}{
		{"every metric passed", []vigilv1.Metric{metric("a", false), metric("b", false)},
			[]vigilv1.MetricResult{res("a", vigilv1.AnalysisSuccessful, 3), res("b", vigilv1.AnalysisSuccessful, 3)},
			false, vigilv1.AnalysisSuccessful, "Every metric passed", metav1.ConditionTrue},
		{"one still measuring", []vigilv1.Metric{metric("a", false), metric("b", false)},
			[]vigilv1.MetricResult{res("a", vigilv1.AnalysisSuccessful, 3), res("b", vigilv1.AnalysisRunning, 1)},
			false, vigilv1.AnalysisRunning, "Measuring", metav1.ConditionFalse},
		{"any Failed fails the run, named", []vigilv1.Metric{metric("a", false), metric("b", false)},
			[]vigilv1.MetricResult{res("a", vigilv1.AnalysisUnknown, 0), res("b", vigilv1.AnalysisFailed, 0)},
			false, vigilv1.AnalysisFailed, "metric b: metric says Failed", metav1.ConditionFalse},
		{"Unknown is never a pass", []vigilv1.Metric{metric("a", false), metric("b", false)},
			[]vigilv1.MetricResult{res("a", vigilv1.AnalysisSuccessful, 3), res("b", vigilv1.AnalysisUnknown, 0)},
			false, vigilv1.AnalysisUnknown, "metric b: metric says Unknown", metav1.ConditionFalse},
		{"a dry-run metric never decides", []vigilv1.Metric{metric("a", false), metric("d", true)},
			[]vigilv1.MetricResult{res("a", vigilv1.AnalysisSuccessful, 3), res("d", vigilv1.AnalysisFailed, 0)},
			false, vigilv1.AnalysisSuccessful, "Every metric passed", metav1.ConditionTrue},
		{"a dry-run metric still running holds a pass", []vigilv1.Metric{metric("a", false), metric("d", true)},
			[]vigilv1.MetricResult{res("a", vigilv1.AnalysisSuccessful, 3), res("d", vigilv1.AnalysisRunning, 1)},
			false, vigilv1.AnalysisRunning, "Measuring", metav1.ConditionFalse},
		{"terminated with evidence ends with what was measured", []vigilv1.Metric{metric("a", false)},
			[]vigilv1.MetricResult{res("a", vigilv1.AnalysisRunning, 2)},
			true, vigilv1.AnalysisSuccessful, "Terminated; Every metric passed", metav1.ConditionTrue},
		{"terminated without evidence is Inconclusive", []vigilv1.Metric{metric("a", false)},
			[]vigilv1.MetricResult{res("a", vigilv1.AnalysisRunning, 0)},
			true, vigilv1.AnalysisInconclusive, "Terminated; metric a: stopped before the metric produced evidence", metav1.ConditionFalse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			run := &vigilv1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: vigilv1.AnalysisRunSpec{Metrics: tc.metrics, Terminate: tc.terminate}}
			run.Status.MetricResults = tc.results
			verdict(run)
			g.Expect(run.Status.Verdict).To(Equal(tc.want))
			g.Expect(run.Status.Message).To(Equal(tc.message))
			ready := meta.FindStatusCondition(run.Status.Conditions.Conditions, vigilv1.ConditionReady)
			g.Expect(ready.Status).To(Equal(tc.ready))
			g.Expect(ready.ObservedGeneration).To(Equal(int64(2)))
			g.Expect(meta.IsStatusConditionTrue(run.Status.Conditions.Conditions, vigilv1.ConditionReconciling)).To(Equal(tc.want == vigilv1.AnalysisRunning))
		})
	}
}
