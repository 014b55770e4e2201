package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	proof "github.com/vigil-dev/vigil/evidence"
	"github.com/vigil-dev/vigil/hack/testenv"
)

// podsOf creates one pod from the template of each ReplicaSet of ro that
// wants pods, as the ReplicaSet controller would (the test API server
// runs none).
func podsOf(t *testing.T, g Gomega, ro *vigilv1.Rollout) []corev1.Pod {
	t.Helper()
	var sets appsv1.ReplicaSetList
	g.Expect(k8s.List(context.Background(), &sets, client.InNamespace(ro.Namespace), client.MatchingLabels{vigilv1.LabelRollout: ro.Name})).To(Succeed())
	var out []corev1.Pod
	for _, rs := range sets.Items {
		if rs.Spec.Replicas == nil || *rs.Spec.Replicas == 0 {
			continue
		}
		pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, GenerateName: rs.Name + "-", Labels: rs.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(&rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}},
			Spec: rs.Spec.Template.Spec}
		g.Expect(k8s.Create(context.Background(), &pod)).To(Succeed())
		out = append(out, pod)
	}
	return out
}

func TestEvidenceIsReadAndCheckedWithKubectlVigil(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := testenv.Namespace(t, k8s, "evidence")
	testenv.Kubelet(t, cfg, ns, nil)
	priv, pub := keyFiles(t)
	pemBytes, err := os.ReadFile(priv)
	g.Expect(err).NotTo(HaveOccurred())
	signer, err := proof.LoadSigner(pemBytes)
	g.Expect(err).NotTo(HaveOccurred())
	startSigningController(t, signer)
	testenv.BindApprovers(t, k8s, ns, "alice")
	run, _, _ := plugin(t)
	vigil := func(args ...string) (string, error) { return run(append(args, "-n", ns)...) }

	ro := newRollout(ns, "web:v1")
	ro.Spec.Strategy.Canary.Steps = ro.Spec.Strategy.Canary.Steps[:1]
	g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	g.Eventually(func() (string, error) { return vigil("list") }, 20*time.Second, 200*time.Millisecond).Should(MatchRegexp(`(?m)^web\s+Promoted\s`))
	v1 := get(g, ro).Status.StableRevision
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		cur.Spec.Template.Spec.Containers[0].Image = "web:v2"
		g.Expect(k8s.Update(ctx, cur)).To(Succeed())
	}).Should(Succeed())
	g.Eventually(func() (string, error) { return vigil("list") }, 20*time.Second, 200*time.Millisecond).Should(ContainSubstring("approve step 0 (0/1)"))
	out, err := vigil("approve", "web", "--as", "alice", "--reason", "dashboards look fine")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Eventually(func(g Gomega) {
		out, err := vigil("evidence", "show", "web")
		g.Expect(err).NotTo(HaveOccurred(), out)
		g.Expect(out).To(ContainSubstring("Promotion Completed"))
	}, 20*time.Second, 200*time.Millisecond).Should(Succeed())

	out, err = vigil("evidence", "show", "web")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring("app=web:v2@(no digest)"))
	g.Expect(out).To(MatchRegexp(`Approval Approve\s+by alice \(admitted [0-9:.]+\), scope Step; reason: dashboards look fine; step 0`))
	out, err = vigil("evidence", "show", "web", "--revision", v1)
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring("revision " + v1 + " (finalised, Promoted, signed)"))
	out, err = vigil("evidence", "verify", "web", "--key", pub)
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(MatchRegexp(`OK: 2 records, \d+ entries of Rollout web`))
	_, otherPub := keyFiles(t)
	out, err = vigil("evidence", "verify", "web", "--key", otherPub)
	g.Expect(err).To(HaveOccurred(), out)
	g.Expect(out).To(MatchRegexp(`BROKEN: record web-` + v1 + `-1, entry \d+: attestation: the attestation's signature does not verify with this key`))
	out, err = vigil("evidence", "export", "web", "--revision", v1, "--signed")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring(`"dsseEnvelope"`))
	g.Expect(out).To(ContainSubstring(`"payloadType":"application/vnd.in-toto+json"`))
	out, err = vigil("evidence", "export", "web")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring(`"_type": "https://in-toto.io/Statement/v1"`))
	g.Expect(out).To(ContainSubstring(`"predicateType": "https://vigil.dev/ReleaseRecord/v1"`))
	g.Expect(out).To(ContainSubstring(`"user": "alice"`))

	// What runs: each pod against the record of its revision. A
	// ReplicaSet edited by hand runs what no record names.
	pods := podsOf(t, g, ro)
	g.Expect(pods).To(HaveLen(1))
	out, err = vigil("evidence", "running", "web")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(MatchRegexp(pods[0].Name + `\s+app\s+\S+\s+-\s+web-\S+\s+-\s+-\s+alice\s+yes \(recorded; the Rollout verifies no provenance\)`))
	var sets appsv1.ReplicaSetList
	g.Expect(k8s.List(ctx, &sets, client.InNamespace(ns), client.MatchingLabels{vigilv1.LabelRollout: "web"})).To(Succeed())
	for _, rs := range sets.Items {
		if *rs.Spec.Replicas > 0 {
			rs.Spec.Template.Spec.Containers[0].Image = "web:by-hand"
			g.Expect(k8s.Update(ctx, &rs)).To(Succeed())
		}
	}
	edited := podsOf(t, g, ro)
	out, err = vigil("evidence", "running", "web")
	g.Expect(err).To(HaveOccurred(), out)
	g.Expect(out).To(MatchRegexp(edited[0].Name + `.*NO: runs web:by-hand, the record names web:v2`))

	// A deleted record is named by verify.
	var recs vigilv1.ReleaseRecordList
	g.Expect(k8s.List(ctx, &recs, client.InNamespace(ns))).To(Succeed())
	newest := get(g, ro).Status.Evidence.Record
	g.Expect(k8s.Delete(ctx, &vigilv1.ReleaseRecord{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: newest}})).To(Succeed())
	out, err = vigil("evidence", "verify", "web")
	g.Expect(err).To(HaveOccurred(), out)
	g.Expect(strings.Split(out, "\n")[0]).To(HavePrefix("BROKEN: record " + newest + ", entry "))
}

func get(g Gomega, ro *vigilv1.Rollout) *vigilv1.Rollout {
	out := &vigilv1.Rollout{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(ro), out)).To(Succeed())
	return out
}

// keyFiles writes a new P-256 key pair as PEM files and returns their paths.
func keyFiles(t *testing.T) (privPath, pubPath string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := cryptoutils.MarshalPrivateKeyToPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	privPath, pubPath = filepath.Join(dir, "key.pem"), filepath.Join(dir, "key.pub")
	if err := os.WriteFile(privPath, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return privPath, pubPath
}
