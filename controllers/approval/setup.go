package approval

import (
	"context"
	"fmt"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	proof "github.com/vigil-dev/vigil/evidence"
)

// The manager keeps its webhook certificate and its sealing key in
// Secrets of its own namespace, and injects the CA into the webhook
// configurations it serves.
// +kubebuilder:rbac:groups="",namespace=vigil-system,resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=selfsubjectreviews,verbs=create

// SealKeyName is the key of the sealing Secret that holds the key.
const SealKeyName = "key"

// Options say where the webhook keeps its Secrets and what it serves.
type Options struct {
	// Namespace holds both Secrets.
	Namespace string
	// CertSecret holds the CA and serving certificate (the rotator's).
	CertSecret string
	// SealSecret holds the key Approvals are sealed with; made once, at
	// random, by the first manager that finds it missing.
	SealSecret string
	// Configuration names the Mutating- and ValidatingWebhookConfiguration
	// whose CA the rotator keeps current.
	Configuration string
	// DNSNames the serving certificate is valid for; the first is the
	// Service's name in the cluster (or localhost out of one).
	DNSNames []string
	// Serving is the certificate bridge the webhook server was built with;
	// nil when this manager serves no webhook.
	Serving *Serving
}

// Setup loads (or makes) the sealing key and, when this manager serves the
// webhook, adds the certificate rotator, the bridge and the handlers. It
// returns the key the Rollout controller opens seals with.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) (proof.Key, error) {
	key, err := sealKey(ctx, mgr, types.NamespacedName{Namespace: o.Namespace, Name: o.SealSecret})
	if err != nil {
		return proof.Key{}, err
	}
	if o.Serving == nil {
		return key, nil
	}
	me, err := whoAmI(ctx, mgr)
	if err != nil {
		return proof.Key{}, err
	}
	certs := types.NamespacedName{Namespace: o.Namespace, Name: o.CertSecret}
	if err := ensureSecret(ctx, mgr, certs, nil); err != nil {
		return proof.Key{}, err
	}
	o.Serving.Secret, o.Serving.Reader = certs, mgr.GetAPIReader()
	if err := mgr.Add(o.Serving); err != nil {
		return proof.Key{}, err
	}
	if err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey: certs, CertDir: o.Serving.Dir, CAName: "vigil-webhook-ca", CAOrganization: "vigil.dev",
		DNSName: o.DNSNames[0], ExtraDNSNames: o.DNSNames[1:], IsReady: make(chan struct{}),
		Webhooks: []rotator.WebhookInfo{{Name: o.Configuration, Type: rotator.Mutating}, {Name: o.Configuration, Type: rotator.Validating}},
		// Every replica serves the webhook; the Secret's resourceVersion
		// decides between replicas that renew at once.
		RequireLeaderElection: false,
	}); err != nil {
		return proof.Key{}, fmt.Errorf("adding the webhook certificate rotator: %w", err)
	}
	w := &Admission{Reader: mgr.GetAPIReader(), Client: mgr.GetClient(), Key: key, Controller: me}
	w.Register(mgr.GetWebhookServer(), mgr.GetScheme())
	return key, nil
}

// sealKey reads the sealing key, making it when the Secret is missing.
func sealKey(ctx context.Context, mgr ctrl.Manager, name types.NamespacedName) (proof.Key, error) {
	if err := ensureSecret(ctx, mgr, name, map[string][]byte{SealKeyName: proof.GenerateKey()}); err != nil {
		return proof.Key{}, err
	}
	sec := &corev1.Secret{}
	if err := mgr.GetAPIReader().Get(ctx, name, sec); err != nil {
		return proof.Key{}, fmt.Errorf("reading the sealing key %s: %w", name, err)
	}
	key, err := proof.NewKey(sec.Data[SealKeyName])
	if err != nil {
		return proof.Key{}, fmt.Errorf("Secret %s: %w", name, err)
	}
	return key, nil
}

// ensureSecret creates the Secret with data unless it exists.
func ensureSecret(ctx context.Context, mgr ctrl.Manager, name types.NamespacedName, data map[string][]byte) error {
	err := mgr.GetAPIReader().Get(ctx, name, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		if err != nil {
			return fmt.Errorf("reading Secret %s: %w", name, err)
		}
		return nil
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: name.Namespace, Name: name.Name,
		Labels: map[string]string{"app.kubernetes.io/name": "vigil-controller"}}, Data: data}
	if data != nil {
		sec.Immutable = ptr.To(true)
	}
	if err := mgr.GetClient().Create(ctx, sec); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Secret %s: %w", name, err)
	}
	return nil
}

// whoAmI is the manager's own username, as the API server sees it.
func whoAmI(ctx context.Context, mgr ctrl.Manager) (string, error) {
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return "", err
	}
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("asking the API server who this manager is (SelfSubjectReview): %w", err)
	}
	return r.Status.UserInfo.Username, nil
}
