package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

const samplesDir = "../../config/samples"

// sample reads config/samples/vigil_v1alpha1_<kind>.yaml into a fresh object
// in namespace ns (cluster-scoped kinds ignore it) with a unique name.
func sample(t *testing.T, kind, ns string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(samplesDir, "vigil_v1alpha1_"+kind+".yaml"))
	if err != nil {
		t.Fatalf("reading sample: %v", err)
	}
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &obj.Object); err != nil {
		t.Fatalf("decoding sample %s: %v", kind, err)
	}
	if obj.GetKind() != "ClusterAnalysisTemplate" {
		obj.SetNamespace(ns)
	}
	return obj
}

// namespace creates a namespace for one test and deletes it afterwards.
func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "validation-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	return ns.Name
}

func TestSamplesAreAccepted(t *testing.T) {
	g := NewWithT(t)
	ns := namespace(t)
	files, err := filepath.Glob(filepath.Join(samplesDir, "vigil_v1alpha1_*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(files).To(HaveLen(9), "one sample per kind")

	for _, f := range files {
		kind := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "vigil_v1alpha1_"), ".yaml")
		obj := sample(t, kind, ns)
		g.Expect(k8s.Create(context.Background(), obj)).To(Succeed(), "sample %s", f)
		if obj.GetNamespace() == "" {
			t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
		}
	}

	// The server applied the schema defaults the controllers rely on.
	ro := &unstructured.Unstructured{}
	ro.SetAPIVersion("vigil.dev/v1alpha1")
	ro.SetKind("Rollout")
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "checkout"}, ro)).To(Succeed())
	surge, _, _ := unstructured.NestedString(ro.Object, "spec", "strategy", "canary", "maxSurge")
	g.Expect(surge).To(Equal("25%"))
	deadline, _, _ := unstructured.NestedInt64(ro.Object, "spec", "progressDeadlineSeconds")
	g.Expect(deadline).To(Equal(int64(600)))
	onInconclusive, _, _ := unstructured.NestedString(ro.Object, "spec", "rollback", "onInconclusive")
	g.Expect(onInconclusive).To(Equal("Pause"))
	// The pod template's metadata is kept, not pruned.
	labels, _, _ := unstructured.NestedStringMap(ro.Object, "spec", "template", "metadata", "labels")
	g.Expect(labels).To(HaveKeyWithValue("app", "checkout"))
}

// set returns a mutation that sets a field of the object, creating the path.
func set(value any, path ...string) func(*unstructured.Unstructured) {
	return func(o *unstructured.Unstructured) {
		if err := unstructured.SetNestedField(o.Object, value, path...); err != nil {
			panic(err)
		}
	}
}

// setStep replaces the canary step at index i.
func setStep(i int, step map[string]any) func(*unstructured.Unstructured) {
	return func(o *unstructured.Unstructured) {
		steps, _, _ := unstructured.NestedSlice(o.Object, "spec", "strategy", "canary", "steps")
		steps[i] = step
		_ = unstructured.SetNestedSlice(o.Object, steps, "spec", "strategy", "canary", "steps")
	}
}

// setFirst sets a field of the first element of a list at path.
func setFirst(path []string, value any, field ...string) func(*unstructured.Unstructured) {
	return func(o *unstructured.Unstructured) {
		items, _, _ := unstructured.NestedSlice(o.Object, path...)
		item := items[0].(map[string]any)
		if err := unstructured.SetNestedField(item, value, field...); err != nil {
			panic(err)
		}
		_ = unstructured.SetNestedSlice(o.Object, items, path...)
	}
}

// invalidCase is a sample of kind made invalid by mutate, and the message
// the API server must refuse it with.
type invalidCase struct {
	name    string
	kind    string
	mutate  func(*unstructured.Unstructured)
	message string
}

var (
	metricsPath     = []string{"spec", "metrics"}
	authoritiesPath = []string{"spec", "authorities"}
)

var invalidCases = []invalidCase{
	{"step with two actions", "rollout",
		setStep(0, map[string]any{"setWeight": int64(10), "pause": map[string]any{}}),
		"a step sets exactly one of setWeight, pause, approval or analysis"},
	{"weight above 100", "rollout",
		setStep(0, map[string]any{"setWeight": int64(150)}),
		"should be less than or equal to 100"},
	{"no surge and no unavailable", "rollout",
		func(o *unstructured.Unstructured) {
			set(int64(0), "spec", "strategy", "canary", "maxSurge")(o)
			set("0%", "spec", "strategy", "canary", "maxUnavailable")(o)
		},
		"maxSurge and maxUnavailable cannot both be zero"},
	{"negative surge", "rollout", set(int64(-1), "spec", "strategy", "canary", "maxSurge"),
		"maxSurge must be a non-negative count or a percentage"},
	{"retry on failure", "rollout", set("Retry", "spec", "rollback", "onFailed"),
		"onFailed cannot be Retry"},
	{"pause duration in words", "rollout",
		setStep(4, map[string]any{"pause": map[string]any{"duration": "5 minutes"}}),
		"must be a duration such as 30s, 5m or 1h30m"},
	{"gateway routes to one service", "rollout",
		set(map[string]any{"gatewayAPI": map[string]any{"httpRoute": "r", "stableService": "s", "canaryService": "s"}},
			"spec", "strategy", "canary", "trafficRouting"),
		"stableService and canaryService must be different Services"},
	{"metric without conditions", "analysistemplate",
		func(o *unstructured.Unstructured) {
			items, _, _ := unstructured.NestedSlice(o.Object, metricsPath...)
			m := items[0].(map[string]any)
			delete(m, "successCondition")
			delete(m, "failureCondition")
			_ = unstructured.SetNestedSlice(o.Object, items, metricsPath...)
		},
		"a metric needs a successCondition, a failureCondition, or both"},
	{"prometheus over ftp", "analysistemplate",
		setFirst(metricsPath, "ftp://prometheus:9090", "provider", "prometheus", "address"),
		"address must be an http:// or https:// URL"},
	{"more consecutive successes than measurements", "clusteranalysistemplate",
		setFirst(metricsPath, int64(20), "consecutiveSuccessLimit"),
		"consecutiveSuccessLimit cannot exceed count"},
	{"branch and commit", "gitsync", set("0123456789abcdef0123456789abcdef01234567", "spec", "ref", "commit"),
		"ref sets exactly one of branch, tag or commit"},
	{"path escaping the repository", "gitsync", set("deploy/../../etc", "spec", "path"),
		"path must be relative to the repository root and may not contain '..'"},
	{"interval too short", "gitsync", set("1s", "spec", "interval"),
		"interval must be at least 10s"},
	{"url that is not a URL", "gitsync", set("file:///etc/passwd", "spec", "url"),
		"url must be an https://, http://, ssh:// or git:// URL"},
	{"key and keyless", "trustpolicy",
		setFirst(authoritiesPath, map[string]any{"secretRef": map[string]any{"name": "k", "key": "cosign.pub"}}, "key"),
		"an authority sets exactly one of key or keyless"},
	{"subject and regexp", "trustpolicy",
		setFirst(authoritiesPath, "ci@example.com", "keyless", "subject"),
		"keyless sets exactly one of subject or subjectRegExp"},
	{"reject without reason", "approval",
		func(o *unstructured.Unstructured) {
			set("Reject", "spec", "decision")(o)
			unstructured.RemoveNestedField(o.Object, "spec", "reason")
		},
		"a Reject needs a reason"},
	{"full scope on reject", "approval",
		func(o *unstructured.Unstructured) {
			set("Reject", "spec", "decision")(o)
			set("Full", "spec", "scope")(o)
		},
		"scope Full applies only to decision Approve"},
	{"schedule in words", "rollbackdrill", set("every monday", "spec", "schedule"),
		"schedule must have five cron fields"},
	{"finalised without outcome", "releaserecord", set(true, "spec", "finalized"),
		"a finalised ReleaseRecord needs an outcome"},
}

func TestInvalidObjectsAreRejectedOnCreate(t *testing.T) {
	cases := invalidCases
	ns := namespace(t)
	kinds := map[string]bool{}
	for _, tc := range cases {
		kinds[tc.kind] = true
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			obj := sample(t, tc.kind, ns)
			tc.mutate(obj)
			err := k8s.Create(context.Background(), obj)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.message))
		})
	}
	if len(kinds) < 8 {
		t.Errorf("invalid cases cover %d kinds, want at least 8", len(kinds))
	}
}

func TestImmutableObjectsRejectUpdates(t *testing.T) {
	cases := []struct {
		kind    string
		prepare func(*unstructured.Unstructured)
		mutate  func(*unstructured.Unstructured)
		message string
	}{
		{"approval", nil, set(int64(3), "spec", "step"),
			"an Approval is immutable; create a new one instead"},
		{"analysisrun", nil, set("other", "spec", "revision"),
			"an AnalysisRun's spec is immutable; create a new run instead"},
		{"releaserecord",
			func(o *unstructured.Unstructured) {
				set(true, "spec", "finalized")(o)
				set("RolledBack", "spec", "outcome")(o)
			},
			set("Promoted", "spec", "outcome"),
			"a finalised ReleaseRecord is immutable"},
		{"releaserecord", nil, setEntry("message", "edited"),
			"a ReleaseRecord entry never changes once written"},
		{"releaserecord", nil, func(o *unstructured.Unstructured) { set([]any{}, "spec", "entries")(o) },
			"ReleaseRecord entries are never removed"},
		{"releaserecord", nil, set("other", "spec", "revision"),
			"a ReleaseRecord's rolloutRef and revision are immutable"},
	}
	ns := namespace(t)
	for i, tc := range cases {
		t.Run(tc.kind+" "+tc.message, func(t *testing.T) {
			g := NewWithT(t)
			obj := sample(t, tc.kind, ns)
			obj.SetName(fmt.Sprintf("%s-%d", obj.GetName(), i))
			if tc.prepare != nil {
				tc.prepare(obj)
			}
			g.Expect(k8s.Create(context.Background(), obj)).To(Succeed())
			tc.mutate(obj)
			err := k8s.Update(context.Background(), obj)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.message))
		})
	}
}

func TestUnfinalisedReleaseRecordAcceptsUpdates(t *testing.T) {
	g := NewWithT(t)
	obj := sample(t, "releaserecord", namespace(t))
	g.Expect(k8s.Create(context.Background(), obj)).To(Succeed())
	entries, _, _ := unstructured.NestedSlice(obj.Object, "spec", "entries")
	next := map[string]any{"seq": int64(2), "type": "Promotion", "state": "Started", "time": "2026-12-02T10:00:01.000000Z",
		"prev": entries[0].(map[string]any)["hash"], "hash": "sha256:" + strings.Repeat("cd", 32)}
	set(append(entries, next), "spec", "entries")(obj)
	g.Expect(k8s.Update(context.Background(), obj)).To(Succeed(), "records are written as the release goes on")
}

// setEntry sets field of the first entry of a ReleaseRecord.
func setEntry(field string, v any) func(*unstructured.Unstructured) {
	return func(o *unstructured.Unstructured) {
		entries, _, _ := unstructured.NestedSlice(o.Object, "spec", "entries")
		entries[0].(map[string]any)[field] = v
		set(entries, "spec", "entries")(o)
	}
}
