package rollout

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// decide moves the Rollout's status forward from what the reconcile
// observed. ev is what the cluster shows of the world the status asked for
// before this decision (observeEvidence): a gate that needs pods and
// traffic in place passes on it and on nothing else. decide only edits the
// status; the controller then makes the world match. Each call makes at
// most one decision, so a replay of the same observation decides the same
// thing. A Rollout being deleted decides nothing.
func decide(s *scope, ev evidence) {
	st := &s.rollout.Status
	s.advancedFrom = -1
	if s.rollout.DeletionTimestamp != nil {
		return
	}
	s.forgetConsumed()
	switch {
	case st.StableRevision == "", st.StableRevision != s.revision && len(st.History) == 0 && s.set(st.StableRevision) == nil:
		// The first revision has nothing to be canaried against; nor has
		// a new template when nothing was ever promoted and the first
		// revision never got a ReplicaSet: it becomes the first revision.
		dropCanary(st)
		st.StableRevision = s.revision
		s.decided = true
		setPhase(s, vigilv1.RolloutPhaseProgressing, "Deploying the first revision %s", s.revision)
	case s.revision == st.StableRevision:
		decideStable(s, ev)
	case s.rollout.Spec.Paused:
		setPhase(s, vigilv1.RolloutPhasePaused, "Paused by spec.paused")
	case st.CanaryRevision != s.revision:
		startCanary(s)
	case st.Rollback != nil:
		decideRolledBack(s)
	default:
		decideStep(s, ev)
	}
}

// decideStable handles a template equal to the stable revision: a canary
// that was abandoned by reverting the template ends, and the Rollout is
// promoted once the stable revision is fully up.
func decideStable(s *scope, ev evidence) {
	st := &s.rollout.Status
	if st.CanaryRevision != "" {
		s.record(false, vigilv1.ReasonPromoted, "Abandon", "The template is back at stable revision %s; canary %s is abandoned", st.StableRevision, st.CanaryRevision)
		dropCanary(st)
		st.CurrentStepIndex = ptr.To(int32(len(s.steps())))
		s.decided = true
		setPhase(s, vigilv1.RolloutPhaseProgressing, "Waiting for stable revision %s to serve everything", st.StableRevision)
		return
	}
	st.CurrentStepIndex = ptr.To(int32(len(s.steps())))
	if !ev.reached {
		if st.Phase != vigilv1.RolloutPhasePromoted {
			setPhase(s, vigilv1.RolloutPhaseProgressing, "Waiting for stable revision %s to serve everything: %s", st.StableRevision, ev.missing)
		}
		return
	}
	if st.Phase != vigilv1.RolloutPhasePromoted {
		s.record(false, vigilv1.ReasonPromoted, "Promote", "Revision %s is stable and fully available", st.StableRevision)
		if len(st.History) == 0 {
			addHistory(s, st.StableRevision, vigilv1.RolloutPhasePromoted) // the first revision
		}
	}
	setPhase(s, vigilv1.RolloutPhasePromoted, "Revision %s is stable", st.StableRevision)
}

func clearCanary(st *vigilv1.RolloutStatus) {
	st.CanaryRevision = ""
	st.Rollback = nil
	st.PendingApproval = nil
	st.CurrentStepStartedAt = nil
}

// dropCanary forgets a canary that did not become stable: its bookkeeping,
// its analysis and its share of traffic. (A promotion keeps the analysis
// that promoted it: clearCanary.)
func dropCanary(st *vigilv1.RolloutStatus) {
	clearCanary(st)
	st.Analysis, st.BackgroundAnalysis = nil, nil
	st.CanaryWeight = 0
}

// startCanary begins a new revision at step 0, with nothing of a canary
// it replaces left in the status: no weights, approval or analysis.
func startCanary(s *scope) {
	st := &s.rollout.Status
	dropCanary(st)
	st.CanaryRevision = s.revision
	s.decided = true
	st.CurrentStepIndex = ptr.To(int32(0))
	st.CurrentStepStartedAt = ptr.To(metav1.NewMicroTime(s.now))
	s.record(false, vigilv1.ReasonCanaryStarted, "Start", "Canary revision %s started against stable revision %s", s.revision, st.StableRevision)
	setPhase(s, vigilv1.RolloutPhaseProgressing, "Canary %s at step 0", s.revision)
}

// decideRolledBack finishes a rollback once traffic is back on the stable
// revision, and retries the revision when someone approves its step 0 after
// the rollback began.
func decideRolledBack(s *scope) {
	st := &s.rollout.Status
	rb := st.Rollback
	if p := st.PendingApproval; p != nil && p.Effect == vigilv1.EffectRetryRevision {
		if retry := s.counting(vigilv1.ApprovalApprove); len(retry) > 0 {
			c := retry[0]
			s.use(c)
			s.decided = true
			st.Rollback = nil
			st.PendingApproval = nil
			// The retry runs every analysis afresh, as new attempts.
			st.Analysis, st.BackgroundAnalysis = nil, nil
			st.CurrentStepIndex = ptr.To(int32(0))
			st.CurrentStepStartedAt = ptr.To(metav1.NewMicroTime(s.now))
			s.record(false, vigilv1.ReasonRetryApproved, "Retry", "Approval %s by %s retries revision %s from step 0", c.a.Name, c.id.User, st.CanaryRevision)
			setPhase(s, vigilv1.RolloutPhaseProgressing, "Canary %s retried at step 0", st.CanaryRevision)
			return
		}
	}
	if !trafficOnStable(s) {
		setPhase(s, vigilv1.RolloutPhaseRollingBack, "Rolling back revision %s (%s)", rb.Revision, rb.Trigger)
		return
	}
	if st.Phase != vigilv1.RolloutPhaseRolledBack {
		s.record(true, vigilv1.ReasonRolledBack, "Rollback", "Revision %s rolled back (%s); stable revision %s serves all traffic", rb.Revision, rb.Trigger, st.StableRevision)
		addHistory(s, rb.Revision, vigilv1.RolloutPhaseRolledBack)
	}
	// The retry wait begins once the rollback is done: an Approval admitted
	// earlier answers another wait and never retries the revision.
	s.waitFor(rb.Revision, 0, vigilv1.EffectRetryRevision, 0, 1)
	setPhase(s, vigilv1.RolloutPhaseRolledBack, "Revision %s rolled back (%s): %s. Approve it at step 0 to retry (kubectl vigil retry %s)", rb.Revision, rb.Trigger, rb.Message, s.rollout.Name)
}

// decideStep runs the gate of the current step.
func decideStep(s *scope, ev evidence) {
	st := &s.rollout.Status
	i := s.stepIndex()
	steps := s.steps()
	if rejects := s.counting(vigilv1.ApprovalReject); len(rejects) > 0 {
		c := rejects[0]
		s.use(c)
		rollback(s, vigilv1.RollbackTriggerRejected, fmt.Sprintf("Approval %s by %s rejected it: %s", c.a.Name, c.id.User, c.a.Spec.Reason))
		return
	}
	if decideBackground(s, i) {
		return
	}
	if !ev.reached {
		waitForPods(s, i, ev.missing)
		return
	}
	if int(i) >= len(steps) {
		if ok, why := backgroundHasEvidence(s); !ok {
			st.PendingApproval = nil
			setPhase(s, vigilv1.RolloutPhaseProgressing, "Canary %s passed every step; promotion waits for evidence: %s", st.CanaryRevision, why)
			return
		}
		promote(s)
		return
	}
	step := steps[i]
	switch {
	case step.Analysis != nil:
		decideAnalysisStep(s, i)
	case step.SetWeight != nil:
		advance(s, i+1)
	case step.Pause != nil && step.Pause.Duration != nil:
		d, _ := step.Pause.Duration.Get()
		if left := s.stepStarted().Add(d).Sub(s.now); left > 0 {
			s.wakeIn(left)
			st.PendingApproval = nil
			setPhase(s, vigilv1.RolloutPhasePaused, "Canary %s pausing %s at step %d", st.CanaryRevision, *step.Pause.Duration, i)
			return
		}
		advance(s, i+1)
	default: // an approval step, or a pause without a duration
		decideApproval(s, i)
	}
}

// waitForPods waits for the step's pods and traffic, and rolls back once
// the step has waited longer than progressDeadlineSeconds.
func waitForPods(s *scope, i int32, missing string) {
	st := &s.rollout.Status
	// A wait for people at this step outlives a pod that flaps: Approvals
	// admitted for it still count once the pods are back.
	if p := st.PendingApproval; p == nil || p.Revision != st.CanaryRevision || p.Step != i {
		st.PendingApproval = nil
	}
	deadline := s.stepStarted().Add(s.progressDeadline())
	if !s.now.Before(deadline) {
		rollback(s, vigilv1.RollbackTriggerProgressDeadline,
			fmt.Sprintf("step %d made no progress within %s", i, s.progressDeadline()))
		return
	}
	s.wakeIn(deadline.Sub(s.now))
	setPhase(s, vigilv1.RolloutPhaseProgressing, "Canary %s at step %d, waiting for pods and traffic: %s", st.CanaryRevision, i, missing)
}

// decideApproval passes step i once enough people approved it. Approvals
// of scope Full skip the remaining steps only when as many people gave one
// as the strictest remaining step that waits for people needs; otherwise
// they pass this step alone.
func decideApproval(s *scope, i int32) {
	st := &s.rollout.Status
	approvals := s.counting(vigilv1.ApprovalApprove)
	required := requiredApprovals(s.steps(), i)
	if got := people(approvals); got < required {
		s.waitFor(st.CanaryRevision, i, vigilv1.EffectPassStep, got, required)
		setPhase(s, vigilv1.RolloutPhasePaused, "Canary %s waits for approval of step %d (%d of %d)", st.CanaryRevision, i, got, required)
		return
	}
	s.use(approvals...)
	next := i + 1
	full := slices.DeleteFunc(slices.Clone(approvals), func(c counted) bool { return c.a.Spec.Scope != vigilv1.ApprovalScopeFull })
	if len(full) > 0 {
		need, at := strictestFrom(s.steps(), i)
		if got := people(full); got >= need {
			next = int32(len(s.steps()))
		} else {
			s.record(true, vigilv1.ReasonApprovalUsed, "Decide", "Scope Full came from %d of the %d people step %d needs; passing step %d only", got, need, at, i)
		}
	}
	advance(s, next)
}

// advance moves the canary to step next.
func advance(s *scope, next int32) {
	st := &s.rollout.Status
	from := s.stepIndex()
	s.advancedFrom = from
	s.decided = true
	st.CurrentStepIndex = ptr.To(next)
	st.CurrentStepStartedAt = ptr.To(metav1.NewMicroTime(s.now))
	st.PendingApproval = nil
	s.record(false, vigilv1.ReasonStepCompleted, "Advance", "Canary %s passed step %d; now at step %d of %d", st.CanaryRevision, from, next, len(s.steps()))
	setPhase(s, vigilv1.RolloutPhaseProgressing, "Canary %s at step %d", st.CanaryRevision, next)
}

// promote makes the canary the stable revision.
func promote(s *scope) {
	st := &s.rollout.Status
	revision := st.CanaryRevision
	s.advancedFrom = int32(len(s.steps()))
	st.StableRevision = revision
	s.decided = true
	clearCanary(st)
	addHistory(s, revision, vigilv1.RolloutPhasePromoted)
	s.record(false, vigilv1.ReasonPromoted, "Promote", "Revision %s promoted to stable", revision)
	setPhase(s, vigilv1.RolloutPhasePromoted, "Revision %s is stable", revision)
}

// rollback is the one way a canary revision is rolled back, whatever the
// trigger: the status records why, and from then on the controller sends
// all traffic to the stable revision first and scales the canary down
// abortScaleDownDelaySeconds later.
func rollback(s *scope, trigger vigilv1.RollbackTrigger, message string) {
	st := &s.rollout.Status
	st.Rollback = &vigilv1.RollbackStatus{
		Revision:  st.CanaryRevision,
		Trigger:   trigger,
		Message:   message,
		StartedAt: metav1.NewTime(s.now),
		Step:      s.stepIndex(),
	}
	s.decided = true
	st.PendingApproval = nil
	s.record(true, vigilv1.ReasonRollingBack, "Rollback", "Rolling back revision %s (%s): %s", st.CanaryRevision, trigger, message)
	setPhase(s, vigilv1.RolloutPhaseRollingBack, "Rolling back revision %s (%s)", st.CanaryRevision, trigger)
}

// maxHistory is the length of status.history.
const maxHistory = 10

func addHistory(s *scope, revision string, outcome vigilv1.RolloutPhase) {
	st := &s.rollout.Status
	var images []string
	if rs := s.set(revision); rs != nil {
		for _, c := range rs.Spec.Template.Spec.Containers {
			images = append(images, c.Image)
		}
		images = images[:min(len(images), 32)]
	}
	entry := vigilv1.RevisionHistory{Revision: revision, Images: images, Outcome: outcome, Time: metav1.NewTime(s.now)}
	st.History = append([]vigilv1.RevisionHistory{entry}, st.History...)
	if len(st.History) > maxHistory {
		st.History = st.History[:maxHistory]
	}
}

func setPhase(s *scope, phase vigilv1.RolloutPhase, format string, args ...any) {
	s.rollout.Status.Phase = phase
	s.rollout.Status.Message = fmt.Sprintf(format, args...)
}
