package approval

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Serving hands the webhook server the certificate the rotator keeps in a
// Secret. The rotator (github.com/open-policy-agent/cert-controller) makes
// and renews the CA and serving certificate, stores them in the Secret and
// injects the CA into the webhook configurations; it expects the Secret's
// files in a directory, as a kubelet volume would put them. Serving reads
// the Secret itself, so the manager runs the same way in a pod and out of
// one (the dev cluster, the demo, the tests): it keeps the certificate in
// memory for TLS handshakes and writes the files the rotator looks for.
type Serving struct {
	// Dir is where tls.crt and tls.key are written (private to the process).
	Dir    string
	Secret types.NamespacedName
	Reader client.Reader
	// Every is how often the Secret is read once a certificate is loaded
	// (default 10s; until then, every 200ms).
	Every time.Duration

	mu      sync.RWMutex
	cert    *tls.Certificate
	version string
}

// NewServing makes a Serving with a fresh private directory.
func NewServing(secret types.NamespacedName) (*Serving, error) {
	dir, err := os.MkdirTemp("", "vigil-webhook-certs-")
	if err != nil {
		return nil, fmt.Errorf("making the webhook certificate directory: %w", err)
	}
	return &Serving{Dir: dir, Secret: secret}, nil
}

// GetCertificate serves the loaded certificate (tls.Config.GetCertificate).
func (s *Serving) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cert == nil {
		return nil, errors.New("the webhook's serving certificate is not ready yet")
	}
	return s.cert, nil
}

// Ready is a readiness check: a certificate is loaded.
func (s *Serving) Ready(*http.Request) error {
	_, err := s.GetCertificate(nil)
	return err
}

// Start follows the Secret until ctx is done (a manager Runnable that runs
// on every replica, leader or not: every replica serves the webhook).
func (s *Serving) Start(ctx context.Context) error {
	every := s.Every
	if every == 0 {
		every = 10 * time.Second
	}
	for {
		wait := every
		if err := s.load(ctx); err != nil {
			ctrl.LoggerFrom(ctx).V(1).Info("Waiting for the webhook certificate", "secret", s.Secret, "reason", err.Error())
		}
		if _, err := s.GetCertificate(nil); err != nil {
			wait = 200 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// NeedLeaderElection is false: every replica serves the webhook.
func (s *Serving) NeedLeaderElection() bool { return false }

func (s *Serving) load(ctx context.Context) error {
	sec := &corev1.Secret{}
	if err := s.Reader.Get(ctx, s.Secret, sec); err != nil {
		return err
	}
	s.mu.RLock()
	same := sec.ResourceVersion == s.version
	s.mu.RUnlock()
	if same {
		return nil
	}
	crt, key := sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]
	if len(crt) == 0 || len(key) == 0 {
		return errors.New("the Secret holds no certificate yet")
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return fmt.Errorf("the Secret's certificate does not load: %w", err)
	}
	for name, b := range map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key} {
		if err := writeAtomic(filepath.Join(s.Dir, name), b); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.cert, s.version = &pair, sec.ResourceVersion
	s.mu.Unlock()
	ctrl.LoggerFrom(ctx).Info("Loaded the webhook's serving certificate", "secret", s.Secret, "resourceVersion", sec.ResourceVersion)
	return nil
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
