package gitsync

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/outcome"
)

// targetRev is the commit the sync step made the cluster match, or "".
func (s *scope) targetRev() string {
	if s.target == nil {
		return ""
	}
	return s.target.rev
}

// setConditions computes the GitSync's conditions from what the reconcile
// learned (its scope, which nothing here changes) and the conditions it
// had; s.now dates a drift's revert.
//
//   - Ready: False while suspended; from the fetch's outcome when the ref's
//     commit was refused (False, with Stalled) or not reached (Unknown);
//     then overridden by the sync step: False while its waves are under
//     way (with Reconciling, unless Stalled) or when it failed, True once the ref's commit
//     is applied. A sync step that did not run leaves Ready as it was.
//   - Drifted: True when objects differ from Git and selfHeal is off, or
//     objects Git dropped are kept because prune is off; False otherwise,
//     keeping DriftReverted until new drift is found.
func setConditions(s *scope) {
	gs, now := s.gs, s.now
	conds := &gs.Status.Conditions.Conditions
	set := func(t string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(conds, metav1.Condition{Type: t, Status: status, Reason: reason, Message: outcome.Shorten(msg, 2048), ObservedGeneration: gs.Generation})
	}
	if s.suspended {
		set(vigilv1.ConditionReady, metav1.ConditionFalse, vigilv1.ReasonSuspended, "spec.suspend is set; nothing is fetched or applied")
		meta.RemoveStatusCondition(conds, vigilv1.ConditionReconciling)
		return
	}
	switch o := s.fetched; o.Result {
	case outcome.Success:
		meta.RemoveStatusCondition(conds, vigilv1.ConditionStalled)
	case outcome.Failure:
		set(vigilv1.ConditionStalled, metav1.ConditionTrue, o.Reason, o.Message)
		set(vigilv1.ConditionReady, metav1.ConditionFalse, o.Reason, o.Message)
	default:
		set(vigilv1.ConditionReady, metav1.ConditionUnknown, o.Reason, o.Message)
	}
	if s.checked {
		setDrift(conds, set, s)
	}
	switch s.synced {
	case syncUnderway:
		msg := "syncing commit " + short(s.targetRev()) + ": " + s.syncMessage
		if s.fetched.Result != outcome.Failure { // kstatus: never Reconciling while Stalled
			set(vigilv1.ConditionReconciling, metav1.ConditionTrue, vigilv1.ReasonSyncing, msg)
		}
		set(vigilv1.ConditionReady, metav1.ConditionFalse, vigilv1.ReasonSyncing, msg)
	case syncFailed:
		meta.RemoveStatusCondition(conds, vigilv1.ConditionReconciling)
		set(vigilv1.ConditionReady, metav1.ConditionFalse, vigilv1.ReasonSyncFailed, "commit "+short(s.targetRev())+" failed to sync: "+s.syncMessage)
	case syncSucceeded, syncInSync:
		meta.RemoveStatusCondition(conds, vigilv1.ConditionReconciling)
		if s.healed {
			set(vigilv1.ConditionDrifted, metav1.ConditionFalse, vigilv1.ReasonDriftReverted,
				"drift reverted at "+now.UTC().Format(time.RFC3339)+": "+driftList(s.drift, nil))
		}
		if s.fresh {
			set(vigilv1.ConditionReady, metav1.ConditionTrue, vigilv1.ReasonSynced, "applied commit "+short(s.targetRev()))
		}
	}
}

// setDrift sets the Drifted condition from the drift the sync step found.
func setDrift(conds *[]metav1.Condition, set func(string, metav1.ConditionStatus, string, string), s *scope) {
	keep := s.extra
	if s.gs.Spec.Prune {
		keep = nil
	}
	if (len(s.drift) == 0 || s.gs.Spec.SelfHeal) && len(keep) == 0 {
		c := meta.FindStatusCondition(*conds, vigilv1.ConditionDrifted)
		if c == nil || c.Reason != vigilv1.ReasonDriftReverted || len(s.drift) > 0 {
			set(vigilv1.ConditionDrifted, metav1.ConditionFalse, vigilv1.ReasonNoDrift, "every object matches Git")
		}
		return
	}
	var reported []gitops.Drift
	if !s.gs.Spec.SelfHeal {
		reported = s.drift
	}
	set(vigilv1.ConditionDrifted, metav1.ConditionTrue, vigilv1.ReasonDriftDetected, driftList(reported, keep))
}

// announce notes the Events and metrics of what changed between the status
// that was read and the one the reconcile made.
func announce(s *scope, before *vigilv1.GitSyncStatus) {
	gs, n := s.gs, s.notes
	if rev := gs.Status.LastAttemptedRevision; rev != "" && rev != before.LastAttemptedRevision {
		n.Event(gs, nil, false, vigilv1.ReasonNewRevision, "Fetch", "Fetched commit %s of %s", short(rev), gs.Spec.URL)
	}
	if rev := gs.Status.LastAppliedRevision; rev != "" && rev != before.LastAppliedRevision {
		n.Event(gs, nil, false, vigilv1.ReasonApplied, "Sync", "Applied commit %s (%d objects)", short(rev), len(gs.Status.Resources))
	}
	if s.healed {
		n.Metric(drifts.WithLabelValues("Reverted").Inc)
		n.Event(gs, nil, false, vigilv1.ReasonDriftReverted, "Revert", "Re-applied %d object(s) that had drifted from commit %s: %s",
			len(s.drift), short(s.target.rev), driftList(s.drift, nil))
	}
	now := meta.FindStatusCondition(gs.Status.Conditions.Conditions, vigilv1.ConditionReady)
	was := meta.FindStatusCondition(before.Conditions.Conditions, vigilv1.ConditionReady)
	if now != nil && now.Status == metav1.ConditionFalse && now.Reason != vigilv1.ReasonSyncing && now.Reason != vigilv1.ReasonSuspended &&
		(was == nil || was.Reason != now.Reason || was.Message != now.Message) {
		n.Event(gs, nil, true, now.Reason, "Sync", "%s", now.Message)
	}
	d := meta.FindStatusCondition(gs.Status.Conditions.Conditions, vigilv1.ConditionDrifted)
	wasD := meta.FindStatusCondition(before.Conditions.Conditions, vigilv1.ConditionDrifted)
	if d != nil && d.Status == metav1.ConditionTrue && (wasD == nil || wasD.Status != metav1.ConditionTrue || wasD.Message != d.Message) {
		n.Metric(drifts.WithLabelValues("Reported").Inc)
		n.Event(gs, nil, true, vigilv1.ReasonDriftDetected, "Compare", "Objects differ from Git: %s", d.Message)
	}
}
