package gitsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/secret"
	"github.com/vigil-dev/vigil/gitops"
)

// PushPath is where the receiver takes push deliveries.
const PushPath = "/hooks/push"

// Receiver takes push webhooks. A delivery triggers an immediate fetch of
// each GitSync that follows the pushed repository (and branch) and whose
// webhook secret verifies the delivery. It is rate limited, bounded in
// size, and remembers deliveries so a replay triggers nothing; a delivery
// is only remembered once its signature verified, so forged deliveries
// cannot block real ones.
type Receiver struct {
	Client client.Reader
	// APIReader reads webhook Secrets uncached.
	APIReader client.Reader
	Pushes    chan<- event.GenericEvent
	// MaxBody bounds a delivery's body; GitHub's own limit is 25 MiB.
	MaxBody int64
	Limiter *rate.Limiter
	Seen    *gitops.Seen
	Now     func() time.Time
}

// NewReceiver returns a receiver with sensible bounds: 1 MiB bodies,
// 20 deliveries a second (bursts of 40), and a memory of 10,000
// deliveries for an hour.
func NewReceiver(c, api client.Reader, pushes chan<- event.GenericEvent) *Receiver {
	return &Receiver{
		Client: c, APIReader: api, Pushes: pushes,
		MaxBody: 1 << 20,
		Limiter: rate.NewLimiter(20, 40),
		Seen:    gitops.NewSeen(10000, time.Hour),
		Now:     time.Now,
	}
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	result, code, msg := rc.handle(req)
	deliveries.WithLabelValues(result).Inc()
	http.Error(w, msg, code)
}

func (rc *Receiver) handle(req *http.Request) (result string, code int, msg string) {
	if req.Method != http.MethodPost {
		return "Invalid", http.StatusMethodNotAllowed, "POST a push delivery"
	}
	if !rc.Limiter.Allow() {
		return "RateLimited", http.StatusTooManyRequests, "too many deliveries; try again later"
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, req.Body, rc.MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return "TooLarge", http.StatusRequestEntityTooLarge, fmt.Sprintf("the delivery is larger than %d bytes", rc.MaxBody)
		}
		return "Invalid", http.StatusBadRequest, "reading the delivery failed"
	}
	push, err := gitops.ParsePush(req.Header, body)
	if errors.Is(err, gitops.ErrNotPush) {
		return "Ignored", http.StatusOK, "not a push event; ignored"
	}
	if err != nil {
		return "Invalid", http.StatusBadRequest, err.Error()
	}
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	candidates, err := rc.following(ctx, push)
	if err != nil {
		return "Invalid", http.StatusServiceUnavailable, "listing GitSyncs failed"
	}
	if len(candidates) == 0 {
		return "Unmatched", http.StatusAccepted, "no GitSync follows this repository with a webhook secret"
	}
	var verified []*vigilv1.GitSync
	for _, gs := range candidates {
		secret, err := rc.secret(ctx, gs)
		if err == nil && gitops.Authentic(push, req.Header, body, secret) {
			verified = append(verified, gs)
		}
	}
	if len(verified) == 0 {
		return "BadSignature", http.StatusUnauthorized, "the delivery's signature does not verify"
	}
	if !rc.Seen.Add(rc.Now(), push.Delivery, body) {
		return "Duplicate", http.StatusOK, "this delivery was already received"
	}
	for _, gs := range verified {
		select {
		case rc.Pushes <- event.GenericEvent{Object: gs}:
		default: // the queue is full: the GitSync is already due
		}
	}
	return "Accepted", http.StatusAccepted, fmt.Sprintf("fetching %d GitSync(s)", len(verified))
}

// following lists the GitSyncs with a webhook secret that follow the
// pushed repository, and for a branch push, that branch.
func (rc *Receiver) following(ctx context.Context, push *gitops.Push) ([]*vigilv1.GitSync, error) {
	list := &vigilv1.GitSyncList{}
	if err := rc.Client.List(ctx, list); err != nil {
		return nil, err
	}
	repos := map[string]bool{}
	for _, r := range push.Repositories {
		repos[r] = true
	}
	var out []*vigilv1.GitSync
	for i := range list.Items {
		gs := &list.Items[i]
		if gs.Spec.WebhookSecretRef == nil || gs.Spec.Suspend || !repos[gitops.NormalizeURL(gs.Spec.URL)] {
			continue
		}
		if b, ok := strings.CutPrefix(push.Ref, "refs/heads/"); ok && gs.Spec.Ref.Branch != "" && gs.Spec.Ref.Branch != b {
			continue
		}
		out = append(out, gs)
	}
	return out, nil
}

func (rc *Receiver) secret(ctx context.Context, gs *vigilv1.GitSync) ([]byte, error) {
	data, err := secret.Data(ctx, rc.APIReader, gs.Namespace, gs.Spec.WebhookSecretRef.Name)
	if err != nil {
		return nil, err
	}
	return []byte(strings.TrimSpace(string(data["token"]))), nil
}

// Serve runs the receiver on addr until ctx ends.
func (rc *Receiver) Serve(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.Handle(PushPath, rc)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for push webhooks on %s: %w", addr, err)
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
