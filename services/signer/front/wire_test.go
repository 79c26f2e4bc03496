package main

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

func TestRawCodec(t *testing.T) {
	var c rawCodec
	in := []byte("abc")
	for _, v := range []any{in, &in} {
		out, err := c.Marshal(v)
		if err != nil || !bytes.Equal(out, in) {
			t.Errorf("Marshal(%T) = %q, %v", v, out, err)
		}
	}
	if _, err := c.Marshal("abc"); err == nil {
		t.Error("Marshal(string) succeeded")
	}
	var got []byte
	if err := c.Unmarshal(in, &got); err != nil || !bytes.Equal(got, in) {
		t.Errorf("Unmarshal = %q, %v", got, err)
	}
	in[0] = 'x'
	if got[0] != 'a' {
		t.Error("Unmarshal kept a reference to gRPC's buffer")
	}
}

func TestForwardMetadata(t *testing.T) {
	in := metadata.MD{
		":authority":     {"front"},
		"content-type":   {"application/grpc"},
		"user-agent":     {"grpc-python/1"},
		"te":             {"trailers"},
		"grpc-trace-bin": {"x"},
		"authorization":  {"Bearer t"},
		"traceparent":    {"00-abc-def-01"},
		peerCNHeader:     {"spoofed"},
		waitedHeader:     {"0,0"},
	}
	out := forwardMetadata(in, "")
	want := metadata.MD{"authorization": {"Bearer t"}, "traceparent": {"00-abc-def-01"}}
	if len(out) != len(want) {
		t.Errorf("forwarded %v, want %v", out, want)
	}
	for k, v := range want {
		if !slices.Equal(out[k], v) {
			t.Errorf("%s = %q, want %q", k, out[k], v)
		}
	}
	out = forwardMetadata(in, "ca-gateway")
	if !slices.Equal(out[peerCNHeader], []string{"ca-gateway"}) {
		t.Errorf("%s = %q with mTLS", peerCNHeader, out[peerCNHeader])
	}
}

func TestDecodeSignDigests(t *testing.T) {
	item := func(b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), b)
	}
	var resp []byte
	resp = append(resp, item(encodeOutcome([]byte{0x0a, 0x01, 'x'}, codes.OK, ""))...)
	resp = append(resp, item(nil)...) // code 0, no response: an empty message
	resp = append(resp, item(encodeOutcome(nil, codes.PermissionDenied, "grant expired"))...)
	// Unknown fields, at the top level and inside an outcome, are skipped.
	resp = protowire.AppendTag(resp, 7, protowire.VarintType)
	resp = protowire.AppendVarint(resp, 42)
	withUnknown := protowire.AppendString(protowire.AppendTag(nil, 9, protowire.BytesType), "future")
	withUnknown = append(withUnknown, encodeOutcome([]byte{0x10, 0x01}, codes.OK, "")...)
	resp = append(resp, item(withUnknown)...)

	got, err := decodeSignDigests(resp, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[0].response, []byte{0x0a, 0x01, 'x'}) || got[0].code != codes.OK {
		t.Errorf("item 0 = %+v", got[0])
	}
	if got[1].code != codes.OK || got[1].response == nil || len(got[1].response) != 0 {
		t.Errorf("item 1 = %+v, want OK with an empty response", got[1])
	}
	if got[2].code != codes.PermissionDenied || got[2].message != "grant expired" {
		t.Errorf("item 2 = %+v", got[2])
	}
	if !bytes.Equal(got[3].response, []byte{0x10, 0x01}) {
		t.Errorf("item 3 = %+v", got[3])
	}

	if _, err := decodeSignDigests(resp, 3); !errors.Is(err, errMalformed) {
		t.Errorf("count mismatch: err = %v", err)
	}
	if _, err := decodeSignDigests(resp[:len(resp)-1], 4); !errors.Is(err, errMalformed) {
		t.Errorf("truncated: err = %v", err)
	}
	bad := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1)
	if _, err := decodeSignDigests(bad, 1); !errors.Is(err, errMalformed) {
		t.Errorf("wrong wire type: err = %v", err)
	}
}

func TestEncodeSignDigests(t *testing.T) {
	reqs := [][]byte{[]byte("one"), {}, []byte("three")}
	got := splitBatch(t, encodeSignDigests(reqs))
	if len(got) != len(reqs) {
		t.Fatalf("got %d requests", len(got))
	}
	for i := range reqs {
		if !bytes.Equal(got[i], reqs[i]) {
			t.Errorf("request %d = %q, want %q", i, got[i], reqs[i])
		}
	}
}
