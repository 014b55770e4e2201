package main

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/approval"
	"github.com/vigil-dev/vigil/controllers/rollout"
	proof "github.com/vigil-dev/vigil/evidence"
	"github.com/vigil-dev/vigil/hack/promtest"
	"github.com/vigil-dev/vigil/hack/testenv"
)

var (
	cfg        *rest.Config
	k8s        client.Client
	fullScheme = runtime.NewScheme()
)

func TestMain(m *testing.M) {
	connect := testenv.Connect(&cfg, fullScheme, &k8s, clientgoscheme.AddToScheme, vigilv1.AddToScheme)
	stopAdmission := func() {}
	testenv.Main(promtest.WithCleanup(m, func() { stopAdmission() }), func(c *rest.Config) error {
		if err := connect(c); err != nil {
			return err
		}
		_, stop, err := testenv.ServeAdmission(c, fullScheme)
		stopAdmission = stop
		return err
	})
}

// plugin builds kubectl-vigil and writes a kubeconfig for the test API
// server; run runs the binary with args and returns what it printed.
func plugin(t *testing.T) (run func(args ...string) (string, error), start func(args ...string) *exec.Cmd, out func() string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "kubectl-vigil")
	if b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building kubectl-vigil: %v\n%s", err, b)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin", Namespace: "default"}
	kc.CurrentContext = "test"
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	// The command first, then the flags, as kubectl passes them to a
	// plugin (and as __complete needs them: the word to complete is last).
	run = func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{args[0], "--kubeconfig", kubeconfig}, args[1:]...)...)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	var mu sync.Mutex
	var watched bytes.Buffer
	start = func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				mu.Lock()
				watched.WriteString(sc.Text() + "\n")
				mu.Unlock()
			}
		}()
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	out = func() string {
		mu.Lock()
		defer mu.Unlock()
		return watched.String()
	}
	return run, start, out
}

// startController runs the Rollout controller, which opens seals with the
// key the suite's webhook seals with.
func startController(t *testing.T) { startSigningController(t, nil) }

// startSigningController is startController with the controller signing
// each ReleaseRecord it finalises with signer.
func startSigningController(t *testing.T, signer *proof.Signer) {
	testenv.StartManager(t, cfg, fullScheme, nil, func(ctx context.Context, mgr ctrl.Manager) error {
		key, err := approval.Setup(ctx, mgr, testenv.Admission(nil))
		if err != nil {
			return err
		}
		r := &rollout.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("vigil-rollout"), Seal: key,
			EvidenceSigner: signer}
		return r.SetupWithManager(ctx, mgr)
	})
}

func newRollout(ns, image string) *vigilv1.Rollout {
	labels := map[string]string{"app": "web"}
	return &vigilv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: vigilv1.RolloutSpec{
			Replicas: ptr.To(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}},
			Strategy: vigilv1.RolloutStrategy{Canary: vigilv1.CanaryStrategy{
				Steps: []vigilv1.CanaryStep{
					{Approval: &vigilv1.ApprovalStep{}},
					{SetWeight: ptr.To(int32(50))},
					{Pause: &vigilv1.PauseStep{Duration: ptr.To(vigilv1.Duration("1h"))}},
				},
				MaxSurge: ptr.To(intstr.FromInt32(1)), MaxUnavailable: ptr.To(intstr.FromInt32(0)),
			}},
		},
	}
}

func TestTheSREDecidesWithKubectlVigil(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := testenv.Namespace(t, k8s, "plugin")
	testenv.Kubelet(t, cfg, ns, nil)
	startController(t)
	testenv.BindApprovers(t, k8s, ns, "alice")
	run, start, watched := plugin(t)
	vigil := func(args ...string) (string, error) { return run(append(args, "-n", ns)...) }

	ro := newRollout(ns, "web:v1")
	g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	g.Eventually(func() (string, error) { return vigil("list") }, 20*time.Second, 200*time.Millisecond).Should(MatchRegexp(`(?m)^web\s+Promoted\s`))

	start("get", "rollout", "web", "-w", "-n", ns)
	g.Eventually(watched, 10*time.Second).Should(ContainSubstring("Rollout " + ns + "/web  Promoted"))
	g.Eventually(func(g Gomega) {
		cur := &vigilv1.Rollout{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ro), cur)).To(Succeed())
		cur.Spec.Template.Spec.Containers[0].Image = "web:v2"
		g.Expect(k8s.Update(ctx, cur)).To(Succeed())
	}).Should(Succeed())
	g.Eventually(watched, 20*time.Second).Should(ContainSubstring("waiting: approval to PassStep"))
	g.Expect(watched()).To(ContainSubstring("canary  ReplicaSet web-"), "the tree shows the canary's ReplicaSet")

	// bob may read Rollouts and create Approvals, but not approve.
	g.Expect(k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "maker"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"vigil.dev"}, Resources: []string{"approvals"}, Verbs: []string{"create"}}}})).To(Succeed())
	for _, ref := range []rbacv1.RoleRef{{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "maker"}, {APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "vigil-viewer"}} {
		g.Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "bob-"}, RoleRef: ref,
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "bob"}}})).To(Succeed())
	}
	out, err := vigil("approve", "web", "--as", "bob")
	g.Expect(err).To(HaveOccurred())
	g.Expect(out).To(ContainSubstring(`approve refused: bob may not approve Rollout web: RBAC grants them no verb "approve"`))

	out, err = vigil("approve", "web", "--as", "alice", "--reason", "dashboards look fine")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring("recorded as made by alice"))
	g.Expect(out).To(ContainSubstring("Used: Rollout web acted on this Approve"))
	g.Eventually(watched, 20*time.Second).Should(ContainSubstring("step: 2 of 3 (pause 1h)"))

	out, err = vigil("reject", "web", "--as", "alice", "--reason", "x")
	g.Expect(err).To(HaveOccurred())
	g.Expect(out).To(ContainSubstring("waits for no approval now"))
	g.Expect(out).To(ContainSubstring("use kubectl vigil abort"))
	out, err = vigil("abort", "web", "--as", "alice")
	g.Expect(err).To(HaveOccurred())
	g.Expect(out).To(ContainSubstring("abort needs --reason"))
	out, err = vigil("abort", "web", "--as", "alice", "--reason", "latency doubled")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(MatchRegexp(`Reject of revision \S+ at step 2 of Rollout web`))
	g.Expect(out).To(MatchRegexp(`Rollout web: Roll(ing|ed)Back`))
	g.Eventually(watched, 20*time.Second).Should(ContainSubstring("waiting: approval to RetryRevision"))

	out, err = vigil("approve", "web", "--as", "alice")
	g.Expect(err).To(HaveOccurred())
	g.Expect(out).To(ContainSubstring("that is kubectl vigil retry, not approve"))
	seen := len(watched())
	out, err = vigil("retry", "web", "--as", "alice", "--reason", "the fix is in the config")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(MatchRegexp(`Rollout web: (Progressing|Paused): Canary`))
	// Retried at step 0, which waits for an approval: both decided on one
	// observation and stored together, so the watch sees the wait.
	g.Eventually(func() string { return watched()[seen:] }, 20*time.Second).Should(MatchRegexp(`Canary \S+ waits for approval of step 0`))

	g.Eventually(func() (string, error) { return vigil("list") }, 20*time.Second, 200*time.Millisecond).Should(ContainSubstring("approve step 0 (0/1)"))
	out, err = vigil("reject", "web", "--as", "alice", "--reason", "not today")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring("Used: Rollout web acted on this Reject"))
	g.Eventually(watched, 20*time.Second).Should(ContainSubstring("Rolling back revision"))

	// Shell completion of Rollout names.
	out, err = run("__complete", "-n", ns, "approve", "")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(strings.Split(out, "\n")[0]).To(Equal("web"))
	out, err = run("completion", "bash")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring("__complete"))
}
