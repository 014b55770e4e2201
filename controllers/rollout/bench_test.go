package rollout

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

const benchRollouts = 1000

var (
	benchOnce  sync.Once
	benchNS    string
	benchSetup error
)

// promotedRollouts makes benchRollouts promoted Rollouts once per test
// binary, with the kubelet stand-in marking their pods ready.
func promotedRollouts(b *testing.B) string {
	benchOnce.Do(func() {
		g := NewWithT(b)
		benchNS = newNamespace(b)
		kubelet(b, benchNS, nil)
		stop := startManager(b, nil)
		defer stop()
		start := time.Now()
		for i := range benchRollouts {
			ro := newRollout(benchNS, fmt.Sprintf("app-%04d", i), 2, "app:v1", weightStep(50), approvalStep())
			if err := k8s.Create(context.Background(), ro); err != nil {
				benchSetup = err
				return
			}
		}
		g.Eventually(func(g Gomega) {
			var list vigilv1.RolloutList
			g.Expect(k8s.List(context.Background(), &list)).To(Succeed())
			promoted := 0
			for _, ro := range list.Items {
				if ro.Namespace == benchNS && ro.Status.Phase == vigilv1.RolloutPhasePromoted && readyCondition(&ro) == "True" {
					promoted++
				}
			}
			g.Expect(promoted).To(Equal(benchRollouts))
		}, 5*time.Minute, time.Second).Should(Succeed())
		b.Logf("%d Rollouts created and promoted in %s", benchRollouts, time.Since(start).Round(time.Millisecond))
	})
	if benchSetup != nil {
		b.Fatal(benchSetup)
	}
	return benchNS
}

// BenchmarkNoOpReconcile reconciles 1,000 promoted Rollouts round-robin
// with a cached client, as the manager does, and reports reconciles per
// second and the API writes each one made (which must be 0).
func BenchmarkNoOpReconcile(b *testing.B) {
	ns := promotedRollouts(b)
	var writes atomic.Int64
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = 1000, 2000
	c.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if isWrite(r) {
				writes.Add(1)
			}
			return rt.RoundTrip(r)
		})
	}
	counting, err := ctrl.NewManager(c, ctrl.Options{Scheme: scheme, Metrics: metricsOff(), HealthProbeBindAddress: "0"})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &Reconciler{Client: counting.GetClient(), APIReader: counting.GetAPIReader(), Recorder: counting.GetEventRecorder("vigil-rollout"), GatewayAPI: true}
	// The indexes the controller needs, without a running controller.
	if err := r.indexes(ctx, counting); err != nil {
		b.Fatal(err)
	}
	go func() { _ = counting.Start(ctx) }()
	if !counting.GetCache().WaitForCacheSync(ctx) {
		b.Fatal("cache did not sync")
	}
	reqs := make([]ctrl.Request, benchRollouts)
	for i := range reqs {
		reqs[i] = ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("app-%04d", i)}}
	}
	for _, req := range reqs { // warm the informers
		if _, err := r.Reconcile(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	writes.Store(0)
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		if _, err := r.Reconcile(ctx, reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "reconciles/s")
	b.ReportMetric(float64(writes.Load())/float64(b.N), "writes/reconcile")
	if writes.Load() != 0 {
		b.Fatalf("%d API writes in %d no-op reconciles", writes.Load(), b.N)
	}
}
