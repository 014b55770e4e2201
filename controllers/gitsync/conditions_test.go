package gitsync

import (
	"slices"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/gitops-engine/pkg/utils/kube"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/outcome"
)

// cond is a condition's status and reason; none is an absent condition.
type cond struct {
	status metav1.ConditionStatus
	reason string
}

var (
	none         = cond{}
	testRev      = "0123456789abcdef0123"
	fetchedOK    = outcome.Outcome{Result: outcome.Success}
	refusedFetch = outcome.Outcome{Result: outcome.Failure, Reason: gitops.ReasonUnsigned, Message: "commit x is not signed"}
	unreachable  = outcome.Outcome{Result: outcome.Unknown, Reason: gitops.ReasonUnreachable, Message: "no answer"}
	someDrift    = []gitops.Drift{{Key: kube.NewResourceKey("", "ConfigMap", "ns", "cm")}}
	someExtra    = []gitops.Key{kube.NewResourceKey("", "Service", "ns", "old")}

	synced    = cond{metav1.ConditionTrue, vigilv1.ReasonSynced}
	noDrift   = cond{metav1.ConditionFalse, vigilv1.ReasonNoDrift}
	unsigned  = cond{metav1.ConditionTrue, gitops.ReasonUnsigned}
	inSync    = scope{fetched: fetchedOK, target: &rendered{rev: testRev}, fresh: true, synced: syncInSync, checked: true}
	succeeded = scope{fetched: fetchedOK, target: &rendered{rev: testRev}, fresh: true, synced: syncSucceeded, checked: true}
	// selfHealing is a GitSync with selfHeal on.
	selfHealing = &vigilv1.GitSync{Spec: vigilv1.GitSyncSpec{SelfHeal: true}}
)

// conditionCase is the conditions a GitSync had, what a reconcile learned
// (its scope; gs, when set, says only the spec), and the conditions
// setConditions must make of them.
type conditionCase struct {
	name                          string
	had                           []metav1.Condition
	s                             scope
	ready                         cond
	stalled, reconciling, drifted cond
}

func with(s scope, change func(*scope)) scope {
	change(&s)
	return s
}

func had(t string, status metav1.ConditionStatus, reason string) []metav1.Condition {
	return []metav1.Condition{{Type: t, Status: status, Reason: reason, ObservedGeneration: 2}}
}

var conditionCases = []conditionCase{
	{"suspended", nil, scope{suspended: true}, cond{metav1.ConditionFalse, vigilv1.ReasonSuspended}, none, none, none},
	{"applied and fresh", nil, inSync, synced, none, none, noDrift},
	{"a refused commit stalls; the last good one stays applied", nil,
		with(inSync, func(r *scope) { r.fetched, r.fresh = refusedFetch, false }),
		cond{metav1.ConditionFalse, gitops.ReasonUnsigned}, unsigned, none, noDrift},
	{"an unreachable server is Unknown, not a failure", nil, scope{fetched: unreachable},
		cond{metav1.ConditionUnknown, gitops.ReasonUnreachable}, none, none, none},
	{"an Unknown fetch leaves an earlier Stalled alone", had(vigilv1.ConditionStalled, metav1.ConditionTrue, gitops.ReasonUnsigned),
		scope{fetched: unreachable}, cond{metav1.ConditionUnknown, gitops.ReasonUnreachable}, unsigned, none, none},
	{"a good fetch ends Stalled", had(vigilv1.ConditionStalled, metav1.ConditionTrue, gitops.ReasonUnsigned), succeeded, synced, none, none, noDrift},
	{"waves under way", nil, with(inSync, func(r *scope) { r.synced, r.syncMessage = syncUnderway, "wave 1" }),
		cond{metav1.ConditionFalse, vigilv1.ReasonSyncing}, none, cond{metav1.ConditionTrue, vigilv1.ReasonSyncing}, noDrift},
	{"re-applying the last good commit while a newer one is refused stays Stalled, not Reconciling", nil,
		with(inSync, func(r *scope) { r.fetched, r.fresh, r.synced = refusedFetch, false, syncUnderway }),
		cond{metav1.ConditionFalse, vigilv1.ReasonSyncing}, unsigned, none, noDrift},
	{"a failed sync ends Reconciling", had(vigilv1.ConditionReconciling, metav1.ConditionTrue, vigilv1.ReasonSyncing),
		with(inSync, func(r *scope) { r.synced, r.syncMessage = syncFailed, "ConfigMap cm: invalid" }),
		cond{metav1.ConditionFalse, vigilv1.ReasonSyncFailed}, none, none, noDrift},
	{"drift without selfHeal is reported", nil, with(inSync, func(r *scope) { r.drift = someDrift }),
		synced, none, none, cond{metav1.ConditionTrue, vigilv1.ReasonDriftDetected}},
	{"objects Git dropped, kept without prune, are drift", nil, with(inSync, func(r *scope) { r.extra = someExtra }),
		synced, none, none, cond{metav1.ConditionTrue, vigilv1.ReasonDriftDetected}},
	{"healed drift says so", nil, with(succeeded, func(r *scope) { r.drift, r.gs, r.healed = someDrift, selfHealing, true }),
		synced, none, none, cond{metav1.ConditionFalse, vigilv1.ReasonDriftReverted}},
	{"a revert is remembered until new drift", had(vigilv1.ConditionDrifted, metav1.ConditionFalse, vigilv1.ReasonDriftReverted),
		with(inSync, func(r *scope) { r.gs = selfHealing }), synced, none, none, cond{metav1.ConditionFalse, vigilv1.ReasonDriftReverted}},
	{"a sync step that did not run leaves Ready as it was", had(vigilv1.ConditionReady, metav1.ConditionTrue, vigilv1.ReasonSynced),
		scope{fetched: fetchedOK}, synced, none, none, none},
}

func TestSetConditions(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range conditionCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			s := tc.s
			gs := &vigilv1.GitSync{}
			if s.gs != nil {
				gs = s.gs.DeepCopy()
			}
			gs.Generation, gs.Status.Conditions.Conditions = 3, slices.Clone(tc.had) // tc.had stays as it was, to compare with
			s.gs, s.now = gs, now
			setConditions(&s)
			for typ, want := range map[string]cond{vigilv1.ConditionReady: tc.ready, vigilv1.ConditionStalled: tc.stalled,
				vigilv1.ConditionReconciling: tc.reconciling, vigilv1.ConditionDrifted: tc.drifted} {
				c := meta.FindStatusCondition(gs.Status.Conditions.Conditions, typ)
				if want == none {
					g.Expect(c).To(BeNil(), typ)
					continue
				}
				g.Expect(c).NotTo(BeNil(), typ)
				g.Expect(cond{c.Status, c.Reason}).To(Equal(want), typ)
				if h := meta.FindStatusCondition(tc.had, typ); h == nil || *h != *c {
					g.Expect(c.ObservedGeneration).To(Equal(int64(3)), "%s was set for this generation", typ)
				}
			}
			stalled := meta.IsStatusConditionTrue(gs.Status.Conditions.Conditions, vigilv1.ConditionStalled)
			reconciling := meta.IsStatusConditionTrue(gs.Status.Conditions.Conditions, vigilv1.ConditionReconciling)
			g.Expect(stalled && reconciling).To(BeFalse(), "kstatus: never both")
		})
	}
}
