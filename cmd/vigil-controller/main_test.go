package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/hack/cluster"
	"github.com/vigil-dev/vigil/hack/testenv"
)

var cfg *rest.Config

func TestMain(m *testing.M) {
	testenv.Main(m, func(c *rest.Config) error {
		cfg = c
		return nil
	})
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

func TestManagerServesProbesMetricsAndElectsALeader(t *testing.T) {
	g := NewWithT(t)
	scheme, err := newScheme()
	g.Expect(err).NotTo(HaveOccurred())
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "manager-"}}
	g.Expect(c.Create(context.Background(), ns)).To(Succeed())

	admission := freeAddr(t)
	o, err := parseFlags([]string{
		"--metrics-bind-address=" + freeAddr(t),
		"--health-probe-bind-address=" + freeAddr(t),
		"--leader-elect",
		"--leader-election-namespace=" + ns.Name,
		"--push-webhook-bind-address=" + freeAddr(t),
		"--admission-bind-address=" + admission,
		"--admission-dns-names=localhost",
		"--namespace=" + ns.Name,
	})
	g.Expect(err).NotTo(HaveOccurred())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, o) }()
	t.Cleanup(func() {
		cancel()
		g.Eventually(done, 30*time.Second).Should(Receive(BeNil()), "manager stops cleanly")
	})

	for _, path := range []string{"/healthz", "/readyz"} {
		g.Eventually(func() (int, error) {
			code, _, err := get("http://" + o.probeAddr + path)
			return code, err
		}, 30*time.Second, 100*time.Millisecond).Should(Equal(http.StatusOK), path)
	}
	g.Eventually(func() (string, error) {
		_, body, err := get("http://" + o.metricsAddr + "/metrics")
		return body, err
	}, 30*time.Second, 100*time.Millisecond).Should(ContainSubstring(`vigil_build_info{version="dev"} 1`))

	lease := &coordinationv1.Lease{}
	g.Eventually(func() (string, error) {
		err := c.Get(context.Background(), client.ObjectKey{Namespace: ns.Name, Name: o.leaderElectionID}, lease)
		if err != nil || lease.Spec.HolderIdentity == nil {
			return "", err
		}
		return *lease.Spec.HolderIdentity, nil
	}, 30*time.Second, 100*time.Millisecond).ShouldNot(BeEmpty(), "the manager holds the leader Lease")

	// The admission webhook is served with a certificate the manager made
	// and keeps in a Secret, and the CA it injected; no hand step.
	_, port, _ := net.SplitHostPort(admission)
	g.Expect(cluster.InstallWebhooks(context.Background(), c, testenv.WebhookManifests(), "https://localhost:"+port)).To(Succeed())
	t.Cleanup(func() { removeWebhooks(t, c) })
	g.Expect(cluster.WaitForAdmission(context.Background(), c, time.Minute)).To(Succeed())
	certs, seal := &corev1.Secret{}, &corev1.Secret{}
	g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns.Name, Name: o.certSecret}, certs)).To(Succeed())
	g.Expect(certs.Data).To(HaveKey("ca.crt"))
	g.Expect(certs.Data).To(HaveKey("tls.crt"))
	g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns.Name, Name: o.sealSecret}, seal)).To(Succeed())
	g.Expect(seal.Data["key"]).To(HaveLen(32), "a random 32-byte sealing key")
	g.Expect(seal.Immutable).To(HaveValue(BeTrue()))
}

// removeWebhooks deletes Vigil's webhook configurations, so the API server
// stops calling a manager that is gone.
func removeWebhooks(t *testing.T, c client.Client) {
	for _, obj := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		obj.SetName(cluster.WebhookConfiguration)
		if err := c.Delete(context.Background(), obj); client.IgnoreNotFound(err) != nil {
			t.Errorf("deleting %T: %v", obj, err)
		}
	}
}

func TestBadFlagsAreRejected(t *testing.T) {
	g := NewWithT(t)
	_, err := parseFlags([]string{"--leader-elect=maybe"})
	g.Expect(err).To(MatchError(ContainSubstring("invalid boolean value")))
	_, err = parseFlags([]string{"--rollout-workers=0"})
	g.Expect(err).To(MatchError(ContainSubstring("must be above 0")))
	o, err := parseFlags(nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(o.rolloutWorkers).To(Equal(8))
	g.Expect(o.qps).To(Equal(200.0))
}
