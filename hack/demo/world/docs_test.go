package world

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEachKindsPageShowsTheExampleTheSuiteApplies keeps the docs honest:
// the page of each kind holds, verbatim, the manifest the demo and the
// end-to-end suite apply ([[ ]] marks what the demo fills in).
func TestEachKindsPageShowsTheExampleTheSuiteApplies(t *testing.T) {
	for manifest, page := range map[string]string{
		"rollout.yaml":          "rollouts.md",
		"analysistemplate.yaml": "analysis.md",
		"trustpolicy.yaml":      "provenance.md",
		"gitsync.yaml":          "gitsync.md",
		"services.yaml":         "getting-started.md",
	} {
		raw, err := manifests.ReadFile("manifests/" + manifest)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", page))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), "```yaml\n"+string(raw)+"```") {
			t.Errorf("docs/%s does not show hack/demo/world/manifests/%s verbatim in a yaml block", page, manifest)
		}
	}
}
