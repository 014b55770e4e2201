package rollout

import (
	"slices"
	"strings"
	"time"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// defaultApprovalExpiry is how long an Approval counts when its step does
// not say.
const defaultApprovalExpiry = time.Hour

// approvalExpiry is how long Approvals for step i stay valid.
func approvalExpiry(steps []vigilv1.CanaryStep, i int32) time.Duration {
	if int(i) < len(steps) {
		if a := steps[i].Approval; a != nil && a.Expiry != nil {
			if d, err := a.Expiry.Get(); err == nil {
				return d
			}
		}
	}
	return defaultApprovalExpiry
}

// unused tells whether an Approval can still count: not consumed, not
// already acted on by this Rollout, not being deleted, not expired.
func (s *scope) unused(a *vigilv1.Approval, expiry time.Duration) bool {
	return a.Status.ConsumedAt == nil &&
		!slices.Contains(s.rollout.Status.UsedApprovals, a.Name) &&
		a.DeletionTimestamp == nil &&
		s.now.Before(a.CreationTimestamp.Add(expiry))
}

// decisions returns the unused Approvals of the given decision bound to
// revision and step, oldest first. Any other Approval does nothing.
func (s *scope) decisions(revision string, step int32, decision vigilv1.ApprovalDecision) []*vigilv1.Approval {
	expiry := approvalExpiry(s.steps(), step)
	var out []*vigilv1.Approval
	for i := range s.approvals {
		a := &s.approvals[i]
		if a.Spec.RolloutRef.Name != s.rollout.Name || a.Spec.Revision != revision ||
			a.Spec.Step != step || a.Spec.Decision != decision || !s.unused(a, expiry) {
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *vigilv1.Approval) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// distinctApprovers counts the people behind approvals. Until the admission
// webhook stamps identities, every Approval without one counts as the same
// unknown person, so requiredApprovals above 1 cannot be met by one person
// creating several objects.
func distinctApprovers(approvals []*vigilv1.Approval) int32 {
	seen := map[string]bool{}
	for _, a := range approvals {
		seen[a.Status.Approver] = true
	}
	return int32(len(seen))
}

// requiredApprovals is how many people must approve step i.
func requiredApprovals(steps []vigilv1.CanaryStep, i int32) int32 {
	if a := steps[i].Approval; a != nil && a.RequiredApprovals > 0 {
		return a.RequiredApprovals
	}
	return 1
}

// use marks approvals as acted on; the controller then marks each consumed.
func (s *scope) use(approvals ...*vigilv1.Approval) {
	st := &s.rollout.Status
	for _, a := range approvals {
		if !slices.Contains(st.UsedApprovals, a.Name) {
			st.UsedApprovals = append(st.UsedApprovals, a.Name)
		}
		s.recordAbout(a, false, vigilv1.ReasonApprovalUsed, "Decide", "Used Approval %s (%s of revision %s at step %d)",
			a.Name, a.Spec.Decision, a.Spec.Revision, a.Spec.Step)
	}
}

// forgetConsumed drops from usedApprovals the Approvals that are now marked
// consumed or gone.
func (s *scope) forgetConsumed() {
	st := &s.rollout.Status
	st.UsedApprovals = slices.DeleteFunc(st.UsedApprovals, func(name string) bool {
		i := slices.IndexFunc(s.approvals, func(a vigilv1.Approval) bool { return a.Name == name })
		return i < 0 || s.approvals[i].Status.ConsumedAt != nil
	})
	if len(st.UsedApprovals) == 0 {
		st.UsedApprovals = nil
	}
}
