package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AnalysisRunSpec is one instance of analysis: the resolved metrics and
// arguments. It never changes after creation, except that it can be
// terminated.
// +kubebuilder:validation:XValidation:rule="self.metrics == oldSelf.metrics && (has(self.args) == has(oldSelf.args)) && (!has(self.args) || self.args == oldSelf.args) && (has(self.revision) == has(oldSelf.revision)) && (!has(self.revision) || self.revision == oldSelf.revision) && (has(self.rolloutRef) == has(oldSelf.rolloutRef)) && (!has(self.rolloutRef) || self.rolloutRef == oldSelf.rolloutRef)",message="an AnalysisRun's spec is immutable; create a new run instead"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.terminate) || !oldSelf.terminate || (has(self.terminate) && self.terminate)",message="a terminated AnalysisRun cannot be resumed; create a new run instead"
type AnalysisRunSpec struct {
	// rolloutRef names the Rollout the run judges.
	// +optional
	RolloutRef *LocalObjectReference `json:"rolloutRef,omitempty"`

	// revision is the pod-template hash being judged.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Revision string `json:"revision,omitempty"`

	// metrics to measure, copied from the templates.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Metrics []Metric `json:"metrics"`

	// args resolved for the queries.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Args []AnalysisArgument `json:"args,omitempty"`

	// terminate stops a running analysis; its verdict is what was measured.
	// +optional
	Terminate bool `json:"terminate,omitempty"`
}

// AnalysisVerdict is the outcome of a whole run or of one metric.
// Unknown means the Unknown budget (unknownLimit consecutive Unknown
// measurements) was spent: there is no evidence either way.
// +kubebuilder:validation:Enum=Running;Successful;Failed;Inconclusive;Unknown
type AnalysisVerdict string

const (
	AnalysisRunning      AnalysisVerdict = "Running"
	AnalysisSuccessful   AnalysisVerdict = "Successful"
	AnalysisFailed       AnalysisVerdict = "Failed"
	AnalysisInconclusive AnalysisVerdict = "Inconclusive"
	AnalysisUnknown      AnalysisVerdict = "Unknown"
)

// Finished tells whether the verdict is final.
func (v AnalysisVerdict) Finished() bool {
	return v != "" && v != AnalysisRunning
}

// MeasurementOutcome is the outcome of one measurement. Unknown (a timeout,
// an error, NaN or an empty answer) is never a pass.
// +kubebuilder:validation:Enum=Successful;Failed;Inconclusive;Unknown
type MeasurementOutcome string

const (
	MeasurementSuccessful   MeasurementOutcome = "Successful"
	MeasurementFailed       MeasurementOutcome = "Failed"
	MeasurementInconclusive MeasurementOutcome = "Inconclusive"
	MeasurementUnknown      MeasurementOutcome = "Unknown"
)

// Measurement is one query and what came of it.
type Measurement struct {
	// outcome of the measurement.
	Outcome MeasurementOutcome `json:"outcome"`
	// value returned, as text.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Value string `json:"value,omitempty"`
	// reason for an Unknown or Inconclusive outcome.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
	// query as sent, with arguments substituted.
	// +optional
	// +kubebuilder:validation:MaxLength=16384
	Query string `json:"query,omitempty"`
	// startedAt is when the query was sent.
	StartedAt metav1.Time `json:"startedAt"`
	// finishedAt is when the answer, or the timeout, came.
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
}

// MetricResult accounts for the measurements of one metric.
type MetricResult struct {
	// name of the metric.
	Name string `json:"name"`
	// verdict of the metric.
	Verdict AnalysisVerdict `json:"verdict"`
	// dryRun metrics are shown but never decide.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
	// successful measurements.
	// +optional
	Successful int32 `json:"successful,omitempty"`
	// failed measurements.
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// inconclusive measurements.
	// +optional
	Inconclusive int32 `json:"inconclusive,omitempty"`
	// unknown measurements.
	// +optional
	Unknown int32 `json:"unknown,omitempty"`
	// consecutiveUnknown is the current run of Unknown measurements.
	// +optional
	ConsecutiveUnknown int32 `json:"consecutiveUnknown,omitempty"`
	// consecutiveSuccessful is the current run of Successful measurements.
	// +optional
	ConsecutiveSuccessful int32 `json:"consecutiveSuccessful,omitempty"`
	// message explains the verdict.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// measurements, the most recent last; older ones are dropped past the
	// retention bound but stay counted.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	Measurements []Measurement `json:"measurements,omitempty"`
}

// AnalysisRunStatus is the observed state of an AnalysisRun.
type AnalysisRunStatus struct {
	Conditions `json:",inline"`

	// verdict of the run.
	// +optional
	Verdict AnalysisVerdict `json:"verdict,omitempty"`

	// message explains the verdict.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`

	// startedAt is when the first measurement was taken.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// metricResults has one entry per metric.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	MetricResults []MetricResult `json:"metricResults,omitempty"`
}

// AnalysisRun is one run of analysis metrics against a revision.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ar,categories=vigil
// +kubebuilder:printcolumn:name="Verdict",type=string,JSONPath=`.status.verdict`
// +kubebuilder:printcolumn:name="Rollout",type=string,JSONPath=`.spec.rolloutRef.name`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.spec.revision`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AnalysisRun struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec AnalysisRunSpec `json:"spec"`
	// +optional
	Status AnalysisRunStatus `json:"status,omitempty"`
}

// AnalysisRunList is a list of AnalysisRuns.
// +kubebuilder:object:root=true
type AnalysisRunList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AnalysisRun `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AnalysisRun{}, &AnalysisRunList{})
}
