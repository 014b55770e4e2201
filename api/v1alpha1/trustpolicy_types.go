package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// TrustPolicyMode says whether a failed verification blocks a revision.
// +kubebuilder:validation:Enum=Enforce;Audit
type TrustPolicyMode string

const (
	// TrustPolicyEnforce blocks a revision that fails verification.
	TrustPolicyEnforce TrustPolicyMode = "Enforce"
	// TrustPolicyAudit verifies, records and warns, but does not block.
	TrustPolicyAudit TrustPolicyMode = "Audit"
)

// TrustPolicySpec says who may sign images and what their provenance must show.
type TrustPolicySpec struct {
	// mode is Enforce (block) or Audit (warn).
	// +optional
	// +kubebuilder:default=Enforce
	Mode TrustPolicyMode `json:"mode,omitempty"`

	// authorities whose signatures are accepted; one is enough.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Authorities []Authority `json:"authorities"`

	// requireDigest refuses images that are not pinned by digest in Git,
	// instead of resolving their tags.
	// +optional
	RequireDigest bool `json:"requireDigest,omitempty"`

	// provenance requires a SLSA v1 provenance attestation.
	// +optional
	Provenance *ProvenanceRequirement `json:"provenance,omitempty"`
}

// Authority is a public key or a keyless (Fulcio) identity.
// +kubebuilder:validation:XValidation:rule="has(self.key) != has(self.keyless)",message="an authority sets exactly one of key or keyless"
type Authority struct {
	// name of the authority, unique in the policy.
	// +required
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`
	Name string `json:"name"`

	// key verifies signatures with a public key.
	// +optional
	Key *KeyAuthority `json:"key,omitempty"`

	// keyless verifies short-lived certificates against a trusted root.
	// +optional
	Keyless *KeylessAuthority `json:"keyless,omitempty"`
}

// KeyAuthority holds a PEM public key.
type KeyAuthority struct {
	// secretRef holds the PEM-encoded public key.
	// +required
	SecretRef SecretKeyReference `json:"secretRef"`
}

// KeylessAuthority is a certificate identity: OIDC issuer and subject.
// +kubebuilder:validation:XValidation:rule="has(self.subject) != has(self.subjectRegExp)",message="keyless sets exactly one of subject or subjectRegExp"
type KeylessAuthority struct {
	// issuer is the OIDC issuer of the signer's identity.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Issuer string `json:"issuer"`

	// subject is the exact identity, e.g. a workflow URL or an e-mail.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Subject string `json:"subject,omitempty"`

	// subjectRegExp matches the identity.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	SubjectRegExp string `json:"subjectRegExp,omitempty"`

	// trustedRoot holds a trusted_root.json. It is never fetched from the
	// network at verify time.
	// +required
	TrustedRoot ConfigMapOrSecretKeyReference `json:"trustedRoot"`
}

// ProvenanceRequirement says what a SLSA v1 provenance must name.
type ProvenanceRequirement struct {
	// builderIDs allowed to have built the image.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=1024
	BuilderIDs []string `json:"builderIDs"`

	// sourceRepositories the image may be built from, each with the refs
	// that count as reviewed code.
	// +required
	// +listType=map
	// +listMapKey=url
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	SourceRepositories []SourceRepository `json:"sourceRepositories"`
}

// SourceRepository is an allowed source with its protected refs.
type SourceRepository struct {
	// url of the repository.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	URL string `json:"url"`

	// protectedRefs from which the source commit must be reachable.
	// +optional
	// +listType=set
	// +kubebuilder:default={"refs/heads/main"}
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^refs/(heads|tags)/.+$`
	// +kubebuilder:validation:items:MaxLength=255
	ProtectedRefs []string `json:"protectedRefs,omitempty"`

	// secretRef names a Secret with credentials to fetch the repository.
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
}

// TrustPolicyStatus is the observed state of a TrustPolicy.
type TrustPolicyStatus struct {
	Conditions `json:",inline"`

	// policyHash identifies this version of the policy and its trust
	// material; verdicts cached under another hash are not reused.
	// +optional
	PolicyHash string `json:"policyHash,omitempty"`
}

// TrustPolicy says which signatures and provenance admit an image.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tp,categories=vigil
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TrustPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec TrustPolicySpec `json:"spec"`
	// +optional
	Status TrustPolicyStatus `json:"status,omitempty"`
}

// TrustPolicyList is a list of TrustPolicies.
// +kubebuilder:object:root=true
type TrustPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrustPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TrustPolicy{}, &TrustPolicyList{})
}
