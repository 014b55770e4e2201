package traffic

import (
	"encoding/json"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func backend(name string, weight *int32) gatewayv1.HTTPBackendRef {
	return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{
		BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: ptr.To(gatewayv1.PortNumber(80))},
		Weight:                 weight,
	}}
}

func route(rules ...[]gatewayv1.HTTPBackendRef) *gatewayv1.HTTPRoute {
	r := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}}
	for _, refs := range rules {
		r.Spec.Rules = append(r.Spec.Rules, gatewayv1.HTTPRouteRule{BackendRefs: refs})
	}
	return r
}

func TestNewRouteNeedsARuleWithBothServices(t *testing.T) {
	g := NewWithT(t)
	_, err := NewRoute(route([]gatewayv1.HTTPBackendRef{backend("stable", nil)}, []gatewayv1.HTTPBackendRef{backend("canary", nil)}), "stable", "canary")
	g.Expect(err).To(MatchError(ContainSubstring("no rule whose backendRefs name both Service stable and Service canary")))

	other := backend("canary", nil)
	other.Namespace = ptr.To(gatewayv1.Namespace("elsewhere"))
	_, err = NewRoute(route([]gatewayv1.HTTPBackendRef{backend("stable", nil), other}), "stable", "canary")
	g.Expect(err).To(HaveOccurred(), "a Service of another namespace is not the canary Service")
}

func TestWeightsAreReadAndSetOnEverySplitRule(t *testing.T) {
	g := NewWithT(t)
	hr := route(
		[]gatewayv1.HTTPBackendRef{backend("stable", nil), backend("canary", nil)},
		[]gatewayv1.HTTPBackendRef{backend("stable", ptr.To[int32](90)), backend("canary", ptr.To[int32](10))},
		[]gatewayv1.HTTPBackendRef{backend("other", nil)},
	)
	r, err := NewRoute(hr, "stable", "canary")
	g.Expect(err).NotTo(HaveOccurred())
	w, ok := r.CanaryWeight()
	g.Expect(ok).To(BeTrue())
	g.Expect(w).To(Equal(int32(50)), "unset weights count as 1 each, and the rule giving the canary most wins")

	g.Expect(r.SetCanaryWeight(20)).To(BeTrue())
	g.Expect(r.SetCanaryWeight(20)).To(BeFalse(), "setting the same weight again changes nothing")
	for _, rule := range hr.Spec.Rules[:2] {
		g.Expect(*rule.BackendRefs[0].Weight).To(Equal(int32(80)))
		g.Expect(*rule.BackendRefs[1].Weight).To(Equal(int32(20)))
	}
	g.Expect(hr.Spec.Rules[2].BackendRefs[0].Weight).To(BeNil(), "rules without both Services are left alone")
	w, _ = r.CanaryWeight()
	g.Expect(w).To(Equal(int32(20)))

	r.SetCanaryWeight(0)
	hr.Spec.Rules[0].BackendRefs[0].Weight = ptr.To[int32](0)
	_, ok = r.CanaryWeight()
	g.Expect(ok).To(BeFalse(), "a rule that sends traffic nowhere is reported")
}

func TestWeightPatchChangesOnlyTheWeightsOfTheRefsAsRead(t *testing.T) {
	g := NewWithT(t)
	read := route(
		[]gatewayv1.HTTPBackendRef{backend("stable", nil), backend("canary", ptr.To[int32](0))},
		[]gatewayv1.HTTPBackendRef{backend("other", nil)},
	)
	r, err := NewRoute(read, "stable", "canary")
	g.Expect(err).NotTo(HaveOccurred())
	patch, err := json.Marshal(r.WeightPatch(30))
	g.Expect(err).NotTo(HaveOccurred())
	p, err := jsonpatch.DecodePatch(patch)
	g.Expect(err).NotTo(HaveOccurred())

	// Someone else changed the route since it was read, elsewhere: the
	// patch keeps their change and sets the weights.
	live := read.DeepCopy()
	live.Spec.Rules[1].BackendRefs = append(live.Spec.Rules[1].BackendRefs, backend("added", nil))
	doc, _ := json.Marshal(live)
	out, err := p.Apply(doc)
	g.Expect(err).NotTo(HaveOccurred())
	var got gatewayv1.HTTPRoute
	g.Expect(json.Unmarshal(out, &got)).To(Succeed())
	want := live.DeepCopy()
	wr, _ := NewRoute(want, "stable", "canary")
	wr.SetCanaryWeight(30)
	g.Expect(got.Spec).To(Equal(want.Spec))

	// The split rule's refs moved: the test fails and nothing is changed.
	live = read.DeepCopy()
	refs := live.Spec.Rules[0].BackendRefs
	refs[0], refs[1] = refs[1], refs[0]
	doc, _ = json.Marshal(live)
	_, err = p.Apply(doc)
	g.Expect(err).To(MatchError(ContainSubstring("test")), "a patch of refs that moved fails")
}
