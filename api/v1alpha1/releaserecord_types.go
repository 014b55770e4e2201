package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ReleaseRecordSpec is the evidence of one Rollout revision. Vigil writes it
// as the release goes on; once finalised it never changes, and its hash
// links it to the record before.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.finalized) || !oldSelf.finalized || self == oldSelf",message="a finalised ReleaseRecord is immutable"
// +kubebuilder:validation:XValidation:rule="!has(self.finalized) || !self.finalized || (has(self.hash) && has(self.outcome))",message="a finalised ReleaseRecord needs a hash and an outcome"
type ReleaseRecordSpec struct {
	// rolloutRef names the Rollout.
	// +required
	RolloutRef LocalObjectReference `json:"rolloutRef"`

	// revision is the pod-template hash.
	// +required
	// +kubebuilder:validation:Pattern=`^[a-z0-9]{1,63}$`
	Revision string `json:"revision"`

	// images of the revision.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Images []ImageRecord `json:"images,omitempty"`

	// gitCommit applied by GitSync when the revision appeared.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	GitCommit string `json:"gitCommit,omitempty"`

	// verification is the provenance verdict.
	// +optional
	Verification *VerificationRecord `json:"verification,omitempty"`

	// analyses lists the AnalysisRuns and their verdicts.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Analyses []AnalysisRecord `json:"analyses,omitempty"`

	// approvals lists who decided what, and when.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Approvals []ApprovalRecord `json:"approvals,omitempty"`

	// outcome of the revision: Promoted or RolledBack.
	// +optional
	Outcome RolloutPhase `json:"outcome,omitempty"`

	// startedAt is when the revision was first seen.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// finishedAt is when its outcome was reached.
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`

	// previousHash is the hash of the Rollout's previous record.
	// +optional
	// +kubebuilder:validation:Pattern=`^sha256:[0-9a-f]{64}$`
	PreviousHash string `json:"previousHash,omitempty"`

	// hash covers every other field and previousHash.
	// +optional
	// +kubebuilder:validation:Pattern=`^sha256:[0-9a-f]{64}$`
	Hash string `json:"hash,omitempty"`

	// finalized makes the record immutable.
	// +optional
	Finalized bool `json:"finalized,omitempty"`
}

// ImageRecord is an image and its digest.
type ImageRecord struct {
	// name of the container.
	Container string `json:"container"`
	// image as written in the template.
	Image string `json:"image"`
	// digest the image resolved to.
	// +optional
	Digest string `json:"digest,omitempty"`
}

// VerificationRecord is what provenance verification found.
type VerificationRecord struct {
	// outcome of the verification.
	Outcome Outcome `json:"outcome"`
	// signer identity or key.
	// +optional
	Signer string `json:"signer,omitempty"`
	// builder id from the provenance.
	// +optional
	Builder string `json:"builder,omitempty"`
	// sourceRepository from the provenance.
	// +optional
	SourceRepository string `json:"sourceRepository,omitempty"`
	// sourceCommit from the provenance.
	// +optional
	SourceCommit string `json:"sourceCommit,omitempty"`
}

// AnalysisRecord is one AnalysisRun's verdict.
type AnalysisRecord struct {
	// run names the AnalysisRun.
	Run string `json:"run"`
	// verdict of the run.
	Verdict AnalysisVerdict `json:"verdict"`
}

// ApprovalRecord is one decision.
type ApprovalRecord struct {
	// approver identity.
	Approver string `json:"approver"`
	// step decided on.
	Step int32 `json:"step"`
	// decision made.
	Decision ApprovalDecision `json:"decision"`
	// time of the decision.
	Time metav1.Time `json:"time"`
}

// ReleaseRecord is the hash-chained evidence of one Rollout revision.
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=rr,categories=vigil
// +kubebuilder:printcolumn:name="Rollout",type=string,JSONPath=`.spec.rolloutRef.name`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.spec.revision`
// +kubebuilder:printcolumn:name="Outcome",type=string,JSONPath=`.spec.outcome`
// +kubebuilder:printcolumn:name="Final",type=boolean,JSONPath=`.spec.finalized`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ReleaseRecord struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ReleaseRecordSpec `json:"spec"`
}

// ReleaseRecordList is a list of ReleaseRecords.
// +kubebuilder:object:root=true
type ReleaseRecordList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ReleaseRecord `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ReleaseRecord{}, &ReleaseRecordList{})
}
