package gitsync

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/hack/gittest"
)

const rolloutYAML = `apiVersion: vigil.dev/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: app
          image: registry.example/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  strategy:
    canary:
      steps:
        - setWeight: 50
        - analysis: {templates: [{name: error-rate}]}
`

const templateYAML = `apiVersion: vigil.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: error-rate
spec:
  metrics:
    - name: error-rate
      interval: 30s
      successCondition: result < 0.01
      provider:
        prometheus:
          address: http://prometheus.monitoring:9090
          query: sum(rate(http_requests_total{code=~"5.."}[2m]))
`

func serviceYAML(port int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
    - port: %d
`, port)
}

func configMapYAML(name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  value: %q\n", name, value)
}

func servicePort(g Gomega, ns string) int32 {
	svc := &corev1.Service{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "web"}, svc)).To(Succeed())
	return svc.Spec.Ports[0].Port
}

func TestAppliesARepositoryAndEachNewCommitWithinAnInterval(t *testing.T) {
	g := NewWithT(t)
	startManager(t, gitops.Limits{})
	ns := newNamespace(t)
	repo := gittest.NewRepo(t, "app.git")
	repo.Write("deploy/rollout.yaml", rolloutYAML)
	repo.Write("deploy/service.yaml", serviceYAML(80))
	repo.Write("deploy/canary-service.yaml", strings.Replace(serviceYAML(80), "name: web", "name: web-canary", 1))
	repo.Write("deploy/template.yaml", templateYAML)
	repo.Write("README.md", "not applied")
	first := repo.Commit("first")
	gs := newGitSync(t, ns, "app", repo.Daemon(), nil)

	eventually(g, func(g Gomega) {
		got := get(g, gs)
		g.Expect(got.Status.LastAppliedRevision).To(Equal(first), "%+v", got.Status)
		g.Expect(condition(got, vigilv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(got.Status.Resources).To(HaveLen(4))
		for _, r := range got.Status.Resources {
			g.Expect(r.Sync).To(Equal("Synced"), r.Kind)
		}
	}).Should(Succeed())
	ro := &vigilv1.Rollout{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "web"}, ro)).To(Succeed())
	g.Expect(ro.Annotations).To(HaveKeyWithValue(gitops.OwnerAnnotation, ns+"/app"))
	g.Expect(managers(ro.ManagedFields)).To(ContainElement(FieldManager))
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "error-rate"}, &vigilv1.AnalysisTemplate{})).To(Succeed())
	g.Expect(servicePort(g, ns)).To(Equal(int32(80)))

	repo.Write("deploy/service.yaml", serviceYAML(8080))
	second := repo.Commit("port 8080")
	committed := time.Now()
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, gs).Status.LastAppliedRevision).To(Equal(second))
	}).WithTimeout(10*time.Second + 5*time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	t.Logf("commit applied %s after it was pushed (interval 10s)", time.Since(committed).Round(time.Millisecond))
	g.Expect(servicePort(g, ns)).To(Equal(int32(8080)))
}

func managers(fields []metav1.ManagedFieldsEntry) []string {
	var out []string
	for _, f := range fields {
		out = append(out, f.Manager)
	}
	return out
}

func TestSignedWebhookAppliesWithinTwoSecondsAndReplaysOrForgeriesDoNot(t *testing.T) {
	g := NewWithT(t)
	h := startManager(t, gitops.Limits{})
	ns := newNamespace(t)
	repo := gittest.NewRepo(t, "app.git")
	repo.Write("deploy/cm.yaml", configMapYAML("settings", "one"))
	first := repo.Commit("one")
	url := repo.Daemon()
	gs := newGitSync(t, ns, "hooked", url, func(gs *vigilv1.GitSync) { gs.Spec.Interval = "5m" })
	eventually(g, func(g Gomega) { g.Expect(get(g, gs).Status.LastAppliedRevision).To(Equal(first)) }).Should(Succeed())

	repo.Write("deploy/cm.yaml", configMapYAML("settings", "two"))
	second := repo.Commit("two")
	sent := time.Now()
	g.Expect(h.push(t, url, "delivery-1", hookSecret)).To(Equal(202))
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, gs).Status.LastAppliedRevision).To(Equal(second))
	}).WithTimeout(2 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	t.Logf("commit applied %s after the webhook delivery", time.Since(sent).Round(time.Millisecond))

	repo.Write("deploy/cm.yaml", configMapYAML("settings", "three"))
	repo.Commit("three")
	g.Expect(h.push(t, url, "delivery-1", hookSecret)).To(Equal(200), "the replay is answered as a duplicate")
	g.Expect(h.push(t, url, "delivery-2", "not-the-secret")).To(Equal(401), "a bad signature is refused")
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, gs).Status.LastAppliedRevision).To(Equal(second))
	}).WithTimeout(3*time.Second).WithPolling(100*time.Millisecond).Should(Succeed(), "neither the replay nor the forgery triggered a sync")
	g.Expect(h.push(t, "git://127.0.0.1:1/other.git", "delivery-3", hookSecret)).To(Equal(202), "another repository matches nothing")
}

func TestVerifyKeepsTheLastGoodCommitWhenHeadIsUnsignedOrSignedByAnotherKey(t *testing.T) {
	g := NewWithT(t)
	h := startManager(t, gitops.Limits{})
	ns := newNamespace(t)
	trusted, trustedPub := gittest.NewPGPKey(t, "release")
	other, _ := gittest.NewPGPKey(t, "mallory")
	g.Expect(k8s.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keys"},
		Data:       map[string][]byte{"release.asc": trustedPub},
	})).To(Succeed())
	repo := gittest.NewRepo(t, "app.git")
	repo.Write("deploy/cm.yaml", configMapYAML("settings", "signed"))
	good := repo.CommitPGP("signed", trusted)
	url := repo.Daemon()
	gs := newGitSync(t, ns, "verified", url, func(gs *vigilv1.GitSync) {
		gs.Spec.Interval = "5m"
		gs.Spec.Verify = &vigilv1.GitVerification{Mode: vigilv1.GitVerificationMode(gitops.ModeOpenPGP), SecretRef: vigilv1.LocalObjectReference{Name: "keys"}}
	})
	eventually(g, func(g Gomega) {
		got := get(g, gs)
		g.Expect(got.Status.LastAppliedRevision).To(Equal(good))
		g.Expect(got.Status.LastAppliedSigner).To(HavePrefix("release.asc (OpenPGP key "))
	}).Should(Succeed())

	for i, tc := range []struct {
		name   string
		commit func() string
		reason string
		says   string
	}{
		{"unsigned", func() string { return repo.Commit("unsigned") }, gitops.ReasonUnsigned, "is not signed"},
		{"another key", func() string { return repo.CommitPGP("forged", other) }, gitops.ReasonUntrustedSignature, "is signed by OpenPGP key"},
	} {
		repo.Write("deploy/cm.yaml", configMapYAML("settings", tc.name))
		bad := tc.commit()
		g.Expect(h.push(t, url, fmt.Sprintf("bad-%d", i), hookSecret)).To(Equal(202))
		eventually(g, func(g Gomega) {
			got := get(g, gs)
			ready := condition(got, vigilv1.ConditionReady)
			g.Expect(ready.Reason).To(Equal(tc.reason), tc.name)
			g.Expect(ready.Message).To(ContainSubstring("commit " + bad[:12] + " " + tc.says))
			g.Expect(condition(got, vigilv1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(got.Status.LastAttemptedRevision).To(Equal(bad))
			g.Expect(got.Status.LastAppliedRevision).To(Equal(good), "the last good commit stays applied")
		}).Should(Succeed())
		cm := &corev1.ConfigMap{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "settings"}, cm)).To(Succeed())
		g.Expect(cm.Data["value"]).To(Equal("signed"), tc.name)
	}
}

func TestDriftIsRevertedWithSelfHealAndReportedWithout(t *testing.T) {
	startManager(t, gitops.Limits{})
	for _, selfHeal := range []bool{true, false} {
		t.Run(fmt.Sprintf("selfHeal=%v", selfHeal), func(t *testing.T) {
			g := NewWithT(t)
			ns := newNamespace(t)
			repo := gittest.NewRepo(t, "app.git")
			repo.Write("deploy/cm.yaml", configMapYAML("settings", "from-git"))
			repo.Commit("one")
			gs := newGitSync(t, ns, "drift", repo.Daemon(), func(gs *vigilv1.GitSync) { gs.Spec.SelfHeal = selfHeal })
			eventually(g, func(g Gomega) {
				g.Expect(condition(get(g, gs), vigilv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
			}).Should(Succeed())

			// What `kubectl edit` sends: a patch under its own field manager.
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"}}
			patch := client.RawPatch(types.MergePatchType, []byte(`{"data":{"value":"edited"}}`))
			g.Expect(k8s.Patch(context.Background(), cm, patch, client.FieldOwner("kubectl-edit"))).To(Succeed())

			value := func(g Gomega) string {
				got := &corev1.ConfigMap{}
				g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(cm), got)).To(Succeed())
				return got.Data["value"]
			}
			if selfHeal {
				eventually(g, value).Should(Equal("from-git"))
				eventually(g, func(g Gomega) {
					c := condition(get(g, gs), vigilv1.ConditionDrifted)
					g.Expect(c.Reason).To(Equal(vigilv1.ReasonDriftReverted))
					g.Expect(c.Message).To(ContainSubstring("ConfigMap settings (modified)"))
				}).Should(Succeed())
				return
			}
			eventually(g, func(g Gomega) {
				c := condition(get(g, gs), vigilv1.ConditionDrifted)
				g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(c.Message).To(Equal("ConfigMap settings (modified)"))
			}).Should(Succeed())
			g.Expect(value(g)).To(Equal("edited"), "without selfHeal the edit stays")
		})
	}
}

func TestPruneRemovesOnlyOwnedObjectsAndOnlyWhenOn(t *testing.T) {
	g := NewWithT(t)
	h := startManager(t, gitops.Limits{})
	ns := newNamespace(t)
	ctx := context.Background()
	unmanaged := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unmanaged"}, Data: map[string]string{"a": "b"}}
	g.Expect(k8s.Create(ctx, unmanaged)).To(Succeed())
	repo := gittest.NewRepo(t, "app.git")
	for _, n := range []string{"keep", "leaves", "disowned"} {
		repo.Write("deploy/"+n+".yaml", configMapYAML(n, n))
	}
	first := repo.Commit("three")
	url := repo.Daemon()
	gs := newGitSync(t, ns, "prune", url, func(gs *vigilv1.GitSync) { gs.Spec.Interval = "5m" })
	eventually(g, func(g Gomega) { g.Expect(get(g, gs).Status.LastAppliedRevision).To(Equal(first)) }).Should(Succeed())

	// Someone takes "disowned" over: it no longer carries the GitSync's mark.
	disowned := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "disowned"}}
	g.Expect(k8s.Patch(ctx, disowned, client.RawPatch(types.JSONPatchType,
		[]byte(`[{"op":"remove","path":"/metadata/annotations/vigil.dev~1gitsync"}]`)))).To(Succeed())
	repo.Remove("deploy/leaves.yaml")
	repo.Remove("deploy/disowned.yaml")
	second := repo.Commit("two left Git")
	g.Expect(h.push(t, url, "p1", hookSecret)).To(Equal(202))
	eventually(g, func(g Gomega) {
		got := get(g, gs)
		g.Expect(got.Status.LastAppliedRevision).To(Equal(second))
		g.Expect(condition(got, vigilv1.ConditionDrifted).Message).To(ContainSubstring("ConfigMap leaves (not in Git, prune is off)"))
	}).Should(Succeed())
	exists := func(name string) bool {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &corev1.ConfigMap{}) == nil
	}
	g.Expect(exists("leaves")).To(BeTrue(), "prune is off")

	latest := get(g, gs)
	latest.Spec.Prune = true
	g.Expect(k8s.Update(ctx, latest)).To(Succeed())
	eventually(g, func() bool { return exists("leaves") }).Should(BeFalse(), "pruned once prune is on")
	eventually(g, func(g Gomega) {
		got := get(g, gs)
		g.Expect(condition(got, vigilv1.ConditionDrifted).Status).To(Equal(metav1.ConditionFalse))
		var names []string
		for _, r := range got.Status.Resources {
			names = append(names, r.Name)
		}
		g.Expect(names).To(Equal([]string{"keep"}))
	}).Should(Succeed())
	g.Expect(exists("keep")).To(BeTrue())
	g.Expect(exists("disowned")).To(BeTrue(), "an object that is not marked as the GitSync's is never pruned")
	g.Expect(exists("unmanaged")).To(BeTrue(), "an object Vigil never applied is never pruned")
}

func TestObjectsOutsideTheNamespaceAreRefused(t *testing.T) {
	g := NewWithT(t)
	startManager(t, gitops.Limits{})
	ns := newNamespace(t)
	repo := gittest.NewRepo(t, "app.git")
	repo.Write("deploy/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: elsewhere\n")
	repo.Commit("cluster-scoped")
	gs := newGitSync(t, ns, "scope", repo.Daemon(), nil)
	eventually(g, func(g Gomega) {
		ready := condition(get(g, gs), vigilv1.ConditionReady)
		g.Expect(ready.Reason).To(Equal(gitops.ReasonRenderFailed))
		g.Expect(ready.Message).To(Equal("Namespace elsewhere is cluster-scoped; a GitSync applies only objects of its own namespace"))
	}).Should(Succeed())
	g.Expect(strings.Contains(ns, "gitsync-test")).To(BeTrue())
}

func TestARewrittenBranchIsRefusedUntilItsNewCommitIsAccepted(t *testing.T) {
	g := NewWithT(t)
	startManager(t, gitops.Limits{})
	ns := newNamespace(t)
	repo := gittest.NewRepo(t, "app.git")
	repo.Write("deploy/service.yaml", serviceYAML(80))
	repo.Commit("first")
	repo.Write("deploy/service.yaml", serviceYAML(81))
	second := repo.Commit("second")
	gs := newGitSync(t, ns, "app", repo.Daemon(), nil)
	eventually(g, func(g Gomega) {
		g.Expect(get(g, gs).Status.LastAppliedRevision).To(Equal(second))
	}).Should(Succeed())

	// A force-push replaces the applied commit with another one.
	repo.Git(repo.Work, "reset", "-q", "--hard", "HEAD~1")
	repo.Write("deploy/service.yaml", serviceYAML(82))
	rewritten := repo.Commit("rewritten")
	eventually(g, func(g Gomega) {
		got := get(g, gs)
		ready := condition(got, vigilv1.ConditionReady)
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(gitops.ReasonHistoryRewritten))
		g.Expect(ready.Message).To(And(ContainSubstring("moved from "+second+" to "+rewritten), ContainSubstring(AcceptRewriteAnnotation+"="+rewritten)))
		g.Expect(condition(got, vigilv1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(got.Status.LastAttemptedRevision).To(Equal(rewritten))
		g.Expect(got.Status.LastAppliedRevision).To(Equal(second))
	}).Should(Succeed())
	g.Expect(servicePort(g, ns)).To(Equal(int32(81)), "the rewritten commit is not applied")

	got := get(g, gs)
	got.Annotations = map[string]string{AcceptRewriteAnnotation: rewritten}
	g.Expect(k8s.Update(context.Background(), got)).To(Succeed())
	eventually(g, func(g Gomega) {
		got := get(g, gs)
		g.Expect(got.Status.LastAppliedRevision).To(Equal(rewritten))
		g.Expect(condition(got, vigilv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(servicePort(g, ns)).To(Equal(int32(82)))
	}).Should(Succeed())
}

func TestAHistoryTooLargeToCheckIsRefusedWithWhatToDo(t *testing.T) {
	g := NewWithT(t)
	limits := gitops.DefaultLimits()
	limits.Objects = 12 // one commit's pack (4 objects) fits; four commits' history does not
	startManager(t, limits)
	ns := newNamespace(t)
	repo := gittest.NewRepo(t, "app.git")
	repo.Write("deploy/service.yaml", serviceYAML(80))
	first := repo.Commit("first")
	gs := newGitSync(t, ns, "app", repo.Daemon(), nil)
	eventually(g, func(g Gomega) {
		g.Expect(get(g, gs).Status.LastAppliedRevision).To(Equal(first))
	}).Should(Succeed())

	var head string
	for port := 81; port <= 83; port++ {
		repo.Write("deploy/service.yaml", serviceYAML(port))
		head = repo.Commit(fmt.Sprintf("port %d", port))
	}
	eventually(g, func(g Gomega) {
		ready := condition(get(g, gs), vigilv1.ConditionReady)
		g.Expect(ready.Reason).To(Equal(gitops.ReasonLimitExceeded))
		g.Expect(ready.Message).To(And(ContainSubstring("only moved forward from "+first+" needs its history"),
			ContainSubstring(AcceptRewriteAnnotation+"="+head)))
	}).Should(Succeed())
	g.Expect(servicePort(g, ns)).To(Equal(int32(80)))

	got := get(g, gs)
	got.Annotations = map[string]string{AcceptRewriteAnnotation: head}
	g.Expect(k8s.Update(context.Background(), got)).To(Succeed())
	eventually(g, func(g Gomega) {
		g.Expect(get(g, gs).Status.LastAppliedRevision).To(Equal(head))
		g.Expect(servicePort(g, ns)).To(Equal(int32(83)))
	}).Should(Succeed())
}
