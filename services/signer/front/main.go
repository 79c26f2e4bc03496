// Command signet-signer-front is the public gRPC front of the signer service.
//
// It takes the signer's public port and passes every call through, unchanged, to one of
// the signer's Python worker processes over a local socket. SignDigest calls are the
// exception: concurrent SignDigest calls of the same caller are coalesced into one
// internal SignDigests call to a worker, which signs them in one HSM pass and one journal
// write, and each caller gets its own result. This removes the per-call cost of Python
// gRPC for single-digest traffic.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/keepalive"
)

const serviceName = "signer-front"

// config is the parsed command line.
type config struct {
	listen           string
	workers          []string
	tlsCert          string
	tlsKey           string
	tlsClientCA      string
	maxBatch         int
	batchesPerWorker int
	maxMessageBytes  int
	drain            time.Duration
	metricsListen    string
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// parseFlags parses and checks the command line. It returns flag.ErrHelp for -h/--help.
func parseFlags(args []string, usage io.Writer) (config, error) {
	var cfg config
	var workers stringList
	var drainSeconds float64
	fs := flag.NewFlagSet("signet-signer-front", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.listen, "listen", "", "address to serve on, host:port (required)")
	fs.Var(&workers, "worker", "gRPC target of a worker, e.g. unix:///path/to/worker-0.sock (repeat for each worker; at least one)")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "PEM certificate chain to serve TLS with (needs --tls-key)")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&cfg.tlsClientCA, "tls-client-ca", "", "PEM CA certificates; when set, callers must present a client certificate they sign (mTLS)")
	fs.IntVar(&cfg.maxBatch, "max-batch", 100, "most SignDigest calls in one SignDigests call")
	fs.IntVar(&cfg.batchesPerWorker, "batches-per-worker", 2, "SignDigests calls in flight per worker")
	fs.StringVar(&cfg.metricsListen, "metrics-listen", "", "where to serve /metrics: unix:///path or host:port (empty: not served)")
	fs.IntVar(&cfg.maxMessageBytes, "max-message-bytes", 16*1024*1024, "largest message received or sent, in bytes")
	fs.Float64Var(&drainSeconds, "drain-seconds", 20, "on SIGTERM/SIGINT, time in-flight calls get to finish")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(usage, "usage: signet-signer-front --listen HOST:PORT --worker TARGET [--worker TARGET ...] [options]")
			fs.SetOutput(usage)
			fs.PrintDefaults()
		}
		return cfg, err
	}
	cfg.workers = workers
	cfg.drain = time.Duration(drainSeconds * float64(time.Second))

	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.listen == "":
		return cfg, errors.New("--listen is required")
	case len(cfg.workers) == 0:
		return cfg, errors.New("at least one --worker is required")
	case (cfg.tlsCert == "") != (cfg.tlsKey == ""):
		return cfg, errors.New("--tls-cert and --tls-key go together")
	case cfg.tlsClientCA != "" && cfg.tlsCert == "":
		return cfg, errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	case cfg.maxBatch < 1:
		return cfg, errors.New("--max-batch must be at least 1")
	case cfg.batchesPerWorker < 1:
		return cfg, errors.New("--batches-per-worker must be at least 1")
	case cfg.maxMessageBytes < 1 || cfg.maxMessageBytes > math.MaxInt32:
		return cfg, fmt.Errorf("--max-message-bytes must be between 1 and %d", math.MaxInt32)
	case !(drainSeconds >= 0) || drainSeconds > 24*3600:
		return cfg, errors.New("--drain-seconds must be between 0 and 86400")
	}
	for _, w := range cfg.workers {
		if w == "" {
			return cfg, errors.New("--worker must not be empty")
		}
	}
	return cfg, nil
}

// newLogger returns a logger writing JSON lines with the fields the Python services use:
// time, level, service, message.
func newLogger(w io.Writer) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				a.Value = slog.StringValue(a.Value.Time().UTC().Format("2006-01-02T15:04:05.000Z"))
			case slog.LevelKey:
				level, _ := a.Value.Any().(slog.Level)
				name := level.String()
				if level == slog.LevelWarn {
					name = "WARNING"
				}
				a.Value = slog.StringValue(name)
			case slog.MessageKey:
				a.Key = "message"
			}
			return a
		},
	})
	return slog.New(h).With("service", serviceName)
}

// grpcLogger routes gRPC's own error messages into the JSON log and drops its info and
// warning messages (connection trouble is logged by the front, rate-limited).
type grpcLogger struct{ log *slog.Logger }

func (grpcLogger) Info(...any)                 {}
func (grpcLogger) Infoln(...any)               {}
func (grpcLogger) Infof(string, ...any)        {}
func (grpcLogger) Warning(...any)              {}
func (grpcLogger) Warningln(...any)            {}
func (grpcLogger) Warningf(string, ...any)     {}
func (l grpcLogger) Error(args ...any)         { l.log.Error(fmt.Sprint(args...), "component", "grpc") }
func (l grpcLogger) Errorln(args ...any)       { l.Error(args...) }
func (l grpcLogger) Errorf(f string, a ...any) { l.Error(fmt.Sprintf(f, a...)) }
func (l grpcLogger) Fatal(args ...any)         { l.Error(args...); os.Exit(1) }
func (l grpcLogger) Fatalln(args ...any)       { l.Fatal(args...) }
func (l grpcLogger) Fatalf(f string, a ...any) { l.Fatal(fmt.Sprintf(f, a...)) }
func (grpcLogger) V(int) bool                  { return false }

// app is a configured front: the public server and the worker connections.
type app struct {
	server    *grpc.Server
	front     *front
	watchers  *workerSet
	coalescer *coalescer
}

// newApp builds the public server and the worker connections (which connect on first
// use or once watch is called).
func newApp(cfg config, log *slog.Logger) (*app, error) {
	var creds credentials.TransportCredentials
	if cfg.tlsCert != "" {
		tlsConfig, err := serverTLS(cfg)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tlsConfig)
	}

	p := &pool{}
	for _, target := range cfg.workers {
		cc, err := grpc.NewClient(target,
			// Workers listen on unix sockets in a directory only the signer can reach.
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(
				grpc.MaxCallRecvMsgSize(cfg.maxMessageBytes),
				grpc.MaxCallSendMsgSize(cfg.maxMessageBytes),
			),
			// A restarted worker must be reached again within seconds.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{
					BaseDelay:  250 * time.Millisecond,
					Multiplier: 1.6,
					Jitter:     0.2,
					MaxDelay:   3 * time.Second,
				},
				MinConnectTimeout: 20 * time.Second,
			}),
			// Keep the connections up; they are local and cheap.
			grpc.WithIdleTimeout(0),
		)
		if err != nil {
			closeWorkers(p.workers)
			return nil, fmt.Errorf("--worker %q: %v", target, err)
		}
		p.workers = append(p.workers, &worker{target: target, cc: cc, log: log})
	}

	c := newCoalescer(p, cfg.batchesPerWorker, cfg.maxBatch, cfg.maxMessageBytes, log)
	m := newMetrics()
	m.pool, m.coalescer, c.metrics = p, c, m
	f := &front{pool: p, mtls: cfg.tlsClientCA != "", coalescer: c, metrics: m}
	opts := []grpc.ServerOption{
		grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(f.handle),
		// Signing requests may carry whole PDF documents.
		grpc.MaxRecvMsgSize(cfg.maxMessageBytes),
		grpc.MaxSendMsgSize(cfg.maxMessageBytes),
		// Accept the keepalive pings Signet clients send (every 30 s, also when idle), so
		// idle clients are never sent GOAWAY "too_many_pings".
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		// Never close idle connections; ping quiet ones to find dead peers.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    60 * time.Second,
			Timeout: 20 * time.Second,
		}),
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	return &app{server: grpc.NewServer(opts...), front: f, coalescer: c}, nil
}

// watch starts following the workers' connection states.
func (a *app) watch() {
	a.watchers = watchWorkers(a.front.pool.workers, a.coalescer.kick)
}

// serverTLS loads the certificate, key and (for mTLS) client CA files.
func serverTLS(cfg config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("cannot load --tls-cert/--tls-key: %v", err)
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.tlsClientCA != "" {
		pem, err := os.ReadFile(cfg.tlsClientCA)
		if err != nil {
			return nil, fmt.Errorf("cannot read --tls-client-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("--tls-client-ca holds no PEM certificate")
		}
		tlsConfig.ClientCAs = pool
		tlsConfig.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tlsConfig, nil
}

// close ends the batches still in flight, the watchers and the worker connections. Call
// it after the server has stopped.
func (a *app) close() {
	a.coalescer.close()
	if a.watchers != nil {
		a.watchers.stop()
	}
	closeWorkers(a.front.pool.workers)
}

func closeWorkers(workers []*worker) {
	for _, w := range workers {
		_ = w.cc.Close()
	}
}

func tlsMode(cfg config) string {
	switch {
	case cfg.tlsClientCA != "":
		return "mtls"
	case cfg.tlsCert != "":
		return "tls"
	default:
		return "plaintext"
	}
}

// run runs the front until a signal arrives on signals (SIGTERM or SIGINT) and returns
// the exit code. A second signal ends the drain early.
func run(args []string, stderr io.Writer, signals <-chan os.Signal) int {
	log := newLogger(stderr)
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		log.Error("invalid command line: " + err.Error() + " (see --help)")
		return 2
	}

	a, err := newApp(cfg, log)
	if err != nil {
		log.Error(err.Error())
		return 1
	}
	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		log.Error(fmt.Sprintf("cannot listen on %s: %v", cfg.listen, err))
		a.close()
		return 1
	}

	if cfg.metricsListen != "" {
		metricsServer, err := serveMetrics(cfg.metricsListen, a.front.metrics)
		if err != nil {
			log.Error(err.Error())
			_ = lis.Close()
			a.close()
			return 1
		}
		defer metricsServer.Close()
	}
	a.watch()
	serveErr := make(chan error, 1)
	go func() { serveErr <- a.server.Serve(lis) }()
	log.Info("signer front started", "listen", lis.Addr().String(), "workers", cfg.workers,
		"tls", tlsMode(cfg), "max_batch", cfg.maxBatch, "batches_per_worker", cfg.batchesPerWorker)

	select {
	case err := <-serveErr:
		log.Error("serving failed: " + err.Error())
		a.server.Stop()
		a.close()
		return 1
	case sig := <-signals:
		log.Info("draining", "signal", sig.String(), "drain_seconds", cfg.drain.Seconds())
	}

	// Refuse new calls and let the ones in flight finish, SignDigest batches included.
	stopped := make(chan struct{})
	go func() {
		a.server.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(cfg.drain)
	defer timer.Stop()
	select {
	case <-stopped:
		log.Info("drained")
	case <-timer.C:
		log.Warn("drain time is up; cancelling the calls still in flight")
		a.server.Stop()
		<-stopped
	case sig := <-signals:
		log.Warn("second signal; cancelling the calls still in flight", "signal", sig.String())
		a.server.Stop()
		<-stopped
	}
	a.close()
	<-serveErr
	log.Info("signer front stopped")
	return 0
}

func main() {
	// gRPC's logger must be set before anything else uses gRPC.
	grpclog.SetLoggerV2(grpcLogger{log: newLogger(os.Stderr)})
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	os.Exit(run(os.Args[1:], os.Stderr, signals))
}
