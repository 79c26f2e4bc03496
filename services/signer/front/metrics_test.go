package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

func TestHistogramBuckets(t *testing.T) {
	h := newHistogram([]float64{1, 2, 4})
	for _, v := range []float64{0.5, 1, 3, 9} {
		h.observe(v)
	}
	var b strings.Builder
	h.write(&b, "x")
	want := "x_bucket{le=\"1\"} 2\nx_bucket{le=\"2\"} 2\nx_bucket{le=\"4\"} 3\nx_bucket{le=\"+Inf\"} 4\nx_sum 13.5\nx_count 4\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestMetricsCountCallsBatchesAndWaits(t *testing.T) {
	log := &batchLog{onBatch: func([]string) { time.Sleep(20 * time.Millisecond) }}
	fw := startFakeWorker(t, signDigestsFake(t, log.record))
	cfg := testConfig(fw.target)
	cfg.batchesPerWorker = 1
	a, addr := startApp(t, cfg)
	metricsAddr := "unix://" + filepath.Join(t.TempDir(), "metrics.sock")
	// A socket file left by a front that was killed does not stop its replacement.
	stale, err := net.Listen("unix", strings.TrimPrefix(metricsAddr, "unix://"))
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = stale.Close()
	srv, err := serveMetrics(metricsAddr, a.front.metrics)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	cc := dialFront(t, addr, nil)
	reqs := make([][]byte, 30)
	for i := range reqs {
		keyID := fmt.Sprintf("key-%d", i)
		if i == 3 {
			keyID = "missing"
		}
		reqs[i] = digestRequest(keyID, "d")
	}
	ctx := metadata.AppendToOutgoingContext(testContext(t), "authorization", "Bearer caller-1")
	signConcurrently(ctx, cc, reqs)
	// A method no worker has is counted as "other", whatever its name.
	_, err = invoke(testContext(t), cc, "/made.up.Service/Anything", []byte{})
	if err == nil {
		t.Fatal("a made-up method succeeded")
	}

	client := http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", strings.TrimPrefix(metricsAddr, "unix://"))
		},
	}}
	resp, err := client.Get("http://front/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	text := string(body)

	_, batches := log.batches()
	for _, want := range []string{
		`signet_signer_front_calls_total{method="/signet.signer.v1.SignerService/SignDigest",code="OK"} 29`,
		`signet_signer_front_calls_total{method="/signet.signer.v1.SignerService/SignDigest",code="NOT_FOUND"} 1`,
		fmt.Sprintf(`signet_signer_front_batch_size_count %d`, len(batches)),
		`signet_signer_front_batch_size_sum 30`,
		`signet_signer_front_queue_wait_seconds_count 30`,
		`signet_signer_front_queued_calls 0`,
		`signet_signer_front_workers_ready 1`,
		`signet_signer_front_calls_total{method="other",code="` + codeName(codes.Unimplemented) + `"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	// Calls queued behind a 20 ms batch waited at least that long.
	if strings.Contains(text, `signet_signer_front_queue_wait_seconds_bucket{le="0.01"} 30`) {
		t.Errorf("no call waited over 10 ms:\n%s", text)
	}
}
