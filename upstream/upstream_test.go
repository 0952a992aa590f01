package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The brokered headers go to the upstream's origin only, and redirects are not followed: a
// redirect (or an SSE stream on another host) must not carry the credentials elsewhere.
func TestHeadersStayWithTheOrigin(t *testing.T) {
	var got []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, "other:"+r.Header.Get("Authorization"))
	}))
	defer other.Close()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, "up:"+r.Header.Get("Authorization"))
		http.Redirect(w, r, other.URL+"/mcp", http.StatusTemporaryRedirect)
	}))
	defer up.Close()
	r, err := NewRemote(Options{Name: "u", URL: up.URL + "/mcp", Headers: map[string]string{"Authorization": "Bearer t0ken"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Connect(context.Background(), nil); err == nil {
		t.Fatal("connected through a redirect")
	}
	if len(got) == 0 || got[0] != "up:Bearer t0ken" {
		t.Errorf("requests: %v", got)
	}
	for _, g := range got {
		if strings.HasPrefix(g, "other:") {
			t.Errorf("a redirect was followed: %v", got)
		}
	}
	req, _ := http.NewRequest("GET", other.URL, nil)
	resp, err := r.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got[len(got)-1] != "other:" {
		t.Errorf("the header was sent to another origin: %v", got)
	}
}

func TestNewRemoteRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"", "ftp://x/", "mcp.example.com/mcp", "https://"} {
		if _, err := NewRemote(Options{Name: "u", URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
