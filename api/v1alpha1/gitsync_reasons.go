package v1alpha1

// Condition reasons of a GitSync. A fetch, verification or render that
// fails sets Ready=False with the reason the gitops package gives
// (LimitExceeded, AuthenticationFailed, RefNotFound, FetchFailed,
// Unreachable, CommitUnsigned, SignatureUntrusted, UnsafeContent,
// RenderFailed, RemoteContentRefused, HistoryRewritten); these are the others.
const (
	// ReasonSynced: the cluster matches the applied commit.
	ReasonSynced = "Synced"
	// ReasonSyncing: a sync of a new commit, or of drift, is under way.
	ReasonSyncing = "Syncing"
	// ReasonSyncFailed: one or more objects could not be applied.
	ReasonSyncFailed = "SyncFailed"
	// ReasonSuspended: spec.suspend is set.
	ReasonSuspended = "Suspended"
	// ReasonDriftDetected: objects differ from Git and selfHeal is off.
	ReasonDriftDetected = "DriftDetected"
	// ReasonNoDrift: every object matches Git.
	ReasonNoDrift = "NoDrift"
	// ReasonDriftReverted: drift was found and the objects re-applied.
	ReasonDriftReverted = "DriftReverted"
	// ReasonNewRevision: a new commit was fetched (Event only).
	ReasonNewRevision = "NewRevision"
	// ReasonApplied: a commit was applied (Event only).
	ReasonApplied = "Applied"
)
