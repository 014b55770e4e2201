package rollout

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/provenance"
)

var (
	phaseGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vigil_rollout_phase",
		Help: "1 for the phase each Rollout is in, 0 for the others.",
	}, []string{"namespace", "rollout", "phase"})
	stepTransitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_rollout_step_transitions_total",
		Help: "Canary steps passed, by the kind of step.",
	}, []string{"step"})
	rollbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_rollout_rollbacks_total",
		Help: "Rollbacks started, by trigger.",
	}, []string{"trigger"})
	reconcileErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_rollout_reconcile_errors_total",
		Help: "Reconciles of Rollouts that ended in an error, by reason: WriteUnknown (a write timed out or failed; the next reconcile re-reads), Conflict, Read.",
	}, []string{"reason"})
	invariantViolations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_invariant_violations_total",
		Help: "Safety invariants found broken after a reconcile; any value above 0 is a bug.",
	}, []string{"invariant"})
	apiWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_rollout_api_writes_total",
		Help: "Writes the Rollout controller sent to the API server, by kind of change and outcome (Success, Unknown).",
	}, []string{"change", "outcome"})
	cacheBehind = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_rollout_cache_behind_total",
		Help: "Reads the Rollout controller made from the API server because its cache was behind what it had written itself (or had not been read live since the process started), by kind.",
	}, []string{"kind"})
	verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_provenance_verdicts_total",
		Help: "Image verifications by result (Passed, Failed, Unknown), reason, and whether the cache answered.",
	}, []string{"result", "reason", "cached"})
	verifySeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vigil_provenance_verification_seconds",
		Help:    "Time to verify one image, by whether the cache answered.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
	}, []string{"cached"})
	recordsCreated = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_evidence_records_created_total",
		Help: "ReleaseRecords created, one per revision of a Rollout.",
	})
	entriesWritten = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_evidence_entries_total",
		Help: "ReleaseRecord entries written ahead of the actions they record, by type.",
	}, []string{"type"})
	chainFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_evidence_chain_failures_total",
		Help: "Times the controller found a Rollout's evidence chain broken when it appended to it (see kubectl vigil evidence verify).",
	})
	evidenceUnknowns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_evidence_write_unknowns_total",
		Help: "ReleaseRecord writes whose outcome is Unknown (failed or timed out); the reconcile stops before acting and the next one reads the records again.",
	})
	auditViolations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_provenance_audit_violations_total",
		Help: "Revisions that failed a TrustPolicy in Audit mode and went ahead.",
	})
)

// observeVerdict counts one image verification.
func observeVerdict(v provenance.Verdict, took time.Duration) {
	cached := strconv.FormatBool(v.Cached)
	verdicts.WithLabelValues(string(verificationResults[v.Result]), v.Reason, cached).Inc()
	verifySeconds.WithLabelValues(cached).Observe(took.Seconds())
}

var allPhases = []vigilv1.RolloutPhase{
	vigilv1.RolloutPhaseVerifying, vigilv1.RolloutPhaseBlocked, vigilv1.RolloutPhaseProgressing,
	vigilv1.RolloutPhasePaused, vigilv1.RolloutPhasePromoted, vigilv1.RolloutPhaseRollingBack, vigilv1.RolloutPhaseRolledBack,
}

func init() {
	metrics.Registry.MustRegister(phaseGauge, stepTransitions, rollbacks, reconcileErrors, invariantViolations, apiWrites, cacheBehind,
		recordsCreated, entriesWritten, chainFailures, evidenceUnknowns,
		verdicts, verifySeconds, auditViolations)
	for _, inv := range invariants {
		invariantViolations.WithLabelValues(inv)
	}
}

// setPhaseMetric exports the Rollout's phase.
func setPhaseMetric(namespace, name string, phase vigilv1.RolloutPhase) {
	for _, p := range allPhases {
		v := 0.0
		if p == phase {
			v = 1
		}
		phaseGauge.WithLabelValues(namespace, name, string(p)).Set(v)
	}
}

// forgetPhaseMetric drops a deleted Rollout's series.
func forgetPhaseMetric(namespace, name string) {
	phaseGauge.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "rollout": name})
}

func (k changeKind) String() string {
	switch k {
	case createReplicaSet:
		return "CreateReplicaSet"
	case scaleReplicaSet:
		return "ScaleReplicaSet"
	case setSelector:
		return "SetServiceSelector"
	case setWeight:
		return "SetRouteWeight"
	case writeApproval:
		return "WriteApprovalStatus"
	case deleteReplicaSet:
		return "DeleteReplicaSet"
	case createAnalysisRun:
		return "CreateAnalysisRun"
	case terminateAnalysisRun:
		return "TerminateAnalysisRun"
	case clearSelector:
		return "ClearServiceSelector"
	case removeFinalizer:
		return "RemoveFinalizer"
	case deleteRecord:
		return "DeleteReleaseRecord"
	}
	return "Unknown"
}

// String says what a change does, for messages.
func (c change) String() string {
	switch c.kind {
	case createReplicaSet:
		return fmt.Sprintf("create the ReplicaSet of revision %s with %d pods", c.revision, c.replicas)
	case scaleReplicaSet:
		return fmt.Sprintf("scale ReplicaSet %s from %d to %d pods", c.rs.Name, specReplicas(c.rs), c.replicas)
	case deleteReplicaSet:
		return fmt.Sprintf("delete ReplicaSet %s", c.rs.Name)
	case setSelector:
		return fmt.Sprintf("point Service %s at revision %s", c.service.Name, c.revision)
	case clearSelector:
		return fmt.Sprintf("take Vigil's selector key out of Service %s", c.service.Name)
	case setWeight:
		return fmt.Sprintf("set the canary's route weight to %d%%", c.weight)
	case writeApproval:
		return fmt.Sprintf("write the status of Approval %s", c.approval.Name)
	case createAnalysisRun:
		return fmt.Sprintf("create AnalysisRun %s", c.run.Name)
	case terminateAnalysisRun:
		return fmt.Sprintf("terminate AnalysisRun %s", c.run.Name)
	case removeFinalizer:
		return "remove Vigil's finalizer"
	case deleteRecord:
		return fmt.Sprintf("delete ReleaseRecord %s, behind the evidence checkpoint", c.record.Name)
	}
	return c.kind.String()
}
