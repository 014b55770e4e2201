package analysisrun

import (
	"context"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/analysis"
	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/hack/promtest"
)

func TestHealthyRunSucceedsAfterCountMeasurements(t *testing.T) {
	g := NewWithT(t)
	waitForData(t)
	startManager(t, analysis.NewCoalescer())
	ns := newNamespace(t)
	run := finished(t, newRun(t, ns, "healthy", errorRateMetric(prom.URL)), 30*time.Second)

	g.Expect(run.Status.Verdict).To(Equal(vigilv1.AnalysisSuccessful), run.Status.Message)
	res := run.Status.MetricResults[0]
	g.Expect(res.Successful).To(Equal(int32(3)))
	g.Expect(res.Measurements).To(HaveLen(3))
	for _, m := range res.Measurements {
		g.Expect(m.Outcome).To(Equal(vigilv1.MeasurementSuccessful))
		g.Expect(m.Query).To(ContainSubstring(`service="healthy"`))
		g.Expect(m.Value).To(MatchRegexp(`^0\.00`))
	}
	// Measurements are an interval apart.
	for i := 1; i < len(res.Measurements); i++ {
		gap := res.Measurements[i].StartedAt.Sub(res.Measurements[i-1].StartedAt.Time)
		g.Expect(gap).To(BeNumerically(">=", 900*time.Millisecond))
	}
	g.Expect(hasEvent(t, ns, run.Name, vigilv1.ReasonAnalysisPassed)).To(BeTrue())
}

func TestErrorSpikeFailsTheRun(t *testing.T) {
	g := NewWithT(t)
	waitForData(t)
	startManager(t, analysis.NewCoalescer())
	ns := newNamespace(t)
	run := finished(t, newRun(t, ns, "spike", errorRateMetric(prom.URL)), 30*time.Second)

	g.Expect(run.Status.Verdict).To(Equal(vigilv1.AnalysisFailed))
	g.Expect(run.Status.Message).To(ContainSubstring("metric error-rate: 1 Failed measurements; failureLimit is 0"))
	m := run.Status.MetricResults[0].Measurements[0]
	g.Expect(m.Outcome).To(Equal(vigilv1.MeasurementFailed))
	g.Expect(m.Value).To(MatchRegexp(`^0\.0[4-6]`))
	g.Expect(hasEvent(t, ns, run.Name, vigilv1.ReasonAnalysisFailed)).To(BeTrue())
}

func TestStalledPrometheusExhaustsTheUnknownBudget(t *testing.T) {
	g := NewWithT(t)
	proxy, err := promtest.NewProxy(prom.URL)
	g.Expect(err).NotTo(HaveOccurred())
	defer proxy.Close()
	proxy.Stall(5 * time.Second)
	startManager(t, analysis.NewCoalescer())
	ns := newNamespace(t)
	metric := errorRateMetric(proxy.URL)
	metric.Interval = ptr.To(vigilv1.Duration("20s"))
	run := finished(t, newRun(t, ns, "healthy", metric), 30*time.Second)

	g.Expect(run.Status.Verdict).To(Equal(vigilv1.AnalysisUnknown), run.Status.Message)
	g.Expect(run.Status.Message).To(ContainSubstring("3 Unknown measurements in a row; unknownLimit is 2"))
	res := run.Status.MetricResults[0]
	g.Expect(res.Successful + res.Failed + res.Inconclusive).To(BeZero())
	g.Expect(res.Measurements).To(HaveLen(3))
	for i, m := range res.Measurements {
		g.Expect(m.Outcome).To(Equal(vigilv1.MeasurementUnknown))
		g.Expect(m.Reason).To(HavePrefix("Timeout"))
		g.Expect(m.FinishedAt.Sub(m.StartedAt.Time)).To(BeNumerically("<", 2*time.Second), "the query timeout is 500ms")
		if i > 0 {
			// Retried on the backoff (1s, then 2s), not the 20s interval.
			gap := m.StartedAt.Sub(res.Measurements[i-1].FinishedAt.Time)
			g.Expect(gap).To(BeNumerically(">=", time.Duration(i)*time.Second-100*time.Millisecond))
			g.Expect(gap).To(BeNumerically("<", 10*time.Second))
		}
	}
}

func TestUnavailablePrometheusIsUnknownThenRecovers(t *testing.T) {
	g := NewWithT(t)
	waitForData(t)
	proxy, err := promtest.NewProxy(prom.URL)
	g.Expect(err).NotTo(HaveOccurred())
	defer proxy.Close()
	proxy.Fail(http.StatusServiceUnavailable)
	startManager(t, analysis.NewCoalescer())
	ns := newNamespace(t)
	metric := errorRateMetric(proxy.URL)
	metric.UnknownLimit = 10
	run := newRun(t, ns, "healthy", metric)

	got := &vigilv1.AnalysisRun{}
	g.Eventually(func() int32 {
		_ = k8s.Get(context.Background(), client.ObjectKeyFromObject(run), got)
		if len(got.Status.MetricResults) == 0 {
			return 0
		}
		return got.Status.MetricResults[0].ConsecutiveUnknown
	}).WithTimeout(20 * time.Second).Should(BeNumerically(">=", 2))
	g.Expect(got.Status.Verdict).To(Equal(vigilv1.AnalysisRunning), "Unknown is never a verdict before its budget is spent")
	g.Expect(got.Status.MetricResults[0].Measurements[0].Reason).To(ContainSubstring("HTTPError"))
	g.Expect(got.Status.MetricResults[0].Measurements[0].Reason).To(ContainSubstring("503"))

	proxy.Fail(0)
	run = finished(t, run, 30*time.Second)
	g.Expect(run.Status.Verdict).To(Equal(vigilv1.AnalysisSuccessful))
	g.Expect(run.Status.MetricResults[0].Successful).To(Equal(int32(3)))
	g.Expect(run.Status.MetricResults[0].ConsecutiveUnknown).To(BeZero())
}

func TestNoDataFollowsTheTemplate(t *testing.T) {
	g := NewWithT(t)
	startManager(t, analysis.NewCoalescer())
	ns := newNamespace(t)
	unknown := errorRateMetric(prom.URL)
	unknown.UnknownLimit = 0
	run := finished(t, newRun(t, ns, "nobody", unknown), 20*time.Second)
	g.Expect(run.Status.Verdict).To(Equal(vigilv1.AnalysisUnknown))
	g.Expect(run.Status.MetricResults[0].Measurements[0].Reason).To(ContainSubstring("no data"))

	inconclusive := errorRateMetric(prom.URL)
	inconclusive.NoDataOutcome = vigilv1.NoDataInconclusive
	run = finished(t, newRun(t, ns, "nobody", inconclusive), 20*time.Second)
	g.Expect(run.Status.Verdict).To(Equal(vigilv1.AnalysisInconclusive))
	g.Expect(run.Status.MetricResults[0].Successful).To(BeZero())
}

func TestDryRunMetricIsShownButNeverDecides(t *testing.T) {
	g := NewWithT(t)
	waitForData(t)
	startManager(t, analysis.NewCoalescer())
	ns := newNamespace(t)
	judged := errorRateMetric(prom.URL)
	dry := errorRateMetric(prom.URL)
	dry.Name, dry.DryRun = "strict", true
	dry.SuccessCondition, dry.FailureCondition = "result < 0.0001", "result >= 0.0001"
	run := finished(t, newRun(t, ns, "healthy", judged, dry), 30*time.Second)
	g.Expect(run.Status.Verdict).To(Equal(vigilv1.AnalysisSuccessful), run.Status.Message)
	g.Expect(run.Status.MetricResults[1].Verdict).To(Equal(vigilv1.AnalysisFailed))
	g.Expect(run.Status.MetricResults[1].DryRun).To(BeTrue())
}

func TestTerminatedRunEndsWithWhatWasMeasured(t *testing.T) {
	g := NewWithT(t)
	waitForData(t)
	startManager(t, analysis.NewCoalescer())
	ns := newNamespace(t)
	background := errorRateMetric(prom.URL)
	background.Count = nil
	run := newRun(t, ns, "healthy", background)
	got := &vigilv1.AnalysisRun{}
	g.Eventually(func() int32 {
		_ = k8s.Get(context.Background(), client.ObjectKeyFromObject(run), got)
		if len(got.Status.MetricResults) == 0 {
			return 0
		}
		return got.Status.MetricResults[0].Successful
	}).WithTimeout(20 * time.Second).Should(BeNumerically(">=", 2))

	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Terminate = true
	g.Expect(k8s.Patch(context.Background(), got, patch)).To(Succeed())
	run = finished(t, run, 10*time.Second)
	g.Expect(run.Status.Verdict).To(Equal(vigilv1.AnalysisSuccessful))
	g.Expect(run.Status.Message).To(HavePrefix("Terminated"))

	// A terminated run cannot be resumed, and its metrics cannot change.
	patch = client.MergeFrom(run.DeepCopy())
	run.Spec.Terminate = false
	g.Expect(k8s.Patch(context.Background(), run, patch)).To(MatchError(ContainSubstring("cannot be resumed")))
}

func TestRetentionKeepsTheLatestMeasurementsAndCountsAll(t *testing.T) {
	g := NewWithT(t)
	waitForData(t)
	startManager(t, analysis.NewCoalescer())
	ns := newNamespace(t)
	m := errorRateMetric(prom.URL)
	m.Interval = ptr.To(vigilv1.Duration("100ms"))
	m.Count = ptr.To(int32(MeasurementsKept + 5))
	run := finished(t, newRun(t, ns, "healthy", m), 30*time.Second)
	res := run.Status.MetricResults[0]
	g.Expect(run.Status.Verdict).To(Equal(vigilv1.AnalysisSuccessful))
	g.Expect(res.Successful).To(Equal(int32(MeasurementsKept + 5)))
	g.Expect(res.Measurements).To(HaveLen(MeasurementsKept))
}

func TestMissingCredentialsAreUnknownAndNeverLeak(t *testing.T) {
	g := NewWithT(t)
	startManager(t, analysis.NewCoalescer())
	ns := newNamespace(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prom-token"}, Data: map[string][]byte{"other": []byte("hunter2")}}
	g.Expect(k8s.Create(context.Background(), secret)).To(Succeed())
	m := errorRateMetric(prom.URL)
	m.UnknownLimit = 0
	m.Provider.Prometheus.BearerTokenSecret = &vigilv1.SecretKeyReference{Name: "prom-token", Key: "token"}
	run := finished(t, newRun(t, ns, "healthy", m), 20*time.Second)
	g.Expect(run.Status.Verdict).To(Equal(vigilv1.AnalysisUnknown))
	reason := run.Status.MetricResults[0].Measurements[0].Reason
	g.Expect(reason).To(ContainSubstring(`Secret prom-token has no key "token"`))
	g.Expect(reason).NotTo(ContainSubstring("hunter2"))
}

func hasEvent(t testing.TB, ns, name, reason string) bool {
	t.Helper()
	var found bool
	NewWithT(t).Eventually(func() bool {
		var list corev1.EventList
		_ = k8s.List(context.Background(), &list, client.InNamespace(ns))
		for _, e := range list.Items {
			if e.InvolvedObject.Name == name && e.Reason == reason {
				found = true
			}
		}
		return found
	}).WithTimeout(10 * time.Second).Should(BeTrue())
	return found
}
