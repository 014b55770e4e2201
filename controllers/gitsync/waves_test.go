package gitsync

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/hack/gittest"
)

// A load balancer Service is Progressing until it has an ingress address,
// so the wave after it must wait.
const waitingServiceYAML = `apiVersion: v1
kind: Service
metadata:
  name: front
  annotations:
    argocd.argoproj.io/sync-wave: "0"
spec:
  type: LoadBalancer
  selector: {app: front}
  ports:
    - port: 80
`

const laterConfigMapYAML = `apiVersion: v1
kind: ConfigMap
metadata:
  name: after-front
  annotations:
    argocd.argoproj.io/sync-wave: "1"
data:
  a: b
`

func TestWavesWaitForTheWaveBeforeToBeHealthy(t *testing.T) {
	g := NewWithT(t)
	startManager(t, gitops.Limits{})
	ns := newNamespace(t)
	ctx := context.Background()
	repo := gittest.NewRepo(t, "app.git")
	repo.Write("deploy/front.yaml", waitingServiceYAML)
	repo.Write("deploy/later.yaml", laterConfigMapYAML)
	head := repo.Commit("two waves")
	gs := newGitSync(t, ns, "waves", repo.Daemon(), nil)

	eventually(g, func(g Gomega) {
		got := get(g, gs)
		g.Expect(condition(got, vigilv1.ConditionReconciling).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(condition(got, vigilv1.ConditionReady).Reason).To(Equal(vigilv1.ReasonSyncing))
	}).Should(Succeed())
	g.Consistently(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "after-front"}, &corev1.ConfigMap{})
	}).WithTimeout(3*time.Second).WithPolling(100*time.Millisecond).ShouldNot(Succeed(), "wave 1 waits while wave 0 is Progressing")
	g.Expect(get(g, gs).Status.LastAppliedRevision).To(BeEmpty())

	svc := &corev1.Service{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "front"}, svc)).To(Succeed())
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "127.0.0.10"}}
	g.Expect(k8s.Status().Update(ctx, svc)).To(Succeed())

	eventually(g, func(g Gomega) {
		got := get(g, gs)
		g.Expect(got.Status.LastAppliedRevision).To(Equal(head))
		g.Expect(condition(got, vigilv1.ConditionReconciling).Status).To(BeEmpty(), "Reconciling is gone once the sync ends")
	}).Should(Succeed())
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "after-front"}, &corev1.ConfigMap{})).To(Succeed())
}
