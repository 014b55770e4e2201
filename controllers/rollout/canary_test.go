package rollout

import (
	"context"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// The acceptance canary: setWeight 20, pause 2s, approval, setWeight 60.
func acceptanceSteps() []vigilv1.CanaryStep {
	return []vigilv1.CanaryStep{weightStep(20), pauseStep("2s"), approvalStep(), weightStep(60)}
}

func TestFourStepCanaryPromotesByReplicaRatio(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil) // stands in for the kubelet: every ReplicaSet's pods turn ready
	startManager(t, nil)
	ro := newRollout(ns, "shop", 5, "shop:v1", acceptanceSteps()...)
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	v1 := waitPromoted(t, ro, 20*time.Second)
	g.Expect(replicaSets(g, ro)[v1.Status.StableRevision].Spec.Replicas).To(HaveValue(Equal(int32(5))), "the first revision goes straight to stable")

	newImage(t, ro, "shop:v2")
	var v2 string
	By := func(string) {}
	By("step 0: 1 of 5 pods is the canary (20%)")
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		v2 = cur.Status.CanaryRevision
		g.Expect(v2).NotTo(BeEmpty())
		sets := replicaSets(g, ro)
		// The canary's revision is in status one reconcile before its
		// ReplicaSet exists (a decision is stored before it is acted on).
		g.Expect(sets).To(HaveKey(v2))
		g.Expect(sets[v2].Spec.Replicas).To(HaveValue(Equal(int32(1))))
		g.Expect(sets[v1.Status.StableRevision].Spec.Replicas).To(HaveValue(Equal(int32(4))))
		g.Expect(cur.Status.CanaryWeight).To(Equal(int32(20)))
		g.Expect(cur.Status.StableWeight).To(Equal(int32(80)))
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())
	g.Expect(v2).NotTo(Equal(v1.Status.StableRevision))

	By("step 1 pauses 2s, then step 2 waits for an approval")
	waitForApprovalAfterPause(t, ro, v2)
	approve(t, ro, "go-ahead", v2, 2, vigilv1.ApprovalApprove)
	v2ro := waitPromoted(t, ro, 30*time.Second)
	g.Expect(v2ro.Status.StableRevision).To(Equal(v2))
	g.Expect(v2ro.Status.CanaryWeight).To(Equal(int32(0)))
	g.Expect(v2ro.Status.StableWeight).To(Equal(int32(100)))
	g.Expect(v2ro.Status.History).NotTo(BeEmpty())
	g.Expect(v2ro.Status.History[0].Revision).To(Equal(v2))
	g.Expect(v2ro.Status.History[0].Outcome).To(Equal(vigilv1.RolloutPhasePromoted))

	checkPromotedByRatio(t, ro, v1.Status.StableRevision, v2)
}

// waitForApprovalAfterPause waits for step 1 (a 2s pause) and then step 2
// (an approval) of canary v2, and checks the pause lasted its time.
func waitForApprovalAfterPause(t *testing.T, ro *vigilv1.Rollout, v2 string) {
	g := NewWithT(t)
	var pauseStarted time.Time
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.CurrentStepIndex).To(HaveValue(Equal(int32(1))))
		pauseStarted = cur.Status.CurrentStepStartedAt.Time
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())
	var waiting *vigilv1.Rollout
	g.Eventually(func(g Gomega) {
		waiting = get(g, ro)
		g.Expect(waiting.Status.PendingApproval).NotTo(BeNil())
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())
	g.Expect(waiting.Status.PendingApproval.Revision).To(Equal(v2))
	g.Expect(waiting.Status.PendingApproval.Step).To(Equal(int32(2)))
	g.Expect(waiting.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
	g.Expect(waiting.Status.CurrentStepStartedAt.Time).To(BeTemporally(">=", pauseStarted.Add(2*time.Second)),
		"step 2 began no sooner than 2s after the pause began")

}

// checkPromotedByRatio checks what promoting v2 over v1 left: the
// ReplicaSets, the used Approval and the Events.
func checkPromotedByRatio(t *testing.T, ro *vigilv1.Rollout, v1, v2 string) {
	g := NewWithT(t)
	ns := ro.Namespace
	sets := replicaSets(g, ro)
	g.Expect(sets).To(HaveLen(2), "no duplicate ReplicaSet")
	g.Expect(sets[v2].Spec.Replicas).To(HaveValue(Equal(int32(5))))
	g.Expect(sets[v1].Spec.Replicas).To(HaveValue(Equal(int32(0))), "the old revision is scaled down")
	g.Expect(sets[v2].Annotations[vigilv1.AnnotationRevision]).To(Equal("2"))
	g.Expect(sets[v2].OwnerReferences[0].Name).To(Equal("shop"))

	a := &vigilv1.Approval{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "go-ahead"}, a)).To(Succeed())
		g.Expect(a.Status.ConsumedAt).NotTo(BeNil())
	}).Should(Succeed(), "the approval is marked consumed")
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, ro).Status.UsedApprovals).To(BeEmpty())
	}).Should(Succeed())

	// Events are sent after the status patch, by the recorder's own goroutine.
	g.Eventually(func(g Gomega) {
		g.Expect(eventReasons(g, ro)).To(ContainElements(vigilv1.ReasonCanaryStarted, vigilv1.ReasonStepCompleted, vigilv1.ReasonApprovalUsed, vigilv1.ReasonPromoted))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
}

func TestOldRevisionsBeyondTheHistoryLimitAreDeleted(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	ro := newRollout(ns, "history", 2, "app:v0", weightStep(50))
	ro.Spec.RevisionHistoryLimit = ptr.To(int32(1))
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	waitPromoted(t, ro, 20*time.Second)
	for i := 1; i <= 3; i++ {
		newImage(t, ro, "app:v"+strconv.Itoa(i))
		waitPromoted(t, ro, 20*time.Second)
	}
	g.Eventually(func(g Gomega) {
		sets := replicaSets(g, ro)
		g.Expect(sets).To(HaveLen(2), "the stable ReplicaSet and one old one are kept")
		stable := sets[get(g, ro).Status.StableRevision]
		g.Expect(stable.Annotations[vigilv1.AnnotationRevision]).To(Equal("4"))
	}, 10*time.Second).Should(Succeed())
}

func TestAMissingTrustPolicyHoldsTheRolloutWithoutPods(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startManager(t, nil)
	ro := newRollout(ns, "verified", 2, "app:v1", weightStep(20))
	ro.Spec.Provenance = &vigilv1.ProvenanceGate{PolicyRef: vigilv1.LocalObjectReference{Name: "signed"}}
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhaseBlocked))
		stalled := findCondition(cur, vigilv1.ConditionStalled)
		g.Expect(stalled).NotTo(BeNil())
		g.Expect(stalled.Reason).To(Equal(vigilv1.ReasonPolicyNotFound))
		g.Expect(stalled.Message).To(ContainSubstring("TrustPolicy signed does not exist"))
	}, 10*time.Second).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(replicaSets(g, ro)).To(BeEmpty())
	}, time.Second).Should(Succeed(), "no ReplicaSet is made for a Rollout that is held")
}

func TestProgressDeadlineRollsBackThroughTheSamePath(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	ro := newRollout(ns, "slow", 4, "app:v1", weightStep(50), approvalStep())
	ro.Spec.ProgressDeadlineSeconds = ptr.To(int32(2))
	ro.Spec.Rollback = &vigilv1.RollbackPolicy{AbortScaleDownDelaySeconds: ptr.To(int32(0))}
	checksum, err := templateChecksum(&withImage(ro, "app:v2").Spec.Template)
	g.Expect(err).NotTo(HaveOccurred())
	stuck := revisionHash(checksum, 0)
	// The stand-in kubelet never makes the v2 canary's pods ready.
	kubelet(t, ns, func(rs *appsv1.ReplicaSet) bool { return revisionOf(rs) != stuck })
	startManager(t, nil)
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	v1 := waitPromoted(t, ro, 20*time.Second)

	newImage(t, ro, "app:v2")
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhaseRolledBack))
		g.Expect(cur.Status.Rollback).NotTo(BeNil())
		g.Expect(cur.Status.Rollback.Trigger).To(Equal(vigilv1.RollbackTriggerProgressDeadline))
		g.Expect(cur.Status.Rollback.Revision).To(Equal(stuck))
		g.Expect(cur.Status.StableRevision).To(Equal(v1.Status.StableRevision))
		g.Expect(findCondition(cur, vigilv1.ConditionStalled)).NotTo(BeNil())
		sets := replicaSets(g, ro)
		g.Expect(sets[stuck].Spec.Replicas).To(HaveValue(Equal(int32(0))))
		g.Expect(sets[v1.Status.StableRevision].Spec.Replicas).To(HaveValue(Equal(int32(4))))
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())
}

func withImage(ro *vigilv1.Rollout, image string) *vigilv1.Rollout {
	out := ro.DeepCopy()
	out.Spec.Template.Spec.Containers[0].Image = image
	return out
}

func findCondition(ro *vigilv1.Rollout, typ string) *metav1.Condition {
	for i, c := range ro.Status.Conditions.Conditions {
		if c.Type == typ {
			return &ro.Status.Conditions.Conditions[i]
		}
	}
	return nil
}

// events lists the Events about a Rollout.
func rolloutEvents(g Gomega, ro *vigilv1.Rollout) []corev1.Event {
	var list corev1.EventList
	g.Expect(k8s.List(context.Background(), &list, client.InNamespace(ro.Namespace))).To(Succeed())
	var out []corev1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == "Rollout" && e.InvolvedObject.Name == ro.Name {
			out = append(out, e)
		}
	}
	return out
}

func eventReasons(g Gomega, ro *vigilv1.Rollout) []string {
	var out []string
	for _, e := range rolloutEvents(g, ro) {
		out = append(out, e.Reason)
	}
	return out
}
