package v1alpha1

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types shared by the kinds. Ready, Reconciling and Stalled follow
// kstatus: Reconciling and Stalled are present only while true.
const (
	ConditionReady       = "Ready"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"

	// Rollout conditions.
	ConditionProgressing       = "Progressing"
	ConditionVerified          = "Verified"
	ConditionAnalysisPassing   = "AnalysisPassing"
	ConditionRollbackRehearsed = "RollbackRehearsed"

	// GitSync conditions.
	ConditionDrifted = "Drifted"
)

// Outcome is the result of one external call or measurement. A timeout, a
// 5xx, a reset connection or an empty answer is Unknown, never a pass.
// +kubebuilder:validation:Enum=Success;Failure;Unknown
type Outcome string

const (
	OutcomeSuccess Outcome = "Success"
	OutcomeFailure Outcome = "Failure"
	OutcomeUnknown Outcome = "Unknown"
)

// LocalObjectReference names an object in the same namespace.
// +structType=atomic
type LocalObjectReference struct {
	// name of the referent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// SecretKeyReference names one key of a Secret in the same namespace.
// +structType=atomic
type SecretKeyReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key within the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// ConfigMapOrSecretKeyReference names one key of a ConfigMap or a Secret in
// the same namespace.
// +kubebuilder:validation:XValidation:rule="has(self.configMap) != has(self.secret)",message="set exactly one of configMap or secret"
type ConfigMapOrSecretKeyReference struct {
	// configMap holding the data.
	// +optional
	ConfigMap *SecretKeyReference `json:"configMap,omitempty"`

	// secret holding the data.
	// +optional
	Secret *SecretKeyReference `json:"secret,omitempty"`
}

// Conditions is embedded in the status of every kind.
type Conditions struct {
	// conditions describe the current state; Ready summarises them.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the last generation that was fully handled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// Duration is a Go duration string such as 30s, 5m or 1h30m.
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$')",message="must be a duration such as 30s, 5m or 1h30m"
type Duration string

// Get parses the duration. The API server has already checked its form, so
// an error means the object bypassed validation.
func (d Duration) Get() (time.Duration, error) {
	v, err := time.ParseDuration(string(d))
	if err != nil {
		return 0, fmt.Errorf("parsing duration %q: %w", string(d), err)
	}
	return v, nil
}

// Annotations the admission webhook puts on every Approval it admits. They
// are never taken from the request body; see package evidence.
const (
	// AnnotationApprovalIdentity is who made the Approval and which wait it
	// answers, as JSON.
	AnnotationApprovalIdentity = "vigil.dev/identity"
	// AnnotationApprovalSeal binds the identity to the Approval's spec.
	AnnotationApprovalSeal = "vigil.dev/seal"
)
