package rollout

import (
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/traffic"
)

// changeKind is one kind of write the controller makes.
type changeKind int

const (
	createReplicaSet changeKind = iota
	scaleReplicaSet
	setSelector
	setWeight
	writeApproval
	deleteReplicaSet
	createAnalysisRun
	terminateAnalysisRun
	clearSelector
	removeFinalizer
	deleteRecord
)

// change is one write that brings the world closer to the status. The
// controller applies a plan's changes in order and stops at the first error.
type change struct {
	kind     changeKind
	rs       *appsv1.ReplicaSet // created, scaled or deleted
	replicas int32              // new spec.replicas
	service  *corev1.Service    // whose selector gets revision
	revision string
	weight   int32 // canary weight of the HTTPRoute
	approval *vigilv1.Approval
	// approvalStatus is the approval's new status.
	approvalStatus *vigilv1.ApprovalStatus
	run            *vigilv1.AnalysisRun   // created or terminated
	record         *vigilv1.ReleaseRecord // deleted behind the checkpoint
}

// traffic reports whether a change moves traffic or pods; approvals,
// analysis and history clean-up do not.
func (c change) traffic() bool {
	switch c.kind {
	case writeApproval, deleteReplicaSet, createAnalysisRun, terminateAnalysisRun, removeFinalizer, deleteRecord:
		return false
	}
	return true
}

// plan lists the writes that make the world match the status, in a safe
// order: traffic leaves a revision before its pods do, and reaches one only
// after its pods are available. A Rollout being deleted gets only the
// writes its deletion needs.
func plan(s *scope) []change {
	if s.rollout.DeletionTimestamp != nil {
		return planDeletion(s)
	}
	if s.rollout.Status.StableRevision == "" {
		return nil
	}
	var out []change
	if s.gateway != nil {
		out = planGateway(s)
	} else {
		out = planRatio(s)
	}
	out = append(out, planApprovals(s)...)
	out = append(out, planAnalysis(s)...)
	out = append(out, planRecords(s)...)
	return append(out, planHistory(s)...)
}

// otherCanaryScaled tells whether a ReplicaSet other than the stable and
// the current canary still has pods wanted; a new canary waits for it.
func otherCanaryScaled(s *scope) bool {
	st := s.rollout.Status
	for _, rs := range s.sets {
		rev := revisionOf(rs)
		if rev != st.StableRevision && rev != st.CanaryRevision && specReplicas(rs) > 0 {
			return true
		}
	}
	return false
}

// canaryHoldsPods tells whether a rolled-back canary still keeps its pods
// for inspection, and asks for a look when the delay ends.
func canaryHoldsPods(s *scope) bool {
	rb := s.rollout.Status.Rollback
	if rb == nil {
		return false
	}
	left := rb.StartedAt.Add(s.scaleDownDelay()).Sub(s.now)
	if left > 0 {
		s.wakeIn(left)
		return true
	}
	return false
}

// scaleTo adds the write that gives revision's ReplicaSet replicas pods,
// creating it when it does not exist yet. The template's ReplicaSet is
// made even with no pods, so that its revision can have pods later; a
// canary being rolled back needs none.
func scaleTo(s *scope, out []change, revision string, replicas int32) []change {
	rs := s.set(revision)
	switch {
	case rs == nil && revision == s.revision && (replicas > 0 || s.rollout.Status.Rollback == nil):
		out = append(out, change{kind: createReplicaSet, revision: revision, replicas: replicas})
	case rs != nil && specReplicas(rs) != replicas:
		out = append(out, change{kind: scaleReplicaSet, rs: rs, replicas: replicas})
	}
	return out
}

// planRatio plans replica-ratio traffic: the canary's share of pods is its
// share of traffic, and pods move within maxSurge and maxUnavailable. When
// the bounds leave no room, room is made in this order, never by skipping:
//  1. a canary that is no longer wanted (a new revision replaced it) hands
//     its pods back to stable and goes to zero: stable grows within
//     maxSurge, the abandoned canary shrinks within maxUnavailable;
//  2. the new canary grows to its share within maxSurge;
//  3. stable shrinks to the rest as the canary's pods become available.
//
// A rollback is not bounded by them: see planRatioRollback.
func planRatio(s *scope) []change {
	st := s.rollout.Status
	if st.Rollback != nil {
		return planRatioRollback(s)
	}
	w := s.wanted()
	revisions := []string{st.CanaryRevision, st.StableRevision}
	targets := []int32{w.canary, w.stable}
	switch {
	case st.CanaryRevision != "" && otherCanaryScaled(s):
		// At most one canary ReplicaSet has pods: the new one waits,
		// and stable takes back the abandoned canary's share.
		canary := min(w.canary, specReplicas(s.set(st.CanaryRevision)))
		targets = []int32{canary, s.replicas - canary}
	}
	var scales []traffic.Scale
	var order []string
	for i, rev := range revisions {
		if rev == "" {
			continue
		}
		rs := s.set(rev)
		scales = append(scales, traffic.Scale{Target: targets[i], Spec: specReplicas(rs), Available: available(rs)})
		order = append(order, rev)
	}
	for _, rs := range s.sets {
		if rev := revisionOf(rs); rev != st.StableRevision && rev != st.CanaryRevision {
			scales = append(scales, traffic.Scale{Target: 0, Spec: specReplicas(rs), Available: available(rs)})
			order = append(order, rev)
		}
	}
	next := traffic.Step(s.replicas, s.maxSurge, s.maxUnavailable, scales)
	var out []change
	for i, rev := range order {
		if next[i] != scales[i].Spec || s.set(rev) == nil {
			out = scaleTo(s, out, rev, next[i])
		}
	}
	return out
}

// planRatioRollback scales stable to every replica and then the canary
// (and any other revision) to zero, in the reconcile that decided the
// rollback: with replica-ratio routing the canary's pods are its traffic,
// and a revision being rolled back serves none. Until the new stable pods
// are ready the Rollout runs below its replicas, as a deletion of a bad
// pod would; that is the price of not serving the revision a moment
// longer.
func planRatioRollback(s *scope) []change {
	st := s.rollout.Status
	out := scaleTo(s, nil, st.StableRevision, s.replicas)
	out = scaleTo(s, out, st.CanaryRevision, 0)
	for _, rs := range s.sets {
		if rev := revisionOf(rs); rev != st.StableRevision && rev != st.CanaryRevision && specReplicas(rs) > 0 {
			out = append(out, change{kind: scaleReplicaSet, rs: rs, replicas: 0})
		}
	}
	return out
}

// routeState is where the Services and the route's weight stand once the
// traffic changes planned so far are made.
type routeState struct {
	stableSel, canarySel string
	weight               int32
}

// planGatewayPods scales stable to every replica, the canary to its share
// (but never below what still carries its weight), and every other
// revision to zero once no weighted Service selects it.
func planGatewayPods(s *scope, out []change, r routeState, canaryTarget int32) []change {
	st := s.rollout.Status
	canary := s.set(st.CanaryRevision)
	weighted := func(rev string) bool {
		return r.stableSel == rev && r.weight < 100 || r.canarySel == rev && r.weight > 0
	}
	if st.CanaryRevision != "" && st.Rollback != nil {
		canaryTarget = 0
		if canaryHoldsPods(s) {
			canaryTarget = specReplicas(canary)
		}
	}
	if canaryTarget > specReplicas(canary) && otherCanaryScaled(s) {
		canaryTarget = specReplicas(canary)
	}
	out = scaleTo(s, out, st.StableRevision, s.replicas)
	if st.CanaryRevision != "" && (canaryTarget >= specReplicas(canary) || canaryTarget >= traffic.CanaryReplicas(s.replicas, r.weight)) {
		out = scaleTo(s, out, st.CanaryRevision, canaryTarget)
	}
	for _, rs := range s.sets {
		rev := revisionOf(rs)
		if rev != st.StableRevision && rev != st.CanaryRevision && specReplicas(rs) > 0 && !weighted(rev) {
			out = append(out, change{kind: scaleReplicaSet, rs: rs, replicas: 0})
		}
	}
	return out
}

// selectedRevision is the revision a Service's selector picks; "" when the
// selector does not name one.
func selectedRevision(svc *corev1.Service) string {
	return svc.Spec.Selector[vigilv1.LabelPodTemplateHash]
}

// planGateway plans HTTPRoute traffic: both revisions keep their pods while
// the route's weights move traffic between the stable and canary Services.
func planGateway(s *scope) []change {
	st := s.rollout.Status
	g := s.gateway
	var out []change
	stable, canary := s.set(st.StableRevision), s.set(st.CanaryRevision)
	want := s.wantedWeight()
	canaryTarget := traffic.CanaryReplicas(s.replicas, want)

	// 1. The stable Service moves to a revision only once its pods are all up.
	stableSel := selectedRevision(g.stableService)
	if stableSel != st.StableRevision && (s.replicas == 0 || stable != nil && specReplicas(stable) >= s.replicas && fullyAvailable(stable)) {
		out = append(out, change{kind: setSelector, service: g.stableService, revision: st.StableRevision})
		stableSel = st.StableRevision
	}

	// 2. Traffic leaves the canary before anything else changes.
	weight, _ := g.view.CanaryWeight()
	canarySel := selectedRevision(g.canaryService)
	allowed := want
	switch {
	case canarySel == st.StableRevision && stableSel != st.StableRevision:
		// Just promoted: the canary Service sends its traffic to the new
		// stable revision, and keeps it until the stable Service can
		// follow; a new canary waits for that.
		allowed = weight
	case st.CanaryRevision == "" || canarySel != st.CanaryRevision || available(canary) < canaryTarget:
		allowed = 0
	}
	if weight > allowed {
		out = append(out, change{kind: setWeight, weight: allowed})
		weight = allowed
	}

	// 3. The canary Service follows the canary (or stable) revision, but
	// only while it gets no traffic.
	canaryRev := st.CanaryRevision
	if canaryRev == "" {
		canaryRev = st.StableRevision
	}
	if canarySel != canaryRev && weight == 0 {
		out = append(out, change{kind: setSelector, service: g.canaryService, revision: canaryRev})
		canarySel = canaryRev
	}

	// 4. Pods: stable keeps them all; the canary gets its share; a revision
	// loses its pods only once no weighted Service selects it.
	out = planGatewayPods(s, out, routeState{stableSel, canarySel, weight}, canaryTarget)

	// 5. Traffic reaches the canary last.
	if weight < allowed {
		out = append(out, change{kind: setWeight, weight: allowed})
	}
	return out
}

// planHistory deletes scaled-down old ReplicaSets beyond
// revisionHistoryLimit, oldest first.
func planHistory(s *scope) []change {
	st := s.rollout.Status
	limit := 3
	if l := s.rollout.Spec.RevisionHistoryLimit; l != nil {
		limit = int(*l)
	}
	var old []*appsv1.ReplicaSet
	for _, rs := range oldestFirst(s.sets) {
		rev := revisionOf(rs)
		if rev != st.StableRevision && rev != st.CanaryRevision && rev != s.revision &&
			specReplicas(rs) == 0 && rs.Status.Replicas == 0 && rs.DeletionTimestamp == nil {
			old = append(old, rs)
		}
	}
	var out []change
	for i := 0; i < len(old)-limit; i++ {
		out = append(out, change{kind: deleteReplicaSet, rs: old[i]})
	}
	return out
}

// trafficOnStable says the stable revision serves all traffic: the
// canary's weight is zero (or, without a router, it has no pods) and the
// stable pods are all available.
func trafficOnStable(s *scope) bool {
	st := s.rollout.Status
	stable := s.set(st.StableRevision)
	if s.replicas > 0 && (stable == nil || specReplicas(stable) < s.replicas || !fullyAvailable(stable)) {
		return false
	}
	if s.gateway != nil {
		w, ok := s.gateway.view.CanaryWeight()
		return ok && selectedRevision(s.gateway.stableService) == st.StableRevision &&
			(w == 0 || selectedRevision(s.gateway.canaryService) != st.CanaryRevision)
	}
	return specReplicas(s.set(st.CanaryRevision)) == 0
}

// planDeletion lists the only writes a Rollout being deleted gets: Vigil's
// selector key leaves each Service it routed, then Vigil's finalizer goes.
// Nothing is created or scaled.
func planDeletion(s *scope) []change {
	var out []change
	if g := s.gateway; g != nil {
		for _, svc := range []*corev1.Service{g.stableService, g.canaryService} {
			if svc == nil {
				continue
			}
			if _, ok := svc.Spec.Selector[vigilv1.LabelPodTemplateHash]; ok {
				out = append(out, change{kind: clearSelector, service: svc})
			}
		}
	}
	if slices.Contains(s.rollout.Finalizers, vigilv1.FinalizerRollout) {
		out = append(out, change{kind: removeFinalizer})
	}
	return out
}
