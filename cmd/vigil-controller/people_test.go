package main

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestPeopleRolesGrantWhatTheySay binds the install's vigil-approver and
// vigil-viewer to two users in one namespace and asks the API server's RBAC
// authorizer (SubjectAccessReviews) what each may do.
func TestPeopleRolesGrantWhatTheySay(t *testing.T) {
	g := NewWithT(t)
	applyDefaultInstall(t)
	c, err := client.New(cfg, client.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "people-"}}
	g.Expect(c.Create(ctx, ns)).To(Succeed())
	for user, role := range map[string]string{"alice": "vigil-approver", "bob": "vigil-viewer"} {
		g.Expect(c.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
		})).To(Succeed())
	}
	may := func(user, verb, resource, subresource, name string) bool {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns.Name, Group: "vigil.dev", Verb: verb,
				Resource: resource, Subresource: subresource, Name: name}}}
		g.Expect(c.Create(ctx, sar)).To(Succeed())
		return sar.Status.Allowed
	}
	for _, tc := range []struct {
		user, verb, resource, subresource string
		allowed                           bool
	}{
		{"alice", "create", "approvals", "", true},
		{"alice", "approve", "rollouts", "", true},
		{"alice", "reject", "rollouts", "", true},
		{"alice", "get", "rollouts", "", true},
		{"alice", "patch", "approvals", "status", false},
		{"alice", "update", "rollouts", "", false},
		{"alice", "delete", "approvals", "", false},
		{"bob", "get", "rollouts", "", true},
		{"bob", "list", "approvals", "", true},
		{"bob", "create", "approvals", "", false},
		{"bob", "approve", "rollouts", "", false},
		{"bob", "reject", "rollouts", "", false},
		{"carol", "get", "rollouts", "", false},
	} {
		g.Expect(may(tc.user, tc.verb, tc.resource, tc.subresource, "web")).To(Equal(tc.allowed),
			"%s %s %s/%s", tc.user, tc.verb, tc.resource, tc.subresource)
	}

	viewer, approver := &rbacv1.ClusterRole{}, &rbacv1.ClusterRole{}
	g.Expect(c.Get(ctx, client.ObjectKey{Name: "vigil-viewer"}, viewer)).To(Succeed())
	g.Expect(c.Get(ctx, client.ObjectKey{Name: "vigil-approver"}, approver)).To(Succeed())
	g.Expect(viewer.Labels).To(HaveKeyWithValue("rbac.authorization.k8s.io/aggregate-to-view", "true"))
	g.Expect(approver.Labels).NotTo(HaveKey(ContainSubstring("aggregate-to")), "approving is bound on purpose, never inherited")
}
