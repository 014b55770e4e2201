package rollout

import (
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// testRS is the ReplicaSet of revision with spec and ready pods, its
// status current with its spec.
func testRS(revision string, spec, ready int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "ro-" + revision, Generation: 1, Labels: map[string]string{vigilv1.LabelPodTemplateHash: revision}},
		Spec:       appsv1.ReplicaSetSpec{Replicas: ptr.To(spec)},
		Status:     appsv1.ReplicaSetStatus{ObservedGeneration: 1, Replicas: spec, ReadyReplicas: ready, AvailableReplicas: ready},
	}
}

func TestConditionsFollowKstatus(t *testing.T) {
	type want struct {
		ready, progressing   metav1.ConditionStatus
		reason               string
		reconciling, stalled bool
	}
	for _, tc := range []struct {
		name string
		in   summary
		want want
	}{
		{"promoted and settled is Ready", summary{phase: vigilv1.RolloutPhasePromoted, settled: true},
			want{metav1.ConditionTrue, metav1.ConditionTrue, vigilv1.ReasonPromoted, false, false}},
		{"promoted but not settled is still Reconciling", summary{phase: vigilv1.RolloutPhasePromoted},
			want{metav1.ConditionFalse, metav1.ConditionTrue, vigilv1.ReasonProgressing, true, false}},
		{"progressing", summary{phase: vigilv1.RolloutPhaseProgressing},
			want{metav1.ConditionFalse, metav1.ConditionTrue, vigilv1.ReasonProgressing, true, false}},
		{"paused at an approval", summary{phase: vigilv1.RolloutPhasePaused, approval: true},
			want{metav1.ConditionFalse, metav1.ConditionTrue, vigilv1.ReasonWaitingForApproval, true, false}},
		{"paused", summary{phase: vigilv1.RolloutPhasePaused},
			want{metav1.ConditionFalse, metav1.ConditionTrue, vigilv1.ReasonPaused, true, false}},
		{"rolling back", summary{phase: vigilv1.RolloutPhaseRollingBack},
			want{metav1.ConditionFalse, metav1.ConditionFalse, vigilv1.ReasonRollingBack, true, false}},
		{"rolled back stalls", summary{phase: vigilv1.RolloutPhaseRolledBack},
			want{metav1.ConditionFalse, metav1.ConditionFalse, vigilv1.ReasonRolledBack, false, true}},
		{"bad input stalls with its reason", summary{phase: vigilv1.RolloutPhaseProgressing, stalled: &stall{vigilv1.ReasonInvalidSpec, "bad"}},
			want{metav1.ConditionFalse, metav1.ConditionFalse, vigilv1.ReasonInvalidSpec, false, true}},
		{"a lost write is Reconciling, not Stalled", summary{phase: vigilv1.RolloutPhasePromoted, settled: true, writeError: errors.New("timeout")},
			want{metav1.ConditionFalse, "", vigilv1.ReasonWriteUnknown, true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			// Start from the opposite kstatus condition, to see it go.
			conds := []metav1.Condition{{Type: vigilv1.ConditionStalled, Status: metav1.ConditionTrue, Reason: "Old"},
				{Type: vigilv1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: "Old"}}
			tc.in.generation = 7
			setConditions(&conds, tc.in)
			ready := meta.FindStatusCondition(conds, vigilv1.ConditionReady)
			g.Expect(ready.Status).To(Equal(tc.want.ready))
			g.Expect(ready.Reason).To(Equal(tc.want.reason))
			g.Expect(ready.ObservedGeneration).To(Equal(int64(7)))
			if tc.want.progressing != "" {
				g.Expect(meta.FindStatusCondition(conds, vigilv1.ConditionProgressing).Status).To(Equal(tc.want.progressing))
			}
			g.Expect(meta.IsStatusConditionTrue(conds, vigilv1.ConditionReconciling)).To(Equal(tc.want.reconciling))
			g.Expect(meta.IsStatusConditionTrue(conds, vigilv1.ConditionStalled)).To(Equal(tc.want.stalled))
			g.Expect(tc.want.reconciling && tc.want.stalled).To(BeFalse(), "kstatus: never both")
		})
	}
}

// planSteps are the steps of every TestPlan case.
var planSteps = []vigilv1.CanaryStep{weightStep(25), weightStep(50)}

// findChange is the change of kind to revision's ReplicaSet, or nil.
func findChange(changes []change, kind changeKind, revision string) *change {
	for i, c := range changes {
		if c.kind == kind && (c.revision == revision || c.rs != nil && revisionOf(c.rs) == revision) {
			return &changes[i]
		}
	}
	return nil
}

// planCase is a scope and what plan must make of it.
type planCase struct {
	name  string
	scope func() *scope
	want  func(g Gomega, changes []change)
}

var planCases = []planCase{
	{"a canary without a ReplicaSet gets one with its share of pods", func() *scope {
		s := canaryAt(0, time.Second, planSteps...)
		s.sets = []*appsv1.ReplicaSet{testRS("old", 4, 4)}
		return s
	}, func(g Gomega, changes []change) {
		c := findChange(changes, createReplicaSet, "new")
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.replicas).To(Equal(int32(1)), "25% of 4")
	}},
	{"stable gives up a pod only once the canary's is ready", func() *scope {
		s := canaryAt(0, time.Second, planSteps...)
		s.sets = []*appsv1.ReplicaSet{testRS("old", 4, 4), testRS("new", 1, 0)}
		return s
	}, func(g Gomega, changes []change) {
		g.Expect(findChange(changes, scaleReplicaSet, "old")).To(BeNil())
	}},
	{"with the canary's pod ready, stable shrinks to its share", func() *scope {
		s := canaryAt(0, time.Second, planSteps...)
		s.sets = []*appsv1.ReplicaSet{testRS("old", 4, 4), testRS("new", 1, 1)}
		return s
	}, func(g Gomega, changes []change) {
		c := findChange(changes, scaleReplicaSet, "old")
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.replicas).To(Equal(int32(3)))
	}},
	{"an abandoned canary's share goes back to stable first (surge, nothing unavailable)", func() *scope {
		s := canaryAt(0, time.Second, planSteps...)
		s.sets = []*appsv1.ReplicaSet{testRS("old", 3, 3), testRS("older-canary", 1, 1)}
		return s
	}, func(g Gomega, changes []change) {
		c := findChange(changes, scaleReplicaSet, "old")
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.replicas).To(Equal(int32(4)))
		g.Expect(findChange(changes, scaleReplicaSet, "older-canary")).To(BeNil(), "its pod serves until stable's is up")
		if c := findChange(changes, createReplicaSet, "new"); c != nil {
			g.Expect(c.replicas).To(BeZero(), "no pod for the new canary while the abandoned one has pods")
		}
	}},
	{"then the abandoned canary goes to zero before the new one grows", func() *scope {
		s := canaryAt(0, time.Second, planSteps...)
		s.sets = []*appsv1.ReplicaSet{testRS("old", 4, 4), testRS("older-canary", 1, 1), testRS("new", 0, 0)}
		return s
	}, func(g Gomega, changes []change) {
		c := findChange(changes, scaleReplicaSet, "older-canary")
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.replicas).To(BeZero())
		g.Expect(findChange(changes, scaleReplicaSet, "new")).To(BeNil())
	}},
	{"pods a shrunk ReplicaSet still counts are not capacity (kube-controller-manager reports them until they are gone)", func() *scope {
		s := canaryAt(2, time.Second, planSteps...) // past the last step: the canary wants every replica
		stable := testRS("old", 1, 1)
		stable.Status.Replicas, stable.Status.ReadyReplicas, stable.Status.AvailableReplicas = 2, 2, 2 // scaled 2→1, status not yet shrunk
		s.sets = []*appsv1.ReplicaSet{stable, testRS("new", 4, 3)}
		return s
	}, func(g Gomega, changes []change) {
		g.Expect(findChange(changes, scaleReplicaSet, "old")).To(BeNil(), "stable's last pod stays until the canary's fourth is available")
	}},
	{"a settled promotion plans nothing", func() *scope {
		s := canaryAt(0, time.Second, planSteps...)
		s.rollout.Status.StableRevision, s.rollout.Status.CanaryRevision, s.rollout.Status.CurrentStepIndex = "new", "", nil
		s.sets = []*appsv1.ReplicaSet{testRS("new", 4, 4)}
		return s
	}, func(g Gomega, changes []change) {
		g.Expect(changes).To(BeEmpty())
	}},
}

func TestPlan(t *testing.T) {
	for _, tc := range planCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			s := tc.scope()
			s.maxSurge = 1
			changes := plan(s)
			tc.want(g, changes)
			g.Expect(check(s, changes, s.rollout.Status.DeepCopy())).To(BeEmpty(), "a plan breaks no invariant")
		})
	}
}

func TestInvariantsCatchWhatTheyName(t *testing.T) {
	steps := []vigilv1.CanaryStep{weightStep(25), weightStep(50)}
	base := func() *scope {
		s := canaryAt(0, time.Second, steps...)
		s.maxSurge = 1
		s.sets = []*appsv1.ReplicaSet{testRS("old", 3, 3), testRS("new", 1, 1)}
		return s
	}
	for _, tc := range []struct {
		name      string
		scope     func() *scope
		changes   func(s *scope) []change
		invariant string
	}{
		{"the canary grown past its step", base, func(s *scope) []change {
			return []change{{kind: scaleReplicaSet, rs: s.set("new"), replicas: 3}}
		}, invariantCanaryWeight},
		{"stable scaled below what stays available", base, func(s *scope) []change {
			return []change{{kind: scaleReplicaSet, rs: s.set("old"), replicas: 1}}
		}, invariantStableCapacity},
		{"two canaries with pods", func() *scope {
			s := base()
			s.sets = append(s.sets, testRS("older-canary", 1, 1))
			return s
		}, func(*scope) []change { return nil }, invariantSingleCanary},
		{"a step passed without its pods", func() *scope {
			s := base()
			s.sets = []*appsv1.ReplicaSet{testRS("old", 4, 4), testRS("new", 1, 0)}
			s.advancedFrom = 0
			s.rollout.Status.CurrentStepIndex = ptr.To(int32(1))
			return s
		}, func(*scope) []change { return nil }, invariantStepPods},
		{"a ReplicaSet created while deleting", func() *scope {
			s := base()
			s.rollout.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
			return s
		}, func(s *scope) []change {
			return []change{{kind: createReplicaSet, revision: "newer", replicas: 1}}
		}, invariantDeleting},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			s := tc.scope()
			before := s.rollout.Status.DeepCopy()
			if s.advancedFrom >= 0 {
				before.CurrentStepIndex = ptr.To(s.advancedFrom)
			}
			var names []string
			for _, v := range check(s, tc.changes(s), before) {
				names = append(names, v.invariant)
			}
			g.Expect(names).To(ContainElement(tc.invariant))
		})
	}
	NewWithT(t).Expect(check(base(), nil, base().rollout.Status.DeepCopy())).To(BeEmpty(), "the base world breaks none")
}
