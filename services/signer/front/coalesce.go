package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	// maxBatchTimeout caps the deadline of a SignDigests call.
	maxBatchTimeout = 5 * time.Minute
	// legacyRecheck is how long a worker that answered UNIMPLEMENTED for SignDigests gets
	// plain SignDigest calls before SignDigests is tried on it again.
	legacyRecheck = time.Minute
)

// errBatchInternal answers every call of a batch whose response could not be used.
var errBatchInternal = status.Error(codes.Internal, "internal error")

// unaryDesc describes a call with one request and one response message.
var unaryDesc = &grpc.StreamDesc{}

// pendingCall is one SignDigest call waiting for its result.
type pendingCall struct {
	ctx context.Context // the caller's context: deadline and cancellation
	req []byte          // the caller's SignDigestRequest, undecoded
	md  metadata.MD     // metadata to forward to the worker
	key string          // the caller's identity; only calls with equal keys share a batch
	seq uint64          // arrival order
	// arrived is when the front received the call; its wait goes to the worker.
	arrived time.Time
	done    chan callResult // receives exactly one result; buffered so senders never block

	queued bool // in coalescer.queues; guarded by coalescer.mu
}

// callResult is what a SignDigest caller receives.
type callResult struct {
	resp    []byte
	err     error
	header  metadata.MD // set only when the call was passed through on its own
	trailer metadata.MD
}

// coalescer turns concurrent SignDigest calls of the same caller into SignDigests calls
// to the workers. Each worker has a fixed number of slots, one per batch in flight. A
// call is sent as soon as a slot is free; calls that arrive while all slots are busy
// wait, and a freed slot takes up to maxBatch waiting calls of the caller whose oldest
// call has waited longest. There are no timers: batches grow only while workers are busy.
type coalescer struct {
	pool     *pool
	metrics  *metrics // nil: not counted
	maxBatch int
	maxBytes int // the largest SignDigestsRequest to build
	log      *slog.Logger

	ctx     context.Context // parent of every batch call; cancelled by abort
	abort   context.CancelFunc
	batches sync.WaitGroup

	mu          sync.Mutex
	free        []int                     // free slots per worker
	legacyUntil []time.Time               // per worker: send plain SignDigest calls until then
	queues      map[string][]*pendingCall // waiting calls per key, oldest first
	seq         uint64
	rr          int
	closed      bool
}

func newCoalescer(p *pool, slotsPerWorker, maxBatch, maxBytes int, log *slog.Logger) *coalescer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &coalescer{
		pool:        p,
		maxBatch:    maxBatch,
		maxBytes:    maxBytes,
		log:         log,
		ctx:         ctx,
		abort:       cancel,
		free:        make([]int, len(p.workers)),
		legacyUntil: make([]time.Time, len(p.workers)),
		queues:      map[string][]*pendingCall{},
	}
	for i := range c.free {
		c.free[i] = slotsPerWorker
	}
	return c
}

// handle serves one SignDigest call; md is the metadata to forward for it.
func (c *coalescer) handle(ss grpc.ServerStream, md metadata.MD) error {
	ctx := ss.Context()
	var req []byte
	if err := ss.RecvMsg(&req); err != nil {
		if errors.Is(err, io.EOF) {
			return status.Error(codes.Internal, "SignDigest expects one request message")
		}
		return err
	}
	call := &pendingCall{
		arrived: time.Now(),
		ctx:     ctx,
		req:     req,
		md:      md,
		key:     callerKey(md),
		done:    make(chan callResult, 1),
	}
	c.submit(call)

	select {
	case r := <-call.done:
		if len(r.header) > 0 {
			_ = ss.SetHeader(responseMetadata(r.header))
		}
		if len(r.trailer) > 0 {
			ss.SetTrailer(responseMetadata(r.trailer))
		}
		if r.err != nil {
			return r.err
		}
		return ss.SendMsg(r.resp)
	case <-ctx.Done():
		// Leave the queue if still waiting; a batch already sent simply drops this
		// call's result.
		c.withdraw(call)
		return status.FromContextError(ctx.Err()).Err()
	}
}

// callerKey identifies the caller for batching: its authorization values and the
// verified client certificate name set by the front.
func callerKey(md metadata.MD) string {
	var b strings.Builder
	for _, v := range md.Get("authorization") {
		b.WriteString(strconv.Quote(v))
	}
	b.WriteByte('|')
	for _, v := range md.Get(peerCNHeader) {
		b.WriteString(strconv.Quote(v))
	}
	return b.String()
}

// submit queues call and sends what can be sent.
func (c *coalescer) submit(call *pendingCall) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	call.seq = c.seq
	call.queued = true
	c.queues[call.key] = append(c.queues[call.key], call)
	c.dispatchLocked()
}

// withdraw removes call from its queue if it is still waiting there.
func (c *coalescer) withdraw(call *pendingCall) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !call.queued {
		return
	}
	call.queued = false
	q := c.queues[call.key]
	for i, p := range q {
		if p == call {
			q = append(q[:i], q[i+1:]...)
			break
		}
	}
	if len(q) == 0 {
		delete(c.queues, call.key)
	} else {
		c.queues[call.key] = q
	}
}

// kick sends waiting calls if a worker can take them now; called when a worker's
// connection state changes.
func (c *coalescer) kick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dispatchLocked()
}

// release frees a slot of worker w and sends waiting calls.
func (c *coalescer) release(w int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.free[w]++
	c.dispatchLocked()
}

// dispatchLocked starts batches while calls wait and a worker has a free slot.
func (c *coalescer) dispatchLocked() {
	for !c.closed && len(c.queues) > 0 {
		w := c.pickWorkerLocked()
		if w < 0 {
			return
		}
		calls := c.takeLocked(c.oldestKeyLocked())
		if len(calls) == 0 {
			continue // every call of that key had given up; look again
		}
		c.free[w]--
		legacy := time.Now().Before(c.legacyUntil[w])
		c.batches.Add(1)
		go c.run(w, calls, legacy)
	}
}

// pickWorkerLocked returns the worker with the most free slots (ties in round-robin
// order), or -1 when none has a free slot. Workers whose connection is failing are
// skipped while another worker is usable, even if that one is busy.
func (c *coalescer) pickWorkerLocked() int {
	anyUsable := false
	for _, w := range c.pool.workers {
		if w.usable() {
			anyUsable = true
			break
		}
	}
	n := len(c.pool.workers)
	best := -1
	for i := range n {
		idx := (c.rr + i) % n
		if c.free[idx] == 0 || (anyUsable && !c.pool.workers[idx].usable()) {
			continue
		}
		if best < 0 || c.free[idx] > c.free[best] {
			best = idx
		}
	}
	if best >= 0 {
		c.rr = (best + 1) % n
	}
	return best
}

// oldestKeyLocked returns the key whose oldest waiting call arrived first.
func (c *coalescer) oldestKeyLocked() string {
	var key string
	var oldest uint64
	for k, q := range c.queues {
		if oldest == 0 || q[0].seq < oldest {
			key, oldest = k, q[0].seq
		}
	}
	return key
}

// takeLocked removes up to maxBatch calls of key from the front of its queue, keeping
// the SignDigestsRequest within maxBytes. Calls whose context is done are answered with
// their context's status and left out.
func (c *coalescer) takeLocked(key string) []*pendingCall {
	q := c.queues[key]
	var calls []*pendingCall
	size := 0
	n := 0
	for ; n < len(q) && len(calls) < c.maxBatch; n++ {
		call := q[n]
		if err := call.ctx.Err(); err != nil {
			call.queued = false
			call.done <- callResult{err: status.FromContextError(err).Err()}
			continue
		}
		itemSize := protowire.SizeTag(1) + protowire.SizeBytes(len(call.req))
		if len(calls) > 0 && size+itemSize > c.maxBytes {
			break
		}
		call.queued = false
		calls = append(calls, call)
		size += itemSize
	}
	if n == len(q) {
		delete(c.queues, key)
	} else {
		c.queues[key] = q[n:]
	}
	return calls
}

// run sends one batch to worker w and answers its calls, then frees the slot.
func (c *coalescer) run(w int, calls []*pendingCall, legacy bool) {
	defer c.batches.Done()
	defer c.release(w)
	now := time.Now()
	waits := make([]time.Duration, len(calls))
	for i, call := range calls {
		waits[i] = now.Sub(call.arrived)
	}
	c.metrics.batch(waits)

	if legacy {
		c.passEach(w, calls)
		return
	}

	ctx, cancel := context.WithDeadline(c.ctx, batchDeadline(calls))
	defer cancel()
	// The calls share the caller's identity; the first call's metadata (authorization,
	// verified peer name, trace context, request id) goes with the batch.
	md := calls[0].md.Copy()
	md.Set(waitedHeader, joinMicros(waits))
	ctx = metadata.NewOutgoingContext(ctx, md)

	requests := make([][]byte, len(calls))
	for i, call := range calls {
		requests[i] = call.req
	}
	resp, used, err := c.signDigests(ctx, w, encodeSignDigests(requests))
	if status.Code(err) == codes.Unimplemented {
		c.markLegacy(used)
		c.passEach(used, calls)
		return
	}
	if err != nil {
		st := status.Convert(err)
		batchErr := status.Error(st.Code(), st.Message())
		for _, call := range calls {
			call.done <- callResult{err: batchErr}
		}
		return
	}
	outcomes, err := decodeSignDigests(resp, len(calls))
	if err != nil {
		c.log.Error("unusable SignDigests response from signer worker",
			"worker", c.pool.workers[used].target, "calls", len(calls), "error", err.Error())
		for _, call := range calls {
			call.done <- callResult{err: errBatchInternal}
		}
		return
	}
	for i, call := range calls {
		o := outcomes[i]
		if o.code == codes.OK {
			call.done <- callResult{resp: o.response}
		} else {
			call.done <- callResult{err: status.Error(o.code, o.message)}
		}
	}
}

// joinMicros lists the waits in microseconds, comma-separated, in order.
func joinMicros(waits []time.Duration) string {
	var b strings.Builder
	for i, d := range waits {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(d.Microseconds(), 10))
	}
	return b.String()
}

// queued is the number of calls waiting for a worker now.
func (c *coalescer) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, q := range c.queues {
		n += len(q)
	}
	return n
}

// batchDeadline is the latest deadline among calls, or none if any call has none, capped
// at maxBatchTimeout from now.
func batchDeadline(calls []*pendingCall) time.Time {
	limit := time.Now().Add(maxBatchTimeout)
	var latest time.Time
	for _, call := range calls {
		dl, ok := call.ctx.Deadline()
		if !ok {
			return limit
		}
		if dl.After(latest) {
			latest = dl
		}
	}
	if latest.After(limit) {
		return limit
	}
	return latest
}

// signDigests makes one SignDigests call, starting with worker w (another worker is tried
// once if w cannot be reached). It returns the raw response and the worker that answered.
func (c *coalescer) signDigests(ctx context.Context, w int, req []byte) ([]byte, int, error) {
	cs, used, err := c.pool.openStream(ctx, unaryDesc, w, signDigestsMethod)
	if err != nil {
		return nil, used, err
	}
	if err := cs.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return nil, used, err
	}
	// For a unary stream RecvMsg also reads the end of the call and returns its status.
	var resp []byte
	if err := cs.RecvMsg(&resp); err != nil {
		return nil, used, err
	}
	return resp, used, nil
}

// markLegacy records that worker w does not serve SignDigests.
func (c *coalescer) markLegacy(w int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Now().Before(c.legacyUntil[w]) {
		return
	}
	c.legacyUntil[w] = time.Now().Add(legacyRecheck)
	c.log.Warn("signer worker does not implement SignDigests; passing SignDigest calls through one by one",
		"worker", c.pool.workers[w].target)
}

// passEach passes every call through to worker w as a plain SignDigest call, in parallel,
// with the call's own metadata and deadline.
func (c *coalescer) passEach(w int, calls []*pendingCall) {
	var wg sync.WaitGroup
	for _, call := range calls {
		wg.Go(func() {
			ctx := metadata.NewOutgoingContext(call.ctx, call.md)
			var resp []byte
			var header, trailer metadata.MD
			err := c.pool.workers[w].cc.Invoke(ctx, signDigestMethod, call.req, &resp,
				grpc.ForceCodec(rawCodec{}), grpc.Header(&header), grpc.Trailer(&trailer))
			call.done <- callResult{resp: resp, err: err, header: header, trailer: trailer}
		})
	}
	wg.Wait()
}

// close stops new batches, cancels those in flight and waits for them. Call it after the
// server has stopped, when no call is waiting any more.
func (c *coalescer) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.abort()
	c.batches.Wait()
}
