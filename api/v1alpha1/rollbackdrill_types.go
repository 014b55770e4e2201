package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// DrillMode is how a drill rehearses rollback.
// +kubebuilder:validation:Enum=Rehearsal;Live
type DrillMode string

const (
	// DrillRehearsal brings up the previous stable revision beside
	// production without traffic, measures time to ready, and tears it down.
	DrillRehearsal DrillMode = "Rehearsal"
	// DrillLive rolls production back through the real rollback path,
	// verifies it with analysis, and rolls forward.
	DrillLive DrillMode = "Live"
)

// RollbackDrillSpec schedules rehearsals of a Rollout's rollback.
type RollbackDrillSpec struct {
	// rolloutRef names the Rollout in the same namespace.
	// +required
	RolloutRef LocalObjectReference `json:"rolloutRef"`

	// schedule in cron format, e.g. "0 3 * * 1", or a macro such as @weekly.
	// +required
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.startsWith('@') ? self in ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'] : self.split(' ').filter(f, f != '').size() == 5",message="schedule must have five cron fields (minute hour day-of-month month day-of-week) or be a macro such as @daily"
	Schedule string `json:"schedule"`

	// mode is Rehearsal (no traffic) or Live (real rollback and roll forward).
	// +optional
	// +kubebuilder:default=Rehearsal
	Mode DrillMode `json:"mode,omitempty"`

	// timeBudget is how long the drill may take before it counts as failed.
	// +optional
	// +kubebuilder:default="10m"
	TimeBudget Duration `json:"timeBudget,omitempty"`

	// suspend stops scheduling new drills.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// DrillResult is the outcome of one drill.
type DrillResult struct {
	// startedAt is when the drill began.
	StartedAt metav1.Time `json:"startedAt"`
	// finishedAt is when it ended.
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// outcome of the drill.
	Outcome Outcome `json:"outcome"`
	// revision rehearsed.
	// +optional
	Revision string `json:"revision,omitempty"`
	// timeToReady of the rolled-back revision, in milliseconds.
	// +optional
	TimeToReadyMillis int64 `json:"timeToReadyMillis,omitempty"`
	// message explains the outcome.
	// +optional
	Message string `json:"message,omitempty"`
}

// RollbackDrillStatus is the observed state of a RollbackDrill.
type RollbackDrillStatus struct {
	Conditions `json:",inline"`

	// lastScheduleTime is when the last drill was started.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`

	// lastSuccessfulTime is when a drill last succeeded.
	// +optional
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty"`

	// results of recent drills, newest first.
	// +optional
	// +kubebuilder:validation:MaxItems=10
	Results []DrillResult `json:"results,omitempty"`
}

// RollbackDrill rehearses a Rollout's rollback on a schedule.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=drill,categories=vigil
// +kubebuilder:printcolumn:name="Rollout",type=string,JSONPath=`.spec.rolloutRef.name`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="Last Success",type=date,JSONPath=`.status.lastSuccessfulTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RollbackDrill struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec RollbackDrillSpec `json:"spec"`
	// +optional
	Status RollbackDrillStatus `json:"status,omitempty"`
}

// RollbackDrillList is a list of RollbackDrills.
// +kubebuilder:object:root=true
type RollbackDrillList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RollbackDrill `json:"items"`
}

func init() {
	SchemeBuilder.Register(&RollbackDrill{}, &RollbackDrillList{})
}
