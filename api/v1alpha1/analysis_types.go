package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AnalysisTemplateSpec declares metrics whose measurements decide whether a
// canary may move on.
type AnalysisTemplateSpec struct {
	// args the template's queries take.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Args []AnalysisArgumentSpec `json:"args,omitempty"`

	// metrics to measure.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Metrics []Metric `json:"metrics"`
}

// AnalysisArgumentSpec declares an argument and its optional default.
type AnalysisArgumentSpec struct {
	// name of the argument, used in queries as {{args.name}}.
	// +required
	// +kubebuilder:validation:Pattern=`^[a-zA-Z][a-zA-Z0-9_-]{0,62}$`
	Name string `json:"name"`

	// value is the default; without one the argument is required.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Value *string `json:"value,omitempty"`
}

// AnalysisArgument gives an argument its value.
type AnalysisArgument struct {
	// name of the argument.
	// +required
	// +kubebuilder:validation:Pattern=`^[a-zA-Z][a-zA-Z0-9_-]{0,62}$`
	Name string `json:"name"`

	// value of the argument. It is escaped before it enters a query, so it
	// can never change the query's structure.
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Value string `json:"value"`
}

// Metric is one measured quantity with its pass and fail conditions.
// +kubebuilder:validation:XValidation:rule="has(self.successCondition) || has(self.failureCondition)",message="a metric needs a successCondition, a failureCondition, or both"
// +kubebuilder:validation:XValidation:rule="!has(self.count) || !has(self.consecutiveSuccessLimit) || self.consecutiveSuccessLimit <= self.count",message="consecutiveSuccessLimit cannot exceed count"
type Metric struct {
	// name of the metric, unique in the template.
	// +required
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`
	Name string `json:"name"`

	// provider measures the metric.
	// +required
	Provider MetricProvider `json:"provider"`

	// interval between measurements.
	// +optional
	// +kubebuilder:default="1m"
	Interval *Duration `json:"interval,omitempty"`

	// initialDelay before the first measurement.
	// +optional
	InitialDelay *Duration `json:"initialDelay,omitempty"`

	// count of measurements; unset means measure until the analysis ends
	// (background analysis).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Count *int32 `json:"count,omitempty"`

	// successCondition is a CEL expression over `result` that holds when the
	// measurement is good.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	SuccessCondition string `json:"successCondition,omitempty"`

	// failureCondition is a CEL expression over `result` that holds when the
	// measurement is bad.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	FailureCondition string `json:"failureCondition,omitempty"`

	// failureLimit is how many Failed measurements are tolerated.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	FailureLimit int32 `json:"failureLimit,omitempty"`

	// inconclusiveLimit is how many Inconclusive measurements are tolerated.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	InconclusiveLimit int32 `json:"inconclusiveLimit,omitempty"`

	// unknownLimit is how many consecutive Unknown measurements (timeouts,
	// errors, empty answers) are retried before the Rollout's
	// onUnknownExhausted policy applies.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	UnknownLimit int32 `json:"unknownLimit,omitempty"`

	// consecutiveSuccessLimit ends the metric as Successful after this many
	// Successful measurements in a row.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	ConsecutiveSuccessLimit *int32 `json:"consecutiveSuccessLimit,omitempty"`

	// dryRun measures and shows the metric but never lets it decide.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`

	// noDataOutcome is the outcome of a query that returns no samples (an
	// empty vector): Unknown (retried like a timeout) or Inconclusive. It is
	// never Successful.
	// +optional
	// +kubebuilder:default=Unknown
	NoDataOutcome NoDataOutcome `json:"noDataOutcome,omitempty"`
}

// NoDataOutcome is what an empty answer counts as.
// +kubebuilder:validation:Enum=Unknown;Inconclusive
type NoDataOutcome string

const (
	NoDataUnknown      NoDataOutcome = "Unknown"
	NoDataInconclusive NoDataOutcome = "Inconclusive"
)

// MetricProvider selects where a metric comes from; prometheus is the only one.
type MetricProvider struct {
	// prometheus runs a PromQL query.
	// +required
	Prometheus *PrometheusProvider `json:"prometheus"`
}

// PrometheusProvider runs a PromQL instant query.
type PrometheusProvider struct {
	// address of the Prometheus server, e.g. http://prometheus.monitoring:9090.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^\\\\s/]+')",message="address must be an http:// or https:// URL"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^https?://[^/]*@')",message="address must not carry credentials; use basicAuth or bearerTokenSecret"
	Address string `json:"address"`

	// query is a PromQL template; {{args.NAME}} is replaced by an escaped
	// argument value.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=8192
	Query string `json:"query"`

	// range runs the query over a time window and reduces each series to one
	// value; without it the query is an instant query.
	// +optional
	Range *RangeQuery `json:"range,omitempty"`

	// timeout of one query; past it the measurement is Unknown.
	// +optional
	// +kubebuilder:default="10s"
	Timeout *Duration `json:"timeout,omitempty"`

	// bearerTokenSecret holds a bearer token.
	// +optional
	BearerTokenSecret *SecretKeyReference `json:"bearerTokenSecret,omitempty"`

	// basicAuth holds a user name and a password from a Secret.
	// +optional
	BasicAuth *BasicAuth `json:"basicAuth,omitempty"`

	// tls configures the connection to an https address.
	// +optional
	TLS *TLSConfig `json:"tls,omitempty"`

	// headers are added to every query.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Headers []HTTPHeader `json:"headers,omitempty"`
}

// RangeQuery runs a PromQL range query ending at the measurement time.
type RangeQuery struct {
	// window is how far back the range reaches.
	// +required
	Window Duration `json:"window"`

	// step between the points of the range.
	// +optional
	// +kubebuilder:default="30s"
	Step *Duration `json:"step,omitempty"`

	// reduce turns each series' points into one value.
	// +optional
	// +kubebuilder:default=avg
	Reduce RangeReduce `json:"reduce,omitempty"`
}

// RangeReduce is how a series' points become one value.
// +kubebuilder:validation:Enum=avg;min;max;last;sum
type RangeReduce string

const (
	ReduceAvg  RangeReduce = "avg"
	ReduceMin  RangeReduce = "min"
	ReduceMax  RangeReduce = "max"
	ReduceLast RangeReduce = "last"
	ReduceSum  RangeReduce = "sum"
)

// BasicAuth reads HTTP basic credentials from a Secret.
type BasicAuth struct {
	// secretName of a Secret with keys `username` and `password`.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName"`
}

// TLSConfig configures a TLS client.
// +kubebuilder:validation:XValidation:rule="!(has(self.insecureSkipVerify) && self.insecureSkipVerify && has(self.caSecret))",message="caSecret has no effect with insecureSkipVerify; set one of them"
type TLSConfig struct {
	// caSecret holds the CA bundle that signs the server's certificate.
	// +optional
	CASecret *SecretKeyReference `json:"caSecret,omitempty"`

	// serverName overrides the name checked in the server's certificate.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServerName string `json:"serverName,omitempty"`

	// insecureSkipVerify disables certificate checks. For tests only.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// HTTPHeader is a header name and value.
type HTTPHeader struct {
	// name of the header.
	// +required
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9-]{1,128}$`
	Name string `json:"name"`

	// value of the header.
	// +required
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value"`
}

// AnalysisTemplate is a namespaced set of metrics.
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=at,categories=vigil
// +kubebuilder:printcolumn:name="Metrics",type=string,JSONPath=`.spec.metrics[*].name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AnalysisTemplate struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec AnalysisTemplateSpec `json:"spec"`
}

// AnalysisTemplateList is a list of AnalysisTemplates.
// +kubebuilder:object:root=true
type AnalysisTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AnalysisTemplate `json:"items"`
}

// ClusterAnalysisTemplate is a cluster-wide set of metrics, owned by the
// platform team.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cat,categories=vigil
// +kubebuilder:printcolumn:name="Metrics",type=string,JSONPath=`.spec.metrics[*].name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterAnalysisTemplate struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec AnalysisTemplateSpec `json:"spec"`
}

// ClusterAnalysisTemplateList is a list of ClusterAnalysisTemplates.
// +kubebuilder:object:root=true
type ClusterAnalysisTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterAnalysisTemplate `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AnalysisTemplate{}, &AnalysisTemplateList{},
		&ClusterAnalysisTemplate{}, &ClusterAnalysisTemplateList{})
}
