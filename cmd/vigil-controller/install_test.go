package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// TestDefaultInstallIsValid builds config/default as `kustomize build` does
// and applies every object to a real API server.
func TestDefaultInstallIsValid(t *testing.T) {
	g := NewWithT(t)
	kinds := applyDefaultInstall(t)
	g.Expect(kinds).To(HaveKeyWithValue("CustomResourceDefinition", 9))
	g.Expect(kinds).To(HaveKeyWithValue("Deployment", 1))
	g.Expect(kinds).To(HaveKeyWithValue("ClusterRole", 3), "the manager's role, vigil-viewer and vigil-approver")
	g.Expect(kinds).To(HaveKeyWithValue("MutatingWebhookConfiguration", 1))
	g.Expect(kinds).To(HaveKeyWithValue("ValidatingWebhookConfiguration", 1))
	g.Expect(kinds).To(HaveKeyWithValue("Role", 2), "leader election, and the Secrets of vigil-system only")

	c, err := client.New(cfg, client.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	dep := &appsv1.Deployment{}
	g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: "vigil-system", Name: "vigil-controller"}, dep)).To(Succeed())
	g.Expect(dep.Spec.Template.Spec.ServiceAccountName).To(Equal("vigil-controller"))
	g.Expect(dep.Spec.Template.Spec.Containers[0].Image).To(Equal("vigil-controller:dev"))

	binding := &rbacv1.ClusterRoleBinding{}
	g.Expect(c.Get(context.Background(), client.ObjectKey{Name: "vigil-manager"}, binding)).To(Succeed())
	g.Expect(binding.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: "vigil-controller", Namespace: "vigil-system"}))
}

// applyDefaultInstall builds config/default as `kustomize build` does,
// applies every object to the test API server (server-side apply, so it
// can run again) and counts them by kind.
func applyDefaultInstall(t *testing.T) map[string]int {
	g := NewWithT(t)
	c, err := client.New(cfg, client.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	// The install's webhooks call a Service no manager serves here.
	t.Cleanup(func() { removeWebhooks(t, c) })
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "../../config/default")
	g.Expect(err).NotTo(HaveOccurred())
	manifests, err := resources.AsYaml()
	g.Expect(err).NotTo(HaveOccurred())
	kinds := map[string]int{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			break
		} else {
			g.Expect(err).NotTo(HaveOccurred())
		}
		kinds[obj.GetKind()]++
		// CRDs are already installed by envtest; apply the rest for real.
		g.Expect(c.Patch(context.Background(), obj, client.Apply, client.FieldOwner("install-test"), client.ForceOwnership)).
			To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
	}
	return kinds
}
