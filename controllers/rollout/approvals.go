package rollout

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	proof "github.com/vigil-dev/vigil/evidence"
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

// counted is an Approval that counts, with the identity its seal holds.
type counted struct {
	a  *vigilv1.Approval
	id proof.Identity
}

// judgment says whether an Approval counts now, and why.
type judgment struct {
	counts          bool
	reason, message string
	// id and expires are set when the seal opened.
	id      *proof.Identity
	expires time.Time
}

// judge decides whether a counts: its seal opens with the controller's key,
// the Rollout has not acted on it, it has not expired, and it answers the
// wait the Rollout is in now (proof.WaitOf). Anything else counts for
// nothing, with the reason its status shows.
func (s *scope) judge(a *vigilv1.Approval) judgment {
	id, err := s.key.Open(a)
	if err != nil {
		reason := vigilv1.ApprovalSealBroken
		if err == proof.ErrNotSealed {
			reason = vigilv1.ApprovalNotSealed
		}
		return judgment{reason: reason, message: capitalize(err.Error())}
	}
	j := judgment{id: &id}
	at, _ := id.AdmittedAt() // Open checked it parses
	j.expires = at.Add(approvalExpiry(s.steps(), a.Spec.Step))
	w, why := proof.WaitOf(s.rollout, a.Spec.Decision)
	switch {
	case a.Status.ConsumedAt != nil || slices.Contains(s.rollout.Status.UsedApprovals, a.Name):
		j.reason, j.message = vigilv1.ApprovalUsed, fmt.Sprintf("Rollout %s acted on this %s of revision %s at step %d; it never counts again",
			s.rollout.Name, a.Spec.Decision, a.Spec.Revision, a.Spec.Step)
	case a.DeletionTimestamp != nil:
		j.reason, j.message = vigilv1.ApprovalNotWaiting, "It is being deleted"
	case !s.now.Before(j.expires):
		j.reason, j.message = vigilv1.ApprovalExpired, fmt.Sprintf("It expired at %s, %s after it was admitted", proof.Time(j.expires), approvalExpiry(s.steps(), a.Spec.Step))
	case why != "":
		j.reason, j.message = vigilv1.ApprovalNotWaiting, why
	case !w.Answers(a.Spec, id):
		j.reason, j.message = vigilv1.ApprovalNotWaiting, fmt.Sprintf("Rollout %s waits for %s; this %s was admitted for revision %s at step %d while it waited since %s",
			s.rollout.Name, w, a.Spec.Decision, a.Spec.Revision, a.Spec.Step, id.Wait)
	default:
		j.counts, j.reason = true, vigilv1.ApprovalCounting
		j.message = fmt.Sprintf("It counts as %s's %s of %s until %s", id.User, a.Spec.Decision, w, proof.Time(j.expires))
	}
	return j
}

// counting returns the Approvals of decision d that count now, in the order
// they were admitted. Only those that name the wait's revision and step
// have their seal opened: older ones never count again.
func (s *scope) counting(d vigilv1.ApprovalDecision) []counted {
	w, why := proof.WaitOf(s.rollout, d)
	if why != "" {
		return nil
	}
	var out []counted
	for i := range s.approvals {
		a := &s.approvals[i]
		if a.Spec.RolloutRef.Name != s.rollout.Name || a.Spec.Decision != d || !w.Names(a.Spec) {
			continue
		}
		if j := s.judge(a); j.counts {
			out = append(out, counted{a: a, id: *j.id})
		}
	}
	slices.SortFunc(out, func(x, y counted) int { return admissionOrder(x.a, y.a, x.id.At, y.id.At) })
	return out
}

// admissionOrder orders Approvals as they were admitted: by the instant
// sealed in them, then (a replayed copy sealed at the same instant comes
// after the older object) by creation, then by name.
func admissionOrder(x, y *vigilv1.Approval, xAt, yAt string) int {
	if c := strings.Compare(xAt, yAt); c != 0 {
		return c
	}
	if c := x.CreationTimestamp.Compare(y.CreationTimestamp.Time); c != 0 {
		return c
	}
	return strings.Compare(x.Name, y.Name)
}

// people counts the distinct users behind approvals: one person approving
// twice is one approval.
func people(approvals []counted) int32 {
	seen := map[string]bool{}
	for _, c := range approvals {
		seen[c.id.User] = true
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

// strictestFrom is the largest quorum of the steps from i on that wait for
// people: what scope Full, which skips them all, must meet.
func strictestFrom(steps []vigilv1.CanaryStep, i int32) (need, at int32) {
	need, at = 1, i
	for j := i; int(j) < len(steps); j++ {
		if r := requiredApprovals(steps, j); proof.WaitsForPeople(steps[j]) && r > need {
			need, at = r, j
		}
	}
	return need, at
}

// waitFor sets status.pendingApproval: the Rollout waits for people to
// approve revision at step. When it already waits for the same, the wait
// keeps its start, which admitted Approvals are sealed with.
func (s *scope) waitFor(revision string, step int32, effect vigilv1.PendingEffect, received, required int32) {
	st := &s.rollout.Status
	since := metav1.NewMicroTime(s.now)
	if p := st.PendingApproval; p != nil && p.Revision == revision && p.Step == step && p.Effect == effect {
		since = p.Since
	}
	st.PendingApproval = &vigilv1.PendingApproval{Revision: revision, Step: step, Since: since, Effect: effect,
		Received: received, Required: required}
}

// use marks approvals as acted on; the controller then marks each consumed.
func (s *scope) use(approvals ...counted) {
	st := &s.rollout.Status
	for _, c := range approvals {
		a := c.a
		if !slices.Contains(st.UsedApprovals, a.Name) {
			st.UsedApprovals = append(st.UsedApprovals, a.Name)
		}
		s.recordAbout(a, false, vigilv1.ReasonApprovalUsed, "Decide", "Used Approval %s by %s (%s of revision %s at step %d)",
			a.Name, c.id.User, a.Spec.Decision, a.Spec.Revision, a.Spec.Step)
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
