package rollout

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// stall is a reason the Rollout cannot go on without a person changing
// something.
type stall struct {
	reason, message string
}

// summary is what the conditions are computed from.
type summary struct {
	phase      vigilv1.RolloutPhase
	message    string
	settled    bool   // the world matches the status
	approval   bool   // the Rollout waits for an Approval
	stalled    *stall // bad or unsupported input
	writeError error  // a write of this reconcile failed or timed out
	generation int64
}

// setConditions writes Ready, Progressing, Reconciling and Stalled the way
// kstatus reads them: Ready summarises, Reconciling and Stalled are present
// only while true.
func setConditions(conds *[]metav1.Condition, in summary) {
	set := func(typ string, status metav1.ConditionStatus, reason, message string) {
		meta.SetStatusCondition(conds, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: in.generation})
	}
	reconciling := func(reason, message string) {
		set(vigilv1.ConditionReconciling, metav1.ConditionTrue, reason, message)
		meta.RemoveStatusCondition(conds, vigilv1.ConditionStalled)
	}
	stalled := func(reason, message string) {
		set(vigilv1.ConditionStalled, metav1.ConditionTrue, reason, message)
		meta.RemoveStatusCondition(conds, vigilv1.ConditionReconciling)
	}
	switch {
	case in.stalled != nil:
		set(vigilv1.ConditionReady, metav1.ConditionFalse, in.stalled.reason, in.stalled.message)
		set(vigilv1.ConditionProgressing, metav1.ConditionFalse, in.stalled.reason, in.stalled.message)
		stalled(in.stalled.reason, in.stalled.message)
	case in.writeError != nil:
		msg := "A write failed or timed out; the next reconcile re-reads before acting again: " + in.writeError.Error()
		set(vigilv1.ConditionReady, metav1.ConditionFalse, vigilv1.ReasonWriteUnknown, msg)
		reconciling(vigilv1.ReasonWriteUnknown, msg)
	case in.phase == vigilv1.RolloutPhasePromoted && in.settled:
		set(vigilv1.ConditionReady, metav1.ConditionTrue, vigilv1.ReasonPromoted, in.message)
		set(vigilv1.ConditionProgressing, metav1.ConditionTrue, vigilv1.ReasonPromoted, in.message)
		meta.RemoveStatusCondition(conds, vigilv1.ConditionReconciling)
		meta.RemoveStatusCondition(conds, vigilv1.ConditionStalled)
	case in.phase == vigilv1.RolloutPhaseRolledBack:
		set(vigilv1.ConditionReady, metav1.ConditionFalse, vigilv1.ReasonRolledBack, in.message)
		set(vigilv1.ConditionProgressing, metav1.ConditionFalse, vigilv1.ReasonRolledBack, in.message)
		stalled(vigilv1.ReasonRolledBack, in.message)
	case in.phase == vigilv1.RolloutPhaseRollingBack:
		set(vigilv1.ConditionReady, metav1.ConditionFalse, vigilv1.ReasonRollingBack, in.message)
		set(vigilv1.ConditionProgressing, metav1.ConditionFalse, vigilv1.ReasonRollingBack, in.message)
		reconciling(vigilv1.ReasonRollingBack, in.message)
	case in.phase == vigilv1.RolloutPhasePaused:
		reason := vigilv1.ReasonPaused
		if in.approval {
			reason = vigilv1.ReasonWaitingForApproval
		}
		set(vigilv1.ConditionReady, metav1.ConditionFalse, reason, in.message)
		set(vigilv1.ConditionProgressing, metav1.ConditionTrue, reason, in.message)
		reconciling(reason, in.message)
	default:
		set(vigilv1.ConditionReady, metav1.ConditionFalse, vigilv1.ReasonProgressing, in.message)
		set(vigilv1.ConditionProgressing, metav1.ConditionTrue, vigilv1.ReasonProgressing, in.message)
		reconciling(vigilv1.ReasonProgressing, in.message)
	}
}
