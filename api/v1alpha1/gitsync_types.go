package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// GitSyncSpec says which Git content to apply to the cluster and how.
type GitSyncSpec struct {
	// url of the repository: https://, http://, ssh://, git:// or user@host:path.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^(https?|ssh|git)://[^\\\\s]+$') || self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\\\\s]+$')",message="url must be an https://, http://, ssh:// or git:// URL, or user@host:path"
	URL string `json:"url"`

	// ref is the branch, tag or commit to follow.
	// +required
	Ref GitRef `json:"ref"`

	// path inside the repository holding the manifests.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.split('/').exists(s, s == '..')",message="path must be relative to the repository root and may not contain '..'"
	Path string `json:"path,omitempty"`

	// interval between fetches when no push webhook arrives.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="interval must be at least 10s"
	Interval Duration `json:"interval,omitempty"`

	// timeout of one fetch; past it the fetch is Unknown and retried.
	// +optional
	// +kubebuilder:default="60s"
	Timeout *Duration `json:"timeout,omitempty"`

	// secretRef names a Secret with credentials: `username` and `password`
	// (or a token) for HTTP, `identity` and `known_hosts` for SSH.
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`

	// verify requires the commit to be signed by a trusted key.
	// +optional
	Verify *GitVerification `json:"verify,omitempty"`

	// prune deletes objects Vigil applied that have left Git.
	// +optional
	Prune bool `json:"prune,omitempty"`

	// selfHeal reverts changes made to applied objects behind Git's back.
	// +optional
	SelfHeal bool `json:"selfHeal,omitempty"`

	// webhookSecretRef names a Secret whose `token` key is the shared secret
	// of push webhooks for this repository: the HMAC key of GitHub's and
	// Gitea's signatures, or GitLab's X-Gitlab-Token. Without it, pushes
	// are not accepted for this GitSync and it follows its interval only.
	// +optional
	WebhookSecretRef *LocalObjectReference `json:"webhookSecretRef,omitempty"`

	// suspend stops fetching and applying.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// GitRef names exactly one of a branch, a tag or a commit.
// +kubebuilder:validation:XValidation:rule="[has(self.branch), has(self.tag), has(self.commit)].filter(x, x).size() == 1",message="ref sets exactly one of branch, tag or commit"
type GitRef struct {
	// branch to follow.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	Branch string `json:"branch,omitempty"`

	// tag to apply.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	Tag string `json:"tag,omitempty"`

	// commit to apply, as a full hexadecimal hash.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9a-f]{40}|[0-9a-f]{64})$')",message="commit must be a full 40- or 64-character lower-case hex hash"
	Commit string `json:"commit,omitempty"`
}

// GitVerificationMode is how commits are checked.
// +kubebuilder:validation:Enum=OpenPGP;SSH
type GitVerificationMode string

// GitVerification checks the signature of the fetched commit.
type GitVerification struct {
	// mode of signatures to accept.
	// +optional
	// +kubebuilder:default=OpenPGP
	Mode GitVerificationMode `json:"mode,omitempty"`

	// secretRef names a Secret whose values are trusted public keys.
	// +required
	SecretRef LocalObjectReference `json:"secretRef"`
}

// ResourceStatus is the sync and health state of one applied object.
type ResourceStatus struct {
	// group of the object.
	// +optional
	Group string `json:"group,omitempty"`
	// kind of the object.
	Kind string `json:"kind"`
	// namespace of the object.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// name of the object.
	Name string `json:"name"`
	// sync result: Synced, OutOfSync, Pruned or Failed.
	// +optional
	Sync string `json:"sync,omitempty"`
	// health: Healthy, Progressing, Degraded, Missing or Unknown.
	// +optional
	Health string `json:"health,omitempty"`
	// message of a failed sync.
	// +optional
	Message string `json:"message,omitempty"`
}

// GitSyncStatus is the observed state of a GitSync.
type GitSyncStatus struct {
	Conditions `json:",inline"`

	// lastAppliedRevision is the commit the cluster matches.
	// +optional
	LastAppliedRevision string `json:"lastAppliedRevision,omitempty"`

	// lastAttemptedRevision is the commit last fetched.
	// +optional
	LastAttemptedRevision string `json:"lastAttemptedRevision,omitempty"`

	// lastAppliedSigner names the trusted key that signed the applied
	// commit, when verify is set.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	LastAppliedSigner string `json:"lastAppliedSigner,omitempty"`

	// lastFetchTime is when the repository was last fetched.
	// +optional
	LastFetchTime *metav1.Time `json:"lastFetchTime,omitempty"`

	// lastSyncTime is when objects were last applied.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`

	// resources lists every applied object.
	// +optional
	// +kubebuilder:validation:MaxItems=5000
	Resources []ResourceStatus `json:"resources,omitempty"`
}

// GitSync makes a set of cluster objects match a path of a Git repository.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=gs,categories=vigil
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.status.lastAppliedRevision`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Drifted",type=string,JSONPath=`.status.conditions[?(@.type=="Drifted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GitSync struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec GitSyncSpec `json:"spec"`
	// +optional
	Status GitSyncStatus `json:"status,omitempty"`
}

// GitSyncList is a list of GitSyncs.
// +kubebuilder:object:root=true
type GitSyncList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GitSync `json:"items"`
}

func init() {
	SchemeBuilder.Register(&GitSync{}, &GitSyncList{})
}
