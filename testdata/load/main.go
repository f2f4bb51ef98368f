// Command load sends GET requests at a constant rate (open loop: on
// schedule even while earlier requests are slow) until it receives SIGINT or
// SIGTERM or -duration passes, then prints how many were sent and failed.
// The deployctl demo runs it through Traefik during a rollout.
//
//	go run ./testdata/load -url http://127.0.0.1:18000/ -host demo.localhost -rate 50
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8000/", "URL to GET")
	host := flag.String("host", "", "Host header")
	rate := flag.Int("rate", 50, "requests per second")
	duration := flag.Duration("duration", 0, "stop after this long (0: at SIGINT/SIGTERM)")
	keepAlive := flag.Bool("keepalive", true, "reuse connections")
	flag.Parse()
	if *rate <= 0 {
		fmt.Fprintln(os.Stderr, "load: -rate must be positive")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: !*keepAlive, MaxIdleConnsPerHost: 100}}
	var sent, failed atomic.Int64
	var mu sync.Mutex
	kinds := map[string]int{}
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent.Add(1)
			req, _ := http.NewRequest("GET", *url, nil)
			if *host != "" {
				req.Host = *host
			}
			resp, err := client.Do(req)
			kind := ""
			switch {
			case err != nil:
				kind = "error"
			case resp.StatusCode != 200:
				kind = fmt.Sprintf("HTTP %d", resp.StatusCode)
			}
			if resp != nil {
				resp.Body.Close()
			}
			if kind != "" {
				failed.Add(1)
				mu.Lock()
				kinds[kind]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Printf("load: %d requests sent, %d failed", sent.Load(), failed.Load())
	var ks []string
	for k := range kinds {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		fmt.Printf(", %s: %d", k, kinds[k])
	}
	fmt.Println()
	if failed.Load() > 0 {
		os.Exit(1)
	}
}
