package rollout

import (
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/outcome"
)

// settled are the reasons an Approval's Counted condition keeps once
// written: the wait it answered never comes back, a seal never heals, and
// an expired Approval stays expired. Only Used may follow one of them.
var settled = []string{vigilv1.ApprovalUsed, vigilv1.ApprovalNotSealed, vigilv1.ApprovalSealBroken,
	vigilv1.ApprovalExpired, vigilv1.ApprovalNotWaiting}

// planApprovals writes each Approval's status from its judgment: who made
// it (from its seal), when it expires, whether it counts and why, and when
// the Rollout used it. Only the controller writes an Approval's status,
// and it never reads it back as evidence: the seal is the evidence.
func planApprovals(s *scope) []change {
	mine := make([]*vigilv1.Approval, 0, len(s.approvals))
	for i := range s.approvals {
		if a := &s.approvals[i]; a.Spec.RolloutRef.Name == s.rollout.Name && !final(s, a) {
			mine = append(mine, a)
		}
	}
	judged := make(map[*vigilv1.Approval]judgment, len(mine))
	for _, a := range mine {
		judged[a] = s.judge(a)
	}
	slices.SortFunc(mine, func(x, y *vigilv1.Approval) int {
		return admissionOrder(x, y, admittedAt(judged[x]), admittedAt(judged[y]))
	})
	var out []change
	seen := map[string]bool{}
	for _, a := range mine {
		j := judged[a]
		if j.counts {
			who := string(a.Spec.Decision) + "/" + j.id.User
			if seen[who] {
				j.reason, j.message = vigilv1.ApprovalDuplicate, j.id.User+" already counts for this wait; another Approval by the same person adds nothing"
			}
			seen[who] = true
			s.wakeIn(j.expires.Sub(s.now))
		}
		if st := approvalStatus(s, a, j); st != nil {
			out = append(out, change{kind: writeApproval, approval: a, approvalStatus: st})
		}
	}
	return out
}

func admittedAt(j judgment) string {
	if j.id == nil {
		return ""
	}
	return j.id.At
}

// final tells whether a's status needs no more writes, so it is not even
// judged again: its Counted reason is settled, and either it is Used or
// the Rollout has not used it (only Used may follow a settled reason).
func final(s *scope, a *vigilv1.Approval) bool {
	c := meta.FindStatusCondition(a.Status.Conditions.Conditions, vigilv1.ConditionCounted)
	if c == nil || !slices.Contains(settled, c.Reason) {
		return false
	}
	return c.Reason == vigilv1.ApprovalUsed || !slices.Contains(s.rollout.Status.UsedApprovals, a.Name)
}

// approvalStatus is a's status as j says, or nil when it needs no write.
func approvalStatus(s *scope, a *vigilv1.Approval, j judgment) *vigilv1.ApprovalStatus {
	st := a.Status.DeepCopy()
	if j.id != nil {
		st.Approver = j.id.User
		st.ExpiresAt = ptr.To(metav1.NewTime(j.expires.Truncate(time.Second)))
	}
	if j.reason == vigilv1.ApprovalUsed && st.ConsumedAt == nil {
		st.ConsumedAt = ptr.To(metav1.NewTime(s.now))
	}
	status := metav1.ConditionFalse
	if j.counts || j.reason == vigilv1.ApprovalUsed {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&st.Conditions.Conditions, metav1.Condition{Type: vigilv1.ConditionCounted, Status: status,
		Reason: j.reason, Message: outcome.Shorten(j.message, 1024), ObservedGeneration: a.Generation, LastTransitionTime: metav1.NewTime(s.now)})
	if equality.Semantic.DeepEqual(st, &a.Status) {
		return nil
	}
	return st
}
