package v1alpha1

// ConditionCounted says whether an Approval counts: True while it counts
// toward the wait it answers or once the Rollout used it, False with the
// reason it counts for nothing. The Rollout controller writes it.
const ConditionCounted = "Counted"

// Reasons of the Counted condition of an Approval.
const (
	// ApprovalCounting: it counts toward the wait it answers.
	ApprovalCounting = "Counting"
	// ApprovalUsed: the Rollout acted on it; it never counts again.
	ApprovalUsed = "Used"
	// ApprovalNotSealed: no identity from the admission webhook.
	ApprovalNotSealed = "NotSealed"
	// ApprovalSealBroken: its identity or spec changed after admission, or
	// it was sealed with another key.
	ApprovalSealBroken = "SealBroken"
	// ApprovalExpired: older than its step's expiry.
	ApprovalExpired = "Expired"
	// ApprovalNotWaiting: the Rollout does not wait for it (any more): the
	// wait it answered is over, or it names another revision or step.
	ApprovalNotWaiting = "NotWaiting"
	// ApprovalDuplicate: its approver already counts for this wait.
	ApprovalDuplicate = "Duplicate"
)
