package rollout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	proof "github.com/vigil-dev/vigil/evidence"
	"github.com/vigil-dev/vigil/traffic"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// canaryAt is a scope whose canary "new" is at step i of steps, started
// `since` before now.
func canaryAt(i int32, since time.Duration, steps ...vigilv1.CanaryStep) *scope {
	ro := newRollout("ns", "ro", 4, "img", steps...)
	ro.Status = vigilv1.RolloutStatus{
		StableRevision:       "old",
		CanaryRevision:       "new",
		CurrentStepIndex:     ptr.To(i),
		CurrentStepStartedAt: ptr.To(metav1.NewMicroTime(t0.Add(-since))),
		Phase:                vigilv1.RolloutPhaseProgressing,
		History:              []vigilv1.RevisionHistory{{Revision: "old", Outcome: vigilv1.RolloutPhasePromoted, Time: metav1.NewTime(t0.Add(-time.Hour))}},
	}
	if int(i) < len(steps) && proof.WaitsForPeople(steps[i]) {
		// The reconcile before this one started the wait.
		ro.Status.PendingApproval = &vigilv1.PendingApproval{Revision: "new", Step: i, Since: *ro.Status.CurrentStepStartedAt,
			Effect: vigilv1.EffectPassStep, Required: requiredApprovals(steps, i)}
	}
	return &scope{now: t0, rollout: ro, revision: "new", replicas: 4, advancedFrom: -1, key: testKey}
}

// testKey seals the Approvals of the pure tests, as the webhook would.
var testKey = func() proof.Key {
	k, err := proof.NewKey([]byte("a key of 32 bytes for pure tests"))
	if err != nil {
		panic(err)
	}
	return k
}()

// sealAs seals a as the admission webhook would for user, admitted at at
// for the wait that began at wait.
func sealAs(a *vigilv1.Approval, user string, at time.Time, wait string) {
	raw, seal, err := testKey.Seal(a.Namespace, a.Spec, proof.Identity{User: user, At: proof.Time(at), Wait: wait})
	if err != nil {
		panic(err)
	}
	a.Annotations = map[string]string{vigilv1.AnnotationApprovalIdentity: raw, vigilv1.AnnotationApprovalSeal: seal}
}

// approval is an Approval made age ago by alice, sealed (as the webhook
// does) when it names what s waits for, and unsealed otherwise (as if the
// webhook had not been installed).
func approval(s *scope, name, revision string, step int32, d vigilv1.ApprovalDecision, age time.Duration) vigilv1.Approval {
	a := vigilv1.Approval{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(-age))},
		Spec:       vigilv1.ApprovalSpec{RolloutRef: vigilv1.LocalObjectReference{Name: "ro"}, Revision: revision, Step: step, Decision: d, Scope: vigilv1.ApprovalScopeStep},
	}
	if w, why := proof.WaitOf(s.rollout, d); why == "" && w.Names(a.Spec) {
		sealAs(&a, "alice", t0.Add(-age), w.Since)
	}
	return a
}

// fullApproval is user's Approval of scope Full of the step s waits at.
func fullApproval(s *scope, name, user string, step int32) vigilv1.Approval {
	a := approval(s, name, "new", step, vigilv1.ApprovalApprove, time.Second)
	a.Spec.Scope = vigilv1.ApprovalScopeFull
	w, _ := proof.WaitOf(s.rollout, vigilv1.ApprovalApprove)
	sealAs(&a, user, t0.Add(-time.Second), w.Since)
	return a
}

// quorumStep is an approval step that needs n people.
func quorumStep(n int32) vigilv1.CanaryStep {
	return vigilv1.CanaryStep{Approval: &vigilv1.ApprovalStep{RequiredApprovals: n}}
}

// decideSteps are the steps of every TestDecide case.
var decideSteps = []vigilv1.CanaryStep{weightStep(20), pauseStep("2s"), approvalStep(), weightStep(60)}

// decideCase is a scope, whether the world reached what its status asks,
// and what decide must make of it.
type decideCase struct {
	name      string
	scope     func() *scope
	converged bool
	want      func(g Gomega, s *scope)
}

var decideCases = []decideCase{
	{"the first revision becomes stable at once", func() *scope {
		s := canaryAt(0, 0, decideSteps...)
		s.rollout.Status = vigilv1.RolloutStatus{}
		return s
	}, false, func(g Gomega, s *scope) {
		g.Expect(s.rollout.Status.StableRevision).To(Equal("new"))
		g.Expect(s.decided).To(BeTrue())
	}},
	{"a new template starts a canary at step 0", func() *scope {
		s := canaryAt(3, time.Minute, decideSteps...)
		s.revision = "newer"
		return s
	}, true, func(g Gomega, s *scope) {
		g.Expect(s.rollout.Status.CanaryRevision).To(Equal("newer"))
		g.Expect(*s.rollout.Status.CurrentStepIndex).To(BeZero())
		g.Expect(s.rollout.Status.CurrentStepStartedAt.Time).To(Equal(t0))
		g.Expect(s.decided).To(BeTrue())
	}},
	{"setWeight passes once pods and traffic are in place", func() *scope { return canaryAt(0, time.Second, decideSteps...) }, true,
		func(g Gomega, s *scope) {
			g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(1)))
			g.Expect(s.advancedFrom).To(BeZero())
		}},
	{"setWeight waits for its pods", func() *scope { return canaryAt(0, time.Second, decideSteps...) }, false,
		func(g Gomega, s *scope) {
			g.Expect(*s.rollout.Status.CurrentStepIndex).To(BeZero())
			g.Expect(s.decided).To(BeFalse())
			g.Expect(s.requeueAfter).To(Equal(599*time.Second), "a timer for the progress deadline")
		}},
	{"the progress deadline's timer is precise", func() *scope { return canaryAt(0, 600*time.Second-150*time.Millisecond, decideSteps...) }, false,
		func(g Gomega, s *scope) {
			g.Expect(s.rollout.Status.Rollback).To(BeNil())
			g.Expect(s.requeueAfter).To(Equal(150*time.Millisecond), "woken when the deadline passes, not a second later")
		}},
	{"a step past the progress deadline rolls back", func() *scope { return canaryAt(0, 11*time.Minute, decideSteps...) }, false,
		func(g Gomega, s *scope) {
			g.Expect(s.rollout.Status.Rollback).NotTo(BeNil())
			g.Expect(s.rollout.Status.Rollback.Trigger).To(Equal(vigilv1.RollbackTriggerProgressDeadline))
			g.Expect(s.rollout.Status.Phase).To(Equal(vigilv1.RolloutPhaseRollingBack))
		}},
	{"a pause holds until its time is up", func() *scope { return canaryAt(1, time.Second, decideSteps...) }, true,
		func(g Gomega, s *scope) {
			g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(1)))
			g.Expect(s.requeueAfter).To(Equal(time.Second))
			g.Expect(s.rollout.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
		}},
	{"a pause passes when its time is up", func() *scope { return canaryAt(1, 2*time.Second, decideSteps...) }, true,
		func(g Gomega, s *scope) { g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(2))) }},
	{"an approval step waits and says what for", func() *scope {
		s := canaryAt(2, time.Minute, decideSteps...)
		s.approvals = []vigilv1.Approval{
			approval(s, "other-step", "new", 1, vigilv1.ApprovalApprove, time.Second),
			approval(s, "other-revision", "old", 2, vigilv1.ApprovalApprove, time.Second),
			approval(s, "expired", "new", 2, vigilv1.ApprovalApprove, 2*time.Hour),
		}
		return s
	}, true, func(g Gomega, s *scope) {
		g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(2)))
		g.Expect(s.rollout.Status.PendingApproval).To(HaveField("Revision", "new"))
		g.Expect(s.rollout.Status.PendingApproval).To(HaveField("Step", int32(2)))
		g.Expect(s.rollout.Status.UsedApprovals).To(BeEmpty())
	}},
	{"an approval of this revision and step passes it and is used", func() *scope {
		s := canaryAt(2, time.Minute, decideSteps...)
		s.approvals = []vigilv1.Approval{approval(s, "yes", "new", 2, vigilv1.ApprovalApprove, time.Second)}
		return s
	}, true, func(g Gomega, s *scope) {
		g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(3)))
		g.Expect(s.rollout.Status.UsedApprovals).To(ConsistOf("yes"))
	}},
	{"an approval already used counts no more", func() *scope {
		s := canaryAt(2, time.Minute, decideSteps...)
		s.approvals = []vigilv1.Approval{approval(s, "yes", "new", 2, vigilv1.ApprovalApprove, time.Second)}
		s.rollout.Status.UsedApprovals = []string{"yes"}
		return s
	}, true, func(g Gomega, s *scope) { g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(2))) }},
	{"scope Full skips the remaining steps", func() *scope {
		s := canaryAt(2, time.Minute, decideSteps...)
		s.approvals = []vigilv1.Approval{fullApproval(s, "all", "alice", 2)}
		return s
	}, true, func(g Gomega, s *scope) { g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(4))) }},
	{"scope Full from fewer people than a later step needs passes this step only", func() *scope {
		s := canaryAt(0, time.Minute, approvalStep(), quorumStep(2), weightStep(60))
		s.approvals = []vigilv1.Approval{fullApproval(s, "all", "alice", 0)}
		return s
	}, true, func(g Gomega, s *scope) { g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(1))) }},
	{"scope Full from as many people as the strictest later step needs skips the rest", func() *scope {
		s := canaryAt(0, time.Minute, approvalStep(), quorumStep(2), weightStep(60))
		s.approvals = []vigilv1.Approval{fullApproval(s, "a", "alice", 0), fullApproval(s, "b", "bob", 0)}
		return s
	}, true, func(g Gomega, s *scope) { g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(3))) }},
	{"scope Full twice from one person is one person", func() *scope {
		s := canaryAt(0, time.Minute, approvalStep(), quorumStep(2), weightStep(60))
		s.approvals = []vigilv1.Approval{fullApproval(s, "a", "alice", 0), fullApproval(s, "b", "alice", 0)}
		return s
	}, true, func(g Gomega, s *scope) { g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(1))) }},
	{"an Approval without a seal counts for nothing", func() *scope {
		s := canaryAt(2, time.Minute, decideSteps...)
		a := approval(s, "yes", "new", 2, vigilv1.ApprovalApprove, time.Second)
		a.Annotations = nil
		s.approvals = []vigilv1.Approval{a}
		return s
	}, true, func(g Gomega, s *scope) { g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(2))) }},
	{"an Approval sealed for an earlier wait of the same step counts for nothing", func() *scope {
		s := canaryAt(2, time.Minute, decideSteps...)
		a := approval(s, "yes", "new", 2, vigilv1.ApprovalApprove, time.Second)
		sealAs(&a, "alice", t0.Add(-time.Second), proof.Time(t0.Add(-time.Hour)))
		s.approvals = []vigilv1.Approval{a}
		return s
	}, true, func(g Gomega, s *scope) { g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(2))) }},
	{"an approval step whose pods flap keeps its wait for people", func() *scope {
		s := canaryAt(2, time.Minute, decideSteps...)
		s.approvals = []vigilv1.Approval{approval(s, "yes", "new", 2, vigilv1.ApprovalApprove, time.Second)}
		return s
	}, false, func(g Gomega, s *scope) {
		g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(2)), "no step passes without its pods")
		g.Expect(s.rollout.Status.PendingApproval).To(HaveField("Since", metav1.NewMicroTime(t0.Add(-time.Minute))),
			"the wait, which the admitted Approval answers, goes on")
	}},
	{"a Reject rolls back even before pods are ready", func() *scope {
		s := canaryAt(0, time.Second, decideSteps...)
		s.approvals = []vigilv1.Approval{approval(s, "no", "new", 0, vigilv1.ApprovalReject, time.Second)}
		return s
	}, false, func(g Gomega, s *scope) {
		g.Expect(s.rollout.Status.Rollback).To(HaveField("Trigger", vigilv1.RollbackTriggerRejected))
		g.Expect(s.rollout.Status.UsedApprovals).To(ConsistOf("no"))
	}},
	{"after the last step the canary is promoted", func() *scope { return canaryAt(4, time.Second, decideSteps...) }, true,
		func(g Gomega, s *scope) {
			g.Expect(s.rollout.Status.StableRevision).To(Equal("new"))
			g.Expect(s.rollout.Status.CanaryRevision).To(BeEmpty())
			g.Expect(s.rollout.Status.Phase).To(Equal(vigilv1.RolloutPhasePromoted))
			g.Expect(s.rollout.Status.History[0].Outcome).To(Equal(vigilv1.RolloutPhasePromoted))
		}},
	{"spec.paused stops every decision", func() *scope {
		s := canaryAt(0, 11*time.Minute, decideSteps...)
		s.rollout.Spec.Paused = true
		return s
	}, false, func(g Gomega, s *scope) {
		g.Expect(s.decided).To(BeFalse())
		g.Expect(s.rollout.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
	}},
	{"only an approval made after a rollback retries the revision", func() *scope {
		s := canaryAt(2, time.Minute, decideSteps...)
		s.rollout.Status.Rollback = &vigilv1.RollbackStatus{Revision: "new", Trigger: vigilv1.RollbackTriggerRejected, StartedAt: metav1.NewTime(t0.Add(-time.Minute))}
		s.approvals = []vigilv1.Approval{approval(s, "before", "new", 0, vigilv1.ApprovalApprove, 2*time.Minute)}
		return s
	}, true, func(g Gomega, s *scope) {
		g.Expect(s.rollout.Status.Rollback).NotTo(BeNil())
		g.Expect(s.decided).To(BeFalse())
	}},
	{"an approval of step 0 after a rollback retries from step 0", func() *scope {
		s := canaryAt(2, time.Minute, decideSteps...)
		s.rollout.Status.Rollback = &vigilv1.RollbackStatus{Revision: "new", Trigger: vigilv1.RollbackTriggerRejected, StartedAt: metav1.NewTime(t0.Add(-time.Minute))}
		s.rollout.Status.PendingApproval = &vigilv1.PendingApproval{Revision: "new", Step: 0, Since: metav1.NewMicroTime(t0.Add(-30 * time.Second)),
			Effect: vigilv1.EffectRetryRevision, Required: 1}
		s.approvals = []vigilv1.Approval{approval(s, "again", "new", 0, vigilv1.ApprovalApprove, time.Second)}
		return s
	}, true, func(g Gomega, s *scope) {
		g.Expect(s.rollout.Status.Rollback).To(BeNil())
		g.Expect(*s.rollout.Status.CurrentStepIndex).To(BeZero())
		g.Expect(s.rollout.Status.UsedApprovals).To(ConsistOf("again"))
	}},
}

func TestDecide(t *testing.T) {
	for _, tc := range decideCases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.scope()
			decide(s, evidence{reached: tc.converged, missing: "the test says so"})
			tc.want(NewWithT(t), s)
		})
	}
}

func TestRevisionHashIsStableAndCollisionCountMovesIt(t *testing.T) {
	g := NewWithT(t)
	ro := newRollout("ns", "ro", 1, "img:v1", weightStep(10))
	a, err := templateChecksum(&ro.Spec.Template)
	g.Expect(err).NotTo(HaveOccurred())
	b, _ := templateChecksum(&ro.DeepCopy().Spec.Template)
	g.Expect(a).To(Equal(b))
	g.Expect(revisionHash(a, 0)).To(Equal(revisionHash(b, 0)))
	g.Expect(revisionHash(a, 1)).NotTo(Equal(revisionHash(a, 0)))
	c, _ := templateChecksum(&withImage(ro, "img:v2").Spec.Template)
	g.Expect(revisionHash(c, 0)).NotTo(Equal(revisionHash(a, 0)))
	g.Expect(revisionHash(a, 0)).To(MatchRegexp(`^[a-z0-9]{1,10}$`), "a valid Approval revision and label value")
}

// Each case below is a failure the generated histories found
// (TestGeneratedHistories), kept as a table case of its own.
func TestFoundByGeneratedHistories(t *testing.T) {
	rs := func(revision string, spec, ready int32) *appsv1.ReplicaSet {
		r := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "ro-" + revision, Generation: 1, Labels: map[string]string{vigilv1.LabelPodTemplateHash: revision}},
			Spec:       appsv1.ReplicaSetSpec{Replicas: ptr.To(spec)},
			Status:     appsv1.ReplicaSetStatus{ObservedGeneration: 1, ReadyReplicas: ready, AvailableReplicas: ready},
		}
		return r
	}
	g := NewWithT(t)

	// With no replicas, a canary without a ReplicaSet seemed to have
	// every pod it wanted, and was promoted: the new stable revision had
	// no template to return to.
	s := canaryAt(1, time.Minute, weightStep(50))
	s.replicas = 0
	s.sets = []*appsv1.ReplicaSet{rs("old", 0, 0)}
	g.Expect(observeEvidence(s).reached).To(BeFalse())
	g.Expect(observeEvidence(s).missing).To(ContainSubstring("canary ReplicaSet of revision new does not exist"))
	s.sets = append(s.sets, rs("new", 0, 0))
	g.Expect(observeEvidence(s).reached).To(BeTrue())

	// A first revision that never got a ReplicaSet (the template changed
	// before it was made) left nothing to roll back to: the canary waited
	// and rolled back forever. Nothing was ever promoted, so the new
	// template is the first revision.
	s = canaryAt(0, time.Minute, weightStep(50))
	s.rollout.Status.History = nil
	decide(s, evidence{missing: "the stable ReplicaSet of revision old does not exist yet"})
	g.Expect(s.rollout.Status.StableRevision).To(Equal("new"))
	g.Expect(s.rollout.Status.CanaryRevision).To(BeEmpty())

	// A background run terminated while the template pointed elsewhere
	// (spec.paused) was followed again when the template came back, and
	// never produced evidence: a new attempt runs instead.
	s = canaryAt(0, time.Minute, weightStep(50))
	s.rollout.Spec.Strategy.Canary.Analysis = analysisStep("slo", "svc").Analysis
	old := runName(s.rollout, "new", backgroundKey, 0)
	s.rollout.Status.BackgroundAnalysis = &vigilv1.RolloutAnalysis{Run: old, Revision: "new", Verdict: vigilv1.AnalysisRunning}
	s.runs = map[string]*vigilv1.AnalysisRun{old: {ObjectMeta: metav1.ObjectMeta{Name: old}, Spec: vigilv1.AnalysisRunSpec{Terminate: true}}}
	decide(s, evidence{reached: true})
	g.Expect(s.rollout.Status.BackgroundAnalysis.Run).To(Equal(runName(s.rollout, "new", backgroundKey, 1)))
	g.Expect(s.decided).To(BeTrue())
}

func TestGatewayPlansFoundByGeneratedHistories(t *testing.T) {
	g := NewWithT(t)
	withRoute := func(s *scope, weight int32, stableSel, canarySel string) {
		c := &cluster{ro: s.rollout}
		c.routeThroughGateway()
		view, _ := traffic.NewRoute(c.route, "app-stable", "app-canary")
		view.SetCanaryWeight(weight)
		c.stable.Spec.Selector[vigilv1.LabelPodTemplateHash] = stableSel
		c.canary.Spec.Selector[vigilv1.LabelPodTemplateHash] = canarySel
		s.gateway = &gatewayTraffic{route: c.route, view: view, stableService: c.stable, canaryService: c.canary}
	}
	weightChange := func(changes []change) *change {
		for i := range changes {
			if changes[i].kind == setWeight {
				return &changes[i]
			}
		}
		return nil
	}

	// With no replicas the canary never got a ReplicaSet at 0 pods, and
	// the route never moved to it: the last step waited forever.
	s := canaryAt(1, time.Minute, weightStep(50))
	s.replicas = 0
	withRoute(s, 0, "old", "new")
	c := weightChange(plan(s))
	g.Expect(c).NotTo(BeNil())
	g.Expect(c.weight).To(Equal(int32(100)))

	// Just promoted while the new stable revision was not yet fully up
	// (replicas grew at that instant): the route's traffic left the
	// canary Service, which selects the new stable revision, for the
	// stable Service, which still selected the old one.
	s = canaryAt(1, time.Minute, weightStep(50))
	s.rollout.Status.StableRevision, s.rollout.Status.CanaryRevision = "new", ""
	s.replicas = 1
	withRoute(s, 100, "old", "new")
	g.Expect(weightChange(plan(s))).To(BeNil(), "traffic stays on the new stable revision until the stable Service follows")
}
