package rollout

import (
	"fmt"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/traffic"
)

// Invariants checked on every reconcile; a violation is a bug in Vigil and
// is counted in vigil_invariant_violations_total.
const (
	invariantWeightsSum     = "WeightsSumTo100"
	invariantCanaryWeight   = "CanaryWithinStepWeight"
	invariantStableCapacity = "StableAvailability"
	invariantGate           = "GateSatisfied"
	invariantSingleCanary   = "SingleCanary"
	invariantStepPods       = "StepPassedWithItsPods"
	invariantAbandoned      = "AbandonedCanaryAtZero"
	invariantDeleting       = "NothingCreatedWhileDeleting"
)

// invariants names every invariant, for the metric's series and for tests.
var invariants = []string{
	invariantWeightsSum, invariantCanaryWeight, invariantStableCapacity, invariantGate,
	invariantSingleCanary, invariantStepPods, invariantAbandoned, invariantDeleting,
}

// decisionInvariant tells whether an invariant is about a decision (a step
// passed) rather than the world a reconcile's writes leave.
func decisionInvariant(name string) bool {
	return name == invariantGate || name == invariantStepPods || name == invariantAbandoned
}

// violation is one broken invariant.
type violation struct {
	invariant, detail string
}

// projection is the world as this reconcile leaves it: what it observed
// with its own writes applied.
type projection struct {
	replicas             map[string]int32 // spec.replicas by revision
	stableSel, canarySel string
	weight               int32 // the HTTPRoute's canary weight
	weightKnown          bool
}

func project(s *scope, changes []change) projection {
	p := projection{replicas: map[string]int32{}}
	for _, rs := range s.sets {
		p.replicas[revisionOf(rs)] = specReplicas(rs)
	}
	if g := s.gateway; g != nil {
		if g.stableService != nil && g.canaryService != nil {
			p.stableSel, p.canarySel = selectedRevision(g.stableService), selectedRevision(g.canaryService)
		}
		if g.route != nil {
			p.weight, p.weightKnown = g.view.CanaryWeight()
		}
	}
	for _, c := range changes {
		switch c.kind {
		case createReplicaSet:
			p.replicas[c.revision] = c.replicas
		case scaleReplicaSet:
			p.replicas[revisionOf(c.rs)] = c.replicas
		case setSelector, clearSelector:
			if c.service == s.gateway.stableService {
				p.stableSel = c.revision
			} else {
				p.canarySel = c.revision
			}
		case setWeight:
			p.weight, p.weightKnown = c.weight, true
		}
	}
	return p
}

// weights is the share of traffic each revision gets in the projection. A
// Service whose selector names no revision yet counts as stable.
func (p projection) weights(s *scope) (canary, stable int32) {
	st := s.rollout.Status
	if s.gateway == nil {
		var total int32
		for _, n := range p.replicas {
			total += n
		}
		if st.CanaryRevision == "" || total == 0 {
			return 0, 100
		}
		canary = int32(int64(p.replicas[st.CanaryRevision]) * 100 / int64(total))
		return canary, 100 - canary
	}
	if !p.weightKnown {
		return 0, 0
	}
	by := map[string]int32{}
	by[p.stableSel] += 100 - p.weight
	by[p.canarySel] += p.weight
	if st.CanaryRevision != "" {
		canary = by[st.CanaryRevision]
	}
	return canary, by[st.StableRevision] + by[""]
}

// restToNowhere tells whether the traffic a projection sends to neither
// the stable nor the canary revision reaches no pods at all: the Service
// carrying it selects a revision that has no ReplicaSet (a first revision
// replaced before it ever ran).
func (p projection) restToNowhere(s *scope) bool {
	st := s.rollout.Status
	for _, sel := range []string{p.stableSel, p.canarySel} {
		if sel != "" && sel != st.StableRevision && sel != st.CanaryRevision && s.set(sel) != nil {
			return false
		}
	}
	return s.gateway != nil && p.weightKnown
}

// allowedCanaryWeight is the most traffic the canary may have now: the
// weight of its step or the one before it (traffic follows a step's change
// within the reconcile that makes it).
func allowedCanaryWeight(s *scope) int32 {
	st := s.rollout.Status
	switch {
	case st.CanaryRevision == "":
		return 0
	case st.Rollback != nil && st.Phase == vigilv1.RolloutPhaseRolledBack:
		return 0
	case st.Rollback != nil:
		return 100
	}
	i := s.stepIndex()
	w := weightAt(s.steps(), i)
	if i > 0 {
		w = max(w, weightAt(s.steps(), i-1))
	}
	return w
}

// check returns every invariant broken by the world a reconcile's changes
// leave, and by the step it passed. before is the status as the reconcile
// found it.
func check(s *scope, changes []change, before *vigilv1.RolloutStatus) []violation {
	var out []violation
	add := func(invariant, format string, args ...any) {
		out = append(out, violation{invariant, fmt.Sprintf(format, args...)})
	}
	st := s.rollout.Status
	p := project(s, changes)
	if s.rollout.DeletionTimestamp != nil {
		for _, c := range changes {
			if c.kind == createReplicaSet || c.kind == createAnalysisRun || c.kind == scaleReplicaSet && c.replicas > specReplicas(c.rs) {
				add(invariantDeleting, "the Rollout is being deleted, and a reconcile planned to %s", c)
			}
		}
		return out
	}
	canary, stable := p.weights(s)
	if canary+stable != 100 && !p.restToNowhere(s) {
		add(invariantWeightsSum, "canary %d%% and stable %d%% do not sum to 100%%", canary, stable)
	}
	allowed := allowedCanaryWeight(s)
	if s.gateway != nil && canary > allowed {
		add(invariantCanaryWeight, "canary has %d%% of traffic, step %d allows %d%%", canary, s.stepIndex(), allowed)
	}
	if s.gateway == nil && st.CanaryRevision != "" {
		// By replica ratio a small weight still gets a pod: the bound is
		// the share of pods, and only growth is the controller's doing.
		most, _ := traffic.Split(s.replicas, allowed)
		if n := p.replicas[st.CanaryRevision]; n > most && n > specReplicas(s.set(st.CanaryRevision)) {
			add(invariantCanaryWeight, "the canary grew to %d pods, step %d allows %d (%d%%)", n, s.stepIndex(), most, allowed)
		}
	}
	if st.CanaryRevision != "" && p.replicas[st.CanaryRevision] > 0 {
		stableRS, canaryRS := s.set(st.StableRevision), s.set(st.CanaryRevision)
		floor := min(s.replicas-s.maxUnavailable, available(stableRS)+available(canaryRS))
		if got := p.replicas[st.StableRevision] + available(canaryRS); got < floor {
			add(invariantStableCapacity, "stable keeps %d replicas and the canary %d available pods, below %d", p.replicas[st.StableRevision], available(canaryRS), floor)
		}
	}
	canaries := 0
	for rev, n := range p.replicas {
		if rev != st.StableRevision && n > 0 {
			canaries++
		}
	}
	if canaries > 1 {
		add(invariantSingleCanary, "%d non-stable ReplicaSets have replicas", canaries)
	}
	if s.advancedFrom >= 0 {
		if why := gateUnmet(s, before); why != "" {
			add(invariantGate, "step %d advanced but %s", s.advancedFrom, why)
		}
		out = append(out, stepEvidence(s, before)...)
	}
	return out
}

// stepEvidence re-checks, from the ReplicaSets and route as observed and
// independently of decide, that the step this reconcile passed had its
// pods and traffic: the canary's ready pods cover the share of the weight
// in force, the route sends that weight, and no abandoned canary still has
// pods.
func stepEvidence(s *scope, before *vigilv1.RolloutStatus) []violation {
	var out []violation
	from := s.advancedFrom
	weight := weightAt(s.steps(), from)
	need, _ := traffic.Split(s.replicas, weight)
	if s.gateway != nil {
		need = traffic.CanaryReplicas(s.replicas, weight)
	}
	canary := s.set(before.CanaryRevision)
	if ready := available(canary); ready < need || canary != nil && canary.Status.ReadyReplicas < need {
		out = append(out, violation{invariantStepPods, fmt.Sprintf("step %d of revision %s passed with %d ready canary pods; %d%% of %d replicas needs %d",
			from, before.CanaryRevision, ready, weight, s.replicas, need)})
	}
	if g := s.gateway; g != nil {
		if w, ok := g.view.CanaryWeight(); !ok || w != weight || selectedRevision(g.canaryService) != before.CanaryRevision && weight > 0 {
			out = append(out, violation{invariantStepPods, fmt.Sprintf("step %d of revision %s passed while HTTPRoute %s sent %d%% to Service %s (selecting %q), not %d%%",
				from, before.CanaryRevision, g.route.Name, w, g.canaryService.Name, selectedRevision(g.canaryService), weight)})
		}
	}
	for _, rs := range s.sets {
		if rev := revisionOf(rs); rev != before.StableRevision && rev != before.CanaryRevision && !drained(rs) {
			out = append(out, violation{invariantAbandoned, fmt.Sprintf("step %d of revision %s passed while abandoned revision %s still had %d pods (%d ready)",
				from, before.CanaryRevision, rev, specReplicas(rs), rs.Status.ReadyReplicas)})
		}
	}
	return out
}

// gateUnmet re-checks, independently of decide, the evidence a pause,
// approval or analysis step needs for the step this reconcile moved past
// (stepEvidence checks pods and traffic); it returns what was missing.
func gateUnmet(s *scope, before *vigilv1.RolloutStatus) string {
	from := s.advancedFrom
	if int(from) >= len(s.steps()) {
		return ""
	}
	step := s.steps()[from]
	switch {
	case step.Analysis != nil:
		// The run itself must say Successful: the Rollout's own copy of the
		// verdict is not evidence.
		a := before.Analysis
		if a == nil || a.Step == nil || *a.Step != from || a.Revision != before.CanaryRevision {
			return "no analysis ran for it"
		}
		run := s.runs[a.Run]
		if run == nil || run.Status.Verdict != vigilv1.AnalysisSuccessful {
			return fmt.Sprintf("AnalysisRun %s is not Successful", a.Run)
		}
		return ""
	case step.SetWeight != nil:
		return "" // stepEvidence checks its pods and traffic
	case step.Pause != nil && step.Pause.Duration != nil:
		d, _ := step.Pause.Duration.Get()
		if before.CurrentStepStartedAt == nil || s.now.Before(before.CurrentStepStartedAt.Add(d)) {
			return fmt.Sprintf("its pause of %s had not ended", *step.Pause.Duration)
		}
		return ""
	}
	var approvers []counted
	for _, name := range s.rollout.Status.UsedApprovals {
		for i := range s.approvals {
			a := &s.approvals[i]
			if a.Name != name || a.Spec.Revision != before.CanaryRevision || a.Spec.Step != from || a.Spec.Decision != vigilv1.ApprovalApprove {
				continue
			}
			if id, err := s.key.Open(a); err == nil {
				approvers = append(approvers, counted{a: a, id: id})
			}
		}
	}
	if got, want := people(approvers), requiredApprovals(s.steps(), from); got < want {
		return fmt.Sprintf("it had %d of %d approvals", got, want)
	}
	return ""
}
