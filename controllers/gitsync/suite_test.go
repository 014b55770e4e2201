package gitsync

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
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

// hooks serves the receiver of a manager started by startManager.
type hooks struct {
	URL string
	rc  *Receiver
}

// startManager runs the GitSync controller until the test ends, and
// serves its push receiver on loopback.
func startManager(t testing.TB, limits gitops.Limits) *hooks {
	t.Helper()
	h := &hooks{}
	testenv.StartManager(t, cfg, scheme, nil, func(_ context.Context, mgr ctrl.Manager) error {
		rc, err := Setup(mgr, Options{Limits: limits})
		h.rc = rc
		return err
	})
	srv := httptest.NewServer(h.rc)
	t.Cleanup(srv.Close)
	h.URL = srv.URL + PushPath
	return h
}

// push sends a GitHub push delivery for repoURL signed with secret and
// returns the status code.
func (h *hooks) push(t testing.TB, repoURL, delivery, secret string) int {
	t.Helper()
	body := fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"clone_url":%q}}`, delivery, repoURL)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	req, _ := http.NewRequest(http.MethodPost, h.URL, strings.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func newNamespace(t testing.TB) string { return testenv.Namespace(t, k8s, "gitsync-test") }

const hookSecret = "push-secret"

// newGitSync creates a GitSync of url's main branch, with a webhook secret,
// and lets change adjust it first.
func newGitSync(t testing.TB, ns, name, url string, change func(*vigilv1.GitSync)) *vigilv1.GitSync {
	t.Helper()
	g := NewWithT(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-hook"}, StringData: map[string]string{"token": hookSecret}}
	g.Expect(k8s.Create(context.Background(), secret)).To(Succeed())
	gs := &vigilv1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: vigilv1.GitSyncSpec{
			URL: url, Ref: vigilv1.GitRef{Branch: "main"}, Path: "deploy",
			Interval: "10s", Timeout: ptr.To(vigilv1.Duration("20s")),
			WebhookSecretRef: &vigilv1.LocalObjectReference{Name: name + "-hook"},
		},
	}
	if change != nil {
		change(gs)
	}
	g.Expect(k8s.Create(context.Background(), gs)).To(Succeed())
	return gs
}

// get reads a GitSync.
func get(g Gomega, gs *vigilv1.GitSync) *vigilv1.GitSync {
	out := &vigilv1.GitSync{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(gs), out)).To(Succeed())
	return out
}

func condition(gs *vigilv1.GitSync, t string) metav1.Condition {
	for _, c := range gs.Status.Conditions.Conditions {
		if c.Type == t {
			return c
		}
	}
	return metav1.Condition{}
}

// eventually is the wait for something a reconcile does: generous, since
// the suite shares two cores with envtest.
func eventually(g Gomega, f any) AsyncAssertion {
	return g.Eventually(f).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond)
}
