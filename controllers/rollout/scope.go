package rollout

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/skeleton"
	proof "github.com/vigil-dev/vigil/evidence"
	"github.com/vigil-dev/vigil/traffic"
)

// scope is what one reconcile of a Rollout observed and decided. The
// controller fills the observed part; decide, plan and check are pure
// functions of it.
type scope struct {
	now time.Time
	// rollout is the live object; decide edits its status in place, and the
	// controller patches the difference once, at the end.
	rollout *vigilv1.Rollout

	// replicas, maxSurge and maxUnavailable resolved against replicas.
	replicas, maxSurge, maxUnavailable int32
	// checksum of the pod template and the revision it runs as.
	checksum, revision string
	// sets are the ReplicaSets the Rollout owns.
	sets []*appsv1.ReplicaSet
	// approvals are the Approvals that name the Rollout.
	approvals []vigilv1.Approval
	// key opens the seals of Approvals; one that does not open counts for
	// nothing.
	key proof.Key
	// runs are the AnalysisRuns the Rollout owns, by name.
	runs map[string]*vigilv1.AnalysisRun
	// runSpecs are the AnalysisRuns the status wants that do not exist yet,
	// resolved from their templates; runErrors say why one could not be.
	runSpecs  map[string]*vigilv1.AnalysisRun
	runErrors map[string]error
	// pinned maps each image of the template to the repository@digest the
	// provenance gate verified; nil without a TrustPolicy.
	pinned map[string]string
	// records are the Rollout's ReleaseRecords; writeEvidence appends to
	// them in place.
	records []vigilv1.ReleaseRecord
	// signer signs records as they are finalised; nil signs nothing.
	signer *proof.Signer
	// checkpointMoved: prune moved status.evidenceCheckpoint, which the
	// status must hold before any record behind it is deleted.
	checkpointMoved bool
	// readLive: every object of the Rollout is read from the API server,
	// not the cache (the first reconcile of a Rollout older than the
	// process; see expectations).
	readLive bool
	// gateway is set when traffic is routed by an HTTPRoute.
	gateway *gatewayTraffic

	// notes are the Events and metrics to record once the status patch
	// has succeeded.
	notes *skeleton.Notes
	// decided is set when decide changed what the Rollout should do (its
	// revisions, step, rollback or used approvals). The decision is then
	// patched before anything acts on it, so the world never runs ahead of
	// the status.
	decided bool
	// advancedFrom is the step this reconcile moved past, or -1.
	advancedFrom int32
	// requeueAfter is when a time-based gate (pause, deadline, scale-down
	// delay) next needs a look; zero means no timer.
	requeueAfter time.Duration
}

// gatewayTraffic is the Gateway API objects of a Rollout.
type gatewayTraffic struct {
	route                        *gatewayv1.HTTPRoute
	view                         traffic.Route
	stableService, canaryService *corev1.Service
}

func (s *scope) record(warning bool, reason, action, format string, args ...any) {
	s.recordAbout(nil, warning, reason, action, format, args...)
}

// recordAbout records an Event about the Rollout that names a related
// object: Events about different objects are never merged.
func (s *scope) recordAbout(related runtime.Object, warning bool, reason, action, format string, args ...any) {
	s.note().Event(s.rollout, related, warning, reason, action, format, args...)
}

// metric notes a change to metrics, made once the status is stored.
func (s *scope) metric(f func()) { s.note().Metric(f) }

func (s *scope) note() *skeleton.Notes {
	if s.notes == nil {
		s.notes = &skeleton.Notes{}
	}
	return s.notes
}

// minWake is the shortest wait wakeIn asks for: a timer is precise (a
// progress deadline rolls back within it), and never a hot loop.
const minWake = 20 * time.Millisecond

// wakeIn asks for another reconcile after d at the latest.
func (s *scope) wakeIn(d time.Duration) {
	d = max(d, minWake)
	if s.requeueAfter == 0 || d < s.requeueAfter {
		s.requeueAfter = d
	}
}

// set is the ReplicaSet running revision, or nil.
func (s *scope) set(revision string) *appsv1.ReplicaSet {
	if revision == "" {
		return nil
	}
	for _, rs := range s.sets {
		if revisionOf(rs) == revision {
			return rs
		}
	}
	return nil
}

func (s *scope) steps() []vigilv1.CanaryStep {
	return s.rollout.Spec.Strategy.Canary.Steps
}

// stepIndex is status.currentStepIndex (0 when unset).
func (s *scope) stepIndex() int32 {
	if s.rollout.Status.CurrentStepIndex == nil {
		return 0
	}
	return *s.rollout.Status.CurrentStepIndex
}

// weightAt is the canary weight in force at step i: that of the last
// setWeight step at or before it, and 100 once every step has passed.
func weightAt(steps []vigilv1.CanaryStep, i int32) int32 {
	if int(i) >= len(steps) {
		return 100
	}
	for j := i; j >= 0; j-- {
		if steps[j].SetWeight != nil {
			return *steps[j].SetWeight
		}
	}
	return 0
}

// wantedWeight is the canary weight the Rollout's status asks for now.
func (s *scope) wantedWeight() int32 {
	st := s.rollout.Status
	if st.CanaryRevision == "" || st.Rollback != nil {
		return 0
	}
	return weightAt(s.steps(), s.stepIndex())
}

// scaleDownDelay is how long a rolled-back canary keeps its pods.
func (s *scope) scaleDownDelay() time.Duration {
	if rb := s.rollout.Spec.Rollback; rb != nil && rb.AbortScaleDownDelaySeconds != nil {
		return time.Duration(*rb.AbortScaleDownDelaySeconds) * time.Second
	}
	return 30 * time.Second
}

// progressDeadline is how long a step may wait for its pods.
func (s *scope) progressDeadline() time.Duration {
	if d := s.rollout.Spec.ProgressDeadlineSeconds; d != nil {
		return time.Duration(*d) * time.Second
	}
	return 600 * time.Second
}

// stepStarted is when the current step began; a status without the time
// (written by hand) counts from now.
func (s *scope) stepStarted() time.Time {
	if t := s.rollout.Status.CurrentStepStartedAt; t != nil {
		return t.Time
	}
	return s.now
}
