package traffic

import (
	"fmt"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Route is a view of an HTTPRoute's rules that send traffic to both the
// stable and the canary Service.
type Route struct {
	route          *gatewayv1.HTTPRoute
	stable, canary string
}

// NewRoute checks that route has at least one rule whose backendRefs name
// both Services, and returns a view of it.
func NewRoute(route *gatewayv1.HTTPRoute, stableService, canaryService string) (Route, error) {
	r := Route{route: route, stable: stableService, canary: canaryService}
	found := false
	for i := range route.Spec.Rules {
		s, c := r.refs(i)
		if s != nil && c != nil {
			found = true
		}
	}
	if !found {
		return r, fmt.Errorf("HTTPRoute %s has no rule whose backendRefs name both Service %s and Service %s",
			route.Name, stableService, canaryService)
	}
	return r, nil
}

// refs returns the stable and canary backendRefs of rule i (nil when absent).
func (r Route) refs(i int) (stable, canary *gatewayv1.HTTPBackendRef) {
	si, ci := r.positions(i)
	rule := &r.route.Spec.Rules[i]
	if si >= 0 {
		stable = &rule.BackendRefs[si]
	}
	if ci >= 0 {
		canary = &rule.BackendRefs[ci]
	}
	return stable, canary
}

// positions returns where the stable and canary backendRefs are among
// rule i's backendRefs (-1 when absent).
func (r Route) positions(i int) (stable, canary int) {
	stable, canary = -1, -1
	for j, ref := range r.route.Spec.Rules[i].BackendRefs {
		if ref.Kind != nil && *ref.Kind != "Service" || ref.Group != nil && *ref.Group != "" {
			continue
		}
		if ref.Namespace != nil && string(*ref.Namespace) != r.route.Namespace {
			continue
		}
		switch string(ref.Name) {
		case r.stable:
			stable = j
		case r.canary:
			canary = j
		}
	}
	return stable, canary
}

// weight is a backendRef's weight; Gateway API defaults an unset one to 1.
func weight(ref *gatewayv1.HTTPBackendRef) int32 {
	if ref.Weight == nil {
		return 1
	}
	return *ref.Weight
}

// CanaryWeight is the percentage of traffic the route sends to the canary
// Service, taken from the split rule that gives it the most. The second
// result is false when some split rule sends no traffic to either Service.
func (r Route) CanaryWeight() (int32, bool) {
	var most int32
	for i := range r.route.Spec.Rules {
		s, c := r.refs(i)
		if s == nil || c == nil {
			continue
		}
		total := weight(s) + weight(c)
		if total <= 0 {
			return 0, false
		}
		most = max(most, int32(int64(weight(c))*100/int64(total)))
	}
	return most, true
}

// SetCanaryWeight sets the weights of every split rule to canary and
// 100-canary and reports whether anything changed.
func (r Route) SetCanaryWeight(canary int32) bool {
	changed := false
	set := func(ref *gatewayv1.HTTPBackendRef, w int32) {
		if ref.Weight == nil || *ref.Weight != w {
			ref.Weight = &w
			changed = true
		}
	}
	for i := range r.route.Spec.Rules {
		s, c := r.refs(i)
		if s == nil || c == nil {
			continue
		}
		set(s, 100-canary)
		set(c, canary)
	}
	return changed
}

// PatchOp is one operation of a JSON patch (RFC 6902).
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// WeightPatch is the JSON patch that makes the change SetCanaryWeight
// would make to the route as read: for each split rule, a test that its
// stable and canary backendRefs are still where they were read, then
// their weights. The patch depends on nothing else of the route, so it
// needs no resourceVersion precondition (which any write of the route's
// status would break); a route whose rules moved since it was read fails
// a test and the patch changes nothing.
func (r Route) WeightPatch(canary int32) []PatchOp {
	var ops []PatchOp
	for i := range r.route.Spec.Rules {
		s, c := r.positions(i)
		if s < 0 || c < 0 {
			continue
		}
		for _, ref := range []struct {
			at     int
			name   string
			weight int32
		}{{s, r.stable, 100 - canary}, {c, r.canary, canary}} {
			at := fmt.Sprintf("/spec/rules/%d/backendRefs/%d", i, ref.at)
			ops = append(ops,
				PatchOp{Op: "test", Path: at + "/name", Value: ref.name},
				PatchOp{Op: "add", Path: at + "/weight", Value: ref.weight})
		}
	}
	return ops
}
