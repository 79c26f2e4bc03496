package main

import (
	"context"
	"crypto/sha256"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// fakeHandler serves one call to a fake worker.
type fakeHandler func(ss grpc.ServerStream, method string, md metadata.MD) error

// fakeCall is a call a fake worker received.
type fakeCall struct {
	method string
	md     metadata.MD
}

// fakeWorker is an in-process gRPC server on a unix socket standing in for a Python
// worker. It sees raw message bytes, like the front.
type fakeWorker struct {
	target string

	mu    sync.Mutex
	calls []fakeCall
}

func startFakeWorker(t *testing.T, handler fakeHandler) *fakeWorker {
	t.Helper()
	path := filepath.Join(t.TempDir(), "worker.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	fw := &fakeWorker{target: "unix://" + path}
	srv := grpc.NewServer(
		grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
			method, _ := grpc.MethodFromServerStream(ss)
			md, _ := metadata.FromIncomingContext(ss.Context())
			fw.mu.Lock()
			fw.calls = append(fw.calls, fakeCall{method: method, md: md.Copy()})
			fw.mu.Unlock()
			return handler(ss, method, md)
		}),
	)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return fw
}

// callsTo returns the calls the fake received for method.
func (fw *fakeWorker) callsTo(method string) []fakeCall {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	var out []fakeCall
	for _, c := range fw.calls {
		if c.method == method {
			out = append(out, c)
		}
	}
	return out
}

// testConfig is a front configuration for the given fake workers.
func testConfig(workers ...string) config {
	return config{
		listen:           "127.0.0.1:0",
		workers:          workers,
		maxBatch:         100,
		batchesPerWorker: 2,
		maxMessageBytes:  16 * 1024 * 1024,
		drain:            time.Second,
	}
}

// startFront serves a front with cfg on a local TCP port and returns its address.
func startFront(t *testing.T, cfg config) string {
	t.Helper()
	_, addr := startApp(t, cfg)
	return addr
}

// startApp serves a front with cfg on a local TCP port; it returns the front and its address.
func startApp(t *testing.T, cfg config) (*app, string) {
	t.Helper()
	a, err := newApp(cfg, newLogger(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.watch()
	go func() { _ = a.server.Serve(lis) }()
	t.Cleanup(func() {
		a.server.Stop()
		a.close()
	})
	return a, lis.Addr().String()
}

// dialFront returns a client connection to the front at addr.
func dialFront(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// invoke makes a unary call with raw bytes.
func invoke(ctx context.Context, cc *grpc.ClientConn, method string, req []byte, opts ...grpc.CallOption) ([]byte, error) {
	var resp []byte
	opts = append(opts, grpc.ForceCodec(rawCodec{}))
	err := cc.Invoke(ctx, method, req, &resp, opts...)
	return resp, err
}

// testContext returns a context that ends with the test, with a generous deadline.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// digestRequest encodes a SignDigestRequest-like message: key_id = 1, digest = 2.
func digestRequest(keyID, digest string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendString(b, keyID)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendBytes(b, []byte(digest))
}

// digestResponse is what the fake workers answer for a request: a message whose field 1
// is the SHA-256 of the request bytes.
func digestResponse(req []byte) []byte {
	sum := sha256.Sum256(req)
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(b, sum[:])
}

// requestKeyID returns field 1 of a request built by digestRequest.
func requestKeyID(req []byte) string {
	var keyID string
	_ = forEachField(req, func(num protowire.Number, _ protowire.Type, v []byte) error {
		if num == 1 {
			keyID = string(v)
		}
		return nil
	})
	return keyID
}

// splitBatch returns the raw requests of a SignDigestsRequest.
func splitBatch(t *testing.T, b []byte) [][]byte {
	var reqs [][]byte
	err := forEachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num == 1 && typ == protowire.BytesType {
			reqs = append(reqs, append([]byte(nil), v...))
		}
		return nil
	})
	if err != nil {
		t.Errorf("fake worker: bad SignDigestsRequest: %v", err)
	}
	return reqs
}

// encodeOutcome builds a SignDigestOutcome: a response, or a status when code != 0.
func encodeOutcome(resp []byte, code codes.Code, message string) []byte {
	var o []byte
	if code == codes.OK {
		o = protowire.AppendTag(o, 1, protowire.BytesType)
		o = protowire.AppendBytes(o, resp)
		return o
	}
	var st []byte
	st = protowire.AppendTag(st, 1, protowire.VarintType)
	st = protowire.AppendVarint(st, uint64(code))
	st = protowire.AppendTag(st, 2, protowire.BytesType)
	st = protowire.AppendString(st, message)
	o = protowire.AppendTag(o, 2, protowire.BytesType)
	return protowire.AppendBytes(o, st)
}

// signDigestsFake answers SignDigests like a worker: each request gets digestResponse,
// except requests whose key id is "missing", which get NOT_FOUND. onBatch (optional) sees
// every batch first.
func signDigestsFake(t *testing.T, onBatch func(md metadata.MD, reqs [][]byte)) fakeHandler {
	return func(ss grpc.ServerStream, method string, md metadata.MD) error {
		if method != signDigestsMethod {
			return status.Error(codes.Unimplemented, "unexpected method "+method)
		}
		var in []byte
		if err := ss.RecvMsg(&in); err != nil {
			return err
		}
		reqs := splitBatch(t, in)
		if onBatch != nil {
			onBatch(md, reqs)
		}
		var out []byte
		for _, r := range reqs {
			var o []byte
			if requestKeyID(r) == "missing" {
				o = encodeOutcome(nil, codes.NotFound, "key not found")
			} else {
				o = encodeOutcome(digestResponse(r), codes.OK, "")
			}
			out = protowire.AppendTag(out, 1, protowire.BytesType)
			out = protowire.AppendBytes(out, o)
		}
		return ss.SendMsg(out)
	}
}
