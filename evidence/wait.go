package evidence

import (
	"fmt"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// Wait is what a decision answers: a revision at a step, since the instant
// the Rollout began waiting. The admission webhook seals Since into the
// Approval; the controller counts it only while the Rollout still waits
// with that Since, so an Approval made before its wait began, or kept from
// an earlier one, never counts.
type Wait struct {
	Revision string
	Step     int32
	Since    string
	Effect   vigilv1.PendingEffect
}

// WaitOf is the wait a decision of kind d answers on ro now. An Approve
// answers status.pendingApproval; a Reject answers the canary at its
// current step, whatever the step is (that is how a release is aborted).
// Without one, why says what the Rollout is doing instead.
func WaitOf(ro *vigilv1.Rollout, d vigilv1.ApprovalDecision) (w Wait, why string) {
	st := &ro.Status
	if d == vigilv1.ApprovalApprove {
		p := st.PendingApproval
		if p == nil {
			return Wait{}, fmt.Sprintf("Rollout %s waits for no approval now (%s: %s)", ro.Name, phaseOf(st), st.Message)
		}
		return Wait{Revision: p.Revision, Step: p.Step, Since: Time(p.Since.Time), Effect: p.Effect}, ""
	}
	switch {
	case st.CanaryRevision == "":
		return Wait{}, fmt.Sprintf("Rollout %s has no canary to reject (%s: %s)", ro.Name, phaseOf(st), st.Message)
	case st.Rollback != nil:
		return Wait{}, fmt.Sprintf("Rollout %s is already rolling revision %s back (%s: %s)", ro.Name, st.Rollback.Revision, phaseOf(st), st.Message)
	case st.CurrentStepStartedAt == nil:
		return Wait{}, fmt.Sprintf("Rollout %s has not started a step of revision %s yet", ro.Name, st.CanaryRevision)
	}
	step := int32(0)
	if st.CurrentStepIndex != nil {
		step = *st.CurrentStepIndex
	}
	return Wait{Revision: st.CanaryRevision, Step: step, Since: Time(st.CurrentStepStartedAt.Time)}, ""
}

func phaseOf(st *vigilv1.RolloutStatus) string {
	if st.Phase == "" {
		return "no phase yet"
	}
	return string(st.Phase)
}

// Names tells whether spec names this wait's revision and step.
func (w Wait) Names(spec vigilv1.ApprovalSpec) bool {
	return spec.Revision == w.Revision && spec.Step == w.Step
}

// Answers tells whether an Approval with this spec and sealed identity
// answers this wait.
func (w Wait) Answers(spec vigilv1.ApprovalSpec, id Identity) bool {
	return w.Names(spec) && id.Wait == w.Since
}

func (w Wait) String() string {
	return fmt.Sprintf("revision %s at step %d (waiting since %s)", w.Revision, w.Step, w.Since)
}

// WaitsForPeople tells whether a step waits for an Approval: an approval
// step, or a pause without a duration.
func WaitsForPeople(step vigilv1.CanaryStep) bool {
	return step.Approval != nil || (step.Pause != nil && step.Pause.Duration == nil)
}
