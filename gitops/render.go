package gitops

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/outcome"
)

// hookAnnotation marks an Argo CD hook, which Vigil does not run.
const hookAnnotation = "argocd.argoproj.io/hook"

// Render turns the directory dir of fs into objects: with kustomize when dir
// holds a kustomization, otherwise every .yaml, .yml and .json file under
// dir, in path order. Kustomize runs with builtin plugins only (no exec or
// Go plugins, no helm), loads files only from within each kustomization's
// root, and every file or base a kustomization names must be in the
// repository: remote bases and URLs are refused before kustomize sees them.
func Render(fs filesys.FileSystem, dir string, limits Limits) ([]*unstructured.Unstructured, error) {
	dir = path.Join("/", dir)
	if !fs.IsDir(dir) {
		return nil, outcome.Failf(ReasonRenderFailed, "path %s is not a directory of the repository", strings.TrimPrefix(dir, "/"))
	}
	var objs []*unstructured.Unstructured
	var err error
	if kustomization(fs, dir) != "" {
		objs, err = renderKustomize(fs, dir)
	} else {
		objs, err = renderPlain(fs, dir, limits)
	}
	if err != nil {
		return nil, err
	}
	if len(objs) > limits.Manifests {
		return nil, limits.exceeded("objects rendered", int64(len(objs)), int64(limits.Manifests))
	}
	return objs, check(objs)
}

// kustomization is the kustomization file of dir, or "".
func kustomization(fs filesys.FileSystem, dir string) string {
	for _, name := range konfig.RecognizedKustomizationFileNames() {
		if p := path.Join(dir, name); fs.Exists(p) && !fs.IsDir(p) {
			return p
		}
	}
	return ""
}

func renderPlain(fs filesys.FileSystem, dir string, limits Limits) ([]*unstructured.Unstructured, error) {
	var files []string
	err := fs.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			if !info.IsDir() {
				files = append(files, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, outcome.Failf(ReasonRenderFailed, "listing %s: %v", dir, err)
	}
	sort.Strings(files)
	var objs []*unstructured.Unstructured
	for _, f := range files {
		b, err := fs.ReadFile(f)
		if err != nil {
			return nil, outcome.Failf(ReasonRenderFailed, "reading %s: %v", f, err)
		}
		got, err := decode(b, limits.Manifests-len(objs))
		if err != nil {
			return nil, outcome.Failf(ReasonRenderFailed, "%s: %v", strings.TrimPrefix(f, "/"), err)
		}
		objs = append(objs, got...)
	}
	return objs, nil
}

// decode reads a stream of YAML or JSON documents, at most max objects;
// List kinds are expanded. The YAML parser refuses alias expansion that
// grows out of proportion to the document.
func decode(b []byte, max int) ([]*unstructured.Unstructured, error) {
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return nil, err
			}
			for i := range l.Items {
				out = append(out, &l.Items[i])
			}
		} else {
			out = append(out, u)
		}
		if len(out) > max {
			return nil, fmt.Errorf("more objects than the limit allows")
		}
	}
}

func renderKustomize(fs filesys.FileSystem, dir string) ([]*unstructured.Unstructured, error) {
	if err := checkKustomizations(fs); err != nil {
		return nil, err
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	opts.PluginConfig = types.DisabledPluginConfig()
	rm, err := krusty.MakeKustomizer(opts).Run(fs, dir)
	if err != nil {
		return nil, outcome.Failf(ReasonRenderFailed, "kustomize: %v", err)
	}
	objs := make([]*unstructured.Unstructured, 0, rm.Size())
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			return nil, outcome.Failf(ReasonRenderFailed, "kustomize: %v", err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs, nil
}

// checkKustomizations refuses any kustomization in the tree that names a
// file or base outside the repository (a URL, a Git remote) or asks for
// helm, so kustomize never reaches the network.
func checkKustomizations(fs filesys.FileSystem) error {
	var problems []string
	err := fs.Walk("/", func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		name := path.Base(p)
		for _, k := range konfig.RecognizedKustomizationFileNames() {
			if name == k {
				problems = append(problems, checkKustomization(fs, p)...)
			}
		}
		return nil
	})
	if err != nil {
		return outcome.Failf(ReasonRenderFailed, "listing kustomizations: %v", err)
	}
	if len(problems) > 0 {
		return outcome.Failf(ReasonRemoteRefused, "%s", strings.Join(problems, "; "))
	}
	return nil
}

func checkKustomization(fs filesys.FileSystem, file string) []string {
	b, err := fs.ReadFile(file)
	if err != nil {
		return []string{fmt.Sprintf("reading %s: %v", file, err)}
	}
	var k types.Kustomization
	if err := yaml.Unmarshal(b, &k); err != nil {
		return []string{fmt.Sprintf("%s: %v", strings.TrimPrefix(file, "/"), err)}
	}
	dir := path.Dir(file)
	var out []string
	for _, ref := range referencedPaths(&k) {
		field, p := ref[0], ref[1]
		if p == "" || strings.ContainsAny(p, "\n") {
			continue // inline content
		}
		if !fs.Exists(path.Join(dir, p)) {
			out = append(out, fmt.Sprintf("%s: %s names %q, which is not in the repository (remote bases, URLs and files outside the repository are disabled)",
				strings.TrimPrefix(file, "/"), field, p))
		}
	}
	if len(k.HelmCharts) > 0 || len(k.HelmChartInflationGenerator) > 0 || k.HelmGlobals != nil {
		out = append(out, fmt.Sprintf("%s: helm charts are disabled", strings.TrimPrefix(file, "/")))
	}
	return out
}

// referencedPaths lists every (field, path) a kustomization reads a file
// or a directory from.
func referencedPaths(k *types.Kustomization) [][2]string {
	var out [][2]string
	add := func(field string, paths ...string) {
		for _, p := range paths {
			out = append(out, [2]string{field, p})
		}
	}
	add("resources", k.Resources...)
	add("components", k.Components...)
	add("bases", k.Bases...)
	add("crds", k.Crds...)
	add("configurations", k.Configurations...)
	add("generators", k.Generators...)
	add("transformers", k.Transformers...)
	add("validators", k.Validators...)
	for _, p := range k.PatchesStrategicMerge {
		add("patchesStrategicMerge", string(p))
	}
	for _, p := range append(append([]types.Patch{}, k.Patches...), k.PatchesJson6902...) {
		add("patches", p.Path)
	}
	for _, r := range k.Replacements {
		add("replacements", r.Path)
	}
	if p := k.OpenAPI["path"]; p != "" {
		add("openapi", p)
	}
	kv := func(field string, s types.KvPairSources) {
		for _, f := range s.FileSources {
			if _, after, ok := strings.Cut(f, "="); ok {
				f = after
			}
			add(field, f)
		}
		add(field, s.EnvSources...)
	}
	for _, g := range k.ConfigMapGenerator {
		kv("configMapGenerator", g.KvPairSources)
	}
	for _, g := range k.SecretGenerator {
		kv("secretGenerator", g.KvPairSources)
	}
	return out
}

// check refuses objects without apiVersion, kind or name, hooks, and
// objects that appear twice.
func check(objs []*unstructured.Unstructured) error {
	seen := map[string]bool{}
	for i, o := range objs {
		if o.GetAPIVersion() == "" || o.GetKind() == "" || o.GetName() == "" {
			return outcome.Failf(ReasonRenderFailed, "object %d (kind %q, name %q) needs apiVersion, kind and metadata.name", i+1, o.GetKind(), o.GetName())
		}
		if _, ok := o.GetAnnotations()[hookAnnotation]; ok {
			return outcome.Failf(ReasonRenderFailed, "%s %s is an Argo CD hook; hooks are not run by Vigil", o.GetKind(), o.GetName())
		}
		key := o.GroupVersionKind().GroupKind().String() + "/" + o.GetNamespace() + "/" + o.GetName()
		if seen[key] {
			return outcome.Failf(ReasonRenderFailed, "%s %s appears twice", o.GetKind(), o.GetName())
		}
		seen[key] = true
	}
	return nil
}
