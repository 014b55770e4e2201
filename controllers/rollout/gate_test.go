package rollout

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// TestAnAnalysisRunMadeAheadIsNotAdoptedAsTheGate: someone who may create
// AnalysisRuns sees the run's name in the Rollout's status and creates it
// first, owned by the Rollout and with a condition that always passes. It
// is not evidence: the Rollout holds and says why, and once the impostor
// is deleted Vigil runs its own analysis, which fails the bad canary.
func TestAnAnalysisRunMadeAheadIsNotAdoptedAsTheGate(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	var blockRuns atomic.Bool
	startManager(t, func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if blockRuns.Load() && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/analysisruns") {
				return nil, errInjected // the impostor wins the race to create the run
			}
			return rt.RoundTrip(r)
		})
	})
	errorRateTemplate(t, ns, "error-rate", prom.URL)
	ro := newRollout(ns, "ledger", 4, "app:v1", weightStep(25), analysisStep("error-rate", "ledger"), weightStep(50))
	ro.Spec.Rollback = &vigilv1.RollbackPolicy{AbortScaleDownDelaySeconds: ptr.To(int32(0))}
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	stable := waitPromoted(t, ro, 20*time.Second) // read back: it carries the UID an owner reference names
	v2 := revisionOfImage(t, ro, "app:v2")
	serve(t, "ledger", v2, 0.05) // the canary is bad: 5% errors
	promoted := neverPromoted(t, ns, ro, v2)

	blockRuns.Store(true)
	newImage(t, ro, "app:v2")
	var name string
	g.Eventually(func(g Gomega) {
		a := get(g, ro).Status.Analysis
		g.Expect(a).NotTo(BeNil())
		name = a.Run
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())
	impostor := alwaysPassingRun(t, stable, name, v2)
	blockRuns.Store(false)

	g.Eventually(func(g Gomega) {
		g.Expect(get(g, ro).Status.Message).To(ContainSubstring("is not used as evidence"))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Eventually(func(g Gomega) { // the impostor's own verdict is in
		got := &vigilv1.AnalysisRun{}
		g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(impostor), got)).To(Succeed())
		g.Expect(got.Status.Verdict).To(Equal(vigilv1.AnalysisSuccessful))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Consistently(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.CurrentStepIndex).To(HaveValue(Equal(int32(1))), "the analysis step holds")
		g.Expect(cur.Status.Analysis.Verdict).NotTo(Equal(vigilv1.AnalysisSuccessful))
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
	}, 3*time.Second, 100*time.Millisecond).Should(Succeed())

	g.Expect(k8s.Delete(context.Background(), impostor)).To(Succeed())
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhaseRolledBack))
		g.Expect(cur.Status.Rollback.Trigger).To(Equal(vigilv1.RollbackTriggerAnalysisFailed))
		g.Expect(cur.Status.Analysis.SpecHash).To(HaveLen(64), "Vigil's own run, recorded")
	}, 60*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(promoted.Load()).To(BeFalse(), "no stored version of the Rollout promoted the bad canary")
}

// alwaysPassingRun creates the AnalysisRun name of ro's revision v2 as an
// impostor would: owned by the Rollout, labelled as Vigil labels its runs,
// with a metric whose condition always holds.
func alwaysPassingRun(t *testing.T, ro *vigilv1.Rollout, name, v2 string) *vigilv1.AnalysisRun {
	t.Helper()
	d := func(s string) *vigilv1.Duration { return ptr.To(vigilv1.Duration(s)) }
	run := &vigilv1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ro.Namespace, Name: name,
			Labels:          map[string]string{vigilv1.LabelRollout: ro.Name, vigilv1.LabelPodTemplateHash: v2, vigilv1.LabelAnalysis: "1"},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ro, vigilv1.GroupVersion.WithKind("Rollout"))},
		},
		Spec: vigilv1.AnalysisRunSpec{
			RolloutRef: &vigilv1.LocalObjectReference{Name: ro.Name}, Revision: v2,
			Metrics: []vigilv1.Metric{{
				Name: "error-rate", Interval: d("1s"), Count: ptr.To(int32(1)), SuccessCondition: "true",
				Provider: vigilv1.MetricProvider{Prometheus: &vigilv1.PrometheusProvider{Address: prom.URL, Query: "vector(1)"}},
			}},
		},
	}
	NewWithT(t).Expect(k8s.Create(context.Background(), run)).To(Succeed())
	return run
}
