package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHTTPFetch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hop":
			http.Redirect(w, r, "/text", http.StatusFound)
		case "/text":
			w.Header().Set("Set-Cookie", "session=secret")
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(r.Method + " " + r.Header.Get("X-Test")))
		case "/big":
			w.Write([]byte(strings.Repeat("a", fetchMaxBody+10)))
		case "/bin":
			w.Write([]byte{0xff, 0xfe, 0x00})
		}
	}))
	defer srv.Close()
	get := func(a fetchArgs) fetchResult {
		t.Helper()
		r, err := httpFetch(a, srv.Client())
		if err != nil {
			t.Fatal(err)
		}
		return r.(fetchResult)
	}
	r := get(fetchArgs{URL: srv.URL + "/hop", Headers: map[string]string{"X-Test": "yes"}})
	if r.Status != 200 || r.Body != "GET yes" || len(r.Redirects) != 1 || !strings.HasSuffix(r.FinalURL, "/text") {
		t.Errorf("redirected fetch: %+v", r)
	}
	if _, ok := r.Headers["Set-Cookie"]; ok || r.Headers["Content-Type"] != "text/plain" {
		t.Errorf("headers shown: %v", r.Headers)
	}
	if r = get(fetchArgs{URL: srv.URL + "/big"}); !r.BodyTruncated || len(r.Body) != fetchMaxBody {
		t.Errorf("big body: truncated %v, %d bytes", r.BodyTruncated, len(r.Body))
	}
	if r = get(fetchArgs{URL: srv.URL + "/bin"}); !r.BodyBinary || r.Body != "" {
		t.Errorf("binary body shown: %+v", r)
	}
	for _, bad := range []fetchArgs{
		{URL: "ftp://x/"}, {URL: "/relative"}, {Method: "CONNECT", URL: srv.URL},
		{URL: srv.URL, Headers: map[string]string{"Host": "evil"}},
	} {
		if _, err := httpFetch(bad, srv.Client()); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
