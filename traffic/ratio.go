package traffic

// Scale is one ReplicaSet as the replica stepper sees it.
type Scale struct {
	// Target is the number of replicas the ReplicaSet should end with.
	Target int32
	// Spec is its spec.replicas now.
	Spec int32
	// Available is the number of its pods that are available now.
	Available int32
}

// Split returns the canary and stable replica targets that carry weight
// percent of traffic by replica ratio. The canary gets the rounded share of
// replicas (halves round up), and at least one pod for any weight above
// zero: a step that asks for traffic on the canary always has a canary to
// measure. With few replicas the canary's real share can therefore be more
// than the step asks (3 replicas at 20% run 1 canary pod, 33%); a router
// (Gateway API) gives exact weights.
func Split(replicas, weight int32) (canary, stable int32) {
	if weight <= 0 || replicas <= 0 {
		return 0, max(replicas, 0)
	}
	if weight >= 100 {
		return replicas, 0
	}
	canary = int32((int64(replicas)*int64(weight) + 50) / 100)
	canary = max(canary, 1)
	return canary, replicas - canary
}

// CanaryReplicas is how many canary pods carry weight percent of replicas'
// traffic when a router, not the pod ratio, splits the traffic: enough pods
// for their share, at least one for any weight above zero.
func CanaryReplicas(replicas, weight int32) int32 {
	if weight <= 0 || replicas == 0 {
		return 0
	}
	if weight >= 100 {
		return replicas
	}
	c := (int64(replicas)*int64(weight) + 99) / 100
	return int32(c)
}

// Step moves every ReplicaSet one safe step toward its target and returns
// the new spec.replicas of each, in order. Growth is bounded by maxSurge:
// all pods together stay at or below replicas+maxSurge. Shrinking is bounded
// by maxUnavailable: pods that are not available go first and freely, and
// available pods go only while at least replicas-maxUnavailable stay
// available. Sets earlier in the slice grow first. Repeated calls, with
// pods becoming available in between, reach every target.
func Step(replicas, maxSurge, maxUnavailable int32, sets []Scale) []int32 {
	next := make([]int32, len(sets))
	var specTotal, available int32
	for i, s := range sets {
		next[i] = s.Spec
		specTotal += s.Spec
		available += s.Available
	}
	room := replicas + maxSurge - specTotal
	for i, s := range sets {
		if s.Target <= s.Spec || room <= 0 {
			continue
		}
		grow := min(s.Target-s.Spec, room)
		next[i] += grow
		room -= grow
	}
	budget := available - (replicas - maxUnavailable)
	for i, s := range sets {
		if s.Target >= s.Spec {
			continue
		}
		unavailable := max(s.Spec-s.Available, 0)
		shrink := min(s.Spec-s.Target, unavailable)
		if rest := s.Spec - s.Target - shrink; rest > 0 && budget > 0 {
			take := min(rest, budget)
			shrink += take
			budget -= take
		}
		next[i] -= shrink
	}
	return next
}
