package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ReleaseRecordSpec is the evidence of one Rollout revision: an append-only
// list of entries, each hashing its content and the entry before it, in
// one chain per Rollout that runs through all of its records in sequence
// (seq). The controller writes an entry before the action it records is
// applied, and the Rollout's status holds the chain's head. Only the
// controller writes records (the admission webhook refuses everyone else);
// an entry never changes once written, and a finalised record never
// changes at all.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.finalized) || !oldSelf.finalized || self == oldSelf",message="a finalised ReleaseRecord is immutable"
// +kubebuilder:validation:XValidation:rule="!has(self.finalized) || !self.finalized || has(self.outcome)",message="a finalised ReleaseRecord needs an outcome"
// +kubebuilder:validation:XValidation:rule="self.rolloutRef == oldSelf.rolloutRef && self.revision == oldSelf.revision",message="a ReleaseRecord's rolloutRef and revision are immutable"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.previous) || (has(self.previous) && self.previous == oldSelf.previous)",message="a ReleaseRecord's link to the record before is immutable"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.entries) || (has(self.entries) && oldSelf.entries.all(o, self.entries.exists(n, n.seq == o.seq)))",message="ReleaseRecord entries are never removed"
type ReleaseRecordSpec struct {
	// rolloutRef names the Rollout.
	// +required
	RolloutRef LocalObjectReference `json:"rolloutRef"`

	// revision is the pod-template hash.
	// +required
	// +kubebuilder:validation:Pattern=`^[a-z0-9]{1,63}$`
	Revision string `json:"revision"`

	// previous links this record to the Rollout's record opened before it
	// (record), and to the chain's newest entry when it opened (seq and
	// hash), which that record or an older one holds. The first record
	// has none.
	// +optional
	Previous *RecordLink `json:"previous,omitempty"`

	// entries is the evidence, oldest first.
	// +optional
	// +listType=map
	// +listMapKey=seq
	// +kubebuilder:validation:MaxItems=96
	Entries []RecordEntry `json:"entries,omitempty"`

	// outcome of the revision, set when the record is finalised.
	// +optional
	Outcome ReleaseOutcome `json:"outcome,omitempty"`

	// finalized makes the record immutable: its revision is neither
	// stable nor canary nor the template any more.
	// +optional
	Finalized bool `json:"finalized,omitempty"`

	// attestation is the record's in-toto Statement signed by the key the
	// platform gave the controller (a Sigstore bundle, JSON), written in
	// the same write that finalises the record; empty without a key, and
	// for a record too large to sign within this bound (a Warning Event
	// says so).
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	Attestation string `json:"attestation,omitempty"`
}

// RecordLink points at one entry of a Rollout's chain, and at a record.
type RecordLink struct {
	// record is a ReleaseRecord's name: the one holding the entry, or in a
	// record's previous link the record opened before it.
	// +kubebuilder:validation:MaxLength=253
	Record string `json:"record"`
	// seq of the entry.
	// +kubebuilder:validation:Minimum=1
	Seq int64 `json:"seq"`
	// hash of the entry.
	// +kubebuilder:validation:Pattern=`^sha256:[0-9a-f]{64}$`
	Hash string `json:"hash"`
}

// ReleaseOutcome is how a revision ended.
// +kubebuilder:validation:Enum=Promoted;RolledBack;Replaced
type ReleaseOutcome string

const (
	// OutcomePromoted: the revision served production, and a later one
	// replaced it.
	OutcomePromoted ReleaseOutcome = "Promoted"
	// OutcomeRolledBack: the revision was rolled back and replaced.
	OutcomeRolledBack ReleaseOutcome = "RolledBack"
	// OutcomeReplaced: a newer revision (or the stable one) replaced the
	// canary before it was promoted or rolled back.
	OutcomeReplaced ReleaseOutcome = "Replaced"
)

// EntryType says what an entry records.
// +kubebuilder:validation:Enum=Observed;Verified;Analysis;Approval;Promotion;Rollback;Retry;Truncated;Finalized
type EntryType string

const (
	// EntryObserved opens a record: the revision's images and the commit
	// it was applied from.
	EntryObserved EntryType = "Observed"
	// EntryVerified is the provenance gate's verdict.
	EntryVerified EntryType = "Verified"
	// EntryAnalysis is an analysis verdict with the measurements that
	// decided it.
	EntryAnalysis EntryType = "Analysis"
	// EntryApproval is an Approval or rejection the Rollout acted on.
	EntryApproval EntryType = "Approval"
	// EntryPromotion is a promotion: Started when decided, before any
	// write acts on it; Completed when the revision serves everything.
	EntryPromotion EntryType = "Promotion"
	// EntryRollback is a rollback with its trigger: Started, then
	// Completed once traffic is back on stable.
	EntryRollback EntryType = "Rollback"
	// EntryRetry is a rolled-back revision retried from step 0.
	EntryRetry EntryType = "Retry"
	// EntryTruncated says the record reached its bound: later verdicts
	// and approvals are counted in it, not listed.
	EntryTruncated EntryType = "Truncated"
	// EntryFinalized closes a record with its outcome.
	EntryFinalized EntryType = "Finalized"
)

// EntryState is where a recorded action stands.
// +kubebuilder:validation:Enum=Started;Completed
type EntryState string

const (
	// StateStarted: decided and recorded; writes acting on it may follow.
	StateStarted EntryState = "Started"
	// StateCompleted: the cluster shows the action done.
	StateCompleted EntryState = "Completed"
)

// RecordEntry is one piece of evidence. Only the fields of its type are
// set. hash is sha256 over the entry's canonical JSON (RFC 8785, without
// hash) and the chain's identity: see docs/evidence.md.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a ReleaseRecord entry never changes once written"
type RecordEntry struct {
	// seq is the entry's place in the Rollout's chain, from 1.
	// +kubebuilder:validation:Minimum=1
	Seq int64 `json:"seq"`
	// type of the entry.
	Type EntryType `json:"type"`
	// time the entry was written.
	Time metav1.MicroTime `json:"time"`
	// state of a promotion or rollback.
	// +optional
	State EntryState `json:"state,omitempty"`
	// step the canary was at.
	// +optional
	Step *int32 `json:"step,omitempty"`
	// message explains the entry to a person.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// images of the revision (Observed).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Images []ImageRecord `json:"images,omitempty"`
	// gitCommit the Rollout was applied from (Observed): its
	// vigil.dev/gitsync-revision annotation.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	GitCommit string `json:"gitCommit,omitempty"`
	// verification is the provenance verdict (Verified).
	// +optional
	Verification *VerificationRecord `json:"verification,omitempty"`
	// analysis is a verdict (Analysis).
	// +optional
	Analysis *AnalysisRecord `json:"analysis,omitempty"`
	// approval is a decision acted on (Approval).
	// +optional
	Approval *ApprovalRecord `json:"approval,omitempty"`
	// trigger of a rollback.
	// +optional
	Trigger RollbackTrigger `json:"trigger,omitempty"`
	// outcome of the revision (Finalized).
	// +optional
	Outcome ReleaseOutcome `json:"outcome,omitempty"`
	// prev is the hash of the entry before this one in the chain (seq-1);
	// unset only for the chain's first entry.
	// +optional
	// +kubebuilder:validation:Pattern=`^sha256:[0-9a-f]{64}$`
	Prev string `json:"prev,omitempty"`
	// hash of this entry.
	// +kubebuilder:validation:Pattern=`^sha256:[0-9a-f]{64}$`
	Hash string `json:"hash"`
}

// ImageRecord is a container's image and the digest it runs.
type ImageRecord struct {
	// container name.
	// +kubebuilder:validation:MaxLength=253
	Container string `json:"container"`
	// image as written in the template.
	// +kubebuilder:validation:MaxLength=1024
	Image string `json:"image"`
	// digest the image runs at, when the template or the verification
	// pins one.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Digest string `json:"digest,omitempty"`
}

// VerificationRecord is what provenance verification found.
type VerificationRecord struct {
	// result of the verification.
	Result VerificationResult `json:"result"`
	// reason of the result.
	// +kubebuilder:validation:MaxLength=128
	Reason string `json:"reason"`
	// policyHash of the TrustPolicy the verdict was reached under.
	// +kubebuilder:validation:MaxLength=128
	PolicyHash string `json:"policyHash"`
	// audit: recorded and warned about, did not block.
	// +optional
	Audit bool `json:"audit,omitempty"`
	// images verified, each with what its verification established.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Images []VerifiedImage `json:"images,omitempty"`
}

// AnalysisRecord is one AnalysisRun's verdict.
type AnalysisRecord struct {
	// run names the AnalysisRun.
	// +kubebuilder:validation:MaxLength=253
	Run string `json:"run"`
	// background is set for the analysis that runs for the whole canary.
	// +optional
	Background bool `json:"background,omitempty"`
	// attempt of this analysis for the revision and step.
	Attempt int32 `json:"attempt"`
	// verdict of the run.
	Verdict AnalysisVerdict `json:"verdict"`
	// measurements that decided it, the most recent last.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	Measurements []DecidingMeasurement `json:"measurements,omitempty"`
}

// ApprovalRecord is one decision the Rollout acted on, with the identity
// the admission webhook sealed into it.
type ApprovalRecord struct {
	// name of the Approval.
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// user who made it, as the API server authenticated them.
	// +kubebuilder:validation:MaxLength=1024
	User string `json:"user"`
	// uid of the user.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	UID string `json:"uid,omitempty"`
	// decision made.
	Decision ApprovalDecision `json:"decision"`
	// scope of an Approve.
	// +optional
	Scope ApprovalScope `json:"scope,omitempty"`
	// reason given.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
	// admittedAt is when the webhook admitted it.
	AdmittedAt metav1.MicroTime `json:"admittedAt"`
}

// ReleaseRecord is the hash-chained evidence of one Rollout revision.
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=rr,categories=vigil
// +kubebuilder:printcolumn:name="Rollout",type=string,JSONPath=`.spec.rolloutRef.name`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.spec.revision`
// +kubebuilder:printcolumn:name="Entries",type=integer,JSONPath=`.spec.entries[-1:].seq`,description="seq of the newest entry"
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
