package rollout

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/hack/testenv"
)

// TestAConflictedStatusPatchTellsNothingAndTheNextReconcileConverges: the
// reconcile that made the first revision stable, but whose status patch
// the API server refused (409), recorded no Event and moved no metric (the
// phase gauge included); the next one decides again, stores it, and the
// Rollout is promoted with each Event told once.
func TestAConflictedStatusPatchTellsNothingAndTheNextReconcileConverges(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	ro := newRollout(ns, "conflict", 2, "shop:v1", weightStep(50))
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	c := testenv.NewConflict(client.ObjectKeyFromObject(ro))
	testenv.StartManagerIn(t, ns, cfg, scheme, nil, func(ctx context.Context, mgr ctrl.Manager) error {
		r := &Reconciler{Client: c.Client(mgr.GetClient()), APIReader: c.Reader(mgr.GetAPIReader()),
			Recorder: c.Recorder(mgr.GetEventRecorder("vigil-rollout")), GatewayAPI: true}
		return r.SetupWithManager(ctx, mgr)
	})

	c.Expect(t, "Rollout", 20*time.Second)

	got := waitPromoted(t, ro, 20*time.Second)
	g.Expect(got.Annotations).To(HaveKey("vigil.dev/test-conflict"), "the conflict came from a real change")
	g.Expect(got.Status.History).To(HaveLen(1), "the first revision, recorded once")
	g.Eventually(c.Events).Should(ContainElement(vigilv1.ReasonPromoted))
	g.Expect(c.Events()).To(HaveEach(Not(Equal(vigilv1.ReasonInvariantViolated))))
	seen := map[string]int{}
	for _, reason := range c.Events() {
		seen[reason]++
	}
	g.Expect(seen[vigilv1.ReasonPromoted]).To(Equal(1), "told once, after the status was stored: %v", c.Events())
	phase := "vigil_rollout_phase{namespace=" + ns + ",phase=Promoted,rollout=conflict,}"
	g.Expect(c.Told().Metrics).To(HaveKeyWithValue(phase, 1.0))
}
