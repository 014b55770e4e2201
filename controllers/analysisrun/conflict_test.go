package analysisrun

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/hack/testenv"
)

// TestAConflictedStatusPatchTellsNothingAndTheNextReconcileConverges: the
// reconcile that measured and decided, but whose status patch the API
// server refused (409), recorded no Event and moved no metric; the next
// one measures again, stores the verdict and tells it once.
func TestAConflictedStatusPatchTellsNothingAndTheNextReconcileConverges(t *testing.T) {
	g := NewWithT(t)
	waitForData(t)
	ns := newNamespace(t)
	m := errorRateMetric(prom.URL)
	m.Count = ptr.To(int32(1))
	run := newRun(t, ns, "healthy", m)
	c := testenv.NewConflict(client.ObjectKeyFromObject(run))
	testenv.StartManager(t, cfg, scheme, nil, func(_ context.Context, mgr ctrl.Manager) error {
		r := &Reconciler{Client: c.Client(mgr.GetClient()), APIReader: mgr.GetAPIReader(), Recorder: c.Recorder(mgr.GetEventRecorder("vigil-analysisrun"))}
		return r.SetupWithManager(mgr)
	})

	start := c.Expect(t, "AnalysisRun", 30*time.Second)

	got := finished(t, run, 30*time.Second)
	g.Expect(got.Status.Verdict).To(Equal(vigilv1.AnalysisSuccessful), got.Status.Message)
	g.Expect(got.Annotations).To(HaveKey("vigil.dev/test-conflict"), "the conflict came from a real change")
	g.Expect(got.Status.MetricResults[0].Measurements).To(HaveLen(1), "the measurement that was not stored is not counted")
	g.Eventually(c.Events).Should(Equal([]string{vigilv1.ReasonAnalysisPassed}), "told once, after the status was stored")
	verdicts := "vigil_analysis_verdicts_total{verdict=Successful,}"
	g.Expect(c.Told().Metrics[verdicts] - start.Metrics[verdicts]).To(Equal(1.0))
}
