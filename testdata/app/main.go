// Command app is the web app the deployctl end-to-end tests deploy behind
// Traefik. It uses the standard library only and is built static
// (CGO_ENABLED=0 go build ./testdata/app) so that it runs in a FROM scratch
// image.
//
// Serve mode (default):
//
//	app [-version v1]
//
//	GET /        200, body "deployctl-testapp version=<version> host=<hostname>\n"
//	GET /health  200 "ok" while healthy, 503 "draining" / "unhealthy" otherwise
//
// Probe mode, for a Docker HEALTHCHECK in exec form (exit 0 healthy, 1 not):
//
//	app probe [-url http://127.0.0.1:$PORT/health] [-timeout 2s]
//
// Release mode, a release command (deployctl --pre-deploy), in a one-off
// container of the app's image:
//
//	app release [-mark FILE] [-exit N]
//
//	prints "release step=1 version=<APP_VERSION>" and "release step=2 ...",
//	appends one line "<APP_VERSION> <hostname>" to FILE (a test counts the
//	runs), and exits N (default 0).
//
// Environment:
//
//	PORT           listen port (default 8080)
//	APP_VERSION    version reported by GET / (default: the -version flag, "dev")
//	SHUTDOWN       what SIGTERM/SIGINT does:
//	               "lameduck" (default): /health answers 503 at once, requests are
//	               still served for DRAIN, then a graceful http.Server.Shutdown;
//	               "immediate": http.Server.Shutdown at once (the listener is
//	               closed at once, as most apps do);
//	               "exit": exit at once, cutting requests and streams in flight
//	               (an app without a graceful shutdown).
//	DRAIN          lame-duck period (default 5s)
//	CRASH_AFTER    exit 1 after this duration; "0" exits 1 at start
//	CRASH_DUMP_ENV "1": on that crash, first print the whole environment,
//	               one variable a line in red (ANSI escapes), as apps that
//	               log their config on the way down do: secrets included
//	NEVER_HEALTHY  "1": /health always answers 503
//	UNHEALTHY_AFTER /health answers 503 from this long after start on (the
//	               app keeps serving /): an app that degrades
//	UNHEALTHY_FILE /health answers 503 while a file exists at this path (the
//	               app keeps serving /): a test makes the app degrade at a
//	               moment of its choosing by copying that file in
//	STARTUP_DELAY  open the listener only after this duration
//
// A second SIGTERM/SIGINT exits at once (status 2). Every lifecycle event is
// logged as one line on stdout: "<time> app event=<name> key=value ...".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		os.Exit(probe(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "release" {
		os.Exit(release(os.Args[2:]))
	}
	os.Exit(serve(os.Args[1:]))
}

// logf writes one lifecycle line to stdout.
func logf(event string, kv ...any) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s app event=%s", time.Now().UTC().Format("2006-01-02T15:04:05.000000Z07:00"), event)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	b.WriteByte('\n')
	os.Stdout.WriteString(b.String())
}

func port() string {
	if p := os.Getenv("PORT"); p != "" {
		return p
	}
	return "8080"
}

// durationEnv parses env name as a time.Duration; ok is false when unset.
func durationEnv(name string, def time.Duration) (d time.Duration, ok bool, err error) {
	v, set := os.LookupEnv(name)
	if !set || v == "" {
		return def, false, nil
	}
	d, err = time.ParseDuration(v)
	if err != nil {
		return 0, false, fmt.Errorf("%s=%q: %v", name, v, err)
	}
	return d, true, nil
}

func probe(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:"+port()+"/health", "health URL to probe")
	timeout := fs.Duration("timeout", 2*time.Second, "probe timeout")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	c := &http.Client{Timeout: *timeout}
	resp, err := c.Get(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	fmt.Printf("probe: %s %d %s\n", *url, resp.StatusCode, strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

func serve(args []string) int {
	fs := flag.NewFlagSet("app", flag.ContinueOnError)
	flagVersion := fs.String("version", "dev", "version to report (env APP_VERSION wins)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	version := *flagVersion
	if v := os.Getenv("APP_VERSION"); v != "" {
		version = v
	}
	host, _ := os.Hostname()

	mode := os.Getenv("SHUTDOWN")
	if mode == "" {
		mode = "lameduck"
	}
	if mode != "lameduck" && mode != "immediate" && mode != "exit" {
		logf("config-error", "error", fmt.Sprintf("SHUTDOWN=%q: want lameduck or immediate", mode))
		return 2
	}
	drain, _, err := durationEnv("DRAIN", 5*time.Second)
	if err != nil {
		logf("config-error", "error", err)
		return 2
	}
	crashAfter, crash, err := durationEnv("CRASH_AFTER", 0)
	if err != nil {
		logf("config-error", "error", err)
		return 2
	}
	startupDelay, _, err := durationEnv("STARTUP_DELAY", 0)
	if err != nil {
		logf("config-error", "error", err)
		return 2
	}
	neverHealthy := os.Getenv("NEVER_HEALTHY") == "1"
	unhealthyAfter, degrade, err := durationEnv("UNHEALTHY_AFTER", 0)
	if err != nil {
		logf("config-error", "error", err)
		return 2
	}
	unhealthyFile := os.Getenv("UNHEALTHY_FILE")
	started := time.Now()

	logf("start", "version", version, "host", host, "port", port(), "shutdown", mode,
		"drain", drain, "never_healthy", neverHealthy, "startup_delay", startupDelay,
		"crash_after", func() string {
			if crash {
				return crashAfter.String()
			}
			return "off"
		}())

	dumpEnv := func() {
		if os.Getenv("CRASH_DUMP_ENV") == "1" {
			for _, kv := range os.Environ() {
				os.Stdout.WriteString("\x1b[31menv " + kv + "\x1b[0m\n")
			}
		}
	}
	if crash {
		if crashAfter <= 0 {
			dumpEnv()
			logf("crash", "after", crashAfter)
			return 1
		}
		time.AfterFunc(crashAfter, func() {
			dumpEnv()
			logf("crash", "after", crashAfter)
			os.Exit(1)
		})
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	var draining atomic.Bool
	var requests atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch {
		case draining.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "draining\n")
		case neverHealthy, degrade && time.Since(started) >= unhealthyAfter, unhealthyFile != "" && exists(unhealthyFile):
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "unhealthy\n")
		default:
			io.WriteString(w, "ok\n")
		}
	})
	// /slow?d=5s answers after d: a slow request (an upload, a report).
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil {
			http.Error(w, "d: "+err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "deployctl-testapp version=%s host=%s slow=%s\n", version, host, d)
	})
	// /events?n=25&every=200ms is a server-sent event stream of n events,
	// one every "every", then its end ("data: end").
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		n, err1 := strconv.Atoi(r.URL.Query().Get("n"))
		every, err2 := time.ParseDuration(r.URL.Query().Get("every"))
		if err := errors.Join(err1, err2); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		flusher, _ := w.(http.Flusher)
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "data: version=%s event=%d\n\n", version, i)
			if flusher != nil {
				flusher.Flush()
			}
			select {
			case <-time.After(every):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprint(w, "data: end\n\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-App-Version", version)
		fmt.Fprintf(w, "deployctl-testapp version=%s host=%s\n", version, host)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	if startupDelay > 0 {
		logf("startup-delay", "duration", startupDelay)
		select {
		case <-time.After(startupDelay):
		case s := <-sigs:
			logf("signal", "signal", s, "during", "startup-delay")
			logf("exit", "code", 0)
			return 0
		}
	}

	ln, err := net.Listen("tcp", ":"+port())
	if err != nil {
		logf("listen-error", "error", err)
		return 1
	}
	logf("listening", "addr", ln.Addr())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var s os.Signal
	select {
	case s = <-sigs:
	case err := <-served:
		logf("serve-error", "error", err)
		return 1
	}
	logf("signal", "signal", s, "shutdown", mode)
	if mode == "exit" {
		logf("exit", "code", 0, "requests_served", requests.Load())
		return 0
	}
	go func() {
		s := <-sigs
		logf("signal", "signal", s, "action", "exit-now")
		os.Exit(2)
	}()

	if mode == "lameduck" {
		draining.Store(true)
		logf("draining", "duration", drain)
		time.Sleep(drain)
	}
	logf("shutdown", "requests_served", requests.Load())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := 0
	if err := srv.Shutdown(ctx); err != nil {
		logf("shutdown-error", "error", err)
		code = 1
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		logf("serve-error", "error", err)
		code = 1
	}
	logf("exit", "code", code, "requests_served", requests.Load())
	return code
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// release is release mode: two lines of output, a mark, an exit code.
func release(args []string) int {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	mark := fs.String("mark", "", "append a line to this file")
	code := fs.Int("exit", 0, "exit code")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	version := os.Getenv("APP_VERSION")
	host, _ := os.Hostname()
	fmt.Printf("release step=1 version=%s\n", version)
	if *mark != "" {
		f, err := os.OpenFile(*mark, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Printf("release error=%q\n", err)
			return 1
		}
		fmt.Fprintf(f, "%s %s\n", version, host)
		f.Close()
	}
	fmt.Printf("release step=2 version=%s exit=%d\n", version, *code)
	return *code
}
