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
	rule := &r.route.Spec.Rules[i]
	for j := range rule.BackendRefs {
		ref := &rule.BackendRefs[j]
		if ref.Kind != nil && *ref.Kind != "Service" || ref.Group != nil && *ref.Group != "" {
			continue
		}
		if ref.Namespace != nil && string(*ref.Namespace) != r.route.Namespace {
			continue
		}
		switch string(ref.Name) {
		case r.stable:
			stable = ref
		case r.canary:
			canary = ref
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
