package gitops_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/vigil-dev/vigil/gitops"
)

func memFS(t *testing.T, files map[string]string) filesys.FileSystem {
	t.Helper()
	fs := filesys.MakeFsInMemory()
	for p, c := range files {
		if err := fs.WriteFile(p, []byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	return fs
}

const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  a: b\n"

func TestRenderPlainYAML(t *testing.T) {
	g := NewWithT(t)
	fs := memFS(t, map[string]string{
		"/deploy/b.yaml":        strings.ReplaceAll(cm, "%s", "second") + "---\n" + strings.ReplaceAll(cm, "%s", "third"),
		"/deploy/a.yml":         strings.ReplaceAll(cm, "%s", "first"),
		"/deploy/sub/list.json": `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"svc"}}]}`,
		"/deploy/README.md":     "not a manifest",
		"/other/x.yaml":         strings.ReplaceAll(cm, "%s", "elsewhere"),
	})
	objs, err := gitops.Render(fs, "deploy", gitops.DefaultLimits())
	g.Expect(err).NotTo(HaveOccurred())
	var names []string
	for _, o := range objs {
		names = append(names, o.GetKind()+"/"+o.GetName())
	}
	g.Expect(names).To(Equal([]string{"ConfigMap/first", "ConfigMap/second", "ConfigMap/third", "Service/svc"}))
}

func TestRenderRefusesBadManifests(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"no name", "apiVersion: v1\nkind: ConfigMap\n", "needs apiVersion, kind and metadata.name"},
		{"twice", strings.ReplaceAll(cm, "%s", "x") + "---\n" + strings.ReplaceAll(cm, "%s", "x"), "ConfigMap x appears twice"},
		{"hook", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: h\n  annotations:\n    argocd.argoproj.io/hook: PreSync\n", "hooks are not run"},
		{"not yaml", "kind: [", "deploy/x.yaml"},
		{"alias bomb", aliasBomb(), "deploy/x.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := gitops.Render(memFS(t, map[string]string{"/deploy/x.yaml": tc.content}), "deploy", gitops.DefaultLimits())
			g.Expect(reasonOf(err)).To(Equal(gitops.ReasonRenderFailed))
			g.Expect(err.Error()).To(ContainSubstring(tc.want))
		})
	}
}

// aliasBomb is a "billion laughs" document: a few hundred bytes that would
// expand to 10^9 strings.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\na0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	for i := 1; i <= 9; i++ {
		prev := "*a" + string(rune('0'+i-1))
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [" + strings.Repeat(prev+",", 9) + prev + "]\n")
	}
	return b.String()
}

func TestRenderManifestLimit(t *testing.T) {
	g := NewWithT(t)
	var docs []string
	for _, n := range []string{"a", "b", "c"} {
		docs = append(docs, strings.ReplaceAll(cm, "%s", n))
	}
	l := gitops.DefaultLimits()
	l.Manifests = 2
	_, err := gitops.Render(memFS(t, map[string]string{"/d/x.yaml": strings.Join(docs, "---\n")}), "d", l)
	g.Expect(reasonOf(err)).To(Equal(gitops.ReasonRenderFailed))
	g.Expect(err.Error()).To(ContainSubstring("more objects than the limit allows"))
}

func TestRenderKustomize(t *testing.T) {
	g := NewWithT(t)
	fs := memFS(t, map[string]string{
		"/base/kustomization.yaml":    "resources:\n- cm.yaml\n",
		"/base/cm.yaml":               strings.ReplaceAll(cm, "%s", "settings"),
		"/overlay/kustomization.yaml": "resources:\n- ../base\nnamePrefix: prod-\ncommonLabels:\n  tier: web\nconfigMapGenerator:\n- name: extra\n  files:\n  - conf=extra.txt\n",
		"/overlay/extra.txt":          "hello",
	})
	objs, err := gitops.Render(fs, "overlay", gitops.DefaultLimits())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(objs).To(HaveLen(2))
	g.Expect(objs[0].GetName()).To(HavePrefix("prod-"))
	g.Expect(objs[0].GetLabels()).To(HaveKeyWithValue("tier", "web"))
}

func TestKustomizeNeverReachesTheNetworkOrRunsPrograms(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = w.Write([]byte(strings.ReplaceAll(cm, "%s", "remote")))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name          string
		kustomization string
		extra         map[string]string
		want          string
		reason        string
	}{
		{"http resource", "resources:\n- " + srv.URL + "/cm.yaml\n", nil, "which is not in the repository", gitops.ReasonRemoteRefused},
		{"git base", "resources:\n- " + strings.Replace(srv.URL, "http://", "git::http://", 1) + "/repo.git//deploy?ref=main\n", nil, "which is not in the repository", gitops.ReasonRemoteRefused},
		{"github shorthand", "resources:\n- github.com/example/repo/deploy?ref=v1\n", nil, "which is not in the repository", gitops.ReasonRemoteRefused},
		{"remote patch", "resources:\n- cm.yaml\npatches:\n- path: " + srv.URL + "/p.yaml\n", map[string]string{"/k/cm.yaml": strings.ReplaceAll(cm, "%s", "x")}, "which is not in the repository", gitops.ReasonRemoteRefused},
		{"file outside the repository", "configMapGenerator:\n- name: x\n  files:\n  - /etc/passwd\n", nil, "which is not in the repository", gitops.ReasonRemoteRefused},
		{"helm", "helmCharts:\n- name: app\n  repo: " + srv.URL + "\n", nil, "helm charts are disabled", gitops.ReasonRemoteRefused},
		{"exec plugin", "transformers:\n- fn.yaml\n", map[string]string{"/k/fn.yaml": "apiVersion: example.com/v1\nkind: Run\nmetadata:\n  name: run\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: /bin/sh\n"}, "kustomize", gitops.ReasonRenderFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			files := map[string]string{"/k/kustomization.yaml": tc.kustomization}
			for p, c := range tc.extra {
				files[p] = c
			}
			_, err := gitops.Render(memFS(t, files), "k", gitops.DefaultLimits())
			g.Expect(reasonOf(err)).To(Equal(tc.reason), "%v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.want))
			g.Expect(requests.Load()).To(BeZero(), "kustomize made a request")
		})
	}
}
