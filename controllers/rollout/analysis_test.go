package rollout

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/analysis"
	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/hack/promtest"
)

// errorRateQuery is the canary's error ratio over the last 5 s, scoped to
// its service and revision by arguments.
const errorRateQuery = `sum(rate(http_requests_total{service="{{args.service}}",revision="{{args.revision}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{service="{{args.service}}",revision="{{args.revision}}"}[5s]))`

// errorRateTemplate creates an AnalysisTemplate that holds the error rate
// under a 1% SLO, measured count times a second apart, querying address.
func errorRateTemplate(t testing.TB, ns, name, address string, mutate ...func(*vigilv1.Metric)) {
	t.Helper()
	d := func(s string) *vigilv1.Duration { return ptr.To(vigilv1.Duration(s)) }
	m := vigilv1.Metric{
		Name:             "error-rate",
		Interval:         d("1s"),
		Count:            ptr.To(int32(2)),
		SuccessCondition: "result < 0.01",
		FailureCondition: "result >= 0.01",
		UnknownLimit:     2,
		NoDataOutcome:    vigilv1.NoDataUnknown,
		Provider: vigilv1.MetricProvider{Prometheus: &vigilv1.PrometheusProvider{
			Address: address, Query: errorRateQuery, Timeout: d("500ms"),
		}},
	}
	for _, f := range mutate {
		f(&m)
	}
	tpl := &vigilv1.AnalysisTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: vigilv1.AnalysisTemplateSpec{
			Args:    []vigilv1.AnalysisArgumentSpec{{Name: "service"}, {Name: "revision"}},
			Metrics: []vigilv1.Metric{m},
		},
	}
	if err := k8s.Create(context.Background(), tpl); err != nil {
		t.Fatalf("creating AnalysisTemplate: %v", err)
	}
}

// serve makes the exporter publish traffic of service's revision with the
// given error ratio, and waits until Prometheus can answer the error-rate
// query for it.
func serve(t testing.TB, service, revision string, errorRatio float64) {
	t.Helper()
	exporter.Set(service, revision, 2000, errorRatio)
	q, err := analysis.Render(errorRateQuery, map[string]string{"service": service, "revision": revision})
	if err != nil {
		t.Fatal(err)
	}
	if err := prom.WaitFor(q, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

func analysisStep(template, service string) vigilv1.CanaryStep {
	return vigilv1.CanaryStep{Analysis: &vigilv1.AnalysisStep{
		Templates: []vigilv1.AnalysisTemplateRef{{Name: template}},
		Args:      []vigilv1.AnalysisArgument{{Name: "service", Value: service}},
	}}
}

// revisionOfImage is the revision ro runs once its image is image.
func revisionOfImage(t testing.TB, ro *vigilv1.Rollout, image string) string {
	t.Helper()
	checksum, err := templateChecksum(&withImage(ro, image).Spec.Template)
	if err != nil {
		t.Fatal(err)
	}
	return revisionHash(checksum, 0)
}

// analysisRuns lists the AnalysisRuns of ro.
func analysisRuns(g Gomega, ro *vigilv1.Rollout) []vigilv1.AnalysisRun {
	var list vigilv1.AnalysisRunList
	g.Expect(k8s.List(context.Background(), &list, client.InNamespace(ro.Namespace), client.MatchingLabels{vigilv1.LabelRollout: ro.Name})).To(Succeed())
	return list.Items
}

// neverPromoted fails the test if ro's stable revision ever becomes rev
// while the test runs.
func neverPromoted(t *testing.T, ns string, ro *vigilv1.Rollout, rev string) *atomic.Bool {
	var promoted atomic.Bool
	var mu sync.Mutex
	watchNamespace(t, ns, &mu, func(o client.Object) {
		if cur, ok := o.(*vigilv1.Rollout); ok && cur.Name == ro.Name && cur.Status.StableRevision == rev {
			promoted.Store(true)
		}
	}, &vigilv1.RolloutList{})
	return &promoted
}

func TestHealthyCanaryPassesEveryAnalysisAndPromotes(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	errorRateTemplate(t, ns, "error-rate", prom.URL)
	ro := newRollout(ns, "checkout", 5, "app:v1", weightStep(20), analysisStep("error-rate", "checkout"), weightStep(60), analysisStep("error-rate", "checkout"))
	ro.Spec.Strategy.Canary.Analysis = &vigilv1.AnalysisStep{
		Templates: []vigilv1.AnalysisTemplateRef{{Name: "error-rate"}},
		Args:      []vigilv1.AnalysisArgument{{Name: "service", Value: "checkout"}},
	}
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	waitPromoted(t, ro, 20*time.Second)

	v2 := revisionOfImage(t, ro, "app:v2")
	serve(t, "checkout", v2, 0.001) // 0.1% errors under a 1% SLO
	newImage(t, ro, "app:v2")
	done := waitPromoted(t, ro, 60*time.Second)
	g.Expect(done.Status.StableRevision).To(Equal(v2))

	// The last step's analysis and the background analysis are in status.
	a := done.Status.Analysis
	g.Expect(a).NotTo(BeNil())
	g.Expect(a.Run).To(Equal("checkout-" + v2 + "-step3-0"))
	g.Expect(a.Verdict).To(Equal(vigilv1.AnalysisSuccessful))
	g.Expect(a.Measurements).NotTo(BeEmpty())
	g.Expect(a.Measurements[0].Outcome).To(Equal(vigilv1.MeasurementSuccessful))
	g.Expect(done.Status.BackgroundAnalysis.Run).To(Equal("checkout-" + v2 + "-background-0"))

	// One run per analysis, named deterministically; the queries carried
	// the revision built-in argument; the background run was stopped at
	// promotion.
	g.Eventually(func(g Gomega) {
		runs := analysisRuns(g, ro)
		names := map[string]vigilv1.AnalysisVerdict{}
		for _, run := range runs {
			names[run.Name] = run.Status.Verdict
			g.Expect(run.Spec.Args).To(ContainElement(vigilv1.AnalysisArgument{Name: "revision", Value: v2}))
		}
		g.Expect(names).To(Equal(map[string]vigilv1.AnalysisVerdict{
			"checkout-" + v2 + "-step1-0":      vigilv1.AnalysisSuccessful,
			"checkout-" + v2 + "-step3-0":      vigilv1.AnalysisSuccessful,
			"checkout-" + v2 + "-background-0": vigilv1.AnalysisSuccessful,
		}))
	}, 10*time.Second).Should(Succeed())
	// Events are sent after the status patch, by the recorder's own goroutine.
	g.Eventually(func(g Gomega) {
		g.Expect(eventReasons(g, ro)).To(ContainElements(vigilv1.ReasonAnalysisStarted, vigilv1.ReasonAnalysisPassed))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(violations()).To(BeZero())
}

func TestErrorSpikeFailsAnalysisAndRollsBack(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	errorRateTemplate(t, ns, "error-rate", prom.URL)
	ro := newRollout(ns, "payments", 5, "app:v1", weightStep(20), analysisStep("error-rate", "payments"), weightStep(60))
	ro.Spec.Rollback = &vigilv1.RollbackPolicy{AbortScaleDownDelaySeconds: ptr.To(int32(0))}
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	v1 := waitPromoted(t, ro, 20*time.Second).Status.StableRevision

	v2 := revisionOfImage(t, ro, "app:v2")
	serve(t, "payments", v2, 0.05) // 5% errors
	promoted := neverPromoted(t, ns, ro, v2)
	newImage(t, ro, "app:v2")

	var cur *vigilv1.Rollout
	g.Eventually(func(g Gomega) {
		cur = get(g, ro)
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhaseRolledBack))
	}, 60*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(cur.Status.StableRevision).To(Equal(v1))
	g.Expect(cur.Status.Rollback.Trigger).To(Equal(vigilv1.RollbackTriggerAnalysisFailed))
	g.Expect(cur.Status.Rollback.Step).To(Equal(int32(1)))
	g.Expect(cur.Status.Rollback.Message).To(ContainSubstring("error-rate=0.0"))
	a := cur.Status.Analysis
	g.Expect(a.Verdict).To(Equal(vigilv1.AnalysisFailed))
	g.Expect(a.Measurements).NotTo(BeEmpty())
	failed := a.Measurements[len(a.Measurements)-1]
	g.Expect(failed.Outcome).To(Equal(vigilv1.MeasurementFailed))
	g.Expect(failed.Value).To(MatchRegexp(`^0\.0[4-6]`))
	g.Expect(cur.Status.CanaryWeight).To(BeZero())

	var warned bool
	for _, e := range rolloutEvents(g, ro) {
		if e.Reason == vigilv1.ReasonAnalysisFailed && strings.Contains(e.Message, "error-rate=0.0") {
			warned = true
		}
	}
	g.Expect(warned).To(BeTrue(), "a Warning Event names the failed measurement")
	g.Expect(promoted.Load()).To(BeFalse())
}

func TestPrometheusOutagePausesThenContinuesAfterApproval(t *testing.T) {
	for _, outage := range []struct {
		name  string
		start func(*promtest.Proxy)
	}{
		{"stall beyond the query timeout", func(p *promtest.Proxy) { p.Stall(3 * time.Second) }},
		{"503", func(p *promtest.Proxy) { p.Fail(http.StatusServiceUnavailable) }},
	} {
		t.Run(outage.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := newNamespace(t)
			kubelet(t, ns, nil)
			startManager(t, nil)
			proxy, err := promtest.NewProxy(prom.URL)
			g.Expect(err).NotTo(HaveOccurred())
			t.Cleanup(func() { _ = proxy.Close() })
			errorRateTemplate(t, ns, "error-rate", proxy.URL)
			ro := newRollout(ns, "search", 5, "app:v1", weightStep(20), analysisStep("error-rate", "search"))
			g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
			waitPromoted(t, ro, 20*time.Second)

			v2 := revisionOfImage(t, ro, "app:v2")
			serve(t, "search", v2, 0.001)
			outage.start(proxy)
			promoted := neverPromoted(t, ns, ro, v2)
			newImage(t, ro, "app:v2")

			// Unknown measurements spend the budget, then the default
			// onUnknownExhausted (Pause) waits for a person.
			waitPausedOnUnknown(t, ro)

			// Nothing moves while it waits.
			g.Consistently(func(g Gomega) {
				now := get(g, ro)
				g.Expect(now.Status.StableRevision).NotTo(Equal(v2))
				g.Expect(*now.Status.CurrentStepIndex).To(Equal(int32(1)))
			}, 2*time.Second, 100*time.Millisecond).Should(Succeed())

			g.Expect(promoted.Load()).To(BeFalse(), "no stored version of the Rollout promoted v2 during the outage")

			// Prometheus recovers; an Approval of the step runs the analysis
			// again, and this time it passes.
			proxy.Stall(0)
			proxy.Fail(0)
			approve(t, ro, "retry-analysis", v2, 1, vigilv1.ApprovalApprove)
			done := waitPromoted(t, ro, 40*time.Second)
			g.Expect(done.Status.StableRevision).To(Equal(v2))
			g.Expect(done.Status.Analysis.Run).To(Equal("search-" + v2 + "-step1-1"))
			g.Expect(done.Status.Analysis.Verdict).To(Equal(vigilv1.AnalysisSuccessful))
			g.Expect(violations()).To(BeZero())
		})
	}
}

// waitPausedOnUnknown waits for the analysis of step 1 to spend its
// Unknown budget and the Rollout to pause for an Approval, not roll back.
func waitPausedOnUnknown(t *testing.T, ro *vigilv1.Rollout) {
	g := NewWithT(t)
	var cur *vigilv1.Rollout
	g.Eventually(func(g Gomega) {
		cur = get(g, ro)
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
		g.Expect(cur.Status.PendingApproval).NotTo(BeNil())
	}, 30*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(cur.Status.PendingApproval.Step).To(Equal(int32(1)))
	g.Expect(cur.Status.Analysis.Verdict).To(Equal(vigilv1.AnalysisUnknown))
	g.Expect(cur.Status.Message).To(ContainSubstring("3 Unknown measurements in a row; unknownLimit is 2"))
	for _, m := range cur.Status.Analysis.Measurements {
		g.Expect(m.Outcome).To(Equal(vigilv1.MeasurementUnknown))
	}
	g.Expect(cur.Status.Rollback).To(BeNil(), "Unknown is not a failure")
}

func TestNoDataIsNeverAPass(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	errorRateTemplate(t, ns, "error-rate", prom.URL, func(m *vigilv1.Metric) { m.NoDataOutcome = vigilv1.NoDataInconclusive })
	ro := newRollout(ns, "quiet", 3, "app:v1", weightStep(50), analysisStep("error-rate", "quiet"))
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	waitPromoted(t, ro, 20*time.Second)
	v2 := revisionOfImage(t, ro, "app:v2")
	promoted := neverPromoted(t, ns, ro, v2)
	newImage(t, ro, "app:v2") // the exporter has no series for it

	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
		g.Expect(cur.Status.Analysis).NotTo(BeNil())
		g.Expect(cur.Status.Analysis.Verdict).To(Equal(vigilv1.AnalysisInconclusive))
		g.Expect(cur.Status.Analysis.Measurements[0].Reason).To(ContainSubstring("no data"))
	}, 30*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(promoted.Load()).To(BeFalse())
}

func TestMissingTemplateHoldsTheCanaryWithAClearMessage(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	ro := newRollout(ns, "typo", 2, "app:v1", weightStep(50), analysisStep("eror-rate", "typo"))
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	waitPromoted(t, ro, 20*time.Second)
	newImage(t, ro, "app:v2")
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
		g.Expect(cur.Status.Message).To(ContainSubstring("AnalysisTemplate eror-rate does not exist"))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(analysisRuns(g, ro)).To(BeEmpty())
}

// A crash right after the AnalysisRun was created, before the answer came
// back, leaves a run the restarted controller must adopt, not duplicate.
func TestCrashDuringAnalysisAdoptsTheRun(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	errorRateTemplate(t, ns, "error-rate", prom.URL, func(m *vigilv1.Metric) { m.Count = ptr.To(int32(3)) })
	ro := newRollout(ns, "orders", 4, "app:v1", weightStep(25), analysisStep("error-rate", "orders"))
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	stop := startManager(t, nil)
	waitPromoted(t, ro, 20*time.Second)
	stop()

	v2 := revisionOfImage(t, ro, "app:v2")
	serve(t, "orders", v2, 0.001)
	crashed := make(chan struct{})
	var once atomic.Bool
	stop = startManager(t, func(next http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if once.Load() {
				return nil, errInjected // the process is going down
			}
			resp, err := next.RoundTrip(r)
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/analysisruns") && once.CompareAndSwap(false, true) {
				close(crashed) // stored, but the answer is lost
				return nil, errInjected
			}
			return resp, err
		})
	})
	newImage(t, ro, "app:v2")
	g.Eventually(crashed, 30*time.Second).Should(BeClosed())
	stop()

	runName := "orders-" + v2 + "-step1-0"
	g.Expect(analysisRuns(g, ro)).To(HaveLen(1))
	g.Expect(analysisRuns(g, ro)[0].Name).To(Equal(runName))

	startManager(t, nil)
	done := waitPromoted(t, ro, 40*time.Second)
	g.Expect(done.Status.StableRevision).To(Equal(v2))
	g.Expect(done.Status.Analysis.Run).To(Equal(runName))
	runs := analysisRuns(g, ro)
	g.Expect(runs).To(HaveLen(1), "the restarted controller adopted the run")
	g.Expect(runs[0].Status.Verdict).To(Equal(vigilv1.AnalysisSuccessful))
	g.Expect(runs[0].Status.MetricResults[0].Successful).To(Equal(int32(3)))
}
