package rollout

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/vigil-dev/vigil/traffic"
)

// Gates pass on evidence only. A step's pods and traffic are in place when
// the cluster shows them: ready pods counted by the ReplicaSets' own status,
// route weights and Service selectors as stored. That no write is planned is
// never evidence: bounds that leave no room plan nothing, and a world in
// which nothing changes has not reached anything.

// want is what the status asks of the world now: pods per revision and
// the canary's share of traffic.
type want struct {
	canary, stable int32 // spec.replicas of the canary and stable ReplicaSets
	weight         int32 // the canary's share of traffic, in percent
}

// wanted is the world the status asks for. By replica ratio the canary
// gets its rounded share of the pods (at least one for a non-zero weight)
// and stable the rest; behind a router stable keeps every pod and the
// canary gets enough for its weight.
func (s *scope) wanted() want {
	w := s.wantedWeight()
	if s.gateway != nil {
		return want{canary: traffic.CanaryReplicas(s.replicas, w), stable: s.replicas, weight: w}
	}
	canary, stable := traffic.Split(s.replicas, w)
	return want{canary: canary, stable: stable, weight: w}
}

// evidence is what the cluster shows of the world the status asks for.
type evidence struct {
	// reached: every wanted pod is ready, every other revision has none,
	// and traffic is where the status wants it.
	reached bool
	// missing says what is not there yet, for messages.
	missing string
}

// observeEvidence compares what the cluster shows with what the status
// asks for. It reads only the observed scope, never the plan.
func observeEvidence(s *scope) evidence {
	st := s.rollout.Status
	missing := func(format string, args ...any) evidence {
		return evidence{missing: fmt.Sprintf(format, args...)}
	}
	if st.StableRevision == "" {
		return missing("no revision is stable yet")
	}
	w := s.wanted()
	if why := podsIn(s.set(st.StableRevision), "stable", st.StableRevision, w.stable); why != "" {
		return missing("%s", why)
	}
	if st.CanaryRevision != "" {
		if why := podsIn(s.set(st.CanaryRevision), "canary", st.CanaryRevision, w.canary); why != "" {
			return missing("%s", why)
		}
	}
	for _, rs := range oldestFirst(s.sets) {
		if rev := revisionOf(rs); rev != st.StableRevision && rev != st.CanaryRevision && !drained(rs) {
			return missing("revision %s, no longer wanted, still has %d pods (%d ready)", rev, specReplicas(rs), rs.Status.ReadyReplicas)
		}
	}
	if g := s.gateway; g != nil {
		name := g.route.Name
		weight, ok := g.view.CanaryWeight()
		switch {
		case !ok:
			return missing("HTTPRoute %s has a split rule that sends no traffic to either Service", name)
		case weight != w.weight:
			return missing("HTTPRoute %s sends %d%% to the canary Service, not %d%%", name, weight, w.weight)
		}
		canaryRev := st.CanaryRevision
		if canaryRev == "" {
			canaryRev = st.StableRevision
		}
		if sel := selectedRevision(g.stableService); sel != st.StableRevision {
			return missing("Service %s selects revision %q, not stable revision %s", g.stableService.Name, sel, st.StableRevision)
		}
		if sel := selectedRevision(g.canaryService); sel != canaryRev {
			return missing("Service %s selects revision %q, not %s", g.canaryService.Name, sel, canaryRev)
		}
	}
	return evidence{reached: true}
}

// podsIn says what keeps rs from running exactly n ready pods; "" when it
// does. The ReplicaSet must exist even with no pods: it holds the template
// that a rollback returns to, or that a promotion makes stable.
func podsIn(rs *appsv1.ReplicaSet, role, revision string, n int32) string {
	switch {
	case rs == nil:
		return fmt.Sprintf("the %s ReplicaSet of revision %s does not exist yet", role, revision)
	case specReplicas(rs) != n:
		return fmt.Sprintf("%s revision %s wants %d pods, not %d", role, revision, specReplicas(rs), n)
	case n == 0 && !drained(rs):
		return fmt.Sprintf("%s revision %s still has %d ready pods", role, revision, rs.Status.ReadyReplicas)
	case !fullyAvailable(rs):
		return fmt.Sprintf("%s revision %s has %d of %d pods ready", role, revision, available(rs), n)
	}
	return ""
}

// drained tells whether a ReplicaSet wants no pods and its status, current
// with its spec, shows none ready.
func drained(rs *appsv1.ReplicaSet) bool {
	return specReplicas(rs) == 0 && rs.Status.ObservedGeneration >= rs.Generation && rs.Status.ReadyReplicas == 0 && rs.Status.AvailableReplicas == 0
}
