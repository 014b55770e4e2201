package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// RolloutSpec is the desired state of a Rollout: a pod template and the
// canary steps that move a new revision of it to production.
type RolloutSpec struct {
	// replicas is the number of pods wanted when fully promoted.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	Replicas *int32 `json:"replicas,omitempty"`

	// selector selects the pods of every revision; it must match the
	// template's labels.
	// +required
	Selector *metav1.LabelSelector `json:"selector"`

	// template is the pod template. Vigil owns one ReplicaSet per template
	// revision, named from a hash of the template.
	// +required
	Template corev1.PodTemplateSpec `json:"template"`

	// revisionHistoryLimit is how many old, scaled-down ReplicaSets are kept.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`

	// releaseRecordLimit is how many ReleaseRecords are kept. Older
	// finalised records are deleted from the start of the evidence chain;
	// status.evidenceCheckpoint carries the hash of the last entry deleted,
	// so what is kept still verifies.
	// +optional
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=200
	ReleaseRecordLimit *int32 `json:"releaseRecordLimit,omitempty"`

	// progressDeadlineSeconds is how long a step may make no progress before
	// the revision is rolled back.
	// +optional
	// +kubebuilder:default=600
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`

	// paused stops the Rollout where it is: no step advances and nothing is
	// rolled back until it is unpaused.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// strategy says how a new revision reaches production.
	// +required
	Strategy RolloutStrategy `json:"strategy"`

	// provenance names the TrustPolicy every image of a new revision must
	// satisfy before its first pod is created.
	// +optional
	Provenance *ProvenanceGate `json:"provenance,omitempty"`

	// rollback says what happens when the evidence turns bad.
	// +optional
	Rollback *RollbackPolicy `json:"rollback,omitempty"`
}

// RolloutStrategy holds the delivery strategy; canary is the only one.
type RolloutStrategy struct {
	// canary moves traffic to the new revision in steps.
	// +required
	Canary CanaryStrategy `json:"canary"`
}

// CanaryStrategy lists the steps of a canary release and how traffic moves.
// +kubebuilder:validation:XValidation:rule="!(string(self.maxSurge) in ['0', '0%'] && string(self.maxUnavailable) in ['0', '0%'])",message="maxSurge and maxUnavailable cannot both be zero: the rollout could never make progress"
type CanaryStrategy struct {
	// steps are run in order; after the last one the revision is promoted.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Steps []CanaryStep `json:"steps"`

	// maxSurge is how many pods above replicas may exist while moving.
	// +optional
	// +kubebuilder:default="25%"
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^[0-9]{1,3}%$')",message="maxSurge must be a non-negative count or a percentage such as 25%"
	MaxSurge *intstr.IntOrString `json:"maxSurge,omitempty"`

	// maxUnavailable is how many pods below replicas may be unavailable while
	// moving.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^[0-9]{1,3}%$')",message="maxUnavailable must be a non-negative count or a percentage such as 25%"
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// trafficRouting chooses how weights become traffic. Without it, weight
	// is the ratio of canary to total replicas.
	// +optional
	TrafficRouting *TrafficRouting `json:"trafficRouting,omitempty"`

	// analysis runs in the background for the whole canary.
	// +optional
	Analysis *AnalysisStep `json:"analysis,omitempty"`
}

// CanaryStep is one step of a canary release; exactly one field is set.
// +kubebuilder:validation:XValidation:rule="[has(self.setWeight), has(self.pause), has(self.approval), has(self.analysis)].filter(x, x).size() == 1",message="a step sets exactly one of setWeight, pause, approval or analysis"
type CanaryStep struct {
	// setWeight sends this percentage of traffic to the canary.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	SetWeight *int32 `json:"setWeight,omitempty"`

	// pause waits for a duration, or, without one, for an Approval.
	// +optional
	Pause *PauseStep `json:"pause,omitempty"`

	// approval waits for Approvals from the named people or groups.
	// +optional
	Approval *ApprovalStep `json:"approval,omitempty"`

	// analysis runs AnalysisTemplates and waits for their verdict.
	// +optional
	Analysis *AnalysisStep `json:"analysis,omitempty"`
}

// PauseStep waits before the next step.
type PauseStep struct {
	// duration to wait; without it the Rollout waits for an Approval.
	// +optional
	Duration *Duration `json:"duration,omitempty"`
}

// ApprovalStep waits for people to approve the revision at this step.
type ApprovalStep struct {
	// users who may approve; empty means anyone allowed to approve rollouts
	// by RBAC.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	Users []string `json:"users,omitempty"`

	// groups whose members may approve.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	Groups []string `json:"groups,omitempty"`

	// requiredApprovals is how many distinct people must approve.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	RequiredApprovals int32 `json:"requiredApprovals,omitempty"`

	// expiry is how long an Approval stays valid after it is created.
	// +optional
	// +kubebuilder:default="1h"
	Expiry *Duration `json:"expiry,omitempty"`
}

// AnalysisStep runs analysis templates with arguments.
type AnalysisStep struct {
	// templates to run.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Templates []AnalysisTemplateRef `json:"templates"`

	// args are passed to the templates' queries.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Args []AnalysisArgument `json:"args,omitempty"`
}

// AnalysisTemplateRef names an AnalysisTemplate or a ClusterAnalysisTemplate.
type AnalysisTemplateRef struct {
	// name of the template.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// clusterScope selects a ClusterAnalysisTemplate.
	// +optional
	ClusterScope bool `json:"clusterScope,omitempty"`
}

// TrafficRouting selects a traffic router.
type TrafficRouting struct {
	// gatewayAPI sets backendRefs weights on an HTTPRoute.
	// +optional
	GatewayAPI *GatewayAPITrafficRouting `json:"gatewayAPI,omitempty"`
}

// GatewayAPITrafficRouting splits traffic with a Gateway API HTTPRoute.
// +kubebuilder:validation:XValidation:rule="self.stableService != self.canaryService",message="stableService and canaryService must be different Services"
type GatewayAPITrafficRouting struct {
	// httpRoute is the HTTPRoute whose backendRefs weights Vigil sets.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	HTTPRoute string `json:"httpRoute"`

	// stableService selects the stable pods.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	StableService string `json:"stableService"`

	// canaryService selects the canary pods.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	CanaryService string `json:"canaryService"`
}

// ProvenanceGate points at the TrustPolicy a revision must satisfy.
type ProvenanceGate struct {
	// policyRef names a TrustPolicy in the Rollout's namespace.
	// +required
	PolicyRef LocalObjectReference `json:"policyRef"`
}

// RollbackAction is what the Rollout does when analysis ends badly.
// +kubebuilder:validation:Enum=Rollback;Pause;Retry
type RollbackAction string

const (
	// RollbackActionRollback rolls back to the stable revision.
	RollbackActionRollback RollbackAction = "Rollback"
	// RollbackActionPause stops and waits for an Approval or a Reject.
	RollbackActionPause RollbackAction = "Pause"
	// RollbackActionRetry runs the analysis again.
	RollbackActionRetry RollbackAction = "Retry"
)

// RollbackPolicy says what Failed and Unknown evidence lead to.
// +kubebuilder:validation:XValidation:rule="!has(self.onFailed) || self.onFailed != 'Retry'",message="onFailed cannot be Retry: a failed analysis is evidence, not an accident; use Rollback or Pause"
type RollbackPolicy struct {
	// onFailed is what a Failed analysis does.
	// +optional
	// +kubebuilder:default=Rollback
	OnFailed RollbackAction `json:"onFailed,omitempty"`

	// onInconclusive is what an Inconclusive analysis does.
	// +optional
	// +kubebuilder:default=Pause
	OnInconclusive RollbackAction `json:"onInconclusive,omitempty"`

	// onUnknownExhausted is what happens once Unknown measurements have used
	// their retry budget. Vigil never promotes on Unknown.
	// +optional
	// +kubebuilder:default=Pause
	OnUnknownExhausted RollbackAction `json:"onUnknownExhausted,omitempty"`

	// abortScaleDownDelaySeconds keeps the canary's pods after traffic has
	// moved back to stable, for inspection.
	// +optional
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	AbortScaleDownDelaySeconds *int32 `json:"abortScaleDownDelaySeconds,omitempty"`

	// requireDrillWithin blocks a new revision unless a RollbackDrill passed
	// within this duration.
	// +optional
	RequireDrillWithin *Duration `json:"requireDrillWithin,omitempty"`
}

// RolloutPhase is where a revision stands in its lifecycle.
// +kubebuilder:validation:Enum=Verifying;Blocked;Progressing;Paused;Promoted;RollingBack;RolledBack
type RolloutPhase string

const (
	RolloutPhaseVerifying   RolloutPhase = "Verifying"
	RolloutPhaseBlocked     RolloutPhase = "Blocked"
	RolloutPhaseProgressing RolloutPhase = "Progressing"
	RolloutPhasePaused      RolloutPhase = "Paused"
	RolloutPhasePromoted    RolloutPhase = "Promoted"
	RolloutPhaseRollingBack RolloutPhase = "RollingBack"
	RolloutPhaseRolledBack  RolloutPhase = "RolledBack"
)

// RolloutStatus is the observed state of a Rollout.
type RolloutStatus struct {
	Conditions `json:",inline"`

	// phase summarises the lifecycle of the current revision.
	// +optional
	Phase RolloutPhase `json:"phase,omitempty"`

	// message explains the phase to a person.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`

	// stableRevision is the pod-template hash serving production.
	// +optional
	StableRevision string `json:"stableRevision,omitempty"`

	// canaryRevision is the pod-template hash being rolled out.
	// +optional
	CanaryRevision string `json:"canaryRevision,omitempty"`

	// currentStepIndex is the step being run; equal to the number of steps
	// once promoted.
	// +optional
	CurrentStepIndex *int32 `json:"currentStepIndex,omitempty"`

	// canaryWeight is the percentage of traffic the canary receives.
	// +optional
	CanaryWeight int32 `json:"canaryWeight,omitempty"`

	// stableWeight is the percentage of traffic the stable revision receives.
	// +optional
	StableWeight int32 `json:"stableWeight,omitempty"`

	// replicas is the number of pods of all revisions.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// selector is spec.selector as a string, for the scale subresource
	// (kubectl scale, HorizontalPodAutoscaler).
	// +optional
	Selector string `json:"selector,omitempty"`

	// readyReplicas is the number of ready pods of all revisions.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// currentStepStartedAt is when the current step began; a pause and the
	// progress deadline count from it. It keeps microseconds so a short
	// pause is never cut short by rounding.
	// +optional
	CurrentStepStartedAt *metav1.MicroTime `json:"currentStepStartedAt,omitempty"`

	// collisionCount makes the next ReplicaSet name differ when two pod
	// templates hash to the same name.
	// +optional
	CollisionCount *int32 `json:"collisionCount,omitempty"`

	// rollback says why and when the canary revision was rolled back.
	// +optional
	Rollback *RollbackStatus `json:"rollback,omitempty"`

	// usedApprovals names Approvals this Rollout has acted on and has not yet
	// marked consumed. An Approval named here never counts again.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	UsedApprovals []string `json:"usedApprovals,omitempty"`

	// pendingApproval describes the approval the Rollout waits for.
	// +optional
	PendingApproval *PendingApproval `json:"pendingApproval,omitempty"`

	// analysis is the analysis of the current step, or the last one the
	// canary ran: its AnalysisRun, verdict and the measurements that decided
	// it.
	// +optional
	Analysis *RolloutAnalysis `json:"analysis,omitempty"`

	// backgroundAnalysis is the analysis that runs for the whole canary.
	// +optional
	BackgroundAnalysis *RolloutAnalysis `json:"backgroundAnalysis,omitempty"`

	// verification is the provenance gate's verdict on the revision of
	// the current template.
	// +optional
	Verification *RevisionVerification `json:"verification,omitempty"`

	// evidence is the head of the Rollout's evidence chain: the newest
	// ReleaseRecord entry the controller wrote. Deleting or editing the
	// newest record is detected against it.
	// +optional
	Evidence *RecordLink `json:"evidence,omitempty"`

	// evidenceCheckpoint is the newest entry of the ReleaseRecords deleted
	// beyond releaseRecordLimit: the chain's kept part starts right after
	// it.
	// +optional
	EvidenceCheckpoint *RecordLink `json:"evidenceCheckpoint,omitempty"`

	// history lists recent revisions, newest first.
	// +optional
	// +kubebuilder:validation:MaxItems=10
	History []RevisionHistory `json:"history,omitempty"`
}

// Rollout moves new revisions of a pod template to production in canary
// steps gated on provenance, analysis and approvals.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=ro,categories=vigil
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Step",type=integer,JSONPath=`.status.currentStepIndex`
// +kubebuilder:printcolumn:name="Canary%",type=integer,JSONPath=`.status.canaryWeight`
// +kubebuilder:printcolumn:name="Stable",type=string,JSONPath=`.status.stableRevision`
// +kubebuilder:printcolumn:name="Canary",type=string,JSONPath=`.status.canaryRevision`
// +kubebuilder:printcolumn:name="Pods",type=string,JSONPath=`.status.readyReplicas`,description="ready pods of all revisions"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Trigger",type=string,JSONPath=`.status.rollback.trigger`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Rollout struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec RolloutSpec `json:"spec"`
	// +optional
	Status RolloutStatus `json:"status,omitempty"`
}

// RolloutList is a list of Rollouts.
// +kubebuilder:object:root=true
type RolloutList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Rollout `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Rollout{}, &RolloutList{})
}
