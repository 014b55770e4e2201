package rollout

import (
	"fmt"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// Invariants checked on every reconcile; a violation is a bug in Vigil and
// is counted in vigil_invariant_violations_total.
const (
	invariantWeightsSum     = "WeightsSumTo100"
	invariantCanaryWeight   = "CanaryWithinStepWeight"
	invariantStableCapacity = "StableAvailability"
	invariantGate           = "GateSatisfied"
	invariantSingleCanary   = "SingleCanary"
)

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
		p.stableSel, p.canarySel = selectedRevision(g.stableService), selectedRevision(g.canaryService)
		p.weight, p.weightKnown = g.view.CanaryWeight()
	}
	for _, c := range changes {
		switch c.kind {
		case createReplicaSet:
			p.replicas[c.revision] = c.replicas
		case scaleReplicaSet:
			p.replicas[revisionOf(c.rs)] = c.replicas
		case setSelector:
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

// check returns every invariant the projection breaks. before is the
// status as the reconcile found it; converged is what decide was told.
func check(s *scope, p projection, before *vigilv1.RolloutStatus, converged bool) []violation {
	var out []violation
	add := func(invariant, format string, args ...any) {
		out = append(out, violation{invariant, fmt.Sprintf(format, args...)})
	}
	st := s.rollout.Status
	canary, stable := p.weights(s)
	if canary+stable != 100 {
		add(invariantWeightsSum, "canary %d%% and stable %d%% do not sum to 100%%", canary, stable)
	}
	if allowed := allowedCanaryWeight(s); canary > allowed {
		add(invariantCanaryWeight, "canary has %d%% of traffic, step %d allows %d%%", canary, s.stepIndex(), allowed)
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
		if why := gateUnmet(s, before, converged); why != "" {
			add(invariantGate, "step %d advanced but %s", s.advancedFrom, why)
		}
	}
	return out
}

// gateUnmet re-checks, independently of decide, the evidence for the step
// this reconcile moved past; it returns what was missing.
func gateUnmet(s *scope, before *vigilv1.RolloutStatus, converged bool) string {
	from := s.advancedFrom
	if !converged {
		return "its pods and traffic were not in place"
	}
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
		return "" // converged: its pods and traffic were in place
	case step.Pause != nil && step.Pause.Duration != nil:
		d, _ := step.Pause.Duration.Get()
		if before.CurrentStepStartedAt == nil || s.now.Before(before.CurrentStepStartedAt.Add(d)) {
			return fmt.Sprintf("its pause of %s had not ended", *step.Pause.Duration)
		}
		return ""
	}
	var approvers []*vigilv1.Approval
	for _, name := range s.rollout.Status.UsedApprovals {
		for i := range s.approvals {
			a := &s.approvals[i]
			if a.Name == name && a.Spec.Revision == before.CanaryRevision && a.Spec.Step == from && a.Spec.Decision == vigilv1.ApprovalApprove {
				approvers = append(approvers, a)
			}
		}
	}
	if got, want := distinctApprovers(approvers), requiredApprovals(s.steps(), from); got < want {
		return fmt.Sprintf("it had %d of %d approvals", got, want)
	}
	return ""
}
