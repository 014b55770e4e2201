package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// The parts of a Rollout's status that record what happened to each
// revision: rollbacks, verification verdicts, analyses, approvals, history.

// RollbackTrigger names what started a rollback.
// +kubebuilder:validation:Enum=Rejected;ProgressDeadlineExceeded;AnalysisFailed;AnalysisInconclusive;AnalysisUnknown;Drill
type RollbackTrigger string

const (
	// RollbackTriggerRejected is an Approval with decision Reject.
	RollbackTriggerRejected RollbackTrigger = "Rejected"
	// RollbackTriggerProgressDeadline is a step that made no progress within
	// progressDeadlineSeconds.
	RollbackTriggerProgressDeadline RollbackTrigger = "ProgressDeadlineExceeded"
	// RollbackTriggerAnalysisFailed is a failed analysis.
	RollbackTriggerAnalysisFailed RollbackTrigger = "AnalysisFailed"
	// RollbackTriggerAnalysisInconclusive is an Inconclusive analysis whose
	// policy is Rollback.
	RollbackTriggerAnalysisInconclusive RollbackTrigger = "AnalysisInconclusive"
	// RollbackTriggerAnalysisUnknown is an analysis that spent its Unknown
	// budget, whose policy is Rollback.
	RollbackTriggerAnalysisUnknown RollbackTrigger = "AnalysisUnknown"
	// RollbackTriggerDrill is a live RollbackDrill.
	RollbackTriggerDrill RollbackTrigger = "Drill"
)

// RollbackStatus records one rollback of the canary revision.
type RollbackStatus struct {
	// revision that was rolled back.
	// +kubebuilder:validation:MaxLength=63
	Revision string `json:"revision"`
	// trigger that started the rollback.
	Trigger RollbackTrigger `json:"trigger"`
	// message explains the trigger.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// startedAt is when the rollback began; the canary is scaled down
	// abortScaleDownDelaySeconds later.
	StartedAt metav1.Time `json:"startedAt"`
	// step the canary had reached.
	Step int32 `json:"step"`
}

// VerificationResult is the outcome of verifying a revision's images.
// +kubebuilder:validation:Enum=Passed;Failed;Unknown
type VerificationResult string

const (
	VerificationPassed  VerificationResult = "Passed"
	VerificationFailed  VerificationResult = "Failed"
	VerificationUnknown VerificationResult = "Unknown"
)

// RevisionVerification records the provenance gate's verdict on one
// revision under one version of its TrustPolicy.
type RevisionVerification struct {
	// revision verified (the pod-template hash).
	// +kubebuilder:validation:MaxLength=63
	Revision string `json:"revision"`
	// policyHash is the TrustPolicy's hash (with its trust material) the
	// verdict was reached under; another hash verifies again.
	// +kubebuilder:validation:MaxLength=128
	PolicyHash string `json:"policyHash"`
	// result of the verification.
	Result VerificationResult `json:"result"`
	// reason is the reason of the first image that did not pass, or Verified.
	// +kubebuilder:validation:MaxLength=128
	Reason string `json:"reason"`
	// message explains the result.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Message string `json:"message,omitempty"`
	// audit is set when the policy's mode is Audit: the result was
	// recorded and warned about, and did not block.
	// +optional
	Audit bool `json:"audit,omitempty"`
	// images verified, each with what its verification established.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Images []VerifiedImage `json:"images,omitempty"`
	// appliedRevision is the commit the Rollout was applied from (its
	// vigil.dev/gitsync-revision annotation) when the verdict was reached;
	// a refusal is looked at again as soon as another commit applies it.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	AppliedRevision string `json:"appliedRevision,omitempty"`
	// time of the verification.
	Time metav1.Time `json:"time"`
	// unknownAttempts counts consecutive Unknown outcomes; the next attempt
	// waits longer after each.
	// +optional
	UnknownAttempts int32 `json:"unknownAttempts,omitempty"`
}

// VerifiedImage is one image of a revision and what verifying it found.
type VerifiedImage struct {
	// image as written in the template.
	// +kubebuilder:validation:MaxLength=1024
	Image string `json:"image"`
	// pinned is repository@digest, which the ReplicaSet runs.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Pinned string `json:"pinned,omitempty"`
	// result of verifying this image.
	Result VerificationResult `json:"result"`
	// signer is the verified identity: a certificate subject with its
	// issuer, or the name of a key authority.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Signer string `json:"signer,omitempty"`
	// builder named by the verified provenance.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Builder string `json:"builder,omitempty"`
	// sourceRepository named by the verified provenance.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	SourceRepository string `json:"sourceRepository,omitempty"`
	// sourceCommit named by the verified provenance.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	SourceCommit string `json:"sourceCommit,omitempty"`
}

// RolloutAnalysis summarises one AnalysisRun of the canary.
type RolloutAnalysis struct {
	// run is the AnalysisRun's name.
	// +kubebuilder:validation:MaxLength=253
	Run string `json:"run"`
	// revision the run judges.
	// +kubebuilder:validation:MaxLength=63
	Revision string `json:"revision"`
	// step is the analysis step's index; unset for background analysis.
	// +optional
	Step *int32 `json:"step,omitempty"`
	// attempt counts the runs of this analysis for this revision and step:
	// a Retry, or an Approval after a pause, starts the next attempt.
	// +kubebuilder:validation:Minimum=0
	Attempt int32 `json:"attempt"`
	// specHash is the SHA-256 of the spec of the run Vigil built and created
	// (or adopted, when it matched what Vigil would build). A run under this
	// name with another spec was not made by Vigil: it is never evidence.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	SpecHash string `json:"specHash,omitempty"`
	// verdict of the run, as last observed.
	// +optional
	Verdict AnalysisVerdict `json:"verdict,omitempty"`
	// message explains the verdict.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// measurements that decided the verdict, the most recent last.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	Measurements []DecidingMeasurement `json:"measurements,omitempty"`
}

// DecidingMeasurement is a measurement shown on the Rollout.
type DecidingMeasurement struct {
	// metric measured.
	Metric string `json:"metric"`
	// outcome of the measurement.
	Outcome MeasurementOutcome `json:"outcome"`
	// value returned, as text.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Value string `json:"value,omitempty"`
	// reason for the outcome.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
	// time the measurement was taken.
	Time metav1.Time `json:"time"`
}

// PendingEffect says what an Approval of a pending approval does.
// +kubebuilder:validation:Enum=PassStep;RunAnalysisAgain;RetryRevision
type PendingEffect string

const (
	// EffectPassStep passes an approval step (or a pause without a duration).
	EffectPassStep PendingEffect = "PassStep"
	// EffectRunAnalysisAgain runs a paused analysis step's analysis again.
	EffectRunAnalysisAgain PendingEffect = "RunAnalysisAgain"
	// EffectRetryRevision retries a rolled-back revision from step 0.
	EffectRetryRevision PendingEffect = "RetryRevision"
)

// PendingApproval describes an approval step that is waiting.
type PendingApproval struct {
	// revision the approval must name.
	Revision string `json:"revision"`
	// step index the approval must name.
	Step int32 `json:"step"`
	// waitingSince is when the Rollout began this wait, to the microsecond
	// (a new field: the seconds-precision `since` of older versions is
	// dropped on read). The
	// admission webhook seals it into every Approval it admits for this
	// wait, and an Approval counts only for the wait it was admitted for:
	// one made earlier, or for an earlier wait, never counts.
	Since metav1.MicroTime `json:"waitingSince"`
	// effect says what approving does here: pass the step, run its
	// analysis again, or retry a rolled-back revision from step 0.
	// +optional
	Effect PendingEffect `json:"effect,omitempty"`
	// approvals received so far.
	// +optional
	Received int32 `json:"received,omitempty"`
	// required approvals.
	Required int32 `json:"required"`
}

// RevisionHistory is one past revision of a Rollout.
type RevisionHistory struct {
	// revision is the pod-template hash.
	Revision string `json:"revision"`
	// images of the revision, by digest where known.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Images []string `json:"images,omitempty"`
	// outcome of the revision: Promoted or RolledBack.
	Outcome RolloutPhase `json:"outcome"`
	// time the outcome was reached.
	Time metav1.Time `json:"time"`
}
