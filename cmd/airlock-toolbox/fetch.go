package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// http_fetch: one HTTP request from inside a sandbox whose profile allows hosts. The sandbox has
// no route out: the request goes through the proxy its environment names (HTTP_PROXY,
// HTTPS_PROXY: the forwarder to Airlock's egress proxy), which decides which hosts it may reach;
// every redirect is a new request through it, so a redirect to a refused host is refused too.

// Bounds of one fetch.
const (
	fetchMaxBody      = 512 << 10
	fetchMaxRedirects = 5
	fetchTimeout      = 30 * time.Second
)

type fetchArgs struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

type fetchResult struct {
	Status        int               `json:"status"`
	StatusText    string            `json:"status_text"`
	Headers       map[string]string `json:"headers"`
	Body          string            `json:"body"`
	BodyBytes     int64             `json:"body_bytes"`
	BodyTruncated bool              `json:"body_truncated"`
	BodyBinary    bool              `json:"body_binary"`
	FinalURL      string            `json:"final_url"`
	Redirects     []string          `json:"redirects"`
}

// fetchHeaders are the response headers an agent is shown (the rest, cookies included, are
// not its business).
var fetchHeaders = []string{"Content-Type", "Content-Length", "Content-Encoding", "Last-Modified", "ETag", "Location", "Cache-Control", "Date"}

// httpFetch performs the request. client nil means one that uses the environment's proxy.
func httpFetch(a fetchArgs, client *http.Client) (any, error) {
	method := strings.ToUpper(a.Method)
	if method == "" {
		method = http.MethodGet
	}
	if !slices.Contains([]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}, method) {
		return nil, fmt.Errorf("method %q: want GET, HEAD, POST, PUT, PATCH or DELETE", a.Method)
	}
	u, err := url.Parse(a.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q: want an absolute http or https URL", a.URL)
	}
	var redirects []string
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = http.ProxyFromEnvironment
		client = &http.Client{Transport: tr}
	}
	client.Timeout = fetchTimeout
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > fetchMaxRedirects {
			return fmt.Errorf("more than %d redirects", fetchMaxRedirects)
		}
		redirects = append(redirects, req.URL.String())
		return nil
	}
	var body io.Reader
	if a.Body != "" {
		body = strings.NewReader(a.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	for k, v := range a.Headers {
		switch http.CanonicalHeaderKey(k) {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Proxy-Authorization", "Proxy-Connection":
			return nil, fmt.Errorf("header %s is set by the HTTP client, not the caller", k)
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %v (a refused host is in the call's egress record; the operator can allow it in the profile's network.allow)", method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, fetchMaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the response body: %v", err)
	}
	if refused := resp.Header.Get("X-Airlock-Egress"); refused != "" && resp.StatusCode == http.StatusForbidden {
		// Airlock's egress proxy answered, not the destination: the request never left.
		return nil, fmt.Errorf("%s %s: refused by Airlock's egress proxy: %s", method, resp.Request.URL.Redacted(), strings.TrimSpace(string(data)))
	}
	res := fetchResult{Status: resp.StatusCode, StatusText: http.StatusText(resp.StatusCode), Headers: map[string]string{},
		FinalURL: resp.Request.URL.String(), Redirects: redirects, BodyBytes: int64(len(data))}
	if res.Redirects == nil {
		res.Redirects = []string{}
	}
	if len(data) > fetchMaxBody {
		data, res.BodyTruncated = data[:fetchMaxBody], true
		res.BodyBytes = fetchMaxBody
	}
	for _, h := range fetchHeaders {
		if v := resp.Header.Get(h); v != "" {
			res.Headers[h] = v
		}
	}
	if utf8.Valid(data) {
		res.Body = string(data)
	} else {
		res.BodyBinary = true
	}
	return res, nil
}
