package gitsync

import (
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

func TestSetConditions(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	rev := "0123456789abcdef0123"
	ok := outcome.Outcome{Result: outcome.Success}
	refused := outcome.Outcome{Result: outcome.Failure, Reason: gitops.ReasonUnsigned, Message: "commit x is not signed"}
	unreachable := outcome.Outcome{Result: outcome.Unknown, Reason: gitops.ReasonUnreachable, Message: "no answer"}
	drift := []gitops.Drift{{Key: kube.NewResourceKey("", "ConfigMap", "ns", "cm")}}
	extra := []gitops.Key{kube.NewResourceKey("", "Service", "ns", "old")}
	type cond struct {
		status metav1.ConditionStatus
		reason string
	}
	none := cond{}
	for _, tc := range []struct {
		name  string
		had   []metav1.Condition
		rep   report
		ready cond
		// stalled, reconciling and drifted: none means absent
		stalled, reconciling, drifted cond
	}{
		{"suspended", nil, report{suspended: true}, cond{metav1.ConditionFalse, vigilv1.ReasonSuspended}, none, none, none},
		{"applied and fresh", nil, report{fetched: ok, target: rev, fresh: true, synced: syncInSync, checked: true},
			cond{metav1.ConditionTrue, vigilv1.ReasonSynced}, none, none, cond{metav1.ConditionFalse, vigilv1.ReasonNoDrift}},
		{"a refused commit stalls; the last good one stays applied", nil,
			report{fetched: refused, target: rev, synced: syncInSync, checked: true},
			cond{metav1.ConditionFalse, gitops.ReasonUnsigned}, cond{metav1.ConditionTrue, gitops.ReasonUnsigned}, none, cond{metav1.ConditionFalse, vigilv1.ReasonNoDrift}},
		{"an unreachable server is Unknown, not a failure", nil, report{fetched: unreachable},
			cond{metav1.ConditionUnknown, gitops.ReasonUnreachable}, none, none, none},
		{"an Unknown fetch leaves an earlier Stalled alone",
			[]metav1.Condition{{Type: vigilv1.ConditionStalled, Status: metav1.ConditionTrue, Reason: gitops.ReasonUnsigned}},
			report{fetched: unreachable}, cond{metav1.ConditionUnknown, gitops.ReasonUnreachable}, cond{metav1.ConditionTrue, gitops.ReasonUnsigned}, none, none},
		{"a good fetch ends Stalled",
			[]metav1.Condition{{Type: vigilv1.ConditionStalled, Status: metav1.ConditionTrue, Reason: gitops.ReasonUnsigned}},
			report{fetched: ok, target: rev, fresh: true, synced: syncSucceeded, checked: true},
			cond{metav1.ConditionTrue, vigilv1.ReasonSynced}, none, none, cond{metav1.ConditionFalse, vigilv1.ReasonNoDrift}},
		{"waves under way", nil, report{fetched: ok, target: rev, fresh: true, synced: syncUnderway, syncMessage: "wave 1", checked: true},
			cond{metav1.ConditionFalse, vigilv1.ReasonSyncing}, none, cond{metav1.ConditionTrue, vigilv1.ReasonSyncing}, cond{metav1.ConditionFalse, vigilv1.ReasonNoDrift}},
		{"re-applying the last good commit while a newer one is refused stays Stalled, not Reconciling", nil,
			report{fetched: refused, target: rev, synced: syncUnderway, syncMessage: "wave 1", checked: true},
			cond{metav1.ConditionFalse, vigilv1.ReasonSyncing}, cond{metav1.ConditionTrue, gitops.ReasonUnsigned}, none, cond{metav1.ConditionFalse, vigilv1.ReasonNoDrift}},
		{"a failed sync ends Reconciling",
			[]metav1.Condition{{Type: vigilv1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: vigilv1.ReasonSyncing}},
			report{fetched: ok, target: rev, fresh: true, synced: syncFailed, syncMessage: "ConfigMap cm: invalid", checked: true},
			cond{metav1.ConditionFalse, vigilv1.ReasonSyncFailed}, none, none, cond{metav1.ConditionFalse, vigilv1.ReasonNoDrift}},
		{"drift without selfHeal is reported", nil, report{fetched: ok, target: rev, fresh: true, synced: syncInSync, checked: true, drift: drift},
			cond{metav1.ConditionTrue, vigilv1.ReasonSynced}, none, none, cond{metav1.ConditionTrue, vigilv1.ReasonDriftDetected}},
		{"objects Git dropped, kept without prune, are drift", nil, report{fetched: ok, target: rev, fresh: true, synced: syncInSync, checked: true, extra: extra},
			cond{metav1.ConditionTrue, vigilv1.ReasonSynced}, none, none, cond{metav1.ConditionTrue, vigilv1.ReasonDriftDetected}},
		{"healed drift says so", nil, report{fetched: ok, target: rev, fresh: true, synced: syncSucceeded, checked: true, drift: drift, selfHeal: true, healed: true},
			cond{metav1.ConditionTrue, vigilv1.ReasonSynced}, none, none, cond{metav1.ConditionFalse, vigilv1.ReasonDriftReverted}},
		{"a revert is remembered until new drift",
			[]metav1.Condition{{Type: vigilv1.ConditionDrifted, Status: metav1.ConditionFalse, Reason: vigilv1.ReasonDriftReverted}},
			report{fetched: ok, target: rev, fresh: true, synced: syncInSync, checked: true, selfHeal: true},
			cond{metav1.ConditionTrue, vigilv1.ReasonSynced}, none, none, cond{metav1.ConditionFalse, vigilv1.ReasonDriftReverted}},
		{"a sync step that did not run leaves Ready as it was",
			[]metav1.Condition{{Type: vigilv1.ConditionReady, Status: metav1.ConditionTrue, Reason: vigilv1.ReasonSynced}},
			report{fetched: ok}, cond{metav1.ConditionTrue, vigilv1.ReasonSynced}, none, none, none},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			gs := &vigilv1.GitSync{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
			gs.Status.Conditions.Conditions = tc.had
			setConditions(gs, tc.rep, now)
			for typ, want := range map[string]cond{vigilv1.ConditionReady: tc.ready, vigilv1.ConditionStalled: tc.stalled,
				vigilv1.ConditionReconciling: tc.reconciling, vigilv1.ConditionDrifted: tc.drifted} {
				c := meta.FindStatusCondition(gs.Status.Conditions.Conditions, typ)
				if want == none {
					g.Expect(c).To(BeNil(), typ)
					continue
				}
				g.Expect(c).NotTo(BeNil(), typ)
				g.Expect(cond{c.Status, c.Reason}).To(Equal(want), typ)
			}
			stalled := meta.IsStatusConditionTrue(gs.Status.Conditions.Conditions, vigilv1.ConditionStalled)
			reconciling := meta.IsStatusConditionTrue(gs.Status.Conditions.Conditions, vigilv1.ConditionReconciling)
			g.Expect(stalled && reconciling).To(BeFalse(), "kstatus: never both")
		})
	}
}
