package v1alpha1

// Labels and annotations Vigil puts on the objects it manages.
const (
	// LabelPodTemplateHash is on every ReplicaSet and pod of a Rollout and in
	// the selectors of the Services Vigil manages; its value is the revision.
	LabelPodTemplateHash = "vigil.dev/pod-template-hash"
	// LabelRollout names the Rollout that owns a ReplicaSet.
	LabelRollout = "vigil.dev/rollout"
	// FinalizerRollout holds a Rollout that routes through Services until
	// Vigil has taken its selector key out of them.
	FinalizerRollout = "vigil.dev/rollout"
	// AnnotationRevision is the ReplicaSet's revision number within its Rollout.
	AnnotationRevision = "vigil.dev/revision"
	// LabelAnalysis says what an AnalysisRun of a Rollout is for: the step
	// index, or "background".
	LabelAnalysis = "vigil.dev/analysis"
	// AnnotationTemplateChecksum is the SHA-256 of the pod template a
	// ReplicaSet was made from; it tells adoption from a name collision.
	AnnotationTemplateChecksum = "vigil.dev/template-checksum"
)

// Reasons of Rollout conditions and Events.
const (
	ReasonPromoted           = "Promoted"
	ReasonProgressing        = "Progressing"
	ReasonStepCompleted      = "StepCompleted"
	ReasonCanaryStarted      = "CanaryStarted"
	ReasonWaitingForApproval = "WaitingForApproval"
	ReasonPaused             = "Paused"
	ReasonRollingBack        = "RollingBack"
	ReasonRolledBack         = "RolledBack"
	ReasonRetryApproved      = "RetryApproved"
	ReasonApprovalUsed       = "ApprovalUsed"
	ReasonUnsupported        = "Unsupported"
	ReasonInvalidSpec        = "InvalidSpec"
	ReasonTrafficNotReady    = "TrafficRoutingNotReady"
	ReasonWriteUnknown       = "WriteUnknown"
	// ReasonWriteRefused: the API server refused a write for good (invalid,
	// forbidden, too large); the Rollout is Stalled with its message.
	ReasonWriteRefused      = "WriteRefused"
	ReasonInvariantViolated = "InvariantViolated"
	// ReasonEvidenceBroken: the controller found the Rollout's evidence
	// chain broken when it appended to it (a Warning Event).
	ReasonEvidenceBroken = "EvidenceBroken"
	// ReasonEvidenceUnsigned: a ReleaseRecord was finalised without its
	// attestation, which would have been too large (a Warning Event).
	ReasonEvidenceUnsigned = "EvidenceUnsigned"
	ReasonNameCollision    = "NameCollision"
	ReasonAnalysisStarted  = "AnalysisStarted"
	ReasonAnalysisPassed   = "AnalysisPassed"
	ReasonAnalysisFailed   = "AnalysisFailed"
	ReasonAnalysisPaused   = "AnalysisPaused"
	ReasonAnalysisRetry    = "AnalysisRetry"
	ReasonAnalysisInvalid  = "AnalysisInvalid"
	// ReasonVerifying: the revision's images are being verified, or the
	// last attempt was Unknown and is retried.
	ReasonVerifying = "Verifying"
	// ReasonVerified: every image of the revision passed the TrustPolicy.
	ReasonVerified = "Verified"
	// ReasonVerificationFailed is the Event of a refused revision; the
	// condition carries the provenance reason (Unsigned, ...).
	ReasonVerificationFailed = "VerificationFailed"
	// ReasonAuditViolation is the Event of a revision that failed a
	// TrustPolicy in Audit mode and went ahead.
	ReasonAuditViolation = "AuditViolation"
	// ReasonPolicyNotFound: the TrustPolicy the Rollout names does not exist
	// or its trust material does not load.
	ReasonPolicyNotFound = "TrustPolicyNotReady"
)
