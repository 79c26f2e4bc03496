package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// batchLog records the batches a fake worker received.
type batchLog struct {
	mu      sync.Mutex
	auth    []string   // authorization of each batch
	waited  []string   // waitedHeader of each batch
	keyIDs  [][]string // key ids of each batch's requests
	onBatch func(keyIDs []string)
}

func (l *batchLog) record(md metadata.MD, reqs [][]byte) {
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = requestKeyID(r)
	}
	l.mu.Lock()
	l.auth = append(l.auth, strings.Join(md.Get("authorization"), ","))
	l.waited = append(l.waited, strings.Join(md.Get(waitedHeader), ";"))
	l.keyIDs = append(l.keyIDs, ids)
	l.mu.Unlock()
	if l.onBatch != nil {
		l.onBatch(ids)
	}
}

func (l *batchLog) batches() ([]string, [][]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.auth), slices.Clone(l.keyIDs)
}

// signConcurrently makes one SignDigest call per request at the same time.
func signConcurrently(ctx context.Context, cc *grpc.ClientConn, reqs [][]byte) ([][]byte, []error) {
	resps := make([][]byte, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() { resps[i], errs[i] = invoke(ctx, cc, signDigestMethod, reqs[i]) })
	}
	wg.Wait()
	return resps, errs
}

func TestCoalescing(t *testing.T) {
	log := &batchLog{onBatch: func([]string) { time.Sleep(20 * time.Millisecond) }}
	fw := startFakeWorker(t, signDigestsFake(t, log.record))
	cfg := testConfig(fw.target)
	cfg.batchesPerWorker = 1
	cc := dialFront(t, startFront(t, cfg), nil)

	const n = 50
	reqs := make([][]byte, n)
	for i := range reqs {
		keyID := fmt.Sprintf("key-%d", i)
		if i == 17 {
			keyID = "missing"
		}
		reqs[i] = digestRequest(keyID, fmt.Sprintf("digest-%d", i))
	}
	ctx := metadata.AppendToOutgoingContext(testContext(t), "authorization", "Bearer caller-1")
	resps, errs := signConcurrently(ctx, cc, reqs)

	for i := range reqs {
		if i == 17 {
			st := status.Convert(errs[i])
			if st.Code() != codes.NotFound || st.Message() != "key not found" {
				t.Errorf("call %d: got %v, want NOT_FOUND key not found", i, errs[i])
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("call %d: %v", i, errs[i])
		} else if !bytes.Equal(resps[i], digestResponse(reqs[i])) {
			t.Errorf("call %d got a response meant for another request", i)
		}
	}

	auth, batches := log.batches()
	items, largest := 0, 0
	for i, b := range batches {
		items += len(b)
		largest = max(largest, len(b))
		if auth[i] != "Bearer caller-1" {
			t.Errorf("batch %d authorization = %q", i, auth[i])
		}
	}
	if items != n {
		t.Errorf("the worker got %d items, want %d", items, n)
	}
	if len(batches) >= n {
		t.Errorf("%d SignDigests calls for %d SignDigest calls: nothing was coalesced", len(batches), n)
	}
	// Each batch tells the worker how long each of its calls waited in the front; calls
	// queued behind a 20 ms batch waited at least that long.
	log.mu.Lock()
	waited := slices.Clone(log.waited)
	log.mu.Unlock()
	longest := int64(0)
	for i, header := range waited {
		values := strings.Split(header, ",")
		if len(values) != len(batches[i]) {
			t.Fatalf("batch %d: %d waits %q for %d calls", i, len(values), header, len(batches[i]))
		}
		for _, v := range values {
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil || us < 0 {
				t.Fatalf("batch %d: bad wait %q", i, v)
			}
			longest = max(longest, us)
		}
	}
	if longest < 20_000 {
		t.Errorf("longest wait %d us; calls queued behind a 20 ms batch", longest)
	}
	t.Logf("%d calls in %d batches, largest %d", n, len(batches), largest)
}

func TestMaxBatch(t *testing.T) {
	log := &batchLog{onBatch: func([]string) { time.Sleep(20 * time.Millisecond) }}
	fw := startFakeWorker(t, signDigestsFake(t, log.record))
	cfg := testConfig(fw.target)
	cfg.batchesPerWorker = 1
	cfg.maxBatch = 4
	cc := dialFront(t, startFront(t, cfg), nil)

	reqs := make([][]byte, 30)
	for i := range reqs {
		reqs[i] = digestRequest(fmt.Sprintf("key-%d", i), "d")
	}
	_, errs := signConcurrently(testContext(t), cc, reqs)
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	_, batches := log.batches()
	for i, b := range batches {
		if len(b) > 4 {
			t.Errorf("batch %d has %d items, max is 4", i, len(b))
		}
	}
}

func TestCallersNeverShareABatch(t *testing.T) {
	log := &batchLog{onBatch: func([]string) { time.Sleep(10 * time.Millisecond) }}
	fw := startFakeWorker(t, signDigestsFake(t, log.record))
	cfg := testConfig(fw.target)
	cfg.batchesPerWorker = 1
	cc := dialFront(t, startFront(t, cfg), nil)

	const perCaller = 25
	var wg sync.WaitGroup
	for _, caller := range []string{"a", "b"} {
		ctx := metadata.AppendToOutgoingContext(testContext(t), "authorization", "Bearer "+caller)
		for i := range perCaller {
			wg.Go(func() {
				req := digestRequest(fmt.Sprintf("%s-%d", caller, i), "d")
				resp, err := invoke(ctx, cc, signDigestMethod, req)
				if err != nil {
					t.Errorf("caller %s call %d: %v", caller, i, err)
				} else if !bytes.Equal(resp, digestResponse(req)) {
					t.Errorf("caller %s call %d got another request's response", caller, i)
				}
			})
		}
	}
	wg.Wait()

	auth, batches := log.batches()
	items := 0
	for i, b := range batches {
		items += len(b)
		for _, id := range b {
			caller, _, _ := strings.Cut(id, "-")
			if auth[i] != "Bearer "+caller {
				t.Errorf("batch %d with authorization %q holds %s's call %s", i, auth[i], caller, id)
			}
		}
	}
	if items != 2*perCaller {
		t.Errorf("the worker got %d items, want %d", items, 2*perCaller)
	}
}

func TestBatchFailure(t *testing.T) {
	fw := startFakeWorker(t, func(ss grpc.ServerStream, method string, md metadata.MD) error {
		time.Sleep(10 * time.Millisecond)
		return status.Error(codes.Unauthenticated, "token expired")
	})
	cfg := testConfig(fw.target)
	cfg.batchesPerWorker = 1
	cc := dialFront(t, startFront(t, cfg), nil)

	reqs := make([][]byte, 10)
	for i := range reqs {
		reqs[i] = digestRequest(fmt.Sprintf("key-%d", i), "d")
	}
	_, errs := signConcurrently(testContext(t), cc, reqs)
	for i, err := range errs {
		if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "token expired" {
			t.Errorf("call %d: got %v, want UNAUTHENTICATED token expired", i, err)
		}
	}
	if n := len(fw.callsTo(signDigestMethod)); n != 0 {
		t.Errorf("%d calls were passed through one by one", n)
	}
}

func TestMalformedBatchResponse(t *testing.T) {
	fw := startFakeWorker(t, func(ss grpc.ServerStream, method string, md metadata.MD) error {
		var in []byte
		if err := ss.RecvMsg(&in); err != nil {
			return err
		}
		// One outcome more than there were requests.
		reqs := splitBatch(t, in)
		var out []byte
		for range len(reqs) + 1 {
			out = protowire.AppendTag(out, 1, protowire.BytesType)
			out = protowire.AppendBytes(out, encodeOutcome([]byte("x"), codes.OK, ""))
		}
		return ss.SendMsg(out)
	})
	cc := dialFront(t, startFront(t, testConfig(fw.target)), nil)
	_, err := invoke(testContext(t), cc, signDigestMethod, digestRequest("k", "d"))
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Errorf("got %v, want INTERNAL internal error", err)
	}
}

func TestFallbackToSignDigest(t *testing.T) {
	fw := startFakeWorker(t, func(ss grpc.ServerStream, method string, md metadata.MD) error {
		if method != signDigestMethod {
			return status.Error(codes.Unimplemented, "Method not found!")
		}
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
		if requestKeyID(req) == "missing" {
			return status.Error(codes.NotFound, "key not found")
		}
		ss.SetTrailer(metadata.Pairs("x-worker-trailer", "single"))
		return ss.SendMsg(digestResponse(req))
	})
	cfg := testConfig(fw.target)
	cfg.batchesPerWorker = 1
	cc := dialFront(t, startFront(t, cfg), nil)

	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			keyID := fmt.Sprintf("key-%d", i)
			if i == 3 {
				keyID = "missing"
			}
			req := digestRequest(keyID, "d")
			ctx := metadata.AppendToOutgoingContext(testContext(t),
				"authorization", "Bearer t", "x-request-id", fmt.Sprintf("req-%d", i))
			var trailer metadata.MD
			resp, err := invoke(ctx, cc, signDigestMethod, req, grpc.Trailer(&trailer))
			switch {
			case i == 3:
				if status.Code(err) != codes.NotFound {
					t.Errorf("call %d: got %v, want NOT_FOUND", i, err)
				}
			case err != nil:
				t.Errorf("call %d: %v", i, err)
			case !bytes.Equal(resp, digestResponse(req)):
				t.Errorf("call %d got another request's response", i)
			case !slices.Equal(trailer.Get("x-worker-trailer"), []string{"single"}):
				t.Errorf("call %d trailer = %v", i, trailer)
			}
		})
	}
	wg.Wait()

	singles := fw.callsTo(signDigestMethod)
	if len(singles) != n {
		t.Fatalf("worker got %d SignDigest calls, want %d", len(singles), n)
	}
	var ids []string
	for _, c := range singles {
		ids = append(ids, c.md.Get("x-request-id")...)
		if !slices.Equal(c.md.Get("authorization"), []string{"Bearer t"}) {
			t.Errorf("SignDigest call without the caller's authorization: %v", c.md.Get("authorization"))
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) != n {
		t.Errorf("SignDigest calls carried %d distinct request ids, want %d", len(ids), n)
	}
	// The worker is remembered as not serving SignDigests.
	if batches := len(fw.callsTo(signDigestsMethod)); batches > 2 {
		t.Errorf("SignDigests was tried %d times", batches)
	}
}

func TestQueuedCallDeadline(t *testing.T) {
	release := make(chan struct{})
	log := &batchLog{onBatch: func(ids []string) {
		if ids[0] == "blocker" {
			<-release
		}
	}}
	fw := startFakeWorker(t, signDigestsFake(t, log.record))
	cfg := testConfig(fw.target)
	cfg.batchesPerWorker = 1
	cc := dialFront(t, startFront(t, cfg), nil)

	results := make(chan error, 2)
	go func() {
		_, err := invoke(testContext(t), cc, signDigestMethod, digestRequest("blocker", "d"))
		results <- err
	}()
	waitFor(t, func() bool { _, b := log.batches(); return len(b) == 1 })

	// The only slot is busy: this call waits in the queue until its deadline passes.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := invoke(ctx, cc, signDigestMethod, digestRequest("late", "d"))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("queued call: got %v, want DEADLINE_EXCEEDED", err)
	}

	go func() {
		_, err := invoke(testContext(t), cc, signDigestMethod, digestRequest("patient", "d"))
		results <- err
	}()
	time.Sleep(50 * time.Millisecond) // let "patient" reach the queue
	close(release)
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("call: %v", err)
		}
	}

	_, batches := log.batches()
	for _, b := range batches {
		if slices.Contains(b, "late") {
			t.Errorf("the expired call was sent to the worker: %v", batches)
		}
	}
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBatchDeadline(t *testing.T) {
	call := func(timeout time.Duration) *pendingCall {
		ctx := context.Background()
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			t.Cleanup(cancel)
		}
		return &pendingCall{ctx: ctx}
	}
	near := func(got time.Time, want time.Duration) bool {
		d := time.Until(got) - want
		return d > -time.Second && d < time.Second
	}
	if dl := batchDeadline([]*pendingCall{call(time.Second), call(3 * time.Second)}); !near(dl, 3*time.Second) {
		t.Errorf("latest deadline: got %v from now", time.Until(dl))
	}
	if dl := batchDeadline([]*pendingCall{call(time.Second), call(0)}); !near(dl, maxBatchTimeout) {
		t.Errorf("a call without deadline: got %v from now", time.Until(dl))
	}
	if dl := batchDeadline([]*pendingCall{call(time.Hour)}); !near(dl, maxBatchTimeout) {
		t.Errorf("cap: got %v from now", time.Until(dl))
	}
}
