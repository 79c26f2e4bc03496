package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{
		"--listen", "127.0.0.1:50051",
		"--worker", "unix:///s/worker-0.sock", "--worker", "unix:///s/worker-1.sock",
		"--max-batch", "50", "--drain-seconds", "2.5",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listen != "127.0.0.1:50051" || len(cfg.workers) != 2 || cfg.maxBatch != 50 ||
		cfg.batchesPerWorker != 2 || cfg.maxMessageBytes != 16*1024*1024 || cfg.drain != 2500*time.Millisecond {
		t.Errorf("config = %+v", cfg)
	}

	bad := [][]string{
		{"--worker", "unix:///s/w.sock"},
		{"--listen", ":1"},
		{"--listen", ":1", "--worker", "unix:///s/w.sock", "--tls-cert", "c.pem"},
		{"--listen", ":1", "--worker", "unix:///s/w.sock", "--tls-client-ca", "ca.pem"},
		{"--listen", ":1", "--worker", "unix:///s/w.sock", "--max-batch", "0"},
		{"--listen", ":1", "--worker", "unix:///s/w.sock", "--batches-per-worker", "0"},
		{"--listen", ":1", "--worker", "unix:///s/w.sock", "--drain-seconds", "-1"},
		{"--listen", ":1", "--worker", "unix:///s/w.sock", "--no-such-flag"},
		{"--listen", ":1", "--worker", "unix:///s/w.sock", "extra"},
	}
	for _, args := range bad {
		if _, err := parseFlags(args, nil); err == nil {
			t.Errorf("parseFlags(%q) succeeded", args)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLines parses JSON log lines and checks the fields every line has.
func logLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		for _, k := range []string{"time", "level", "service", "message"} {
			if _, ok := m[k]; !ok {
				t.Errorf("log line without %q: %q", k, line)
			}
		}
		if m["service"] != serviceName {
			t.Errorf("service = %v", m["service"])
		}
		lines = append(lines, m)
	}
	return lines
}

func TestRunBadFlags(t *testing.T) {
	var out syncBuffer
	if code := run([]string{"--listen", ":1"}, &out, nil); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	lines := logLines(t, out.String())
	if len(lines) != 1 || !strings.Contains(lines[0]["message"].(string), "--worker") {
		t.Errorf("output = %q", out.String())
	}
}

func TestRunCannotBind(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var out syncBuffer
	code := run([]string{"--listen", taken.Addr().String(), "--worker", "unix:///nowhere.sock"}, &out, nil)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	lines := logLines(t, out.String())
	if len(lines) != 1 || !strings.Contains(lines[0]["message"].(string), "cannot listen") {
		t.Errorf("output = %q", out.String())
	}
}

// TestRunDrain starts the front, signals it while a SignDigest batch is in flight and
// checks that the call completes and the front exits 0.
func TestRunDrain(t *testing.T) {
	inBatch := make(chan struct{}, 1)
	log := &batchLog{onBatch: func([]string) {
		inBatch <- struct{}{}
		time.Sleep(200 * time.Millisecond)
	}}
	fw := startFakeWorker(t, signDigestsFake(t, log.record))

	var out syncBuffer
	signals := make(chan os.Signal, 1)
	exit := make(chan int, 1)
	go func() {
		exit <- run([]string{"--listen", "127.0.0.1:0", "--worker", fw.target, "--drain-seconds", "5"}, &out, signals)
	}()
	var addr string
	waitFor(t, func() bool {
		if !strings.Contains(out.String(), "signer front started") {
			return false
		}
		for _, l := range logLines(t, out.String()) {
			if a, ok := l["listen"].(string); ok {
				addr = a
			}
		}
		return true
	})

	cc := dialFront(t, addr, nil)
	result := make(chan error, 1)
	go func() {
		ctx := metadata.AppendToOutgoingContext(testContext(t), "authorization", "Bearer t")
		_, err := invoke(ctx, cc, signDigestMethod, digestRequest("k", "d"), grpc.WaitForReady(true))
		result <- err
	}()
	<-inBatch
	signals <- syscall.SIGTERM

	if err := <-result; err != nil {
		t.Errorf("call in flight during drain: %v", err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the front did not stop")
	}
	logs := out.String()
	for _, want := range []string{"signer front started", "draining", "drained", "signer front stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "Bearer") {
		t.Errorf("log contains metadata values:\n%s", logs)
	}
}
