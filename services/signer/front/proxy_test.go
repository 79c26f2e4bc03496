package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	getKeyMethod     = "/signet.signer.v1.SignerService/GetKey"
	disableKeyMethod = "/signet.signer.v1.SignerService/DisableKey"
	countMethod      = "/signet.test.v1.TestService/Count"
	concatMethod     = "/signet.test.v1.TestService/Concat"
)

// echoFake answers the test methods: GetKey echoes with header and trailer, DisableKey
// fails with details, Count streams three messages, Concat joins a client stream.
func echoFake(ss grpc.ServerStream, method string, _ metadata.MD) error {
	switch method {
	case getKeyMethod:
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		if err := ss.SendHeader(metadata.Pairs("x-worker-header", "h1")); err != nil {
			return err
		}
		ss.SetTrailer(metadata.Pairs("x-worker-trailer", "t1"))
		return ss.SendMsg(append([]byte("echo:"), req...))
	case disableKeyMethod:
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		if err := ss.SendHeader(metadata.Pairs("x-worker-header", "h2")); err != nil {
			return err
		}
		ss.SetTrailer(metadata.Pairs("x-worker-trailer", "t2"))
		st, err := status.New(codes.FailedPrecondition, "key is destroyed").
			WithDetails(wrapperspb.String("KEY_DESTROYED"))
		if err != nil {
			return err
		}
		return st.Err()
	case countMethod:
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		for i := range 3 {
			if err := ss.SendMsg([]byte{'m', byte('0' + i)}); err != nil {
				return err
			}
		}
		return nil
	case concatMethod:
		var all []byte
		for {
			var req []byte
			err := ss.RecvMsg(&req)
			if errors.Is(err, io.EOF) {
				return ss.SendMsg(all)
			}
			if err != nil {
				return err
			}
			all = append(all, req...)
		}
	}
	return status.Error(codes.Unimplemented, "unknown method "+method)
}

func TestPassThroughUnary(t *testing.T) {
	fw := startFakeWorker(t, echoFake)
	cc := dialFront(t, startFront(t, testConfig(fw.target)), nil)
	ctx := metadata.AppendToOutgoingContext(testContext(t),
		"authorization", "Bearer token-1",
		"x-request-id", "req-1",
		peerCNHeader, "spoofed")

	var header, trailer metadata.MD
	resp, err := invoke(ctx, cc, getKeyMethod, []byte("key-1"), grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatalf("GetKey: %v", err)
	}
	if string(resp) != "echo:key-1" {
		t.Errorf("response = %q", resp)
	}
	if got := header.Get("x-worker-header"); !slices.Equal(got, []string{"h1"}) {
		t.Errorf("header x-worker-header = %q", got)
	}
	if got := trailer.Get("x-worker-trailer"); !slices.Equal(got, []string{"t1"}) {
		t.Errorf("trailer x-worker-trailer = %q", got)
	}

	calls := fw.callsTo(getKeyMethod)
	if len(calls) != 1 {
		t.Fatalf("worker got %d GetKey calls", len(calls))
	}
	md := calls[0].md
	if got := md.Get("authorization"); !slices.Equal(got, []string{"Bearer token-1"}) {
		t.Errorf("worker authorization = %q", got)
	}
	if got := md.Get("x-request-id"); !slices.Equal(got, []string{"req-1"}) {
		t.Errorf("worker x-request-id = %q", got)
	}
	if got := md.Get(peerCNHeader); len(got) != 0 {
		t.Errorf("caller's %s reached the worker: %q", peerCNHeader, got)
	}

	// An error keeps its code, message and details, and its header and trailer.
	header, trailer = nil, nil
	_, err = invoke(ctx, cc, disableKeyMethod, []byte("key-1"), grpc.Header(&header), grpc.Trailer(&trailer))
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "key is destroyed" {
		t.Fatalf("DisableKey error = %v", err)
	}
	want, _ := status.New(codes.FailedPrecondition, "key is destroyed").WithDetails(wrapperspb.String("KEY_DESTROYED"))
	if !proto.Equal(st.Proto(), want.Proto()) {
		t.Errorf("status = %v, want %v", st.Proto(), want.Proto())
	}
	if got := header.Get("x-worker-header"); !slices.Equal(got, []string{"h2"}) {
		t.Errorf("error header x-worker-header = %q", got)
	}
	if got := trailer.Get("x-worker-trailer"); !slices.Equal(got, []string{"t2"}) {
		t.Errorf("error trailer x-worker-trailer = %q", got)
	}
}

func TestPassThroughDeadline(t *testing.T) {
	seen := make(chan time.Duration, 1)
	fw := startFakeWorker(t, func(ss grpc.ServerStream, method string, md metadata.MD) error {
		dl, ok := ss.Context().Deadline()
		if !ok {
			seen <- 0
		} else {
			seen <- time.Until(dl)
		}
		return echoFake(ss, method, md)
	})
	cc := dialFront(t, startFront(t, testConfig(fw.target)), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := invoke(ctx, cc, getKeyMethod, []byte("k")); err != nil {
		t.Fatal(err)
	}
	if left := <-seen; left <= 0 || left > 5*time.Second {
		t.Errorf("worker saw %v left of the deadline, want (0, 5s]", left)
	}
}

func TestPassThroughStreaming(t *testing.T) {
	fw := startFakeWorker(t, echoFake)
	cc := dialFront(t, startFront(t, testConfig(fw.target)), nil)
	ctx := testContext(t)

	// Server streaming: three messages, then a clean end.
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, countMethod, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg([]byte("go")); err != nil {
		t.Fatal(err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		var msg []byte
		err := cs.RecvMsg(&msg)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Count: %v", err)
		}
		got = append(got, string(msg))
	}
	if !slices.Equal(got, []string{"m0", "m1", "m2"}) {
		t.Errorf("Count messages = %q", got)
	}

	// Client streaming: three messages in, one out.
	cs, err = cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, concatMethod, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"a", "b", "c"} {
		if err := cs.SendMsg([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var joined []byte
	if err := cs.RecvMsg(&joined); err != nil {
		t.Fatalf("Concat: %v", err)
	}
	if string(joined) != "abc" {
		t.Errorf("Concat = %q", joined)
	}
}

func TestWorkerServiceNotServedPublicly(t *testing.T) {
	fw := startFakeWorker(t, signDigestsFake(t, nil))
	cc := dialFront(t, startFront(t, testConfig(fw.target)), nil)
	_, err := invoke(testContext(t), cc, signDigestsMethod, encodeSignDigests([][]byte{digestRequest("k", "d")}))
	if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != "unknown method" {
		t.Errorf("SignDigests from outside = %v, want UNIMPLEMENTED unknown method", err)
	}
	_, err = invoke(testContext(t), cc, workerServicePrefix+"Other", nil)
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("other worker method from outside = %v", err)
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if len(fw.calls) != 0 {
		t.Errorf("the worker got %d calls, want none", len(fw.calls))
	}
}

func TestWorkersUnavailable(t *testing.T) {
	down := "unix://" + filepath.Join(t.TempDir(), "absent.sock")
	cc := dialFront(t, startFront(t, testConfig(down)), nil)
	_, err := invoke(testContext(t), cc, getKeyMethod, []byte("k"))
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "signer workers unavailable" {
		t.Errorf("pass-through with no worker = %v", err)
	}
	_, err = invoke(testContext(t), cc, signDigestMethod, digestRequest("k", "d"))
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "signer workers unavailable" {
		t.Errorf("SignDigest with no worker = %v", err)
	}
}

func TestPassThroughSkipsDownWorker(t *testing.T) {
	down := "unix://" + filepath.Join(t.TempDir(), "absent.sock")
	fw := startFakeWorker(t, echoFake)
	cc := dialFront(t, startFront(t, testConfig(down, fw.target)), nil)
	for i := range 6 {
		if _, err := invoke(testContext(t), cc, getKeyMethod, []byte("k")); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate.
type testPKI struct {
	dir        string
	caPool     *x509.CertPool
	clientCert tls.Certificate
}

func newTestPKI(t *testing.T, clientCN string) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)

	issue := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	pemFile := func(name, typ string, der []byte) {
		data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	serverDER, serverKey := issue(2, "signer", x509.ExtKeyUsageServerAuth)
	serverKeyDER, _ := x509.MarshalECPrivateKey(serverKey)
	pemFile("ca.pem", "CERTIFICATE", caDER)
	pemFile("server.pem", "CERTIFICATE", serverDER)
	pemFile("server-key.pem", "EC PRIVATE KEY", serverKeyDER)

	clientDER, clientKey := issue(3, clientCN, x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &testPKI{
		dir:        dir,
		caPool:     pool,
		clientCert: tls.Certificate{Certificate: [][]byte{clientDER}, PrivateKey: clientKey},
	}
}

func TestMTLSPeerName(t *testing.T) {
	pki := newTestPKI(t, "ca-gateway")
	fw := startFakeWorker(t, func(ss grpc.ServerStream, method string, md metadata.MD) error {
		if method == signDigestsMethod {
			return signDigestsFake(t, nil)(ss, method, md)
		}
		return echoFake(ss, method, md)
	})
	cfg := testConfig(fw.target)
	cfg.tlsCert = filepath.Join(pki.dir, "server.pem")
	cfg.tlsKey = filepath.Join(pki.dir, "server-key.pem")
	cfg.tlsClientCA = filepath.Join(pki.dir, "ca.pem")
	addr := startFront(t, cfg)

	cc := dialFront(t, addr, credentials.NewTLS(&tls.Config{
		RootCAs:      pki.caPool,
		Certificates: []tls.Certificate{pki.clientCert},
	}))
	ctx := metadata.AppendToOutgoingContext(testContext(t), peerCNHeader, "identity")
	if _, err := invoke(ctx, cc, getKeyMethod, []byte("k")); err != nil {
		t.Fatalf("GetKey over mTLS: %v", err)
	}
	resp, err := invoke(ctx, cc, signDigestMethod, digestRequest("k", "d"))
	if err != nil {
		t.Fatalf("SignDigest over mTLS: %v", err)
	}
	if !bytes.Equal(resp, digestResponse(digestRequest("k", "d"))) {
		t.Errorf("SignDigest response is not the one for this request")
	}
	calls := fw.callsTo(getKeyMethod)
	if len(calls) != 1 {
		t.Fatalf("worker got %d GetKey calls", len(calls))
	}
	if got := calls[0].md.Get(peerCNHeader); !slices.Equal(got, []string{"ca-gateway"}) {
		t.Errorf("pass-through %s = %q, want [ca-gateway]", peerCNHeader, got)
	}
	batches := fw.callsTo(signDigestsMethod)
	if len(batches) != 1 {
		t.Fatalf("worker got %d SignDigests calls", len(batches))
	}
	if got := batches[0].md.Get(peerCNHeader); !slices.Equal(got, []string{"ca-gateway"}) {
		t.Errorf("batch %s = %q, want [ca-gateway]", peerCNHeader, got)
	}

	// Without a client certificate the handshake fails and nothing reaches the worker.
	anon := dialFront(t, addr, credentials.NewTLS(&tls.Config{RootCAs: pki.caPool}))
	if _, err := invoke(testContext(t), anon, getKeyMethod, []byte("k")); err == nil {
		t.Error("a caller without a client certificate was served")
	}
	if n := len(fw.callsTo(getKeyMethod)); n != 1 {
		t.Errorf("worker got %d GetKey calls, want 1", n)
	}
}
