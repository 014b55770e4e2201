package rollout

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	localcluster "github.com/vigil-dev/vigil/hack/cluster"
	"github.com/vigil-dev/vigil/hack/testenv"
)

// as is a client that acts as user through the API server's impersonation,
// so the webhook sees that user in the admission request.
func as(t testing.TB, user string, groups ...string) client.Client {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:authenticated")}
	out, err := client.New(c, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decideAs creates an Approval (or a Reject) as c's user.
func decideAs(c client.Client, ro *vigilv1.Rollout, name, revision string, step int32, d vigilv1.ApprovalDecision, scope vigilv1.ApprovalScope) error {
	a := &vigilv1.Approval{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: name}, Spec: vigilv1.ApprovalSpec{
		RolloutRef: vigilv1.LocalObjectReference{Name: ro.Name}, Revision: revision, Step: step, Decision: d, Scope: scope, Reason: "test"}}
	return c.Create(context.Background(), a)
}

// waitPending waits until ro waits for an approval at step and returns the
// canary revision.
func waitPending(t testing.TB, ro *vigilv1.Rollout, step int32) string {
	t.Helper()
	var rev string
	NewWithT(t).Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.PendingApproval).NotTo(BeNil(), cur.Status.Message)
		g.Expect(cur.Status.PendingApproval.Step).To(Equal(step), cur.Status.Message)
		rev = cur.Status.PendingApproval.Revision
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())
	return rev
}

// countedAs is the reason of an Approval's Counted condition and its approver.
func countedAs(g Gomega, ns, name string) (reason, approver string) {
	a := &vigilv1.Approval{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, a)).To(Succeed())
	if c := meta.FindStatusCondition(a.Status.Conditions.Conditions, vigilv1.ConditionCounted); c != nil {
		return c.Reason, a.Status.Approver
	}
	return "", a.Status.Approver
}

func TestApprovalsAreBoundToWhoMadeThem(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	testenv.BindApprovers(t, k8s, ns, "alice", "bob", "dave", "erin")
	ro := newRollout(ns, "pay", 2, "pay:v1",
		vigilv1.CanaryStep{Approval: &vigilv1.ApprovalStep{Users: []string{"alice"}, Groups: []string{"sre"}}},
		vigilv1.CanaryStep{Approval: &vigilv1.ApprovalStep{RequiredApprovals: 2}},
		approvalStep(), weightStep(50))
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	waitPromoted(t, ro, 20*time.Second)
	newImage(t, ro, "pay:v2")
	v2 := waitPending(t, ro, 0)
	step := vigilv1.ApprovalScopeStep

	// carol may create Approvals in the namespace, but RBAC does not let
	// her approve or reject this Rollout.
	g.Expect(k8s.Create(context.Background(), &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approval-maker"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"vigil.dev"}, Resources: []string{"approvals"}, Verbs: []string{"create"}}}})).To(Succeed())
	g.Expect(k8s.Create(context.Background(), &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approval-maker"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "approval-maker"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "carol"}}})).To(Succeed())
	g.Expect(decideAs(as(t, "carol"), ro, "carol-0", v2, 0, vigilv1.ApprovalApprove, step)).To(MatchError(And(
		ContainSubstring(`carol may not approve Rollout pay`), ContainSubstring(`no verb "approve" on rollouts.vigil.dev "pay"`))))
	g.Expect(decideAs(as(t, "dave"), ro, "dave-0", v2, 0, vigilv1.ApprovalApprove, step)).To(MatchError(
		ContainSubstring("dave is not among the approvers of step 0 of Rollout pay (users alice; groups sre)")))
	g.Expect(decideAs(as(t, "erin", "sre"), ro, "erin-0", v2, 0, vigilv1.ApprovalApprove, step)).To(Succeed(), "a member of an approving group")
	waitPending(t, ro, 1)
	g.Eventually(func(g Gomega) {
		reason, approver := countedAs(g, ns, "erin-0")
		g.Expect(approver).To(Equal("erin"), "the Approval shows who made it, from the request")
		g.Expect(reason).To(Equal(vigilv1.ApprovalUsed))
		g.Expect(approvalConsumed(g, ns, "erin-0")).To(BeTrue())
	}).Should(Succeed())

	// A quorum of 2: one person twice is one approval.
	g.Expect(decideAs(as(t, "alice"), ro, "alice-1", v2, 1, vigilv1.ApprovalApprove, step)).To(Succeed())
	g.Expect(decideAs(as(t, "alice"), ro, "alice-1-again", v2, 1, vigilv1.ApprovalApprove, step)).To(Succeed())
	g.Eventually(func(g Gomega) {
		reason, _ := countedAs(g, ns, "alice-1-again")
		g.Expect(reason).To(Equal(vigilv1.ApprovalDuplicate))
		g.Expect(get(g, ro).Status.PendingApproval).To(HaveField("Received", int32(1)))
	}).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ro).Status.CurrentStepIndex).To(HaveValue(Equal(int32(1))))
	}, time.Second, 50*time.Millisecond).Should(Succeed(), "alice twice is not a quorum of 2")

	// Two different people at the same instant: the step advances once,
	// to the next approval step, which still waits.
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, 2)
	for i, who := range []string{"bob", "dave"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := as(t, who)
			<-start
			errs[i] = decideAs(c, ro, who+"-1", v2, 1, vigilv1.ApprovalApprove, step)
		}()
	}
	close(start)
	wg.Wait()
	g.Expect(errs).To(HaveEach(BeNil()))
	waitPending(t, ro, 2)
	g.Consistently(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.CurrentStepIndex).To(HaveValue(Equal(int32(2))), "advanced exactly once")
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
	}, time.Second, 50*time.Millisecond).Should(Succeed())

	// A Reject is bound the same way: the verb reject, then the identity.
	g.Expect(decideAs(as(t, "carol"), ro, "carol-no", v2, 2, vigilv1.ApprovalReject, step)).To(MatchError(ContainSubstring(`no verb "reject"`)))
	g.Expect(decideAs(as(t, "bob"), ro, "bob-no", v2, 2, vigilv1.ApprovalReject, step)).To(Succeed())
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.Rollback).NotTo(BeNil())
		g.Expect(cur.Status.Rollback.Message).To(ContainSubstring("Approval bob-no by bob rejected it"))
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())
}

// withoutWebhook removes Vigil's webhook configurations while fn runs, as
// if the webhook were not installed yet, then installs them again.
func withoutWebhook(t *testing.T, fn func()) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	for _, obj := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		obj.SetName(localcluster.WebhookConfiguration)
		g.Expect(k8s.Delete(ctx, obj)).To(Succeed())
	}
	probe := func() error {
		p := &vigilv1.Approval{ObjectMeta: metav1.ObjectMeta{Namespace: "default", GenerateName: "probe-"},
			Spec: vigilv1.ApprovalSpec{RolloutRef: vigilv1.LocalObjectReference{Name: "nothing"}, Revision: "x", Decision: vigilv1.ApprovalApprove}}
		return k8s.Create(ctx, p, client.DryRunAll)
	}
	g.Eventually(probe, 10*time.Second, 50*time.Millisecond).Should(Succeed(), "the API server stops calling the webhook")
	defer func() {
		g.Expect(localcluster.InstallWebhooks(ctx, k8s, testenv.WebhookManifests(), webhookBase)).To(Succeed())
		g.Expect(localcluster.WaitForAdmission(ctx, k8s, 30*time.Second)).To(Succeed())
	}()
	fn()
}

func TestApprovalsMadeAroundTheWebhookCountForNothing(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	testenv.BindApprovers(t, k8s, ns, "alice", "bob")
	ro := newRollout(ns, "ledger", 2, "ledger:v1", vigilv1.CanaryStep{Approval: &vigilv1.ApprovalStep{RequiredApprovals: 2}}, weightStep(50))
	g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	waitPromoted(t, ro, 20*time.Second)
	newImage(t, ro, "ledger:v2")
	v2 := waitPending(t, ro, 0)

	g.Expect(decideAs(as(t, "alice"), ro, "real", v2, 0, vigilv1.ApprovalApprove, vigilv1.ApprovalScopeStep)).To(Succeed())
	real := &vigilv1.Approval{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "real"}, real)).To(Succeed())
	g.Expect(real.Annotations).To(HaveKey(vigilv1.AnnotationApprovalSeal), "the webhook sealed it")

	copyOf := func(name string, annotations map[string]string) *vigilv1.Approval {
		return &vigilv1.Approval{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations}, Spec: real.Spec}
	}
	withoutWebhook(t, func() {
		g.Expect(k8s.Create(ctx, copyOf("unsealed", nil))).To(Succeed())
		forged := map[string]string{
			vigilv1.AnnotationApprovalIdentity: strings.Replace(real.Annotations[vigilv1.AnnotationApprovalIdentity], `"alice"`, `"bob"`, 1),
			vigilv1.AnnotationApprovalSeal:     real.Annotations[vigilv1.AnnotationApprovalSeal],
		}
		g.Expect(k8s.Create(ctx, copyOf("forged", forged))).To(Succeed())
		g.Expect(k8s.Create(ctx, copyOf("replayed", real.Annotations))).To(Succeed())
	})
	g.Eventually(func(g Gomega) {
		for name, want := range map[string]string{"unsealed": vigilv1.ApprovalNotSealed, "forged": vigilv1.ApprovalSealBroken,
			"replayed": vigilv1.ApprovalDuplicate, "real": vigilv1.ApprovalCounting} {
			reason, _ := countedAs(g, ns, name)
			g.Expect(reason).To(Equal(want), name)
		}
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ro).Status.PendingApproval).To(HaveField("Received", int32(1)))
	}, time.Second, 50*time.Millisecond).Should(Succeed(), "made around the webhook, they add no one to alice")

	// Nobody but the controller writes an Approval's status, and the seal
	// never changes.
	g.Expect(k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "status-writer"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"vigil.dev"}, Resources: []string{"approvals/status", "approvals"}, Verbs: []string{"get", "update", "patch"}}}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "status-writer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "status-writer"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "mallory"}}})).To(Succeed())
	mallory := as(t, "mallory")
	g.Eventually(func() error {
		a := &vigilv1.Approval{}
		if err := mallory.Get(ctx, client.ObjectKey{Namespace: ns, Name: "unsealed"}, a); err != nil {
			return err
		}
		a.Status.Approver = "bob"
		return mallory.Status().Update(ctx, a)
	}).Should(MatchError(ContainSubstring("only Vigil's controller")))
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "real"}, real)).To(Succeed())
	real.Annotations[vigilv1.AnnotationApprovalIdentity] = forgedIdentity(real)
	g.Expect(k8s.Update(ctx, real)).To(MatchError(ContainSubstring("never changes")))

	g.Expect(decideAs(as(t, "bob"), ro, "bob", v2, 0, vigilv1.ApprovalApprove, vigilv1.ApprovalScopeStep)).To(Succeed())
	waitPromoted(t, ro, 20*time.Second)

	// Replayed once its wait is over, alice's Approval counts for nothing.
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "real"}, real)).To(Succeed())
	withoutWebhook(t, func() {
		g.Expect(k8s.Create(ctx, copyOf("replayed-later", real.Annotations))).To(Succeed())
	})
	g.Eventually(func(g Gomega) {
		reason, _ := countedAs(g, ns, "replayed-later")
		g.Expect(reason).To(Equal(vigilv1.ApprovalNotWaiting))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
}

func forgedIdentity(a *vigilv1.Approval) string {
	return strings.Replace(a.Annotations[vigilv1.AnnotationApprovalIdentity], `"alice"`, `"mallory"`, 1)
}

func TestDecisionsThatAnswerNoWaitAreRefusedWithWhatWaits(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	testenv.BindApprovers(t, k8s, ns, "alice", "bob", "erin")
	ro := newRollout(ns, "shop", 2, "shop:v1", approvalStep(),
		vigilv1.CanaryStep{Approval: &vigilv1.ApprovalStep{RequiredApprovals: 2, Expiry: ptr.To(vigilv1.Duration("3s"))}},
		weightStep(50), approvalStep())
	g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	v1 := waitPromoted(t, ro, 20*time.Second).Status.StableRevision
	newImage(t, ro, "shop:v2")
	v2 := waitPending(t, ro, 0)
	alice, step := as(t, "alice"), vigilv1.ApprovalScopeStep
	what := "waits for a decision on revision " + v2 + " at step 0"

	other := &vigilv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-such"}}
	g.Expect(decideAs(alice, other, "x", v2, 0, vigilv1.ApprovalApprove, step)).To(MatchError(ContainSubstring(`Rollout "no-such" does not exist in namespace`)))
	g.Expect(decideAs(alice, ro, "old", v1, 0, vigilv1.ApprovalApprove, step)).To(MatchError(ContainSubstring(what)), "another revision")
	g.Expect(decideAs(alice, ro, "early", v2, 1, vigilv1.ApprovalApprove, step)).To(MatchError(ContainSubstring(what)), "a step that has not started")

	// Scope Full from one person, where a later step needs two, passes
	// this step only.
	g.Expect(decideAs(alice, ro, "all", v2, 0, vigilv1.ApprovalApprove, vigilv1.ApprovalScopeFull)).To(Succeed())
	waitPending(t, ro, 1)
	g.Eventually(func(g Gomega) {
		g.Expect(rolloutEvents(g, ro)).To(ContainElement(HaveField("Message", ContainSubstring("Scope Full came from 1 of the 2 people step 1 needs; passing step 0 only"))))
	}).Should(Succeed())
	g.Expect(decideAs(alice, ro, "replay", v2, 0, vigilv1.ApprovalApprove, step)).To(MatchError(ContainSubstring("at step 1")), "step 0's wait is over")

	// An expired Approval no longer counts toward a quorum (expiry 3s).
	g.Expect(decideAs(alice, ro, "alice-1", v2, 1, vigilv1.ApprovalApprove, step)).To(Succeed())
	g.Eventually(func(g Gomega) {
		reason, _ := countedAs(g, ns, "alice-1")
		g.Expect(reason).To(Equal(vigilv1.ApprovalExpired))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(decideAs(as(t, "bob"), ro, "bob-1", v2, 1, vigilv1.ApprovalApprove, step)).To(Succeed())
	// bob's Approval expires 3s after it was made: erin follows at once.
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.CurrentStepIndex).To(HaveValue(Equal(int32(1))), "alice's expired Approval and bob's are not two")
		g.Expect(cur.Status.PendingApproval).To(HaveField("Received", int32(1)))
	}, 3*time.Second, 20*time.Millisecond).Should(Succeed())
	g.Expect(decideAs(as(t, "erin"), ro, "erin-1", v2, 1, vigilv1.ApprovalApprove, step)).To(Succeed())
	waitPending(t, ro, 3)
}
