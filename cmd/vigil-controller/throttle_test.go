package main

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestThrottlingIsLoggedOnceAndCountedEachTime(t *testing.T) {
	g := NewWithT(t)
	var lines []string
	log := funcr.New(func(_, args string) { lines = append(lines, args) }, funcr.Options{})
	// 20 requests a second, burst 1: after the first, each waits ~50ms.
	tl := newThrottled(20, 1, log)
	tl.notice = 20 * time.Millisecond
	before := testutil.ToFloat64(clientThrottled)
	for range 4 {
		g.Expect(tl.Wait(context.Background())).To(Succeed())
	}
	g.Expect(testutil.ToFloat64(clientThrottled)-before).To(BeNumerically(">=", 2), "the waits after the burst are counted")
	g.Expect(lines).To(HaveLen(1), "logged once")
	g.Expect(lines[0]).To(ContainSubstring("raise --kube-api-qps and --kube-api-burst"))
	g.Expect(lines[0]).To(ContainSubstring(`"qps"=20`))
}
