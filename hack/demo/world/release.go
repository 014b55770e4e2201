package world

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/vigil-dev/vigil/hack/sigtest"
)

//go:embed manifests/*.yaml
var manifests embed.FS

// Version is one build of the app.
type Version struct {
	// Name is the tag, such as v2.
	Name string
	// ErrorRate is the share of requests the exporter answers with 500
	// for this build's pods.
	ErrorRate float64
	// Unsigned pushes the image without signature or provenance.
	Unsigned bool
}

// Release is what releasing a Version made.
type Release struct {
	Version
	// Source is the app commit the image is built from, Deploy the commit
	// that points the Rollout at the image.
	Source, Deploy string
	// Image is the tag the Rollout names; Digest what it resolves to.
	Image, Digest string
	// Pushed is when the deploy commit reached the Git server.
	Pushed time.Time
}

// Release plays a team's release of v: commit the app's source, build the
// image from it (push it to the registry), sign it and attest its SLSA
// provenance naming that commit (unless v.Unsigned), then commit the
// Rollout pointing at the image, push, and deliver the push webhook.
func (w *World) Release(ctx context.Context, v Version) (rel *Release, err error) {
	defer Recover(&err)
	rel = &Release{Version: v}
	if err := os.MkdirAll(filepath.Join(w.work, "app"), 0o755); err != nil {
		return nil, err
	}
	src := fmt.Sprintf("package main\n\n// version %s\nconst version = %q\n", v.Name, v.Name)
	if err := os.WriteFile(filepath.Join(w.work, "app", "main.go"), []byte(src), 0o644); err != nil {
		return nil, err
	}
	if rel.Source, err = w.commit("app: " + v.Name); err != nil {
		return nil, err
	}
	d := sigtest.Push(Fatal{}, w.Registry, "demo/web", v.Name)
	rel.Image, rel.Digest = w.Registry+"/demo/web:"+v.Name, d.DigestStr()
	if !v.Unsigned {
		sigtest.Sign(Fatal{}, w.key, d)
		sigtest.Attest(Fatal{}, w.key, d, d.DigestStr(), sigtest.SLSA(Builder, w.GitURL, rel.Source))
	}
	if err := w.writeManifest("rollout.yaml", "rollout.yaml", map[string]any{
		"Version":   v.Name,
		"ErrorRate": strconv.FormatFloat(v.ErrorRate, 'f', -1, 64),
		"Image":     rel.Image,
	}); err != nil {
		return nil, err
	}
	if rel.Deploy, err = w.commit("deploy: web " + v.Name); err != nil {
		return nil, err
	}
	rel.Pushed = time.Now()
	return rel, w.notify(ctx)
}

// commit commits everything in the work tree and pushes it to main.
func (w *World) commit(msg string) (string, error) {
	if err := w.git(w.work, "add", "-A"); err != nil {
		return "", err
	}
	if err := w.git(w.work, "commit", "-q", "-m", msg); err != nil {
		return "", err
	}
	if err := w.git(w.work, "push", "-q", "origin", "HEAD:main"); err != nil {
		return "", err
	}
	return w.gitOut(w.work, "rev-parse", "HEAD")
}

// RewriteHistory force-pushes main to a new commit whose parent is the
// parent of main's head: the last commit is replaced by another one, as a
// `git commit --amend && git push --force` does. It returns the new head.
func (w *World) RewriteHistory(ctx context.Context, msg string) (string, error) {
	if err := w.git(w.work, "commit", "-q", "--amend", "--allow-empty", "-m", msg); err != nil {
		return "", err
	}
	if err := w.git(w.work, "push", "-q", "--force", "origin", "HEAD:main"); err != nil {
		return "", err
	}
	head, err := w.gitOut(w.work, "rev-parse", "HEAD")
	if err != nil {
		return "", err
	}
	return head, w.notify(ctx)
}

// notify delivers a signed push webhook, as a Gitea server would.
func (w *World) notify(ctx context.Context) error {
	after, err := w.gitOut(w.work, "rev-parse", "HEAD")
	if err != nil {
		return err
	}
	before, err := w.gitOut(w.work, "rev-parse", "HEAD~1")
	if err != nil {
		before = strings.Repeat("0", 40)
	}
	// Like a real delivery, the body names the commits, so each push's body
	// differs (the receiver drops a body it has seen as a replay).
	body, err := json.Marshal(map[string]any{
		"ref":        "refs/heads/main",
		"before":     before,
		"after":      after,
		"repository": map[string]string{"clone_url": w.GitURL},
	})
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, []byte(w.hookSecret))
	mac.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+w.addr["webhook"]+"/hooks/push", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gitea-Event", "push")
	req.Header.Set("X-Gitea-Delivery", strconv.FormatInt(time.Now().UnixNano(), 10))
	req.Header.Set("X-Gitea-Signature", hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// The GitSync's interval is the fallback, as with a real server.
		w.say("the push webhook was not delivered (%v); GitSync will look on its interval", err)
		return nil
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		w.say("the push webhook was answered %s; GitSync will look on its interval", resp.Status)
	}
	return nil
}

// writeManifest renders manifests/name into deploy/as in the work tree.
func (w *World) writeManifest(name, as string, data map[string]any) error {
	out, err := w.render(name, data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(w.work, "deploy"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(w.work, "deploy", as), out, 0o644)
}

// render fills manifests/name with the world's values and data; [[ ]]
// delimit them, since {{ }} belong to Vigil's query arguments.
func (w *World) render(name string, data map[string]any) ([]byte, error) {
	raw, err := manifests.ReadFile("manifests/" + name)
	if err != nil {
		return nil, err
	}
	t, err := template.New(name).Delims("[[", "]]").Option("missingkey=error").Parse(string(raw))
	if err != nil {
		return nil, err
	}
	values := map[string]any{"PrometheusURL": w.PrometheusURL, "GitURL": w.GitURL, "Builder": Builder}
	for k, v := range data {
		values[k] = v
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, values); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", name, err)
	}
	return buf.Bytes(), nil
}
