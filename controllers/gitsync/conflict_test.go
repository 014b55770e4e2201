package gitsync

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/hack/gittest"
	"github.com/vigil-dev/vigil/hack/testenv"
)

// TestAConflictedStatusPatchTellsNothingAndTheNextReconcileConverges: the
// reconcile that fetched and applied a commit, but whose status patch the
// API server refused (409), recorded no Event and moved no metric; the
// next one stores the applied commit and tells it once.
func TestAConflictedStatusPatchTellsNothingAndTheNextReconcileConverges(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	repo := gittest.NewRepo(t, "conflict.git")
	repo.Write("deploy/service.yaml", serviceYAML(80))
	repo.Write("deploy/canary-service.yaml", strings.Replace(serviceYAML(80), "name: web", "name: web-canary", 1))
	first := repo.Commit("first")
	gs := newGitSync(t, ns, "app", repo.Daemon(), nil)
	c := testenv.NewConflict(client.ObjectKeyFromObject(gs))
	testenv.StartManager(t, cfg, scheme, nil, func(_ context.Context, mgr ctrl.Manager) error {
		engine, err := gitops.NewEngine(mgr.GetConfig(), FieldManager, mgr.GetLogger())
		if err != nil {
			return err
		}
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { <-ctx.Done(); engine.Close(); return nil })); err != nil {
			return err
		}
		r := &Reconciler{Client: c.Client(mgr.GetClient()), APIReader: mgr.GetAPIReader(), Engine: engine,
			Recorder: c.Recorder(mgr.GetEventRecorder("vigil-gitsync"))}
		return r.SetupWithManager(mgr)
	})

	start := c.Expect(t, "GitSync", 30*time.Second)

	eventually(g, func(g Gomega) {
		got := get(g, gs)
		g.Expect(got.Status.LastAppliedRevision).To(Equal(first))
		g.Expect(got.Status.LastAttemptedRevision).To(Equal(first))
		g.Expect(condition(got, vigilv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(got.Annotations).To(HaveKey("vigil.dev/test-conflict"), "the conflict came from a real change")
	}).Should(Succeed())
	eventually(g, c.Events).Should(ConsistOf(vigilv1.ReasonNewRevision, vigilv1.ReasonApplied), "told once each, after the status was stored")
	synced := "vigil_gitsync_syncs_total{outcome=Success,}"
	g.Expect(c.Told().Metrics[synced]-start.Metrics[synced]).To(Equal(1.0), "the sync of the reconcile that stored it")
}
