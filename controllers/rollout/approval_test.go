package rollout

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// written is one change the API server stored, in etcd's order.
type written struct {
	resourceVersion int64
	kind            string
	canaryWeight    int32 // HTTPRoute
	rsName          string
	replicas        int32 // ReplicaSet
}

// recordWrites watches ns's HTTPRoutes and ReplicaSets and keeps every
// version the API server stores; resourceVersions order them.
func recordWrites(t *testing.T, ns string) func() []written {
	t.Helper()
	var mu sync.Mutex
	var out []written
	watchNamespace(t, ns, &mu, func(o client.Object) {
		rv, _ := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
		rec := written{resourceVersion: rv}
		switch obj := o.(type) {
		case *gatewayv1.HTTPRoute:
			rec.kind = "HTTPRoute"
			if wt := obj.Spec.Rules[0].BackendRefs[1].Weight; wt != nil {
				rec.canaryWeight = *wt
			}
		case *appsv1.ReplicaSet:
			rec.kind, rec.rsName, rec.replicas = "ReplicaSet", obj.Name, ptr.Deref(obj.Spec.Replicas, 1)
		}
		out = append(out, rec)
	}, &gatewayv1.HTTPRouteList{}, &appsv1.ReplicaSetList{})
	return func() []written {
		mu.Lock()
		defer mu.Unlock()
		return append([]written(nil), out...)
	}
}

func serviceRevision(g Gomega, ns, name string) string {
	svc := &corev1.Service{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc)).To(Succeed())
	return svc.Spec.Selector[vigilv1.LabelPodTemplateHash]
}

func TestRejectMovesTrafficToStableBeforeScalingTheCanaryDown(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	kubelet(t, ns, nil) // stands in for the kubelet: every ReplicaSet's pods turn ready
	startManager(t, nil)
	ro := newRollout(ns, "web", 4, "web:v1", acceptanceSteps()...)
	ro.Spec.Rollback = &vigilv1.RollbackPolicy{AbortScaleDownDelaySeconds: ptr.To(int32(2))}
	gatewayObjects(t, ro)
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	v1 := waitPromoted(t, ro, 20*time.Second).Status.StableRevision
	g.Expect(canaryWeight(g, ro)).To(Equal(int32(0)))
	g.Expect(serviceRevision(g, ns, "web-stable")).To(Equal(v1))
	g.Expect(serviceRevision(g, ns, "web-canary")).To(Equal(v1), "with no canary, the canary Service points at stable")

	newImage(t, ro, "web:v2")
	var v2 string
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.PendingApproval).NotTo(BeNil())
		v2 = cur.Status.CanaryRevision
		g.Expect(cur.Status.PendingApproval.Step).To(Equal(int32(2)))
		g.Expect(cur.Status.CanaryWeight).To(Equal(int32(20)))
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())
	g.Expect(canaryWeight(g, ro)).To(Equal(int32(20)))
	g.Expect(serviceRevision(g, ns, "web-canary")).To(Equal(v2))
	g.Expect(serviceRevision(g, ns, "web-stable")).To(Equal(v1))
	sets := replicaSets(g, ro)
	g.Expect(sets[v2].Spec.Replicas).To(HaveValue(Equal(int32(1))), "one pod carries 20% of a 4-replica Rollout")
	g.Expect(sets[v1].Spec.Replicas).To(HaveValue(Equal(int32(4))), "stable keeps all its pods behind a router")

	writes := recordWrites(t, ns)
	approve(t, ro, "no", v2, 2, vigilv1.ApprovalReject)
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhaseRolledBack))
		g.Expect(cur.Status.Rollback.Trigger).To(Equal(vigilv1.RollbackTriggerRejected))
		g.Expect(cur.Status.Rollback.Step).To(Equal(int32(2)))
		g.Expect(cur.Status.CanaryWeight).To(Equal(int32(0)))
		g.Expect(cur.Status.StableWeight).To(Equal(int32(100)))
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(replicaSets(g, ro)[v2].Spec.Replicas).To(HaveValue(Equal(int32(0))))
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())

	weightZero, scaledDown := firstWeightZeroAndScaleDown(writes(), "web-"+v2)
	g.Expect(weightZero).NotTo(BeZero(), "the route's canary weight went to 0")
	g.Expect(scaledDown).NotTo(BeZero(), "the canary was scaled to 0")
	g.Expect(weightZero).To(BeNumerically("<", scaledDown), "traffic moved to stable before the canary lost its pods")
	// Events are sent after the status patch, by the recorder's own goroutine.
	g.Eventually(func(g Gomega) {
		g.Expect(eventReasons(g, ro)).To(ContainElements(vigilv1.ReasonRollingBack, vigilv1.ReasonRolledBack))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	retryAfterRollback(t, ro, v1, v2)
}

// firstWeightZeroAndScaleDown are the resourceVersions at which the route's
// canary weight first went to 0 and the canary ReplicaSet rs first to 0
// replicas.
func firstWeightZeroAndScaleDown(writes []written, rs string) (weightZero, scaledDown int64) {
	for _, w := range writes {
		if w.kind == "HTTPRoute" && w.canaryWeight == 0 && weightZero == 0 {
			weightZero = w.resourceVersion
		}
		if w.kind == "ReplicaSet" && w.rsName == rs && w.replicas == 0 && scaledDown == 0 {
			scaledDown = w.resourceVersion
		}
	}
	return weightZero, scaledDown
}

// retryAfterRollback approves the rolled-back revision v2 at step 0, which
// retries it from step 0, then at its approval step, and sees it promoted
// behind the router.
func retryAfterRollback(t *testing.T, ro *vigilv1.Rollout, v1, v2 string) {
	g := NewWithT(t)
	ns := ro.Namespace
	// Approving the rolled-back revision at step 0 retries it from step 0.
	approve(t, ro, "retry", v2, 0, vigilv1.ApprovalApprove)
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.PendingApproval).NotTo(BeNil())
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
		g.Expect(cur.Status.PendingApproval.Step).To(Equal(int32(2)))
		g.Expect(cur.Status.Rollback).To(BeNil())
	}, 20*time.Second, 20*time.Millisecond).Should(Succeed())
	approve(t, ro, "yes", v2, 2, vigilv1.ApprovalApprove)
	g.Expect(waitPromoted(t, ro, 20*time.Second).Status.StableRevision).To(Equal(v2))
	g.Eventually(func(g Gomega) {
		g.Expect(canaryWeight(g, ro)).To(Equal(int32(0)))
		g.Expect(serviceRevision(g, ns, "web-stable")).To(Equal(v2))
		g.Expect(serviceRevision(g, ns, "web-canary")).To(Equal(v2))
		g.Expect(replicaSets(g, ro)[v1].Spec.Replicas).To(HaveValue(Equal(int32(0))))
	}).Should(Succeed())
	for _, name := range []string{"no", "retry", "yes"} {
		g.Eventually(func(g Gomega) {
			g.Expect(approvalConsumed(g, ns, name)).To(BeTrue(), name)
		}).Should(Succeed())
	}
}

func approvalConsumed(g Gomega, ns, name string) bool {
	a := &vigilv1.Approval{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, a)).To(Succeed())
	return a.Status.ConsumedAt != nil
}
