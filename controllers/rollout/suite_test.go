package rollout

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/vigil-dev/vigil/analysis"
	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/analysisrun"
	approvalwebhook "github.com/vigil-dev/vigil/controllers/approval"
	"github.com/vigil-dev/vigil/controllers/trustpolicy"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/hack/promtest"
	"github.com/vigil-dev/vigil/hack/testenv"
	"github.com/vigil-dev/vigil/provenance"
)

var (
	cfg    *rest.Config
	scheme = runtime.NewScheme()
	k8s    client.Client // uncached, for the tests' own reads and writes
)

// The suite's Prometheus scrapes an exporter the tests set error rates on.
var (
	exporter *promtest.Exporter
	prom     *promtest.Server
)

func TestMain(m *testing.M) {
	gatewayCRD, err := testenv.GatewayAPICRDs()
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	ctrl.SetLogger(logr.Discard())
	if exporter, err = promtest.NewExporter(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if prom, err = promtest.Start([]string{exporter.Addr}, os.Stderr); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	connect := testenv.Connect(&cfg, scheme, &k8s, clientgoscheme.AddToScheme, vigilv1.AddToScheme, gatewayv1.Install)
	stopAdmission := func() {}
	testenv.Main(promtest.WithCleanup(m, func() { stopAdmission(); _ = prom.Stop(); _ = exporter.Close() }), func(c *rest.Config) error {
		if err := connect(c); err != nil {
			return err
		}
		// Every Approval of the suite goes through Vigil's admission
		// webhook, served and installed as a real install does.
		base, stop, err := testenv.ServeAdmission(c, scheme)
		if err != nil {
			return err
		}
		webhookBase = base
		stopAdmission = stop
		return nil
	}, gatewayCRD)
}

// webhookBase is where the suite's admission webhook is served.
var webhookBase string

// verifier is the image verifier of the manager startManager started last.
var verifier *provenance.Verifier

// startManager runs the Rollout and AnalysisRun controllers in a fresh
// manager, as the real binary does, until the returned function stops it.
// wrap, when set, wraps the manager's HTTP transport (fault injection).
func startManager(t testing.TB, wrap func(http.RoundTripper) http.RoundTripper) (stop func()) {
	t.Helper()
	return startManagerIn(t, "", wrap)
}

// startManagerIn is startManager with the manager watching namespace ns
// only: the Rollouts earlier tests left behind are not reconciled meanwhile.
func startManagerIn(t testing.TB, ns string, wrap func(http.RoundTripper) http.RoundTripper) (stop func()) {
	t.Helper()
	return testenv.StartManagerIn(t, ns, cfg, scheme, wrap, func(ctx context.Context, mgr ctrl.Manager) error {
		gw, err := GatewayAPIServed(mgr.GetRESTMapper())
		if err != nil || !gw {
			return fmt.Errorf("the test API server should serve HTTPRoutes (%v)", err)
		}
		verifier = provenance.NewVerifier(provenance.DefaultRegistry(), 2*time.Second, t.TempDir(), gitops.DefaultLimits(), 4096)
		key, err := approvalwebhook.Setup(ctx, mgr, testenv.Admission(nil))
		if err != nil {
			return err
		}
		r := &Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("vigil-rollout"),
			GatewayAPI: gw, Verifier: verifier, Seal: key}
		if err := r.SetupWithManager(ctx, mgr); err != nil {
			return err
		}
		tp := &trustpolicy.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Interval: 2 * time.Second}
		if err := tp.SetupWithManager(mgr); err != nil {
			return err
		}
		ar := &analysisrun.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("vigil-analysisrun"), Coalescer: analysis.NewCoalescer()}
		return ar.SetupWithManager(mgr)
	})
}

// newNamespace makes a namespace for one test.
func newNamespace(t testing.TB) string { return testenv.Namespace(t, k8s, "rollout-test") }

// kubelet stands in for the kubelet and the ReplicaSet controller, which
// envtest does not run: whenever a ReplicaSet in ns that ready accepts (nil
// accepts all) wants a different number of pods, it writes a status saying
// that many pods exist and are ready and available. No pods are created.
func kubelet(t testing.TB, ns string, ready func(*appsv1.ReplicaSet) bool) {
	t.Helper()
	testenv.Kubelet(t, cfg, ns, ready)
}

// newRollout is a Rollout of replicas pods running image.
func newRollout(ns, name string, replicas int32, image string, steps ...vigilv1.CanaryStep) *vigilv1.Rollout {
	labels := map[string]string{"app": name}
	return &vigilv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: vigilv1.RolloutSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
			Strategy: vigilv1.RolloutStrategy{Canary: vigilv1.CanaryStrategy{
				Steps:          steps,
				MaxSurge:       ptr.To(intstr.FromInt32(1)),
				MaxUnavailable: ptr.To(intstr.FromInt32(0)),
			}},
		},
	}
}

func weightStep(w int32) vigilv1.CanaryStep { return vigilv1.CanaryStep{SetWeight: ptr.To(w)} }
func pauseStep(d string) vigilv1.CanaryStep {
	return vigilv1.CanaryStep{Pause: &vigilv1.PauseStep{Duration: ptr.To(vigilv1.Duration(d))}}
}
func approvalStep() vigilv1.CanaryStep {
	return vigilv1.CanaryStep{Approval: &vigilv1.ApprovalStep{}}
}

// gatewayObjects creates the stable and canary Services and an HTTPRoute
// that splits between them, and routes ro through them.
func gatewayObjects(t testing.TB, ro *vigilv1.Rollout) {
	t.Helper()
	ctx := context.Background()
	for _, name := range []string{"stable", "canary"} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: ro.Name + "-" + name},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": ro.Name},
				Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		if err := k8s.Create(ctx, svc); err != nil {
			t.Fatalf("creating Service: %v", err)
		}
	}
	ref := func(name string) gatewayv1.HTTPBackendRef {
		return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
			Name: gatewayv1.ObjectName(name), Port: ptr.To(gatewayv1.PortNumber(80)),
		}}}
	}
	route := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: ro.Name},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "public"}}},
			Rules:           []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{ref(ro.Name + "-stable"), ref(ro.Name + "-canary")}}},
		},
	}
	if err := k8s.Create(ctx, route); err != nil {
		t.Fatalf("creating HTTPRoute: %v", err)
	}
	ro.Spec.Strategy.Canary.TrafficRouting = &vigilv1.TrafficRouting{GatewayAPI: &vigilv1.GatewayAPITrafficRouting{
		HTTPRoute: ro.Name, StableService: ro.Name + "-stable", CanaryService: ro.Name + "-canary",
	}}
}

// get reads a Rollout's current state.
func get(g Gomega, ro *vigilv1.Rollout) *vigilv1.Rollout {
	out := &vigilv1.Rollout{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(ro), out)).To(Succeed())
	return out
}

// replicaSets lists a Rollout's ReplicaSets by revision.
func replicaSets(g Gomega, ro *vigilv1.Rollout) map[string]*appsv1.ReplicaSet {
	var list appsv1.ReplicaSetList
	g.Expect(k8s.List(context.Background(), &list, client.InNamespace(ro.Namespace), client.MatchingLabels{vigilv1.LabelRollout: ro.Name})).To(Succeed())
	out := map[string]*appsv1.ReplicaSet{}
	for i := range list.Items {
		out[revisionOf(&list.Items[i])] = &list.Items[i]
	}
	return out
}

// canaryWeight reads the HTTPRoute's canary weight.
func canaryWeight(g Gomega, ro *vigilv1.Rollout) int32 {
	route := &gatewayv1.HTTPRoute{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ro.Namespace, Name: ro.Name}, route)).To(Succeed())
	w := route.Spec.Rules[0].BackendRefs[1].Weight
	g.Expect(w).NotTo(BeNil(), "Vigil sets the canary weight")
	return *w
}

// approve creates an Approval (or Reject) of revision at step.
func approve(t testing.TB, ro *vigilv1.Rollout, name, revision string, step int32, decision vigilv1.ApprovalDecision) *vigilv1.Approval {
	t.Helper()
	a := &vigilv1.Approval{
		ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: name},
		Spec: vigilv1.ApprovalSpec{
			RolloutRef: vigilv1.LocalObjectReference{Name: ro.Name}, Revision: revision, Step: step, Decision: decision,
		},
	}
	if decision == vigilv1.ApprovalReject {
		a.Spec.Reason = "the canary looks wrong"
	}
	if err := k8s.Create(context.Background(), a); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating Approval %s: %v", name, err)
	}
	return a
}

// waitPromoted waits until ro's current template is stable and fully up.
func waitPromoted(t testing.TB, ro *vigilv1.Rollout, timeout time.Duration) *vigilv1.Rollout {
	t.Helper()
	var out *vigilv1.Rollout
	NewWithT(t).Eventually(func(g Gomega) {
		out = get(g, ro)
		g.Expect(out.Status.Phase).To(Equal(vigilv1.RolloutPhasePromoted), out.Status.Message)
		g.Expect(out.Status.CanaryRevision).To(BeEmpty())
		g.Expect(readyCondition(out)).To(Equal(metav1.ConditionTrue))
		g.Expect(out.Status.ObservedGeneration).To(Equal(out.Generation))
	}, timeout, 20*time.Millisecond).Should(Succeed())
	return out
}

func readyCondition(ro *vigilv1.Rollout) metav1.ConditionStatus {
	for _, c := range ro.Status.Conditions.Conditions {
		if c.Type == vigilv1.ConditionReady {
			return c.Status
		}
	}
	return metav1.ConditionUnknown
}

// newImage changes the Rollout's image, starting a new revision.
func newImage(t testing.TB, ro *vigilv1.Rollout, image string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		cur := get(g, ro)
		cur.Spec.Template.Spec.Containers[0].Image = image
		g.Expect(k8s.Update(context.Background(), cur)).To(Succeed())
	}).Should(Succeed())
}

func metricsOff() metricsserver.Options { return metricsserver.Options{BindAddress: "0"} }

// watchNamespace calls on, under mu, for every version of the listed kinds
// the API server stores in ns, until the test ends.
func watchNamespace(t *testing.T, ns string, mu *sync.Mutex, on func(client.Object), lists ...client.ObjectList) {
	t.Helper()
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, list := range lists {
		w, err := wc.Watch(ctx, list, client.InNamespace(ns))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-w.ResultChan():
					if !ok {
						return
					}
					if o, ok := ev.Object.(client.Object); ok {
						mu.Lock()
						on(o)
						mu.Unlock()
					}
				}
			}
		}()
	}
}
