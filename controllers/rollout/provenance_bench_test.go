package rollout

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// BenchmarkSharedDigest200Rollouts creates 200 gated Rollouts that run one
// signed image, in one namespace under one TrustPolicy, and reports how
// many verifications the controller ran (the cache and the shared flight
// should make it one) and how long until all 200 were Verified. Run with
// -benchtime 1x: each iteration is the whole scenario.
func BenchmarkSharedDigest200Rollouts(b *testing.B) {
	const n = 200
	for i := 0; i < b.N; i++ {
		g := NewWithT(b)
		ns := newNamespace(b)
		kubelet(b, ns, nil)
		stop := startManager(b, nil)
		sc := newSupplyChainTB(b, ns, vigilv1.TrustPolicyEnforce)
		tag, d := sc.image()
		sc.release(d)
		start := time.Now()
		for j := range n {
			ro := gated(newRollout(ns, fmt.Sprintf("svc-%03d", j), 1, tag, weightStep(50)))
			g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
		}
		g.Eventually(func(g Gomega) {
			var list vigilv1.RolloutList
			g.Expect(k8s.List(context.Background(), &list)).To(Succeed())
			ok := 0
			for _, ro := range list.Items {
				if ro.Namespace == ns && meta.IsStatusConditionTrue(ro.Status.Conditions.Conditions, vigilv1.ConditionVerified) {
					ok++
				}
			}
			g.Expect(ok).To(Equal(n))
		}, 3*time.Minute, 200*time.Millisecond).Should(Succeed())
		took := time.Since(start)
		runs := verifier.Verifications()
		stop()
		g.Expect(runs).To(BeNumerically("==", 1), "200 Rollouts sharing one digest cause one verification")
		b.ReportMetric(float64(runs), "verifications")
		b.ReportMetric(took.Seconds(), "s-to-all-verified")
	}
}
