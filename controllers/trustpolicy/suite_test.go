package trustpolicy

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/hack/sigtest"
	"github.com/vigil-dev/vigil/hack/testenv"
)

var (
	cfg    *rest.Config
	scheme = runtime.NewScheme()
	k8s    client.Client
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	testenv.Main(m, testenv.Connect(&cfg, scheme, &k8s, clientgoscheme.AddToScheme, vigilv1.AddToScheme))
}

// keyPolicy creates a TrustPolicy with one key authority read from the
// Secret name, key cosign.pub; with pem nil the Secret is not made.
func keyPolicy(t *testing.T, ns, name string, pem []byte) *vigilv1.TrustPolicy {
	g := NewWithT(t)
	if pem != nil {
		g.Expect(k8s.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Data: map[string][]byte{"cosign.pub": pem}})).To(Succeed())
	}
	tp := &vigilv1.TrustPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: vigilv1.TrustPolicySpec{
		Authorities: []vigilv1.Authority{{Name: "release", Key: &vigilv1.KeyAuthority{SecretRef: vigilv1.SecretKeyReference{Name: name, Key: "cosign.pub"}}}},
	}}
	g.Expect(k8s.Create(context.Background(), tp)).To(Succeed())
	return tp
}

// TestAConflictedStatusPatchTellsNothingAndTheNextReconcileConverges: the
// reconcile whose status patch the API server refused (409) moved no
// metric; the next one stores the policy as loaded. Each failure to load
// has its own reason.
func TestAConflictedStatusPatchTellsNothingAndTheNextReconcileConverges(t *testing.T) {
	g := NewWithT(t)
	ns := testenv.Namespace(t, k8s, "trust-test")
	tp := keyPolicy(t, ns, "release", sigtest.NewKey(t).PublicPEM)
	missing := keyPolicy(t, ns, "missing", nil)
	broken := keyPolicy(t, ns, "broken", []byte("not a key"))
	c := testenv.NewConflict(client.ObjectKeyFromObject(tp))
	testenv.StartManager(t, cfg, scheme, nil, func(_ context.Context, mgr ctrl.Manager) error {
		r := &Reconciler{Client: c.Client(mgr.GetClient()), APIReader: mgr.GetAPIReader(), Interval: time.Minute}
		return r.SetupWithManager(mgr)
	})

	c.Expect(t, "TrustPolicy", 20*time.Second)
	ready := func(tp *vigilv1.TrustPolicy) func(g Gomega) *metav1.Condition {
		return func(g Gomega) *metav1.Condition {
			got := &vigilv1.TrustPolicy{}
			g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(tp), got)).To(Succeed())
			return meta.FindStatusCondition(got.Status.Conditions.Conditions, vigilv1.ConditionReady)
		}
	}
	reason := func(status metav1.ConditionStatus, reason string) OmegaMatcher {
		return And(Not(BeNil()), HaveField("Status", status), HaveField("Reason", reason))
	}
	g.Eventually(ready(tp)).WithTimeout(20 * time.Second).Should(reason(metav1.ConditionTrue, vigilv1.ReasonLoaded))
	g.Eventually(ready(missing)).WithTimeout(20 * time.Second).Should(reason(metav1.ConditionFalse, vigilv1.ReasonSecretNotFound))
	g.Eventually(ready(broken)).WithTimeout(20 * time.Second).Should(reason(metav1.ConditionFalse, vigilv1.ReasonPolicyInvalid))
}
