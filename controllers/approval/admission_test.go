package approval_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/hack/promtest"
	"github.com/vigil-dev/vigil/hack/testenv"
)

var (
	cfg    *rest.Config
	scheme = runtime.NewScheme()
	k8s    client.Client
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	connect := testenv.Connect(&cfg, scheme, &k8s, clientgoscheme.AddToScheme, vigilv1.AddToScheme)
	stop := func() {}
	testenv.Main(promtest.WithCleanup(m, func() { stop() }), func(c *rest.Config) error {
		if err := connect(c); err != nil {
			return err
		}
		var err error
		_, stop, err = testenv.ServeAdmission(c, scheme)
		return err
	})
}

// waiting makes a Rollout whose status says it waits for an approval of
// revision "abc" at step 0, as the controller would write it (no
// controller runs in this suite: only the webhook is under test).
func waiting(t testing.TB, ns string) *vigilv1.Rollout {
	t.Helper()
	labels := map[string]string{"app": "web"}
	ro := &vigilv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: vigilv1.RolloutSpec{
		Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:v2"}}}},
		Strategy: vigilv1.RolloutStrategy{Canary: vigilv1.CanaryStrategy{Steps: []vigilv1.CanaryStep{{Approval: &vigilv1.ApprovalStep{}}}}},
	}}
	ctx := context.Background()
	if err := k8s.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	now := metav1.NewMicroTime(time.Now())
	ro.Status = vigilv1.RolloutStatus{Phase: vigilv1.RolloutPhasePaused, StableRevision: "old", CanaryRevision: "abc",
		CurrentStepIndex: ptr.To(int32(0)), CurrentStepStartedAt: &now,
		PendingApproval: &vigilv1.PendingApproval{Revision: "abc", Step: 0, Since: now, Effect: vigilv1.EffectPassStep, Required: 1}}
	if err := k8s.Status().Update(ctx, ro); err != nil {
		t.Fatal(err)
	}
	return ro
}

func decision(ns, name, revision string, step int32) *vigilv1.Approval {
	return &vigilv1.Approval{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: vigilv1.ApprovalSpec{
		RolloutRef: vigilv1.LocalObjectReference{Name: "web"}, Revision: revision, Step: step, Decision: vigilv1.ApprovalApprove}}
}

func admissions(result, reason string) float64 {
	families, _ := metrics.Registry.Gather()
	for _, f := range families {
		if f.GetName() != "vigil_approval_admission_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["result"] == result && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestDenialsAreCountedByReason(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := testenv.Namespace(t, k8s, "admission")
	waiting(t, ns)
	before := map[string]float64{"NotWaiting": admissions("Denied", "NotWaiting"), "RolloutNotFound": admissions("Denied", "RolloutNotFound"),
		"Admitted": admissions("Admitted", "Admitted")}
	g.Expect(k8s.Create(ctx, decision(ns, "early", "abc", 1))).To(MatchError(ContainSubstring("waits for a decision on revision abc at step 0")))
	other := decision(ns, "nowhere", "abc", 0)
	other.Spec.RolloutRef.Name = "api"
	g.Expect(k8s.Create(ctx, other)).To(MatchError(ContainSubstring(`Rollout "api" does not exist`)))
	g.Expect(k8s.Create(ctx, decision(ns, "fine", "abc", 0))).To(Succeed())
	g.Expect(admissions("Denied", "NotWaiting") - before["NotWaiting"]).To(Equal(1.0))
	g.Expect(admissions("Denied", "RolloutNotFound") - before["RolloutNotFound"]).To(Equal(1.0))
	g.Expect(admissions("Admitted", "Admitted") - before["Admitted"]).To(Equal(1.0))
}

// BenchmarkAdmission100Concurrent creates 100 Approvals at once per
// iteration, each through the API server and Vigil's webhook (a Rollout
// read and a SubjectAccessReview each), and reports the latency of a
// create as the client sees it: p50 and p99 in milliseconds.
func BenchmarkAdmission100Concurrent(b *testing.B) {
	ns := testenv.Namespace(b, k8s, "bench")
	waiting(b, ns)
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = 1000, 1000
	cl, err := client.New(c, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	sum0, n0 := webhookTime()
	for i := 0; b.Loop(); i++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				t0 := time.Now()
				if err := cl.Create(context.Background(), decision(ns, fmt.Sprintf("a-%d-%d", i, j), "abc", 0)); err != nil {
					b.Error(err)
				}
				mu.Lock()
				took = append(took, time.Since(t0))
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
	}
	slices.Sort(took)
	q := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(len(took)), "creates")
	if sum, n := webhookTime(); n > n0 {
		b.ReportMetric((sum-sum0)/float64(n-n0)*1000, "webhook-mean-ms")
	}
}

// webhookTime is the total time the webhook server spent on the admit
// path and how many requests it served (controller-runtime's histogram).
func webhookTime() (seconds float64, count uint64) {
	families, _ := metrics.Registry.Gather()
	for _, f := range families {
		if f.GetName() != "controller_runtime_webhook_latency_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "webhook" && l.GetValue() == "/approvals/admit" {
					seconds += m.GetHistogram().GetSampleSum()
					count += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return seconds, count
}
