package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// errWorkersUnavailable is returned to callers when no worker could take a call.
var errWorkersUnavailable = status.Error(codes.Unavailable, "signer workers unavailable")

// troubleLogInterval limits how often connection trouble is logged per worker.
const troubleLogInterval = 30 * time.Second

// worker is one connection to a Python worker process.
type worker struct {
	target string
	cc     *grpc.ClientConn
	log    *slog.Logger

	lastTrouble atomic.Int64 // unix nanoseconds of the last trouble log line
	troubled    atomic.Bool  // a trouble line was logged and no recovery line since
}

// usable reports whether calls to w can be expected to reach it now. IDLE and CONNECTING
// connections count as usable: a call makes them connect.
func (w *worker) usable() bool {
	s := w.cc.GetState()
	return s != connectivity.TransientFailure && s != connectivity.Shutdown
}

// logTrouble logs a connection problem with w at most once per troubleLogInterval.
// detail must not contain request contents or metadata values.
func (w *worker) logTrouble(detail string) {
	now := time.Now().UnixNano()
	last := w.lastTrouble.Load()
	if now-last < int64(troubleLogInterval) || !w.lastTrouble.CompareAndSwap(last, now) {
		return
	}
	w.troubled.Store(true)
	w.log.Warn("signer worker connection trouble", "worker", w.target, "detail", detail)
}

// watch follows w's connection state until ctx is done: it keeps the connection
// established (a lost connection goes IDLE and is reconnected at once), logs trouble and
// recovery, and calls changed after every state change.
func (w *worker) watch(ctx context.Context, changed func()) {
	state := w.cc.GetState()
	for {
		switch state {
		case connectivity.Idle:
			w.cc.Connect()
		case connectivity.TransientFailure:
			w.logTrouble("cannot connect; retrying")
		case connectivity.Ready:
			if w.troubled.CompareAndSwap(true, false) {
				w.log.Info("signer worker connection restored", "worker", w.target)
			}
		}
		if !w.cc.WaitForStateChange(ctx, state) {
			return
		}
		state = w.cc.GetState()
		changed()
	}
}

// pool is the set of worker connections with round-robin choice among them.
type pool struct {
	workers []*worker
	rr      atomic.Uint64
}

// front serves the public port: it passes calls through to the workers and coalesces
// SignDigest calls.
type front struct {
	pool      *pool
	mtls      bool
	coalescer *coalescer
	metrics   *metrics // nil: not counted
}

// handle is the grpc.UnknownServiceHandler: every call arrives here.
func (f *front) handle(_ any, ss grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "internal error")
	}
	err := f.route(ss, method)
	f.metrics.call(method, status.Code(err))
	return err
}

// route serves one call by its method.
func (f *front) route(ss grpc.ServerStream, method string) error {
	if strings.HasPrefix(method, workerServicePrefix) {
		return status.Error(codes.Unimplemented, "unknown method")
	}
	if method == signDigestMethod {
		return f.coalescer.handle(ss, f.outgoingMetadata(ss.Context()))
	}
	return f.passThrough(ss, method)
}

// outgoingMetadata is the metadata to send to a worker for a call with context ctx.
func (f *front) outgoingMetadata(ctx context.Context) metadata.MD {
	in, _ := metadata.FromIncomingContext(ctx)
	return forwardMetadata(in, f.peerCN(ctx))
}

// peerCN returns the Subject Common Name of the caller's verified client certificate, or
// "" when mTLS is off or there is none.
func (f *front) peerCN(ctx context.Context) string {
	if !f.mtls {
		return ""
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return ""
	}
	return info.State.VerifiedChains[0][0].Subject.CommonName
}

// pick returns the index of the next worker in round-robin order, preferring workers
// whose connection is usable. When none is usable it returns the next one anyway.
func (p *pool) pick() int {
	n := len(p.workers)
	start := int(p.rr.Add(1) % uint64(n))
	for i := range n {
		if idx := (start + i) % n; p.workers[idx].usable() {
			return idx
		}
	}
	return start
}

// pickOther returns a worker other than skip, preferring usable ones, or -1 when there is
// only one worker.
func (p *pool) pickOther(skip int) int {
	n := len(p.workers)
	if n < 2 {
		return -1
	}
	fallback := -1
	for i := 1; i < n; i++ {
		idx := (skip + i) % n
		if p.workers[idx].usable() {
			return idx
		}
		if fallback < 0 {
			fallback = idx
		}
	}
	return fallback
}

// passThroughDesc describes any call: both sides may stream.
var passThroughDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// openStream opens a client stream for method on worker first. If that fails with
// UNAVAILABLE, nothing has been sent yet, so it tries one other worker. It returns the
// stream and the index of the worker it is open to. When no worker can be reached it
// returns errWorkersUnavailable.
func (p *pool) openStream(ctx context.Context, desc *grpc.StreamDesc, first int, method string) (grpc.ClientStream, int, error) {
	idx := first
	for attempt := 0; attempt < 2 && idx >= 0; attempt++ {
		cs, err := p.workers[idx].cc.NewStream(ctx, desc, method, grpc.ForceCodec(rawCodec{}))
		if err == nil || status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return cs, idx, err
		}
		p.workers[idx].logTrouble(status.Convert(err).Message())
		idx = p.pickOther(idx)
	}
	return nil, first, errWorkersUnavailable
}

// passThrough forwards a call of any kind (unary or streaming) to a worker unchanged and
// returns the worker's status to the caller as is.
func (f *front) passThrough(ss grpc.ServerStream, method string) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, f.outgoingMetadata(ss.Context()))

	cs, _, err := f.pool.openStream(ctx, passThroughDesc, f.pool.pick(), method)
	if err != nil {
		return err
	}

	toWorker := make(chan error, 1)
	toCaller := make(chan error, 1)
	go func() { toWorker <- forwardToWorker(ss, cs) }()
	go func() { toCaller <- forwardToCaller(cs, ss) }()

	for {
		select {
		case err := <-toWorker:
			if err != nil {
				// The caller went away or sent something unacceptable: end the worker
				// call and wait for forwardToCaller, which then returns promptly.
				cancel()
				<-toCaller
				return err
			}
			// The caller half-closed (or the worker ended the call); wait for the worker.
			toWorker = nil
		case err := <-toCaller:
			// The worker ended the call: its status (nil for OK) is the call's status. A
			// forwardToWorker still blocked on the caller returns once the handler ends.
			return err
		}
	}
}

// forwardToWorker copies the caller's messages to the worker and half-closes the worker
// stream when the caller has sent everything. It returns nil when done or when the worker
// ended the call (whose status forwardToCaller reports), and the caller-side error
// otherwise.
func forwardToWorker(ss grpc.ServerStream, cs grpc.ClientStream) error {
	for {
		var msg []byte
		if err := ss.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return cs.CloseSend()
			}
			return err
		}
		if err := cs.SendMsg(msg); err != nil {
			// io.EOF: the worker ended the call; RecvMsg on cs returns its status.
			return nil
		}
	}
}

// forwardToCaller copies the worker's header, messages and trailer to the caller and
// returns the worker's final status as an error (nil for OK).
func forwardToCaller(cs grpc.ClientStream, ss grpc.ServerStream) error {
	// Header waits for the worker's response header; a response that is only a status
	// (trailers-only) has none, and its metadata arrives as the trailer.
	if md, err := cs.Header(); err == nil && md != nil {
		if err := ss.SendHeader(responseMetadata(md)); err != nil {
			return err
		}
	}
	for {
		var msg []byte
		if err := cs.RecvMsg(&msg); err != nil {
			ss.SetTrailer(responseMetadata(cs.Trailer()))
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := ss.SendMsg(msg); err != nil {
			return err
		}
	}
}

// workerSet runs the connection watchers of all workers.
type workerSet struct {
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// watchWorkers starts a watcher per worker; changed is called after any state change.
func watchWorkers(workers []*worker, changed func()) *workerSet {
	ctx, cancel := context.WithCancel(context.Background())
	ws := &workerSet{cancel: cancel}
	for _, w := range workers {
		ws.wg.Go(func() { w.watch(ctx, changed) })
	}
	return ws
}

// stop ends the watchers and waits for them.
func (ws *workerSet) stop() {
	ws.cancel()
	ws.wg.Wait()
}
