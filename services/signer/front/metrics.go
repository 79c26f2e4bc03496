package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
)

// Methods the front names in its metrics; any other method name a caller sends is
// counted as "other", so callers cannot grow the label set.
var knownMethodPrefixes = []string{
	"/signet.signer.v1.SignerService/",
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// Histogram bounds: SignDigest calls per SignDigests call, and seconds a call waited.
var (
	batchSizeBounds = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}
	queueWaitBounds = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
)

// histogram is a Prometheus histogram: cumulative buckets, sum and count.
type histogram struct {
	bounds []float64
	counts []uint64 // per bound, not cumulative; the last one is +Inf
	sum    float64
	count  uint64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v) // first bound >= v
	h.counts[i]++
	h.sum += v
	h.count++
}

func (h *histogram) write(w io.Writer, name string) {
	var cumulative uint64
	for i, bound := range h.bounds {
		cumulative += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", name, strconv.FormatFloat(bound, 'g', -1, 64), cumulative)
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, h.count)
	fmt.Fprintf(w, "%s_sum %s\n", name, strconv.FormatFloat(h.sum, 'g', -1, 64))
	fmt.Fprintf(w, "%s_count %d\n", name, h.count)
}

type callKey struct {
	method string
	code   codes.Code
}

// metrics are the front's own figures, served in the Prometheus text format. The
// workers count the calls they handle; these show what only the front sees: calls it
// answered (including those no worker could take), how SignDigest calls were grouped,
// how long they waited for a worker, and the workers it can reach.
type metrics struct {
	mu        sync.Mutex
	calls     map[callKey]uint64
	batchSize *histogram
	queueWait *histogram

	// read at scrape time
	pool      *pool
	coalescer *coalescer
}

func newMetrics() *metrics {
	return &metrics{
		calls:     map[callKey]uint64{},
		batchSize: newHistogram(batchSizeBounds),
		queueWait: newHistogram(queueWaitBounds),
	}
}

// call counts one call the front answered with code.
func (m *metrics) call(method string, code codes.Code) {
	if m == nil {
		return
	}
	label := "other"
	for _, prefix := range knownMethodPrefixes {
		if strings.HasPrefix(method, prefix) {
			label = method
			break
		}
	}
	m.mu.Lock()
	m.calls[callKey{label, code}]++
	m.mu.Unlock()
}

// batch records a SignDigests call of size calls whose calls waited the given times.
func (m *metrics) batch(waits []time.Duration) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batchSize.observe(float64(len(waits)))
	for _, d := range waits {
		m.queueWait.observe(d.Seconds())
	}
}

// ServeHTTP writes the metrics in the Prometheus text exposition format.
func (m *metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	m.write(w)
}

func (m *metrics) write(w io.Writer) {
	ready, queued := 0, 0
	if m.pool != nil {
		for _, wk := range m.pool.workers {
			if wk.cc.GetState() == connectivity.Ready {
				ready++
			}
		}
	}
	if m.coalescer != nil {
		queued = m.coalescer.queued()
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintln(w, "# HELP signet_signer_front_calls_total Calls the signer front answered, by method and final status code.")
	fmt.Fprintln(w, "# TYPE signet_signer_front_calls_total counter")
	keys := make([]callKey, 0, len(m.calls))
	for k := range m.calls {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].method != keys[j].method {
			return keys[i].method < keys[j].method
		}
		return keys[i].code < keys[j].code
	})
	for _, k := range keys {
		fmt.Fprintf(w, "signet_signer_front_calls_total{method=%q,code=%q} %d\n",
			k.method, codeName(k.code), m.calls[k])
	}
	fmt.Fprintln(w, "# HELP signet_signer_front_batch_size SignDigest calls sent to a worker in one SignDigests call.")
	fmt.Fprintln(w, "# TYPE signet_signer_front_batch_size histogram")
	m.batchSize.write(w, "signet_signer_front_batch_size")
	fmt.Fprintln(w, "# HELP signet_signer_front_queue_wait_seconds Time a SignDigest call waited in the front for a worker.")
	fmt.Fprintln(w, "# TYPE signet_signer_front_queue_wait_seconds histogram")
	m.queueWait.write(w, "signet_signer_front_queue_wait_seconds")
	fmt.Fprintln(w, "# HELP signet_signer_front_queued_calls SignDigest calls waiting in the front now.")
	fmt.Fprintln(w, "# TYPE signet_signer_front_queued_calls gauge")
	fmt.Fprintf(w, "signet_signer_front_queued_calls %d\n", queued)
	fmt.Fprintln(w, "# HELP signet_signer_front_workers_ready Worker processes the front is connected to now.")
	fmt.Fprintln(w, "# TYPE signet_signer_front_workers_ready gauge")
	fmt.Fprintf(w, "signet_signer_front_workers_ready %d\n", ready)
}

// codeNames are the status codes' names as the Python services label them.
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

// codeName is the status code's name as the Python services label it (e.g. NOT_FOUND).
func codeName(c codes.Code) string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return "UNKNOWN"
}

// serveMetrics serves /metrics on address: "unix:///path" or "host:port".
func serveMetrics(address string, m *metrics) (*http.Server, error) {
	network, where := "tcp", address
	if path, ok := strings.CutPrefix(address, "unix://"); ok {
		network, where = "unix", path
		// A front killed before it could close the socket leaves the file behind, and
		// its replacement could not listen; only a socket file is ever removed.
		if info, err := os.Lstat(path); err == nil && info.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path)
		}
	}
	lis, err := net.Listen(network, where)
	if err != nil {
		return nil, fmt.Errorf("cannot listen for metrics on %s: %v", address, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	return srv, nil
}
