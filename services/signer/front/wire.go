package main

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

// rawCodec passes message bytes through without decoding them. The front forwards
// messages as opaque protobuf bytes and reads only the few fields of the internal
// SignDigests messages it needs, with protowire.
//
// The name "proto" keeps the content type the workers and callers expect
// ("application/grpc+proto").
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

// Marshal accepts []byte or *[]byte and returns the bytes unchanged.
func (rawCodec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case []byte:
		return m, nil
	case *[]byte:
		return *m, nil
	default:
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
}

// Unmarshal stores a copy of data in v, which must be a *[]byte. gRPC does not promise
// that data stays valid after Unmarshal returns, hence the copy.
func (rawCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*m = append([]byte(nil), data...)
	return nil
}

// Method names the front treats specially.
const (
	signDigestMethod  = "/signet.signer.v1.SignerService/SignDigest"
	signDigestsMethod = "/signet.signer.v1.SignerWorkerService/SignDigests"
	// Every method of this service is internal to the signer and never served publicly.
	workerServicePrefix = "/signet.signer.v1.SignerWorkerService/"
)

// peerCNHeader carries the Subject Common Name of the caller's verified client
// certificate to the workers. Only the front sets it; a caller's value is always dropped.
const peerCNHeader = "signet-front-peer-cn"

// waitedHeader tells a worker, for each request of a SignDigests call in order, how many
// microseconds it waited in the front before the batch was sent, so that the workers'
// SignDigest duration metrics cover the caller's whole wait.
const waitedHeader = "signet-front-waited-us"

// frontHeaderPrefix is the prefix of the headers only the front sets; callers' values
// are always dropped.
const frontHeaderPrefix = "signet-front-"

// forwardMetadata returns a copy of the caller's metadata that is safe to send to a
// worker: transport and reserved gRPC headers are removed, any caller-supplied
// peerCNHeader is dropped, and peerCN (when not empty) is set as peerCNHeader.
func forwardMetadata(in metadata.MD, peerCN string) metadata.MD {
	out := metadata.MD{}
	for key, values := range in {
		if !forwardableKey(key) {
			continue
		}
		out[key] = append([]string(nil), values...)
	}
	if peerCN != "" {
		out[peerCNHeader] = []string{peerCN}
	}
	return out
}

// responseMetadata returns a copy of a worker's response header or trailer metadata
// without reserved keys, ready to send to the caller.
func responseMetadata(in metadata.MD) metadata.MD {
	out := metadata.MD{}
	for key, values := range in {
		if !forwardableKey(key) {
			continue
		}
		out[key] = append([]string(nil), values...)
	}
	return out
}

// forwardableKey reports whether a metadata key may pass between caller and worker.
// Keys arrive lower-cased from the transport.
func forwardableKey(key string) bool {
	switch {
	case key == "" || key[0] == ':':
		return false // HTTP/2 pseudo-headers such as :authority
	case key == "content-type", key == "user-agent", key == "te":
		return false
	case len(key) >= 5 && key[:5] == "grpc-":
		return false
	case strings.HasPrefix(key, frontHeaderPrefix):
		return false // peerCNHeader, waitedHeader: set by the front alone
	}
	return true
}

// encodeSignDigests builds a SignDigestsRequest from the callers' raw SignDigestRequest
// bytes: one field 1 (length-delimited) per request, in order, without decoding them.
func encodeSignDigests(requests [][]byte) []byte {
	size := 0
	for _, r := range requests {
		size += protowire.SizeTag(1) + protowire.SizeBytes(len(r))
	}
	b := make([]byte, 0, size)
	for _, r := range requests {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, r)
	}
	return b
}

// outcome is one item of a SignDigestsResponse: the raw SignDigestResponse bytes when
// code is OK, otherwise the item's status.
type outcome struct {
	response []byte
	code     codes.Code
	message  string
}

var errMalformed = errors.New("malformed SignDigestsResponse")

// decodeSignDigests parses a SignDigestsResponse and checks that it holds exactly want
// outcomes. Unknown fields are skipped. Repeated occurrences of a message field are
// merged, as protobuf parsers do, by concatenating their bytes.
func decodeSignDigests(b []byte, want int) ([]outcome, error) {
	outcomes := make([]outcome, 0, want)
	err := forEachField(b, func(num protowire.Number, typ protowire.Type, value []byte) error {
		if num != 1 {
			return nil
		}
		if typ != protowire.BytesType {
			return errMalformed
		}
		o, err := decodeOutcome(value)
		if err != nil {
			return err
		}
		outcomes = append(outcomes, o)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(outcomes) != want {
		return nil, fmt.Errorf("%w: %d outcomes for %d requests", errMalformed, len(outcomes), want)
	}
	return outcomes, nil
}

// decodeOutcome parses a SignDigestOutcome.
func decodeOutcome(b []byte) (outcome, error) {
	var response, st []byte
	err := forEachField(b, func(num protowire.Number, typ protowire.Type, value []byte) error {
		switch num {
		case 1, 2:
			if typ != protowire.BytesType {
				return errMalformed
			}
			if num == 1 {
				response = append(response, value...)
			} else {
				st = append(st, value...)
			}
		}
		return nil
	})
	if err != nil {
		return outcome{}, err
	}
	var o outcome
	if err := decodeStatus(st, &o); err != nil {
		return outcome{}, err
	}
	if o.code == codes.OK {
		// An absent response is an empty message, which encodes as no bytes.
		o.response = response
		if o.response == nil {
			o.response = []byte{}
		}
	}
	return o, nil
}

// decodeStatus parses a signet.common.v1.Status (int32 code = 1; string message = 2).
func decodeStatus(b []byte, o *outcome) error {
	return forEachField(b, func(num protowire.Number, typ protowire.Type, value []byte) error {
		switch num {
		case 1:
			if typ != protowire.VarintType {
				return errMalformed
			}
			v, _ := protowire.ConsumeVarint(value)
			code := int32(v) // int32 fields are sign-extended varints
			if code < 0 || code > int32(codes.Unauthenticated) {
				o.code = codes.Unknown
			} else {
				o.code = codes.Code(code)
			}
		case 2:
			if typ != protowire.BytesType {
				return errMalformed
			}
			o.message = string(value)
		}
		return nil
	})
}

// forEachField calls fn for every field of the encoded message b. For length-delimited
// fields value is the payload; for other wire types it is the raw encoded value.
func forEachField(b []byte, fn func(num protowire.Number, typ protowire.Type, value []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		var value []byte
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return errMalformed
			}
			value, n = v, m
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errMalformed
			}
			value = b[:n]
		}
		if err := fn(num, typ, value); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
