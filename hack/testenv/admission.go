package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/vigil-dev/vigil/controllers/approval"
	"github.com/vigil-dev/vigil/hack/cluster"
)

// Admission is where a suite's admission webhook keeps its Secrets; the
// per-test managers read the sealing key from the same place.
func Admission(serving *approval.Serving) approval.Options {
	return approval.Options{Namespace: "vigil-system", CertSecret: "vigil-webhook-server-cert", SealSecret: "vigil-approval-seal",
		Configuration: cluster.WebhookConfiguration, DNSNames: []string{"localhost"}, Serving: serving}
}

// WebhookManifests is config/webhook/manifests.yaml.
func WebhookManifests() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "config", "webhook", "manifests.yaml")
}

// ServeAdmission runs Vigil's admission webhook for the whole suite, as the
// manager does: the rotator makes its certificate and injects the CA, and
// config/webhook's configurations are installed to call it on loopback.
// It returns the base URL the configurations call, once the API server
// admits through it; stop ends it.
func ServeAdmission(cfg *rest.Config, scheme *kruntime.Scheme) (base string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vigil-system"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		cancel()
		return "", nil, err
	}
	o := Admission(nil)
	serving, err := approval.NewServing(types.NamespacedName{Namespace: o.Namespace, Name: o.CertSecret})
	if err != nil {
		cancel()
		return "", nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		WebhookServer: webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: serving.Dir,
			TLSOpts: []func(*tls.Config){func(t *tls.Config) { t.GetCertificate = serving.GetCertificate }}})})
	if err != nil {
		cancel()
		return "", nil, err
	}
	if _, err := approval.Setup(ctx, mgr, Admission(serving)); err != nil {
		cancel()
		return "", nil, err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stop = func() { cancel(); <-done }
	base = fmt.Sprintf("https://localhost:%d", port)
	if err := cluster.InstallWebhooks(ctx, c, WebhookManifests(), base); err != nil {
		stop()
		return "", nil, err
	}
	if err := cluster.WaitForAdmission(ctx, c, time.Minute); err != nil {
		stop()
		return "", nil, err
	}
	return base, stop, nil
}
