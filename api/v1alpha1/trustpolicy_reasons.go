package v1alpha1

// Condition reasons of a TrustPolicy's Ready condition, one per way its
// trust material can fail to load. Ready=False with any of them also sets
// Stalled: the policy stays unusable until someone fixes it.
const (
	// ReasonLoaded: every key and trusted root loaded.
	ReasonLoaded = "Loaded"
	// ReasonSecretNotFound: a Secret the policy names does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretKeyMissing: a Secret has no such key, or it is empty.
	ReasonSecretKeyMissing = "SecretKeyMissing"
	// ReasonSecretUnreadable: the API server refused to read a Secret.
	ReasonSecretUnreadable = "SecretUnreadable"
	// ReasonConfigMapNotFound: a ConfigMap the policy names does not exist.
	ReasonConfigMapNotFound = "ConfigMapNotFound"
	// ReasonConfigMapUnreadable: the API server refused to read a ConfigMap.
	ReasonConfigMapUnreadable = "ConfigMapUnreadable"
	// ReasonConfigMapKeyMissing: a ConfigMap has no such key, or it is empty.
	ReasonConfigMapKeyMissing = "ConfigMapKeyMissing"
	// ReasonPolicyInvalid: a key or trusted root does not load.
	ReasonPolicyInvalid = "PolicyInvalid"
	// ReasonSourceCredentialsInvalid: the credentials of a source
	// repository are unusable.
	ReasonSourceCredentialsInvalid = "SourceCredentialsInvalid"
)
