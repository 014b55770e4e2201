package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ApprovalDecision approves or rejects a revision at a step.
// +kubebuilder:validation:Enum=Approve;Reject
type ApprovalDecision string

const (
	ApprovalApprove ApprovalDecision = "Approve"
	ApprovalReject  ApprovalDecision = "Reject"
)

// ApprovalScope says how far an approval carries a revision.
// +kubebuilder:validation:Enum=Step;Full
type ApprovalScope string

const (
	// ApprovalScopeStep passes the named step only.
	ApprovalScopeStep ApprovalScope = "Step"
	// ApprovalScopeFull skips the remaining steps and promotes.
	ApprovalScopeFull ApprovalScope = "Full"
)

// ApprovalSpec names the one revision and step a decision applies to.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="an Approval is immutable; create a new one instead"
// +kubebuilder:validation:XValidation:rule="self.decision == 'Approve' || !has(self.scope) || self.scope == 'Step'",message="scope Full applies only to decision Approve"
// +kubebuilder:validation:XValidation:rule="self.decision == 'Approve' || size(self.reason) > 0",message="a Reject needs a reason"
type ApprovalSpec struct {
	// rolloutRef names the Rollout in the same namespace.
	// +required
	RolloutRef LocalObjectReference `json:"rolloutRef"`

	// revision is the pod-template hash of the canary being decided on.
	// +required
	// +kubebuilder:validation:Pattern=`^[a-z0-9]{1,63}$`
	Revision string `json:"revision"`

	// step is the index of the step being decided on.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=63
	Step int32 `json:"step"`

	// decision is Approve or Reject (which rolls back).
	// +required
	Decision ApprovalDecision `json:"decision"`

	// scope of an Approve: this step, or the rest of the Rollout.
	// +optional
	// +kubebuilder:default=Step
	Scope ApprovalScope `json:"scope,omitempty"`

	// reason for the decision, kept as evidence.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
}

// ApprovalStatus is the observed state of an Approval.
type ApprovalStatus struct {
	Conditions `json:",inline"`

	// approver is the user who created the Approval, as the admission
	// webhook sealed it from the request (never from the body); the
	// controller copies it here once the seal verifies.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Approver string `json:"approver,omitempty"`

	// expiresAt is when the Approval stops counting: its admission time
	// plus its step's expiry.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// consumedAt is when the Rollout used the Approval. It is used once.
	// +optional
	ConsumedAt *metav1.Time `json:"consumedAt,omitempty"`
}

// Approval is a person's decision on one revision at one step of a Rollout.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=appr,categories=vigil
// +kubebuilder:printcolumn:name="Rollout",type=string,JSONPath=`.spec.rolloutRef.name`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.spec.revision`
// +kubebuilder:printcolumn:name="Step",type=integer,JSONPath=`.spec.step`
// +kubebuilder:printcolumn:name="Decision",type=string,JSONPath=`.spec.decision`
// +kubebuilder:printcolumn:name="Approver",type=string,JSONPath=`.status.approver`
// +kubebuilder:printcolumn:name="Counted",type=string,JSONPath=`.status.conditions[?(@.type=="Counted")].reason`
// +kubebuilder:printcolumn:name="Expires",type=date,JSONPath=`.status.expiresAt`,priority=1
// +kubebuilder:printcolumn:name="Consumed",type=date,JSONPath=`.status.consumedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Approval struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ApprovalSpec `json:"spec"`
	// +optional
	Status ApprovalStatus `json:"status,omitempty"`
}

// ApprovalList is a list of Approvals.
// +kubebuilder:object:root=true
type ApprovalList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Approval `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Approval{}, &ApprovalList{})
}
